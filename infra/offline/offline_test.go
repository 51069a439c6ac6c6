package offline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/isolation"
	"github.com/agentkeys/agentkeys-infra/infra/offline"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
)

func TestMain(m *testing.M) {
	// Ship a stand-in agent so the plan does not cross-compile one per test.
	os.Setenv("AGENTKEYS_HOSTAGENT_BINARY", "/bin/true")
	os.Exit(m.Run())
}

// withTest2 writes a copy of the committed Pulumi.test-2.yaml plus extra
// config lines into a fresh project directory.
func withTest2(t *testing.T, extra ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../Pulumi.test-2.yaml")
	require.NoError(t, err)
	doc := strings.TrimRight(string(b), "\n") + "\n"
	for _, l := range extra {
		doc += "  " + l + "\n"
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.test-2.yaml"), []byte(doc), 0o644))
	return dir
}

func eip(t *testing.T, p *plan.Plan) *plan.Resource {
	t.Helper()
	var out []*plan.Resource
	for _, r := range p.Resources {
		if r.Type == "aws:ec2/eip:Eip" {
			out = append(out, r)
		}
	}
	require.Len(t, out, 1)
	return out[0]
}

func TestConfiguredEIPIsAdoptedOffline(t *testing.T) {
	for _, tc := range []struct {
		key, value, alloc string
	}{
		{"eipAddress", "203.0.113.10", "eipalloc-000000000cb00710a"},
		{"eipAllocationId", "eipalloc-0123456789abcdef0", "eipalloc-0123456789abcdef0"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			dir := withTest2(t, "agentkeys:"+tc.key+": "+tc.value)
			p, err := offline.Stack(dir, "test-2")
			require.NoError(t, err, "a configured EIP plans offline")
			// Rung C: the configured EIP is imported, not allocated.
			assert.Equal(t, tc.alloc, eip(t, p).ImportID)
			rung, _ := p.Outputs["eipRung"].Value.(string)
			assert.Equal(t, "configured: configured as "+tc.value, rung)
			ref := offline.AssumedEIP(tc.value)
			assert.Equal(t, tc.alloc, ref.AllocationID)
			if tc.key == "eipAddress" {
				assert.Equal(t, tc.value, ref.PublicIP)
			} else {
				assert.Regexp(t, `^203\.0\.113\.\d+$`, ref.PublicIP)
			}
			assert.Equal(t, ref, offline.AssumedEIP(tc.value), "stable across runs")
			// The instance, tag and configured lookups all ran; only the last matched.
			n := 0
			for _, inv := range p.Invokes {
				if inv == "aws:ec2/getEips:getEips" {
					n++
				}
			}
			assert.Equal(t, 3, n)
			var note string
			for _, s := range p.Notes {
				if strings.Contains(s, "configured EIP") {
					note = s
				}
			}
			require.NotEmpty(t, note, "the plan says what it assumed: %v", p.Notes)
			for _, w := range []string{tc.value, "agentkeys:" + tc.key, "is assumed", "not associated", ref.AllocationID, ref.PublicIP, "rung C"} {
				assert.Contains(t, note, w)
			}
		})
	}

	// Without a configured EIP the account is empty: the plan allocates.
	p, err := offline.Stack(withTest2(t), "test-2")
	require.NoError(t, err)
	assert.Empty(t, eip(t, p).ImportID)
	rung, _ := p.Outputs["eipRung"].Value.(string)
	assert.True(t, strings.HasPrefix(rung, "new:"), rung)
	for _, s := range p.Notes {
		assert.NotContains(t, s, "configured EIP")
	}
}

