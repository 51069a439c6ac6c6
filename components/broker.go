package components

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
)

// BrokerStackArgs is everything one broker stack is built from.
type BrokerStackArgs struct {
	Names       naming.Names
	ProdPosture bool
	InstanceID  string
	EIP         EIPDecision
	// PermissionsBoundary caps every role and user of the stack (test stacks).
	PermissionsBoundary string
	// HostSpec renders the host agent's spec for the stack's public address.
	HostSpec func(publicIP string) (string, error)
	// Host configures the bring-up over SSH; nil leaves it pending (no key yet).
	Host *BrokerHostArgs
	// Provider is the stack's OIDC provider when the account already has it
	// (LookupOIDCProvider): federation then stays on whatever a run reports.
	Provider *ExistingProvider
	// SecretSpec keeps the host spec out of state and previews in clear text
	// (a custom RPC URL may carry a provider's API key in its path).
	SecretSpec bool
	// VerifyChain checks the broker's chain against the system roots when
	// reading the thumbprint; off for staging or test CAs.
	VerifyChain bool
}

// BrokerHostArgs configures the SSH bring-up of the broker host.
type BrokerHostArgs struct {
	User        string
	PrivateKey  pulumi.StringInput
	HostKey     string
	Port        int
	AgentBinary string
	AgentHash   string
	Redeploy    string
}

// BrokerStack composes one stack in the order of a bring-up: EIP and DNS,
// principals, mail, data classes, the host over SSH, then OIDC federation.
type BrokerStack struct {
	pulumi.ResourceState

	Network     *Network
	Principals  *Principals
	DataRole    *DataRole
	Mail        *MailBackend
	DataClasses map[string]*DataClassRole
	Host        *HostBringUp
	Federation  *OidcFederation

	Outputs map[string]pulumi.Input
}

