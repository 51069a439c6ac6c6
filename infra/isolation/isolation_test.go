package isolation

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/offline"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/naming"
)

func TestMain(m *testing.M) {
	os.Setenv("AGENTKEYS_HOSTAGENT_BINARY", "/bin/true")
	os.Exit(m.Run())
}

func planWith(t *testing.T, stack string, edit func(map[string]string)) *plan.Plan {
	t.Helper()
	raw, err := config.ReadStackFile("../..", "test-2")
	require.NoError(t, err)
	vals := map[string]string{}
	for k, v := range raw.Values {
		vals[k] = v
	}
	if edit != nil {
		edit(vals)
	}
	p, err := offline.Raw(stack, &config.Raw{Values: vals})
	require.NoError(t, err)
	return p
}

func TestRealConfigsAreIsolated(t *testing.T) {
	template, err := config.ReadStackFile("../..", "test-2")
	require.NoError(t, err)
	var plans []*plan.Plan
	for _, s := range []string{"prod", "test", "base", "test-2", "test-3", "test-17"} {
		p, err := offline.Slot("../..", s, template)
		require.NoError(t, err, s)
		plans = append(plans, p)
	}
	assert.Empty(t, Check(plans))
	kinds := map[string]int{}
	for _, c := range Claims(plans[0]) {
		kinds[c.Kind]++
	}
	// Every kind of name the issue lists is checked (DKIM record names are
	// unknown until SES assigns tokens; they hang under the mail domain). A
	// new EIP carries its Name tag in the allocation and as an ec2.Tag: two
	// claims of one name by one stack. The OIDC provider is declared because
	// Slot plans the steady state (the account holds it after the first bring-up).
	assert.Equal(t, map[string]int{"bucket": 4, "role": 5, "user": 2, "instance-profile": 1, "receipt-rule": 1,
		"ses-identity": 2, "dns-record": 12, "eip-tag": 2, "oidc-provider": 1}, kinds)
	for _, p := range plans {
		n := 0
		for _, c := range Claims(p) {
			if c.Kind == "oidc-provider" {
				n++
			}
		}
		assert.Equal(t, 1, n, "stack %s: its OIDC provider is checked", p.Stack)
	}
}

func TestCollidingPairIsNamed(t *testing.T) {
	// Two slots configured with the same mail domain would share SES identities and DNS records.
	a := planWith(t, "test-3", func(v map[string]string) { v["agentkeys:mailDomain"] = "bots-shared.example.org" })
	b := planWith(t, "test-4", func(v map[string]string) { v["agentkeys:mailDomain"] = "bots-shared.example.org" })
	cs := Check([]*plan.Plan{a, b})
	require.NotEmpty(t, cs)
	err := Error(cs)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `ses-identity "bots-shared.example.org" is declared by stack test-3`)
	assert.Contains(t, err.Error(), "and stack test-4")
}

// ruleSetPlan is a plan of stack that declares an SES receipt rule set named
// name (and, to show claims are still made, its own receipt rule).
func ruleSetPlan(stack, name string) *plan.Plan {
	return &plan.Plan{Stack: stack, Resources: []*plan.Resource{
		{Type: "aws:ses/receiptRuleSet:ReceiptRuleSet", Name: "rule-set", Custom: true,
			URN:    "urn:pulumi:" + stack + "::agentkeys::aws:ses/receiptRuleSet:ReceiptRuleSet::rule-set",
			Inputs: map[string]any{"ruleSetName": name}},
		{Type: "aws:ses/receiptRule:ReceiptRule", Name: "rule", Custom: true,
			URN:    "urn:pulumi:" + stack + "::agentkeys::aws:ses/receiptRule:ReceiptRule::rule",
			Inputs: map[string]any{"name": "agentkeys-inbound-" + stack, "ruleSetName": name}},
	}}
}

func TestSharedSetIsAllowed(t *testing.T) {
	require.True(t, Shared["ses-rule-set:"+naming.SharedRuleSet])
	a, b := ruleSetPlan("test-3", naming.SharedRuleSet), ruleSetPlan("test-4", naming.SharedRuleSet)
	for _, p := range []*plan.Plan{a, b} {
		assert.Contains(t, Claims(p), Claim{Kind: "ses-rule-set", Name: naming.SharedRuleSet, Stack: p.Stack, URN: p.Resources[0].URN},
			"the shared rule set is a claim: only Check's exemption lets two stacks hold it")
	}
	assert.Empty(t, Check([]*plan.Plan{a, b}))
	assert.NoError(t, Error(Check([]*plan.Plan{a, b})))
}

func TestNonSharedRuleSetCollides(t *testing.T) {
	const name = "agentkeys-private"
	require.False(t, Shared["ses-rule-set:"+name])
	a, b := ruleSetPlan("test-3", name), ruleSetPlan("test-4", name)
	cs := Check([]*plan.Plan{a, b})
	require.Len(t, cs, 1, "only the rule set collides; the rules have their own names")
	err := Error(cs)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `ses-rule-set "agentkeys-private" is declared by stack test-3 (`+a.Resources[0].URN+`) and stack test-4 (`+b.Resources[0].URN+`)`)
}
