package components

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ses"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// AccountStackArgs are the account-wide resources' names and documents, all
// computed by the caller (naming + policy).
type AccountStackArgs struct {
	// RuleSetName is the shared SES receipt rule set every broker stack's rule joins.
	RuleSetName string
	// GitHubOIDCURL and ClientID describe the GitHub Actions OIDC provider.
	GitHubOIDCURL string
	ClientID      string
	// CIRoles are the CI deploy roles: the test role first, then the prod role.
	CIRoles            []CIRoleArgs
	MaxSessionDuration int
	// TestBoundaryName/TestBoundaryPolicy is the permissions boundary every
	// test stack's principals carry.
	TestBoundaryName   string
	TestBoundaryPolicy string
	// Adopt imports resources the account already has instead of creating them.
	Adopt AdoptArgs
}

// CIRoleArgs is one CI deploy role.
type CIRoleArgs struct {
	Key         string // resource name suffix, e.g. "ci-role" -> "<component>-ci-role"
	Name        string
	Description string // printable ASCII only (IAM)
	TrustPolicy string
	Policies    []NamedPolicy
	Adopt       bool // import the existing role of this name
}

// AdoptArgs names what an `up` imports: the account's existing GitHub
// provider (its ARN), rule set and its activation. Adopted resources keep
// their live values for this run (ignoreChanges on what the runbook's scripts
// set differently); the next `up` without adoption brings them to the
// program's values, as updates the prod gate shows and asks for.
type AdoptArgs struct {
	GitHubProviderARN string
	RuleSet           bool
	ActiveRuleSet     bool
}

// NamedPolicy is one managed policy: its IAM name and its JSON document.
type NamedPolicy struct {
	Name   string
	Policy pulumi.StringInput
}

// AccountStack owns what every broker stack shares in one account.
type AccountStack struct {
	pulumi.ResourceState

	RuleSetName       pulumi.StringOutput `pulumi:"ruleSetName"`
	GitHubProviderARN pulumi.StringOutput `pulumi:"githubProviderArn"`
	CIRoleARNs        pulumi.StringMap    `pulumi:"ciRoleArns"` // by role name
	TestBoundaryARN   pulumi.StringOutput `pulumi:"testBoundaryArn"`
}

// AccountStackType is the component's type token.
const AccountStackType = "agentkeys:index:AccountStack"

func (a *AccountStackArgs) validate() error {
	switch {
	case a.RuleSetName == "":
		return fmt.Errorf("AccountStack: RuleSetName is empty")
	case a.GitHubOIDCURL == "" || a.ClientID == "":
		return fmt.Errorf("AccountStack: GitHub OIDC URL and client id are required")
	case len(a.CIRoles) == 0:
		return fmt.Errorf("AccountStack: no CI role")
	case a.TestBoundaryName == "" || a.TestBoundaryPolicy == "":
		return fmt.Errorf("AccountStack: the test boundary policy needs a name and a document")
	case a.MaxSessionDuration < 900 || a.MaxSessionDuration > 43200:
		return fmt.Errorf("AccountStack: MaxSessionDuration %d is outside IAM's 900..43200 seconds", a.MaxSessionDuration)
	}
	seen := map[string]bool{}
	for _, r := range a.CIRoles {
		if r.Key == "" || r.Name == "" || r.TrustPolicy == "" || len(r.Policies) == 0 || seen[r.Key] || seen[r.Name] {
			return fmt.Errorf("AccountStack: CI role %q needs a unique key and name, a trust policy and at least one policy", r.Name)
		}
		seen[r.Key], seen[r.Name] = true, true
		for _, c := range r.Description {
			if c < 0x20 || c > 0x7e {
				return fmt.Errorf("AccountStack: CI role %s: IAM descriptions are printable ASCII; %q is not", r.Name, c)
			}
		}
	}
	return nil
}

// adopt returns the import options of an adopted resource.
func adopt(id string, ignore ...string) []pulumi.ResourceOption {
	if id == "" {
		return nil
	}
	return []pulumi.ResourceOption{pulumi.Import(pulumi.ID(id)), pulumi.IgnoreChanges(ignore)}
}

