package components

import (
	"fmt"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// DataRoleArgs configures the stack's data role on its own (see
// PrincipalsArgs.DeferDataRole).
type DataRoleArgs struct {
	Names     naming.Names
	Federated bool
	// TrustDependsOn are the principals the trust names: the daemon user when
	// static, the OIDC provider when federated (required then).
	TrustDependsOn []pulumi.Resource
	// TrustPolicy, when set, overrides the trust Federated picks: BrokerStack
	// passes a document that turns federated once the host serves TLS, so one
	// `pulumi up` goes from static to federated trust.
	TrustPolicy pulumi.StringInput
	// PermissionsBoundary caps the stack's roles and users (test stacks: the
	// account stack's agentkeys-test-boundary, which CI requires).
	PermissionsBoundary string
	// NoInline drops the inline grant: once federated, the bucket policy
	// alone grants (§9.5 deletes ${ROLE}-inline).
	NoInline bool
}

// DataRole is agentkeys-data-role<sfx> with its inline grant (§4.2): mail
// bucket read and SES send on the stack's mail domain identities.
type DataRole struct {
	pulumi.ResourceState

	Role    *iam.Role
	RoleArn pulumi.StringOutput
}

// NewDataRole declares the data role as its own component, so that a
// federated role can be declared after the OIDC provider.
func NewDataRole(ctx *pulumi.Context, name string, args *DataRoleArgs, opts ...pulumi.ResourceOption) (*DataRole, error) {
	if args == nil || args.Names.DataRole == "" {
		return nil, fmt.Errorf("data role %s: Names are required", name)
	}
	trust, err := trustFor(args.Names, args.Federated, args.TrustDependsOn)
	if err != nil {
		return nil, fmt.Errorf("data role %s: %w", name, err)
	}
	if !args.Federated && len(args.TrustDependsOn) == 0 {
		return nil, fmt.Errorf("data role %s: the static trust names %s; pass the daemon user in TrustDependsOn", name, args.Names.DaemonUserARN)
	}
	c := &DataRole{}
	if err := ctx.RegisterComponentResource("agentkeys:index:DataRole", name, c, opts...); err != nil {
		return nil, err
	}
	var doc pulumi.StringInput = pulumi.String(trust.JSON())
	if args.TrustPolicy != nil {
		doc = args.TrustPolicy
	}
	if c.Role, err = declareDataRole(ctx, name, c, args.Names, doc, args.TrustDependsOn, args.PermissionsBoundary, args.NoInline); err != nil {
		return nil, err
	}
	c.RoleArn = c.Role.Arn
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"roleArn":   c.RoleArn,
		"federated": pulumi.Bool(args.Federated),
	})
}

// declareDataRole declares the role and, unless noInline, its inline grant
// under parent.
func declareDataRole(ctx *pulumi.Context, name string, parent pulumi.Resource, n naming.Names, trust pulumi.StringInput, deps []pulumi.Resource, boundary string, noInline bool) (*iam.Role, error) {
	p := pulumi.Parent(parent)
	role, err := iam.NewRole(ctx, name+"-data-role", &iam.RoleArgs{
		Name:                pulumi.String(n.DataRole),
		AssumeRolePolicy:    trust,
		PermissionsBoundary: optString(boundary),
	}, p, pulumi.DependsOn(deps))
	if err != nil {
		return nil, err
	}
	if noInline {
		return role, nil
	}
	_, err = iam.NewRolePolicy(ctx, name+"-data-role-policy", &iam.RolePolicyArgs{
		Role: role.Name, Name: pulumi.String(n.DataRole + "-inline"), Policy: pulumi.String(policy.DataRoleInline(n).JSON()),
	}, p)
	return role, err
}

// optString is nil for "", so an unset option stays out of the inputs.
func optString(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}