// NewBrokerStack declares one broker stack.
func NewBrokerStack(ctx *pulumi.Context, name string, args *BrokerStackArgs, opts ...pulumi.ResourceOption) (*BrokerStack, error) {
	if args == nil || args.HostSpec == nil {
		return nil, fmt.Errorf("broker stack %s: args with a HostSpec renderer are required", name)
	}
	n := args.Names
	c := &BrokerStack{DataClasses: map[string]*DataClassRole{}}
	if err := ctx.RegisterComponentResource("agentkeys:index:BrokerStack", name, c, opts...); err != nil {
		return nil, err
	}
	p := pulumi.Parent(c)
	var err error
	if c.Network, err = NewNetwork(ctx, name+"-network", &NetworkArgs{
		Names: n, InstanceID: args.InstanceID, EIP: args.EIP, ProdPosture: args.ProdPosture,
	}, p); err != nil {
		return nil, err
	}
	// The data role is declared below, once its trust can be decided.
	if c.Principals, err = NewPrincipals(ctx, name+"-principals", &PrincipalsArgs{
		Names: n, InstanceID: args.InstanceID, DeferDataRole: true, PermissionsBoundary: args.PermissionsBoundary,
	}, p); err != nil {
		return nil, err
	}

	// The static trust names the daemon user (IAM checks it exists).
	trustDeps := []pulumi.Resource{c.Principals.DaemonUser}
	static, federated := policy.StaticTrust(n).JSON(), policy.FederatedTrust(n).JSON()
	var serving pulumi.BoolOutput // zero: no bring-up in this run
	var hostDeps []pulumi.Resource
	if args.Host != nil {
		spec := c.Network.PublicIp.ApplyT(func(ip string) (string, error) { return args.HostSpec(ip) }).(pulumi.StringOutput)
		if args.SecretSpec {
			spec = pulumi.ToSecret(spec).(pulumi.StringOutput)
		}
		deps := []pulumi.Resource{c.Principals.InstanceProfile}
		for _, r := range c.Network.Records {
			deps = append(deps, r)
		}
		if c.Host, err = NewHostBringUp(ctx, name+"-host", &HostBringUpArgs{
			Host: c.Network.PublicIp, Port: args.Host.Port, User: args.Host.User, PrivateKey: args.Host.PrivateKey,
			HostKey: args.Host.HostKey, AgentBinary: args.Host.AgentBinary, AgentHash: args.Host.AgentHash,
			Spec: spec, Redeploy: args.Host.Redeploy, DependsOn: deps,
			Stack: n.Stack.Name, InstanceID: args.InstanceID,
		}, p); err != nil {
			return nil, err
		}
		serving, hostDeps = c.Host.BrokerTLS, []pulumi.Resource{c.Host}
	}
	// The thumbprint comes from the live chain when the broker serves TLS,
	// else it stays what the account has (an update cannot clear it).
	var kept []string
	if args.Provider != nil {
		kept = args.Provider.Thumbprints
	}
	var thumbs pulumi.StringArrayInput
	if len(kept) > 0 {
		thumbs = pulumi.ToStringArray(kept)
	}
	if serving != (pulumi.BoolOutput{}) {
		thumbs = serving.ApplyT(func(ok bool) []string {
			if !ok {
				return kept
			}
			// Optional (AWS checks trusted CAs itself): a failed read of the
			// live chain warns instead of failing the deploy.
			t, err := liveThumbprint(ctx, n.BrokerHost, args.VerifyChain)
			if err != nil {
				_ = ctx.Log.Warn(err.Error()+"; the provider keeps its thumbprints", nil)
				return kept
			}
			return t
		}).(pulumi.StringArrayOutput)
	}
	if c.Federation, err = NewOidcFederation(ctx, name+"-oidc", &OidcFederationArgs{
		Names: n, Thumbprints: thumbs, Existing: args.Provider, Serving: serving, DependsOn: hostDeps,
		Defer: c.Host == nil,
	}, p); err != nil {
		return nil, err
	}
	// Roles keep the static trust (§4.2) until the provider exists, then trust
	// only it (§9.3); the document follows the provider's ARN, so it waits for it.
	var trust pulumi.StringInput = c.Federation.ProviderArn.ApplyT(func(arn string) string {
		if arn != "" {
			return federated
		}
		return static
	}).(pulumi.StringOutput)
	if args.Provider != nil {
		// Known up front, so a preview shows it too.
		trust = pulumi.String(federated)
		trustDeps = append(trustDeps, c.Federation.Provider)
	}
	var federation pulumi.StringOutput
	switch {
	case args.Provider != nil && c.Host != nil:
		federation = c.Host.Status.ApplyT(func(st string) string {
			if st == "healthy" {
				return "active: roles trust only " + n.OIDCProviderARN
			}
			return "active: roles trust only " + n.OIDCProviderARN + " (this run's bring-up: " + st + ")"
		}).(pulumi.StringOutput)
	case args.Provider != nil:
		federation = pulumi.String("active: roles trust only " + n.OIDCProviderARN).ToStringOutput()
	case c.Host != nil:
		federation = c.Host.Status.ApplyT(func(st string) string {
			if st == "healthy" {
				return "active: roles trust only " + n.OIDCProviderARN
			}
			return "pending: roles keep the static trust until the broker serves TLS (" + st + ")"
		}).(pulumi.StringOutput)
	default:
		federation = pulumi.String("pending: the broker host has not been brought up (agentkeys:sshPrivateKey is not set)").ToStringOutput()
	}
	if c.DataRole, err = NewDataRole(ctx, name+"-data", &DataRoleArgs{
		Names: n, TrustPolicy: trust, TrustDependsOn: trustDeps, PermissionsBoundary: args.PermissionsBoundary,
		// The inline grant goes in the run after the provider exists: a
		// plain decision, so a preview shows exactly what an up does.
		NoInline: args.Provider != nil,
	}, p); err != nil {
		return nil, err
	}
	if c.Mail, err = NewMailBackend(ctx, name+"-mail", &MailBackendArgs{
		Names: n, ProdPosture: args.ProdPosture, PolicyDependsOn: []pulumi.Resource{c.DataRole.Role},
	}, p); err != nil {
		return nil, err
	}
	for _, cl := range naming.DataClasses {
		d, err := NewDataClassRole(ctx, name+"-"+cl.Name, &DataClassRoleArgs{
			Names: n, Class: cl, ProdPosture: args.ProdPosture, TrustPolicy: trust, TrustDependsOn: trustDeps,
			PermissionsBoundary: args.PermissionsBoundary,
		}, p)
		if err != nil {
			return nil, err
		}
		c.DataClasses[cl.Name] = d
	}

	c.Outputs = map[string]pulumi.Input{
		"stack":             pulumi.String(n.Stack.Name),
		"brokerUrl":         pulumi.String(n.Issuer),
		"issuer":            pulumi.String(n.Issuer),
		"eip":               c.Network.PublicIp,
		"eipAllocationId":   c.Network.AllocationId,
		"eipRung":           pulumi.String(string(args.EIP.Rung) + ": " + args.EIP.Reason),
		"mailDomain":        pulumi.String(n.MailDomain),
		"sender":            pulumi.String(n.Sender),
		"dataRoleArn":       c.DataRole.RoleArn,
		"hostRoleArn":       c.Principals.HostRoleArn,
		"instanceProfile":   c.Principals.InstanceProfileName,
		"mailBucket":        c.Mail.BucketName,
		"daemonAccessKeyId": c.Principals.DaemonAccessKeyId,
		"daemonSecretKey":   c.Principals.DaemonSecretKey,
		"sshAccessKeyId":    c.Principals.SSHAccessKeyId,
		"sshSecretKey":      c.Principals.SSHSecretKey,
		"credentials":       c.Principals.Credentials(),
		"federation":        federation,
		"federationGate":    pulumi.String("roles trust " + n.OIDCProviderARN + " once the host bring-up reports https://" + n.BrokerHost + " serving OIDC discovery over TLS; until then they keep the static trust of the daemon user; afterwards they stay federated"),
	}
	buckets, roles := pulumi.StringMap{}, pulumi.StringMap{}
	for k, d := range c.DataClasses {
		buckets[k] = d.BucketName
		roles[k] = d.RoleArn
	}
	c.Outputs["dataBuckets"] = buckets
	c.Outputs["classRoleArns"] = roles
	if c.Host == nil {
		hostnames := pulumi.StringMap{}
		for _, h := range n.Hostnames() {
			hostnames[h] = pulumi.String("pending: host bring-up")
		}
		c.Outputs["hostBringUp"] = pulumi.String("pending: agentkeys:sshPrivateKey is not set (pulumi config set --secret agentkeys:sshPrivateKey < broker.pem)")
		c.Outputs["hostnames"] = hostnames
		c.Outputs["oidcProviderArn"] = pulumi.String("pending")
	} else {
		c.Outputs["hostBringUp"] = c.Host.Status
		c.Outputs["hostSummary"] = c.Host.Summary
		c.Outputs["oidcProviderArn"] = c.Federation.ProviderArn.ApplyT(func(arn string) string {
			if arn == "" {
				return "pending: declared once the broker serves OIDC discovery over TLS"
			}
			return arn
		}).(pulumi.StringOutput)
		c.Outputs["hostnames"] = c.Host.Summary.ApplyT(HostnameStates(n)).(pulumi.StringMapOutput)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"issuer": pulumi.String(n.Issuer), "federation": federation})
}

