package offline_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/offline"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/policy"
)

func loadConfig(t *testing.T, dir, stack string) *config.Config {
	t.Helper()
	c, err := config.LoadFile(dir, stack)
	require.NoError(t, err)
	return c
}

// printed renders p both ways.
func printed(t *testing.T, p *plan.Plan) (text, js string) {
	t.Helper()
	var tb, jb bytes.Buffer
	p.Text(&tb)
	require.NoError(t, p.JSON(&jb))
	return tb.String(), jb.String()
}

// The converged view of test-2: the stack after its first bring-up, every
// value known, each policy exactly as the stack converges to it.
func TestConvergedPlanOfTest2(t *testing.T) {
	dir := withTest2(t)
	n := loadConfig(t, dir, "test-2").Names()
	p, err := offline.StackIn(dir, "test-2", offline.Converged)
	require.NoError(t, err)
	text, js := printed(t, p)
	for what, s := range map[string]string{"text": text, "json": js} {
		assert.NotContains(t, s, plan.Unknown, "%s: every value is known", what)
	}

	fed := policy.FederatedTrust(n).JSON()
	assert.Contains(t, fed, `"aws:TagKeys":["agentkeys_actor_omni","agentkeys_user_wallet"]`)
	roles := 0
	for _, r := range p.Find("aws:iam/role:Role", "") {
		if r.Inputs["name"] == n.HostRole {
			assert.JSONEq(t, policy.HostRoleTrust().JSON(), r.Inputs["assumeRolePolicy"].(string))
			continue
		}
		roles++
		assert.JSONEq(t, fed, r.Inputs["assumeRolePolicy"].(string), "%s trusts only the provider, with both session tags", r.Name)
	}
	assert.Equal(t, 4, roles, "the data role and the three class roles")
	assert.Empty(t, p.Find("aws:iam/rolePolicy:RolePolicy", "data-role-policy"), "the data role's inline grant is gone")
	host := p.Find("aws:iam/rolePolicy:RolePolicy", "host-role-policy")
	require.Len(t, host, 1)
	assert.JSONEq(t, policy.HostRoleInline(n).JSON(), host[0].Inputs["policy"].(string))

	provider := p.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
	require.Len(t, provider, 1, "the OIDC provider is declared")
	assert.Equal(t, n.Issuer, provider[0].Inputs["url"])
	assert.Equal(t, []any{"sts.amazonaws.com"}, provider[0].Inputs["clientIdLists"])
	thumbs, _ := provider[0].Inputs["thumbprintLists"].([]any)
	require.Len(t, thumbs, 1)
	assert.Regexp(t, `^[0-9a-f]{40}$`, thumbs[0], "the stand-in chain's intermediate")

	assert.Equal(t, "active: roles trust only "+n.OIDCProviderARN, p.Outputs["federation"].Value)
	assert.Equal(t, n.OIDCProviderARN, p.Outputs["oidcProviderArn"].Value)
	assert.Equal(t, "healthy", p.Outputs["hostBringUp"].Value)
	assert.True(t, strings.HasPrefix(p.Outputs["eipRung"].Value.(string), "attached:"), p.Outputs["eipRung"].Value)
	var hostnames map[string]string
	b, _ := json.Marshal(p.Outputs["hostnames"].Value)
	require.NoError(t, json.Unmarshal(b, &hostnames))
	assert.Equal(t, "tls", hostnames[n.BrokerHost])
	assert.Equal(t, "dns-only", hostnames[n.MCPHost])
	for _, o := range []string{"daemonSecretKey", "sshSecretKey", "credentials"} {
		assert.True(t, p.Outputs[o].Secret, "%s stays secret", o)
	}

	// Printed: every step is "same", and the text shows each policy in full.
	assert.NotContains(t, js, `"op": "create"`)
	assert.NotContains(t, js, `"op": "import"`)
	assert.Contains(t, js, `"op": "same"`)
	assert.Contains(t, text, "Stack test-2 (converged)")
	assert.Contains(t, text, "= aws:iam/openIdConnectProvider:OpenIdConnectProvider")
	assert.Contains(t, text, `"Sid": "BrokerFederationWithSessionTags"`)
	assert.Contains(t, text, `"agentkeys_user_wallet"`)
	assert.Contains(t, text, `"Sid": "SesGetEmailIdentity"`)
	assert.Contains(t, text, `"Sid": "FindInstanceAddress"`)
	assert.NotContains(t, text, "+ ")
}

// Every committed broker stack, and a test slot that adopts a configured
// EIP, converges with nothing unknown.
func TestConvergedPlansHaveNothingUnknown(t *testing.T) {
	for _, stack := range []string{"prod", "test", "base", "test-2"} {
		p, err := offline.StackIn("../..", stack, offline.Converged)
		require.NoError(t, err, stack)
		text, js := printed(t, p)
		assert.NotContains(t, text+js, plan.Unknown, stack)
		assert.Len(t, p.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", ""), 1, stack)
	}
	p, err := offline.StackIn(withTest2(t, "agentkeys:eipAddress: 203.0.113.10"), "test-2", offline.Converged)
	require.NoError(t, err)
	text, js := printed(t, p)
	assert.NotContains(t, text+js, plan.Unknown)
	assert.Equal(t, "203.0.113.10", p.Outputs["eip"].Value)
}

// The default plan is the first `pulumi up`, untouched by the converged view.
func TestDefaultPlanIsTheFirstUp(t *testing.T) {
	dir := withTest2(t)
	def, err := offline.Stack(dir, "test-2")
	require.NoError(t, err)
	first, err := offline.StackIn(dir, "test-2", offline.FirstUp)
	require.NoError(t, err)
	dt, dj := printed(t, def)
	ft, fj := printed(t, first)
	assert.Equal(t, dt, ft)
	assert.Equal(t, dj, fj)
	assert.Empty(t, def.View)
	assert.Contains(t, dj, plan.Unknown, "a preview leaves cloud-assigned values unknown")
	assert.NotContains(t, dj, `"op": "same"`)
	assert.NotContains(t, dt, "assumeRolePolicy:", "the default text lists resources, not documents")
	assert.Empty(t, def.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", ""), "no provider before the broker serves TLS")
	assert.Len(t, def.Find("aws:iam/rolePolicy:RolePolicy", "data-role-policy"), 1, "the static phase keeps the inline grant")
	for _, r := range def.Find("aws:iam/role:Role", "") {
		if !strings.Contains(r.Name, "host-role") {
			assert.NotContains(t, r.Inputs["assumeRolePolicy"], "oidc-provider", "%s starts with the static trust", r.Name)
		}
	}
}

func TestStateNames(t *testing.T) {
	for in, want := range map[string]offline.State{"": offline.FirstUp, "first-up": offline.FirstUp, "converged": offline.Converged} {
		got, err := offline.ParseState(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	_, err := offline.ParseState("steady")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown state "steady": use first-up`)
	_, err = offline.StackIn("../..", "account", offline.Converged)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the account stack has no bring-up")
}
