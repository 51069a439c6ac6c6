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
// activation, the GitHub OIDC provider, the CI deploy role and the test
// principals' permissions boundary.
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
	key, err := kms.LookupAlias(ctx, &kms.LookupAliasArgs{Name: policy.SecretsKeyAlias})
	if err != nil || key.TargetKeyArn == "" {
		return nil, fmt.Errorf("KMS alias %s not found in %s (%v): run scripts/bootstrap-state.sh first; see docs/account.md", policy.SecretsKeyAlias, cfg.Fork.Region, err)
	}
	trust, err := policy.CITrust(acct, cfg.GitHubRepo, cfg.CIBranches, cfg.CIEnvironments)
	if err != nil {
		return nil, err
	}
	ci, err := policy.CIDeployPolicies(cfg.Fork, policy.CIBackend{
		StateBucket: policy.StateBucket(acct), SecretsKeyARN: key.TargetKeyArn,
	}, cfg.MaxTestSlot)
	if err != nil {
		return nil, err
	}
	var named []components.NamedPolicy
	for _, p := range ci {
		named = append(named, components.NamedPolicy{Name: p.Name, Policy: pulumi.String(p.Document.JSON())})
	}
	a, err := components.NewAccountStack(ctx, AccountStackName, &components.AccountStackArgs{
		RuleSetName:        naming.SharedRuleSet,
		GitHubOIDCURL:      policy.GitHubOIDCURL,
		ClientID:           naming.OIDCAudience,
		CIRoleName:         naming.CIDeployRole,
		CITrustPolicy:      trust.JSON(),
		CIPolicies:         named,
		MaxSessionDuration: policy.CISessionSeconds,
		TestBoundaryName:   policy.TestBoundaryName,
		TestBoundaryPolicy: policy.TestBoundary(cfg.Fork).JSON(),
	})
	if err != nil {
		return nil, err
	}
	return map[string]pulumi.Input{
		"ruleSetName":       a.RuleSetName,
		"githubProviderArn": a.GitHubProviderARN,
		"ciRoleArn":         a.CIRoleARN,
		"testBoundaryArn":   a.TestBoundaryARN,
		"stateBackend":      pulumi.String("s3://" + policy.StateBucket(acct)),
		"secretsProvider":   pulumi.String("awskms://" + policy.SecretsKeyAlias + "?region=" + cfg.Fork.Region),
	}, nil
}