// liveThumbprint reads the chain https://host serves and returns the SHA-1
// of its top intermediate CA.
func liveThumbprint(ctx *pulumi.Context, host string, verify bool) ([]string, error) {
	r, err := tls.GetCertificate(ctx, &tls.GetCertificateArgs{Url: pulumi.StringRef("https://" + host), VerifyChain: pulumi.BoolRef(verify)})
	if err != nil {
		return nil, fmt.Errorf("reading the certificate chain of https://%s: %w", host, err)
	}
	t, err := TopIntermediateThumbprint(r.Certificates)
	if err != nil {
		return nil, fmt.Errorf("thumbprint of https://%s: %w", host, err)
	}
	return []string{t}, nil
}

// HostnameStates maps each public hostname to its TLS state from the agent's summary.
func HostnameStates(n naming.Names) func(summary string) map[string]string {
	return func(summary string) map[string]string {
		out := map[string]string{}
		issued, skipped := hostsOf(summary)
		for _, h := range n.Hostnames() {
			switch {
			case h == n.MCPHost:
				out[h] = "dns-only"
			case issued[h]:
				out[h] = "tls"
			case skipped[h] != "":
				out[h] = "http-only: " + skipped[h]
			case strings.TrimSpace(summary) == "":
				out[h] = "pending: the host bring-up has not run yet"
			default:
				out[h] = "unknown"
			}
		}
		return out
	}
}
