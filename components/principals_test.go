package components

import (
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrincipalsPerKind(t *testing.T) {
	for _, stack := range kinds {
		for _, federated := range []bool{false, true} {
			t.Run(fmtKind(stack, federated), func(t *testing.T) {
				n := namesFor(t, stack)
				rec := newRec(stack)
				var creds string
				require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
					var deps []pulumi.Resource
					if federated {
						o, err := NewOidcFederation(ctx, "oidc", &OidcFederationArgs{Names: n})
						if err != nil {
							return err
						}
						deps = append(deps, o.Provider)
					}
					p, err := NewPrincipals(ctx, "iam", &PrincipalsArgs{Names: n, InstanceID: testInst, Federated: federated, TrustDependsOn: deps})
					if err != nil {
						return err
					}
					for _, o := range []pulumi.StringOutput{p.DaemonSecretKey, p.SSHSecretKey} {
						r := await(t, ctx, o)
						assert.True(t, r.Secret, "secret access keys must be Pulumi secrets")
					}
					c := await(t, ctx, p.Credentials())
					assert.True(t, c.Secret, "the credentials blocks are secret")
					creds = c.Value.(string)
					return nil
				}))

				d := mustFind(t, rec, "aws:iam/user:User", "iam-daemon")
				assert.Equal(t, n.DaemonUser, d.Str("name"))
				dp := mustFind(t, rec, "aws:iam/userPolicy:UserPolicy", "iam-daemon-policy")
				assert.JSONEq(t, policy.DaemonUser(n).JSON(), dp.Str("policy"))
				assert.Equal(t, n.DaemonUser, dp.Str("user"))
				s := mustFind(t, rec, "aws:iam/user:User", "iam-ssh")
				assert.Equal(t, n.SSHUser, s.Str("name"))
				sp := mustFind(t, rec, "aws:iam/userPolicy:UserPolicy", "iam-ssh-policy")
				assert.JSONEq(t, policy.SSHUser(n, testInst).JSON(), sp.Str("policy"))
				assert.Contains(t, sp.Str("policy"), testInst)

				for _, k := range []string{"iam-daemon-key", "iam-ssh-key"} {
					key := mustFind(t, rec, "aws:iam/accessKey:AccessKey", k)
					assert.Contains(t, key.AdditionalSecretOutputs, "secret")
				}

				dr := mustFind(t, rec, "aws:iam/role:Role", "iam-data-role")
				assert.Equal(t, n.DataRole, dr.Str("name"))
				assert.True(t, dr.DependsOn(d.URN), "the static trust names the daemon user")
				if federated {
					assert.JSONEq(t, policy.FederatedTrust(n).JSON(), dr.Str("assumeRolePolicy"))
					assert.True(t, dr.DependsOn(mustFind(t, rec, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "oidc-provider").URN))
				} else {
					assert.JSONEq(t, policy.StaticTrust(n).JSON(), dr.Str("assumeRolePolicy"))
				}
				drp := mustFind(t, rec, "aws:iam/rolePolicy:RolePolicy", "iam-data-role-policy")
				assert.JSONEq(t, policy.DataRoleInline(n).JSON(), drp.Str("policy"))
				assert.Equal(t, n.DataRole, drp.Str("role"))

				hr := mustFind(t, rec, "aws:iam/role:Role", "iam-host-role")
				assert.Equal(t, n.HostRole, hr.Str("name"))
				assert.JSONEq(t, policy.HostRoleTrust().JSON(), hr.Str("assumeRolePolicy"))
				hrp := mustFind(t, rec, "aws:iam/rolePolicy:RolePolicy", "iam-host-role-policy")
				assert.JSONEq(t, policy.HostRoleInline(n).JSON(), hrp.Str("policy"))
				att := rec.ByType("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
				require.Len(t, att, 1, "only SSM core is attached")
				assert.Equal(t, policy.SSMCorePolicyARN, att[0].Str("policyArn"))
				assert.Equal(t, n.HostRole, att[0].Str("role"))
				ip := mustFind(t, rec, "aws:iam/instanceProfile:InstanceProfile", "iam-instance-profile")
				assert.Equal(t, n.InstanceProfile, ip.Str("name"))
				assert.Equal(t, n.HostRole, ip.Str("role"))

				for _, r := range rec.Resources() {
					for _, k := range []string{"policy", "policyArn"} {
						assert.NotContains(t, r.Str(k), "AmazonS3FullAccess", "%s %s", r.Type, r.Name)
						assert.NotContains(t, r.Str(k), `"s3:*"`+`,"Effect":"Allow"`, "%s %s", r.Type, r.Name)
					}
				}

				want := "[" + n.DaemonUser + "]\naws_access_key_id = iam-daemon-key-id\naws_secret_access_key = mock-secret-iam-daemon-key\nregion = us-east-1\n\n" +
					"[" + n.SSHUser + "]\naws_access_key_id = iam-ssh-key-id\naws_secret_access_key = mock-secret-iam-ssh-key\nregion = us-east-1\n"
				assert.Equal(t, want, creds)
				assert.True(t, strings.HasPrefix(creds, "[agentkeys-daemon"+n.Stack.Suffix+"]"))

				comp := rec.ByType("agentkeys:index:Principals")[0]
				for _, r := range rec.Resources() {
					if r.Type == "agentkeys:index:Principals" || strings.HasPrefix(r.Name, "oidc") {
						continue
					}
					assert.Equal(t, comp.URN, r.Parent, "%s %s", r.Type, r.Name)
				}
			})
		}
	}
}

func TestPrincipalsFederatedNeedsProvider(t *testing.T) {
	n := namesFor(t, "test-2")
	err := newRec("test-2").Run(func(ctx *pulumi.Context) error {
		_, err := NewPrincipals(ctx, "iam", &PrincipalsArgs{Names: n, InstanceID: testInst, Federated: true})
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), n.OIDCProviderARN)
}

func TestCredentialsBlocksSecretEvenFromPlainInputs(t *testing.T) {
	n := namesFor(t, "base")
	require.NoError(t, newRec("base").Run(func(ctx *pulumi.Context) error {
		out := CredentialsBlocks(n, pulumi.String("AKIA1"), pulumi.String("s1"), pulumi.String("AKIA2"), pulumi.String("s2"))
		r := await(t, ctx, out)
		assert.True(t, r.Secret)
		assert.Contains(t, r.Value, "[agentkeys-daemon-base]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\nregion = us-east-1\n")
		assert.Contains(t, r.Value, "[agentkeys-broker-base]\naws_access_key_id = AKIA2\n")
		return nil
	}))
}
