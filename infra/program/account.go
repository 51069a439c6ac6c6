package program

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// AccountStackName is the stack that owns what broker stacks share.
const AccountStackName = naming.AccountStack

// accountProgram declares the account stack: the shared SES rule set and its
// activation, the GitHub OIDC provider, the two CI deploy roles (test and
// prod) and the test principals' permissions boundary.
func accountProgram(ctx *pulumi.Context, raw map[string]string) (map[string]pulumi.Input, error) {
	cfg, err := config.ParseAccount(raw)
	if err != nil {
		return nil, err
	}
	return declareAccount(ctx, cfg)
}

func declareAccount(ctx *pulumi.Context, cfg *config.Account) (map[string]pulumi.Input, error) {
	acct := cfg.Fork.AccountID
	who, err := aws.GetCallerIdentity(ctx, &aws.GetCallerIdentityArgs{})
	if err != nil {
		return nil, fmt.Errorf("who am I: %v", err)
	}
	if who.AccountId != acct {
		return nil, fmt.Errorf("config agentkeys:accountId is %s but the AWS credentials (%s) belong to account %s; switch profile (AWS_PROFILE) or fix the key", acct, who.Arn, who.AccountId)
	}
	keys := map[string]string{}
	for _, alias := range []string{policy.TestSecretsKeyAlias, policy.ProdSecretsKeyAlias} {
		k, err := kms.LookupAlias(ctx, &kms.LookupAliasArgs{Name: alias})
		if err != nil || k.TargetKeyArn == "" {
			return nil, fmt.Errorf("KMS alias %s not found in %s (%v): run scripts/bootstrap-state.sh --region %s first; see docs/account.md", alias, cfg.Fork.Region, err, cfg.Fork.Region)
		}
		keys[alias] = k.TargetKeyArn
	}
	backend := policy.CIBackend{StateBucket: policy.StateBucket(acct),
		TestKeyARN: keys[policy.TestSecretsKeyAlias], ProdKeyARN: keys[policy.ProdSecretsKeyAlias]}
	testTrust, err := cfg.Trust.TestTrust(acct)
	if err != nil {
		return nil, err
	}
	prodTrust, err := cfg.Trust.ProdTrust(acct)
	if err != nil {
		return nil, err
	}
	testPolicies, err := policy.CITestPolicies(cfg.Fork, backend, cfg.MaxTestSlot)
	if err != nil {
		return nil, err
	}
	prodPolicies, err := policy.CIProdPolicies(cfg.Fork, backend, cfg.MaxTestSlot)
	if err != nil {
		return nil, err
	}
	namedOf := func(ps []policy.CIPolicy) []components.NamedPolicy {
		var out []components.NamedPolicy
		for _, p := range ps {
			out = append(out, components.NamedPolicy{Name: p.Name, Policy: pulumi.String(p.Document.JSON())})
		}
		return out
	}
	adopt := components.AdoptArgs{RuleSet: cfg.Adopt["ruleSet"], ActiveRuleSet: cfg.Adopt["activeRuleSet"]}
	if cfg.Adopt["githubOidcProvider"] {
		adopt.GitHubProviderARN = policy.GitHubProviderARN(acct)
	}
	a, err := components.NewAccountStack(ctx, AccountStackName, &components.AccountStackArgs{
		RuleSetName:   naming.SharedRuleSet,
		GitHubOIDCURL: policy.GitHubOIDCURL,
		ClientID:      naming.OIDCAudience,
		CIRoles: []components.CIRoleArgs{
			{Key: "ci-role", Name: policy.CITestRole, Adopt: cfg.Adopt["ciTestRole"],
				Description: "GitHub Actions pull requests and pushes: deploy AgentKeys test slots only",
				TrustPolicy: testTrust.JSON(), Policies: namedOf(testPolicies)},
			{Key: "ci-prod-role", Name: policy.CIProdRole,
				Description: "GitHub Actions, protected environment " + cfg.Trust.ProdEnvironment + ": deploy prod, chain and account stacks",
				TrustPolicy: prodTrust.JSON(), Policies: namedOf(prodPolicies)},
		},
		MaxSessionDuration: policy.CISessionSeconds,
		TestBoundaryName:   policy.TestBoundaryName,
		TestBoundaryPolicy: policy.TestBoundary(cfg.Fork).JSON(),
		Adopt:              adopt,
	})
	if err != nil {
		return nil, err
	}
	region := cfg.Fork.Region
	return map[string]pulumi.Input{
		"ruleSetName":         a.RuleSetName,
		"githubProviderArn":   a.GitHubProviderARN,
		"ciRoleArn":           a.CIRoleARNs[policy.CITestRole],
		"ciProdRoleArn":       a.CIRoleARNs[policy.CIProdRole],
		"ciProdEnvironment":   pulumi.String(cfg.Trust.ProdEnvironment),
		"testBoundaryArn":     a.TestBoundaryARN,
		"stateBackend":        pulumi.String(policy.StateBackendURL(acct, region)),
		"testSecretsProvider": pulumi.String("awskms://" + policy.TestSecretsKeyAlias + "?region=" + region),
		"prodSecretsProvider": pulumi.String("awskms://" + policy.ProdSecretsKeyAlias + "?region=" + region),
	}, nil
}
