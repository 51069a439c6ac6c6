package components

import (
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDataClassRolePerKind(t *testing.T) {
	for _, stack := range kinds {
		for _, federated := range []bool{false, true} {
			t.Run(fmtKind(stack, federated), func(t *testing.T) {
				n := namesFor(t, stack)
				rec := newRec(stack)
				require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
					// Stands in for what the trust names: daemon user or provider.
					dep, err := iam.NewUser(ctx, "trusted", &iam.UserArgs{Name: pulumi.String(n.DaemonUser)})
					if err != nil {
						return err
					}
					for _, cl := range naming.DataClasses {
						d, err := NewDataClassRole(ctx, cl.Name, &DataClassRoleArgs{
							Names: n, Class: cl, ProdPosture: n.Stack.ProdPosture(),
							Federated: federated, TrustDependsOn: []pulumi.Resource{dep},
						})
						if err != nil {
							return err
						}
						assert.Equal(t, n.DataBuckets[cl.Name], await(t, ctx, d.BucketName).Value)
						assert.Equal(t, n.ClassRoleARNs[cl.Name], await(t, ctx, d.RoleArn).Value)
					}
					return nil
				}))
				trusted := mustFind(t, rec, "aws:iam/user:User", "trusted")
				comps := rec.ByType("agentkeys:index:DataClassRole")
				require.Len(t, comps, 3)
				for _, cl := range naming.DataClasses {
					role := mustFind(t, rec, "aws:iam/role:Role", cl.Name+"-role")
					assert.Equal(t, "agentkeys-"+cl.Name+"-role"+n.Stack.Suffix, role.Str("name"))
					want := policy.StaticTrust(n)
					if federated {
						want = policy.FederatedTrust(n)
					}
					assert.JSONEq(t, want.JSON(), role.Str("assumeRolePolicy"))
					assert.True(t, role.DependsOn(trusted.URN))

					b := mustFind(t, rec, "aws:s3/bucketV2:BucketV2", cl.Name+"-bucket")
					assert.Equal(t, n.DataBuckets[cl.Name], b.Str("bucket"))
					assertHardened(t, rec, cl.Name+"-bucket", b, n.Stack.ProdPosture())
					_, hasLifecycle := rec.Find("aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2", cl.Name+"-bucket-lifecycle")
					assert.False(t, hasLifecycle, "data never expires")

					pol := mustFind(t, rec, "aws:s3/bucketPolicy:BucketPolicy", cl.Name+"-bucket-policy")
					assert.JSONEq(t, policy.DataClassBucketPolicy(n, cl).JSON(), pol.Str("policy"))
					assert.Contains(t, pol.Str("policy"), "bots/${aws:PrincipalTag/agentkeys_actor_omni}/"+cl.Prefix+"/")
					assert.True(t, pol.DependsOn(role.URN), "the policy names the role: role first")

					var parent string
					for _, c := range comps {
						if c.Name == cl.Name {
							parent = c.URN
						}
					}
					for _, r := range rec.Resources() {
						if len(r.Name) > len(cl.Name) && r.Name[:len(cl.Name)+1] == cl.Name+"-" {
							assert.Equal(t, parent, r.Parent, "%s %s", r.Type, r.Name)
						}
					}
				}
				assert.Empty(t, rec.ByType("aws:iam/rolePolicy:RolePolicy"), "no inline grant on class roles")
				assert.Empty(t, rec.ByType("aws:iam/rolePolicyAttachment:RolePolicyAttachment"), "no attached grant on class roles")
			})
		}
	}
}

func TestDataClassRoleFederatedNeedsProvider(t *testing.T) {
	n := namesFor(t, "prod")
	err := newRec("prod").Run(func(ctx *pulumi.Context) error {
		_, err := NewDataClassRole(ctx, "vault", &DataClassRoleArgs{Names: n, Class: naming.DataClasses[0], Federated: true})
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TrustDependsOn")
}