func TestSlotDropsPerStackOverrides(t *testing.T) {
	dir := withTest2(t,
		"agentkeys:brokerHost: id-test-2.example.org",
		"agentkeys:mailDomain: mail-test-2.example.org",
		"agentkeys:eipAddress: 203.0.113.10",
		"agentkeys:sshHostKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest2",
	)
	template, err := config.ReadStackFile(dir, "test-2")
	require.NoError(t, err)
	own, err := offline.Slot(dir, "test-2", template)
	require.NoError(t, err)
	assert.Equal(t, "https://id-test-2.example.org", own.Outputs["issuer"].Value, "test-2 plans its own file, overrides and all")
	assert.Equal(t, "mail-test-2.example.org", own.Outputs["mailDomain"].Value)

	derived, err := offline.Slot(dir, "test-3", template)
	require.NoError(t, err)
	assert.Equal(t, "https://broker-test-3.example.org", derived.Outputs["issuer"].Value)
	assert.Equal(t, "bots-test-3.example.org", derived.Outputs["mailDomain"].Value)
	assert.Empty(t, eip(t, derived).ImportID, "test-3 does not adopt test-2's address")
	assert.Empty(t, isolation.Check([]*plan.Plan{own, derived}), "a derived slot claims none of test-2's names")
	for _, k := range []string{"agentkeys:brokerHost", "agentkeys:mailDomain", "agentkeys:eipAddress", "agentkeys:eipAllocationId", "agentkeys:sshHostKey"} {
		assert.Contains(t, offline.PerStackKeys, k)
	}
	// The template itself is left alone.
	assert.Equal(t, "id-test-2.example.org", template.Values["agentkeys:brokerHost"])
}

func TestRawRejectsPlainSSHKeyBeforeTheEngine(t *testing.T) {
	raw, err := config.ReadStackFile("../..", "test-2")
	require.NoError(t, err)
	vals := map[string]string{}
	for k, v := range raw.Values {
		vals[k] = v
	}
	vals["agentkeys:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\ns3cr3tbody\n-----END OPENSSH PRIVATE KEY-----\n"
	_, err = offline.Raw("test-2", &config.Raw{Values: vals})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "agentkeys:sshPrivateKey")
	assert.Contains(t, err.Error(), "pulumi config set --secret agentkeys:sshPrivateKey < key.pem")
	assert.NotContains(t, err.Error(), "s3cr3tbody")
	assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration"), "not wrapped by the engine: %v", err)

	p, err := offline.Raw("test-2", &config.Raw{Values: vals, SecretKeys: []string{"agentkeys:sshPrivateKey"}})
	require.NoError(t, err, "marked secret, as the Pulumi CLI passes it")
	assert.NotEmpty(t, p.Resources)
}

func TestSlotPlansTheSteadyState(t *testing.T) {
	dir := withTest2(t)
	template, err := config.ReadStackFile(dir, "test-2")
	require.NoError(t, err)
	for _, name := range []string{"test-2", "test-5"} { // own file, derived
		p, err := offline.Slot(dir, name, template)
		require.NoError(t, err)
		provider := p.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
		require.Len(t, provider, 1, "%s: the isolation check sees the OIDC provider the stack comes to own", name)
		assert.Equal(t, "https://broker-"+name+".example.org", provider[0].Inputs["url"])
		assert.Contains(t, strings.Join(p.Notes, "\n"), "after the first bring-up")
	}
	// make plan shows a first `pulumi up` in an empty account.
	p, err := offline.Stack(dir, "test-2")
	require.NoError(t, err)
	assert.Contains(t, p.Invokes, "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider")
	assert.NotContains(t, strings.Join(p.Notes, "\n"), "after the first bring-up")
}

func TestSlotNeverSwapsABadOwnFileForTheTemplate(t *testing.T) {
	dir := withTest2(t)
	template, err := config.ReadStackFile(dir, "test-2")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.test-4.yaml"), []byte("config:\n  agentkeys:sshPrivateKey: plain\n"), 0o644))
	_, err = offline.Slot(dir, "test-4", template)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Pulumi.test-4.yaml")
	assert.Contains(t, err.Error(), "agentkeys:sshPrivateKey")
	_, err = offline.Slot(dir, "test-1", template)
	require.Error(t, err, "not a stack name")
}
