package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// declareBroker declares one broker stack: the EIP decision is made from
// lookups before any resource is declared, then BrokerStack composes the rest.
func declareBroker(ctx *pulumi.Context, cfg *config.Config, projectDir string) (map[string]pulumi.Input, error) {
	n := cfg.Names()
	configured := cfg.EIPAllocationID
	if configured == "" {
		configured = cfg.EIPAddress
	}
	lookups, err := components.LookupEIPs(ctx, cfg.InstanceID, n.EIPTag, configured)
	if err != nil {
		return nil, err
	}
	eip, err := components.ChooseEIP(lookups)
	if err != nil {
		return nil, err
	}
	for _, w := range eip.Warnings {
		_ = ctx.Log.Warn(w, nil)
	}
	// Federation is sticky: a provider the account already has stays, and
	// the roles keep trusting it whatever one bring-up reports.
	provider, err := components.LookupOIDCProvider(ctx, n.OIDCProviderARN)
	if err != nil {
		return nil, err
	}
	args := &components.BrokerStackArgs{
		Names: n, ProdPosture: cfg.Stack.ProdPosture(), InstanceID: cfg.InstanceID, EIP: eip, Provider: provider,
		// Staging and test CAs are not in the system roots.
		VerifyChain: cfg.ACMEDir == config.DefaultACMEDirectory,
		SecretSpec:  cfg.RPCURL != "",
		HostSpec: func(ip string) (string, error) {
			s, err := HostSpec(cfg, ip)
			if err != nil {
				return "", err
			}
			b, err := s.Encode()
			return string(b), err
		},
	}
	if !cfg.Stack.ProdPosture() {
		// CI may create test principals only under the account stack's boundary.
		args.PermissionsBoundary = policy.TestBoundaryARN(n.Fork.AccountID)
	}
	if cfg.SSHPrivateKey.Set() {
		bin, hash, err := AgentBinary(projectDir, cfg.HostArch)
		if err != nil {
			return nil, err
		}
		args.Host = &components.BrokerHostArgs{
			User: cfg.SSHUser, PrivateKey: pulumi.ToSecret(pulumi.String(cfg.SSHPrivateKey.Reveal())).(pulumi.StringOutput),
			HostKey: cfg.SSHHostKey, AgentBinary: bin, AgentHash: hash, Redeploy: cfg.Redeploy,
		}
	}
	bs, err := components.NewBrokerStack(ctx, "agentkeys", args)
	if err != nil {
		return nil, err
	}
	return bs.Outputs, nil
}