// NewAccountStack declares the shared SES rule set and its activation, the
// GitHub Actions OIDC provider, the CI deploy roles and the test boundary.
// The rule set, its activation and the provider are protected: broker stacks
// reference them by name, and deleting the activation would stop every
// stack's inbound mail, so `pulumi destroy` of the account stack is refused
// until an operator unprotects them on purpose.
func NewAccountStack(ctx *pulumi.Context, name string, args *AccountStackArgs, opts ...pulumi.ResourceOption) (*AccountStack, error) {
	if args == nil {
		return nil, fmt.Errorf("AccountStack: args are required")
	}
	if err := args.validate(); err != nil {
		return nil, err
	}
	c := &AccountStack{}
	if err := ctx.RegisterComponentResource(AccountStackType, name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	shared := []pulumi.ResourceOption{parent, pulumi.Protect(true)}
	with := func(base []pulumi.ResourceOption, more ...pulumi.ResourceOption) []pulumi.ResourceOption {
		return append(append([]pulumi.ResourceOption{}, base...), more...)
	}
	ifTrue := func(b bool, id string) string {
		if b {
			return id
		}
		return ""
	}

	ruleSet, err := ses.NewReceiptRuleSet(ctx, name+"-rule-set", &ses.ReceiptRuleSetArgs{
		RuleSetName: pulumi.String(args.RuleSetName),
	}, with(shared, adopt(ifTrue(args.Adopt.RuleSet, args.RuleSetName))...)...)
	if err != nil {
		return nil, err
	}
	if _, err := ses.NewActiveReceiptRuleSet(ctx, name+"-rule-set-active", &ses.ActiveReceiptRuleSetArgs{
		RuleSetName: ruleSet.RuleSetName,
	}, with(shared, adopt(ifTrue(args.Adopt.ActiveRuleSet, args.RuleSetName))...)...); err != nil {
		return nil, err
	}
	// No thumbprint: IAM verifies GitHub's JWKS host against its own CA
	// library. The runbook's provider carries one, and a thumbprint list
	// cannot be cleared by an update: it is ignored, adopted or not.
	providerOpts := with(shared, pulumi.IgnoreChanges([]string{"thumbprintLists"}))
	if id := args.Adopt.GitHubProviderARN; id != "" {
		providerOpts = append(providerOpts, pulumi.Import(pulumi.ID(id)), pulumi.IgnoreChanges([]string{"tags"}))
	}
	provider, err := iam.NewOpenIdConnectProvider(ctx, name+"-github-oidc", &iam.OpenIdConnectProviderArgs{
		Url:           pulumi.String(args.GitHubOIDCURL),
		ClientIdLists: pulumi.StringArray{pulumi.String(args.ClientID)},
	}, providerOpts...)
	if err != nil {
		return nil, err
	}
	boundary, err := iam.NewPolicy(ctx, name+"-test-boundary", &iam.PolicyArgs{
		Name:        pulumi.String(args.TestBoundaryName),
		Description: pulumi.String("Permissions boundary of every AgentKeys test-stack principal"),
		Policy:      pulumi.String(args.TestBoundaryPolicy),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.CIRoleARNs = pulumi.StringMap{}
	for _, r := range args.CIRoles {
		// IAM rejects a trust policy whose federated principal does not exist yet.
		roleOpts := []pulumi.ResourceOption{parent, pulumi.DependsOn([]pulumi.Resource{provider})}
		roleOpts = append(roleOpts, adopt(ifTrue(r.Adopt, r.Name), "assumeRolePolicy", "description", "maxSessionDuration", "tags")...)
		role, err := iam.NewRole(ctx, name+"-"+r.Key, &iam.RoleArgs{
			Name:               pulumi.String(r.Name),
			Description:        pulumi.String(r.Description),
			AssumeRolePolicy:   pulumi.String(r.TrustPolicy),
			MaxSessionDuration: pulumi.Int(args.MaxSessionDuration),
		}, roleOpts...)
		if err != nil {
			return nil, err
		}
		for _, p := range r.Policies {
			pol, err := iam.NewPolicy(ctx, name+"-"+p.Name, &iam.PolicyArgs{
				Name:   pulumi.String(p.Name),
				Policy: p.Policy,
			}, parent)
			if err != nil {
				return nil, err
			}
			if _, err := iam.NewRolePolicyAttachment(ctx, name+"-"+p.Name, &iam.RolePolicyAttachmentArgs{
				Role:      role.Name,
				PolicyArn: pol.Arn,
			}, parent); err != nil {
				return nil, err
			}
		}
		c.CIRoleARNs[r.Name] = role.Arn
	}

	c.RuleSetName = ruleSet.RuleSetName
	c.GitHubProviderARN = provider.Arn
	c.TestBoundaryARN = boundary.Arn
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"ruleSetName":       c.RuleSetName,
		"githubProviderArn": c.GitHubProviderARN,
		"ciRoleArns":        c.CIRoleARNs,
		"testBoundaryArn":   c.TestBoundaryARN,
	}); err != nil {
		return nil, err
	}
	return c, nil
}
