package components

import (
	"testing"

	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFederatedConstructionOrder builds the federated graph in the only order
// Go code can declare it: principals (data role deferred), the host (waits for
// the instance profile), the provider (waits for the host), then the data role
// and the mail backend whose bucket policy names it.
func TestFederatedConstructionOrder(t *testing.T) {
	for _, stack := range kinds {
		t.Run(stack, func(t *testing.T) {
			n := namesFor(t, stack)
			rec := newRec(stack)
			require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
				pr, err := NewPrincipals(ctx, "iam", &PrincipalsArgs{Names: n, InstanceID: testInst, Federated: true, DeferDataRole: true})
				if err != nil {
					return err
				}
				assert.Nil(t, pr.DataRole)
				assert.Equal(t, n.DataRoleARN, await(t, ctx, pr.DataRoleArn).Value)
				// Stands in for the host bring-up.
				host, err := iam.NewUser(ctx, "host", &iam.UserArgs{Name: pulumi.String("host")}, pulumi.DependsOn([]pulumi.Resource{pr.InstanceProfile}))
				if err != nil {
					return err
				}
				o, err := NewOidcFederation(ctx, "oidc", &OidcFederationArgs{Names: n, DependsOn: []pulumi.Resource{host}})
				if err != nil {
					return err
				}
				dr, err := NewDataRole(ctx, "data", &DataRoleArgs{Names: n, Federated: true, TrustDependsOn: []pulumi.Resource{o.Provider}})
				if err != nil {
					return err
				}
				_, err = NewMailBackend(ctx, "mail", &MailBackendArgs{Names: n, PolicyDependsOn: []pulumi.Resource{dr.Role}})
				return err
			}))
			_, inPrincipals := rec.Find("aws:iam/role:Role", "iam-data-role")
			assert.False(t, inPrincipals, "deferred data role must not be declared by Principals")
			prov := mustFind(t, rec, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "oidc-provider")
			assert.True(t, prov.DependsOn(mustFind(t, rec, "aws:iam/user:User", "host").URN))
			role := mustFind(t, rec, "aws:iam/role:Role", "data-data-role")
			assert.Equal(t, n.DataRole, role.Str("name"))
			assert.JSONEq(t, policy.FederatedTrust(n).JSON(), role.Str("assumeRolePolicy"))
			assert.True(t, role.DependsOn(prov.URN), "federated trust after the provider")
			inline := mustFind(t, rec, "aws:iam/rolePolicy:RolePolicy", "data-data-role-policy")
			assert.JSONEq(t, policy.DataRoleInline(n).JSON(), inline.Str("policy"))
			assert.Equal(t, rec.ByType("agentkeys:index:DataRole")[0].URN, role.Parent)
			assert.Equal(t, rec.ByType("agentkeys:index:DataRole")[0].URN, inline.Parent)
			pol := mustFind(t, rec, "aws:s3/bucketPolicy:BucketPolicy", "mail-bucket-policy")
			assert.True(t, pol.DependsOn(role.URN))
			rule := mustFind(t, rec, "aws:ses/receiptRule:ReceiptRule", "mail-receipt-rule")
			assert.True(t, rule.DependsOn(pol.URN))
		})
	}
}

func TestDataRoleStaticNeedsDaemonUser(t *testing.T) {
	n := namesFor(t, "test")
	err := newRec("test").Run(func(ctx *pulumi.Context) error {
		_, err := NewDataRole(ctx, "data", &DataRoleArgs{Names: n})
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), n.DaemonUserARN)
}
