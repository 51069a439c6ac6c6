package components

import (
	"fmt"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// DataClassRoleArgs configures one data class (vault, memory, config).
type DataClassRoleArgs struct {
	Names naming.Names
	Class naming.DataClass
	// ProdPosture protects the bucket from deletion; otherwise destroy empties it.
	ProdPosture bool
	// Federated switches the role from the static trust (§4.2) to the OIDC trust (§9.3).
	Federated bool
	// TrustDependsOn are the principals the trust names: the daemon user when
	// static, the OIDC provider when federated (required then).
	TrustDependsOn []pulumi.Resource
	// TrustPolicy, when set, overrides the trust Federated picks (see DataRoleArgs).
	TrustPolicy pulumi.StringInput
	// PermissionsBoundary caps the stack's roles and users (test stacks: the
	// account stack's agentkeys-test-boundary, which CI requires).
	PermissionsBoundary string
}

// DataClassRole is one class's bucket and the role that alone may use it.
// The role has no inline grant: the split-statement bucket policy is the only
// thing that gives it access, scoped to bots/<actor tag>/<prefix>/.
type DataClassRole struct {
	pulumi.ResourceState

	Bucket       *s3.BucketV2
	BucketPolicy *s3.BucketPolicy
	Role         *iam.Role

	BucketName pulumi.StringOutput
	BucketArn  pulumi.StringOutput
	RoleName   pulumi.StringOutput
	RoleArn    pulumi.StringOutput
}

// NewDataClassRole declares the bucket and role of one data class.
func NewDataClassRole(ctx *pulumi.Context, name string, args *DataClassRoleArgs, opts ...pulumi.ResourceOption) (*DataClassRole, error) {
	if args == nil || args.Class.Name == "" {
		return nil, fmt.Errorf("data class role %s: a data class is required", name)
	}
	n, cl := args.Names, args.Class
	bucket, role := n.DataBuckets[cl.Name], n.DataClassRoles[cl.Name]
	if bucket == "" || role == "" {
		return nil, fmt.Errorf("data class role %s: names have no bucket or role for class %q", name, cl.Name)
	}
	trust, err := trustFor(n, args.Federated, args.TrustDependsOn)
	if err != nil {
		return nil, fmt.Errorf("data class role %s: %w", name, err)
	}
	c := &DataClassRole{}
	if err := ctx.RegisterComponentResource("agentkeys:index:DataClassRole", name, c, opts...); err != nil {
		return nil, err
	}
	var doc pulumi.StringInput = pulumi.String(trust.JSON())
	if args.TrustPolicy != nil {
		doc = args.TrustPolicy
	}
	if c.Role, err = iam.NewRole(ctx, name+"-role", &iam.RoleArgs{
		Name:                pulumi.String(role),
		AssumeRolePolicy:    doc,
		PermissionsBoundary: optString(args.PermissionsBoundary),
	}, pulumi.Parent(c), pulumi.DependsOn(args.TrustDependsOn)); err != nil {
		return nil, err
	}
	hb, err := newHardenedBucket(ctx, name+"-bucket", c, bucketSpec{
		bucket:      bucket,
		prodPosture: args.ProdPosture,
		policy:      policy.DataClassBucketPolicy(n, cl).JSON(),
		// The policy names the role as principal.
		policyDependsOn: []pulumi.Resource{c.Role},
	})
	if err != nil {
		return nil, err
	}
	c.Bucket, c.BucketPolicy = hb.Bucket, hb.Policy
	c.BucketName, c.BucketArn = c.Bucket.Bucket, c.Bucket.Arn
	c.RoleName, c.RoleArn = c.Role.Name, c.Role.Arn
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"class":      pulumi.String(cl.Name),
		"bucketName": c.BucketName,
		"bucketArn":  c.BucketArn,
		"roleName":   c.RoleName,
		"roleArn":    c.RoleArn,
		"federated":  pulumi.Bool(args.Federated),
	})
}
