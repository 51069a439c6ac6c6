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
	// CIRoleName, CITrustPolicy and CIPolicies make the CI deploy role.
	CIRoleName         string
	CITrustPolicy      string
	CIPolicies         []NamedPolicy
	MaxSessionDuration int
	// TestBoundaryName/TestBoundaryPolicy is the permissions boundary every
	// test stack's principals carry.
	TestBoundaryName   string
	TestBoundaryPolicy string
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
	CIRoleARN         pulumi.StringOutput `pulumi:"ciRoleArn"`
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
	case a.CIRoleName == "" || a.CITrustPolicy == "" || len(a.CIPolicies) == 0:
		return fmt.Errorf("AccountStack: the CI role needs a name, a trust policy and at least one policy")
	case a.TestBoundaryName == "" || a.TestBoundaryPolicy == "":
		return fmt.Errorf("AccountStack: the test boundary policy needs a name and a document")
	case a.MaxSessionDuration < 900 || a.MaxSessionDuration > 43200:
		return fmt.Errorf("AccountStack: MaxSessionDuration %d is outside IAM's 900..43200 seconds", a.MaxSessionDuration)
	}
	return nil
}

// NewAccountStack declares the shared SES rule set and its activation, the
// GitHub Actions OIDC provider, the CI deploy role and the test boundary.
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

	ruleSet, err := ses.NewReceiptRuleSet(ctx, name+"-rule-set", &ses.ReceiptRuleSetArgs{
		RuleSetName: pulumi.String(args.RuleSetName),
	}, shared...)
	if err != nil {
		return nil, err
	}
	if _, err := ses.NewActiveReceiptRuleSet(ctx, name+"-rule-set-active", &ses.ActiveReceiptRuleSetArgs{
		RuleSetName: ruleSet.RuleSetName,
	}, shared...); err != nil {
		return nil, err
	}
	provider, err := iam.NewOpenIdConnectProvider(ctx, name+"-github-oidc", &iam.OpenIdConnectProviderArgs{
		Url:           pulumi.String(args.GitHubOIDCURL),
		ClientIdLists: pulumi.StringArray{pulumi.String(args.ClientID)},
		// No thumbprint: IAM verifies GitHub's JWKS host against its own CA library.
	}, shared...)
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
	// IAM rejects a trust policy whose federated principal does not exist yet.
	role, err := iam.NewRole(ctx, name+"-ci-role", &iam.RoleArgs{
		Name:               pulumi.String(args.CIRoleName),
		Description:        pulumi.String("GitHub Actions: preview every stack, deploy test stacks"),
		AssumeRolePolicy:   pulumi.String(args.CITrustPolicy),
		MaxSessionDuration: pulumi.Int(args.MaxSessionDuration),
	}, parent, pulumi.DependsOn([]pulumi.Resource{provider}))
	if err != nil {
		return nil, err
	}
	for _, p := range args.CIPolicies {
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

	c.RuleSetName = ruleSet.RuleSetName
	c.GitHubProviderARN = provider.Arn
	c.CIRoleARN = role.Arn
	c.TestBoundaryARN = boundary.Arn
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"ruleSetName":       c.RuleSetName,
		"githubProviderArn": c.GitHubProviderARN,
		"ciRoleArn":         c.CIRoleARN,
		"testBoundaryArn":   c.TestBoundaryARN,
	}); err != nil {
		return nil, err
	}
	return c, nil
}
