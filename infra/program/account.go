package program

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// AccountStackName is the stack that owns what broker stacks share.
const AccountStackName = "account"

// defaultMaxTestSlot bounds the CI policy's coverage check (slots 1..N).
const defaultMaxTestSlot = 20

// accountConfig is the account stack's validated configuration.
type accountConfig struct {
	Fork           naming.Fork // AccountID, Zone, Region
	GitHubRepo     string
	CIBranches     []string
	CIEnvironments []string
	MaxTestSlot    int
}

// accountKeys are the keys the account stack reads, with a valid example each.
var accountKeys = map[string]string{
	"agentkeys:accountId":      `"123456789012"`,
	"agentkeys:zone":           "example.org",
	"agentkeys:githubRepo":     "litentry/agentKeys",
	"agentkeys:ciBranches":     "[main]",
	"agentkeys:ciEnvironments": "[ci-deploy]",
	"agentkeys:maxTestSlot":    "20",
	"aws:region":               "us-east-1",
}

func keyErr(key, format string, a ...any) error {
	return fmt.Errorf("stack %s: config %s: %s (example: %s: %s in Pulumi.%s.yaml)",
		AccountStackName, key, fmt.Sprintf(format, a...), key, accountKeys[key], AccountStackName)
}

// parseAccountConfig validates raw (PULUMI_CONFIG's map) before anything is
// declared; every error names the key and a valid example.
func parseAccountConfig(raw map[string]string) (*accountConfig, error) {
	var unknown []string
	for k := range raw {
		if strings.HasPrefix(k, "agentkeys:") {
			if _, ok := accountKeys[k]; !ok {
				unknown = append(unknown, k)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		keys := make([]string, 0, len(accountKeys))
		for k := range accountKeys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("stack %s: unknown config keys %s (broker-stack keys do not belong here); the account stack reads %s",
			AccountStackName, strings.Join(unknown, ", "), strings.Join(keys, ", "))
	}
	c := &accountConfig{MaxTestSlot: defaultMaxTestSlot}
	c.Fork.AccountID = raw["agentkeys:accountId"]
	if !naming.IsAccountID(c.Fork.AccountID) {
		return nil, keyErr("agentkeys:accountId", "%q is not a 12-digit AWS account id (quote it in YAML)", c.Fork.AccountID)
	}
	c.Fork.Zone = raw["agentkeys:zone"]
	if !naming.IsZone(c.Fork.Zone) {
		return nil, keyErr("agentkeys:zone", "%q is not a lowercase DNS zone without a trailing dot", c.Fork.Zone)
	}
	c.Fork.Region = raw["aws:region"]
	if !naming.IsRegion(c.Fork.Region) {
		return nil, keyErr("aws:region", "%q is not an AWS region", c.Fork.Region)
	}
	c.GitHubRepo = raw["agentkeys:githubRepo"]
	if c.GitHubRepo == "" {
		return nil, keyErr("agentkeys:githubRepo", "is required: the owner/name whose workflows may assume %s", naming.CIDeployRole)
	}
	var err error
	if c.CIBranches, err = stringList(raw, "agentkeys:ciBranches"); err != nil {
		return nil, err
	}
	if c.CIEnvironments, err = stringList(raw, "agentkeys:ciEnvironments"); err != nil {
		return nil, err
	}
	if v, ok := raw["agentkeys:maxTestSlot"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 999 {
			return nil, keyErr("agentkeys:maxTestSlot", "%q is not a slot count between 1 and 999", v)
		}
		c.MaxTestSlot = n
	}
	// The trust policy's own checks name the key of a bad repo, branch or environment.
	if _, err := policy.CITrust(c.Fork.AccountID, c.GitHubRepo, c.CIBranches, c.CIEnvironments); err != nil {
		return nil, fmt.Errorf("stack %s: %v", AccountStackName, err)
	}
	return c, nil
}

// stringList reads a YAML list key (Pulumi passes it as a JSON array).
func stringList(raw map[string]string, key string) ([]string, error) {
	v, ok := raw[key]
	if !ok || v == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, keyErr(key, "%q is not a list of strings", v)
	}
	return out, nil
}

// accountProgram declares the account stack: the shared SES rule set and its
// activation, the GitHub OIDC provider, the CI deploy role and the test
// principals' permissions boundary.
func accountProgram(ctx *pulumi.Context) (map[string]pulumi.Input, error) {
	raw, err := config.EnvValues()
	if err != nil {
		return nil, err
	}
	cfg, err := parseAccountConfig(raw)
	if err != nil {
		return nil, err
	}
	return declareAccount(ctx, cfg)
}

func declareAccount(ctx *pulumi.Context, cfg *accountConfig) (map[string]pulumi.Input, error) {
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
