package naming

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fork = Fork{AccountID: "123456789012", Zone: "example.org", ParentZoneID: "Z0EXAMPLE", Region: "us-east-1"}

func TestParseStack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   Kind
		slot   int
		chain  string
		suffix string
	}{
		{"prod", KindProd, 0, "heima", ""},
		{"test", KindTest, 1, "heima", "-test"},
		{"test-2", KindTest, 2, "heima", "-test-2"},
		{"test-17", KindTest, 17, "heima", "-test-17"},
		{"base", KindProd, 0, "base", "-base"},
	} {
		s, err := ParseStack(tc.name)
		require.NoError(t, err, tc.name)
		assert.Equal(t, Stack{Name: tc.name, Kind: tc.kind, Slot: tc.slot, Chain: tc.chain, Suffix: tc.suffix}, s)
	}
	for _, bad := range []string{"", "test-0", "test-1", "test-x", "test-02", "test-", "staging", "Prod", "test-2a", "base-2"} {
		_, err := ParseStack(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "stack \""+bad+"\"", "error names the stack")
	}
	_, err := ParseStack("test-1")
	assert.Contains(t, err.Error(), "use test-2 or higher")
}

// row is one line of the spec's naming tables (§0.2, §0.3, §0.4).
type row struct {
	stack                                  string
	broker, mcp, signer, audit, classify   string
	mail, sender                           string
	mailBucket, vault, memory, config      string
	daemon, ssh, dataRole, vaultRole       string
	profile, eipTag, rule, providerARN     string
	chain, contractSuffix, operatorEnvFile string
}

func TestDeriveMatchesSpecTables(t *testing.T) {
	rows := []row{
		{"prod", "broker.example.org", "mcp.example.org", "signer.example.org", "audit.example.org", "classify.example.org",
			"bots.example.org", "noreply@bots.example.org",
			"agentkeys-mail-123456789012", "agentkeys-vault-123456789012", "agentkeys-memory-123456789012", "agentkeys-config-123456789012",
			"agentkeys-daemon", "agentkeys-broker", "agentkeys-data-role", "agentkeys-vault-role",
			"agentkeys-broker-host", "agentkeys-broker-eip", "agentkeys-inbound", "arn:aws:iam::123456789012:oidc-provider/broker.example.org",
			"heima", "HEIMA", "scripts/operator-workstation.env"},
		{"test", "test-broker.example.org", "test-mcp.example.org", "signer-test.example.org", "audit-test.example.org", "classify-test.example.org",
			"bots-test.example.org", "noreply-test@bots-test.example.org",
			"agentkeys-mail-test-123456789012", "agentkeys-vault-test-123456789012", "agentkeys-memory-test-123456789012", "agentkeys-config-test-123456789012",
			"agentkeys-daemon-test", "agentkeys-broker-test", "agentkeys-data-role-test", "agentkeys-vault-role-test",
			"agentkeys-test-broker-ssm", "agentkeys-broker-eip-test", "agentkeys-inbound-test", "arn:aws:iam::123456789012:oidc-provider/test-broker.example.org",
			"heima", "HEIMA", "scripts/operator-workstation.test.env"},
		{"test-2", "broker-test-2.example.org", "mcp-test-2.example.org", "signer-test-2.example.org", "audit-test-2.example.org", "classify-test-2.example.org",
			"bots-test-2.example.org", "noreply-test-2@bots-test-2.example.org",
			"agentkeys-mail-test-2-123456789012", "agentkeys-vault-test-2-123456789012", "agentkeys-memory-test-2-123456789012", "agentkeys-config-test-2-123456789012",
			"agentkeys-daemon-test-2", "agentkeys-broker-test-2", "agentkeys-data-role-test-2", "agentkeys-vault-role-test-2",
			"agentkeys-test-broker-ssm-2", "agentkeys-broker-eip-test-2", "agentkeys-inbound-test-2", "arn:aws:iam::123456789012:oidc-provider/broker-test-2.example.org",
			"heima", "HEIMA", "scripts/operator-workstation.test-2.env"},
		{"test-17", "broker-test-17.example.org", "mcp-test-17.example.org", "signer-test-17.example.org", "audit-test-17.example.org", "classify-test-17.example.org",
			"bots-test-17.example.org", "noreply-test-17@bots-test-17.example.org",
			"agentkeys-mail-test-17-123456789012", "agentkeys-vault-test-17-123456789012", "agentkeys-memory-test-17-123456789012", "agentkeys-config-test-17-123456789012",
			"agentkeys-daemon-test-17", "agentkeys-broker-test-17", "agentkeys-data-role-test-17", "agentkeys-vault-role-test-17",
			"agentkeys-test-broker-ssm-17", "agentkeys-broker-eip-test-17", "agentkeys-inbound-test-17", "arn:aws:iam::123456789012:oidc-provider/broker-test-17.example.org",
			"heima", "HEIMA", "scripts/operator-workstation.test-17.env"},
		{"base", "broker-base.example.org", "mcp-base.example.org", "signer-base.example.org", "audit-base.example.org", "classify-base.example.org",
			"bots-base.example.org", "noreply-base@bots-base.example.org",
			"agentkeys-mail-base-123456789012", "agentkeys-vault-base-123456789012", "agentkeys-memory-base-123456789012", "agentkeys-config-base-123456789012",
			"agentkeys-daemon-base", "agentkeys-broker-base", "agentkeys-data-role-base", "agentkeys-vault-role-base",
			"agentkeys-broker-host-base", "agentkeys-broker-eip-base", "agentkeys-inbound-base", "arn:aws:iam::123456789012:oidc-provider/broker-base.example.org",
			"base", "BASE", "scripts/operator-workstation.base.env"},
	}
	for _, want := range rows {
		t.Run(want.stack, func(t *testing.T) {
			s, err := ParseStack(want.stack)
			require.NoError(t, err)
			n := Derive(s, fork)
			sfx := s.Suffix
			got := row{want.stack, n.BrokerHost, n.MCPHost, n.SignerHost, n.WorkerHosts["audit"], n.WorkerHosts["classify"],
				n.MailDomain, n.Sender, n.MailBucket, n.DataBuckets["vault"], n.DataBuckets["memory"], n.DataBuckets["config"],
				n.DaemonUser, n.SSHUser, n.DataRole, n.DataClassRoles["vault"], n.InstanceProfile, n.EIPTag, n.ReceiptRule, n.OIDCProviderARN,
				s.Chain, s.ContractSuffix(), n.OperatorEnvFile}
			assert.Equal(t, want, got)
			assert.Equal(t, "https://"+want.broker, n.Issuer)
			assert.Equal(t, "agentkeys-memory-role"+sfx, n.DataClassRoles["memory"])
			assert.Equal(t, "agentkeys-config-role"+sfx, n.DataClassRoles["config"])
			assert.Equal(t, "arn:aws:iam::123456789012:role/agentkeys-data-role"+sfx, n.DataRoleARN)
			assert.Equal(t, "arn:aws:iam::123456789012:role/agentkeys-vault-role"+sfx, n.ClassRoleARNs["vault"])
			assert.Equal(t, "arn:aws:iam::123456789012:role/"+want.profile, n.HostRoleARN)
			assert.Equal(t, "arn:aws:ses:us-east-1:123456789012:receipt-rule-set/agentkeys:receipt-rule/"+want.rule, n.ReceiptRuleARN)
			for _, w := range Workers {
				assert.Equal(t, w+sfx+".example.org", n.WorkerHosts[w])
			}
			assert.Len(t, n.Hostnames(), 9)
			assert.Len(t, n.TLSHostnames(), 8)
			assert.NotContains(t, n.TLSHostnames(), n.MCPHost, "mcp is DNS only")
			assert.Equal(t, SharedRuleSet, n.RuleSet)
		})
	}
}

func TestOverrides(t *testing.T) {
	s, _ := ParseStack("test-2")
	f := fork
	f.BrokerHost, f.MailDomain = "id-test-2.example.org", "mail-test-2.example.org"
	n := Derive(s, f)
	assert.Equal(t, "https://id-test-2.example.org", n.Issuer)
	assert.Equal(t, "arn:aws:iam::123456789012:oidc-provider/id-test-2.example.org", n.OIDCProviderARN)
	assert.Equal(t, "noreply-test-2@mail-test-2.example.org", n.Sender)
	assert.Equal(t, "signer-test-2.example.org", n.SignerHost, "overrides touch only their own name")
}

func TestNoTwoStacksShareANameOrIssuer(t *testing.T) {
	seen := map[string]string{}
	stacks := []string{"prod", "test", "base"}
	for i := 2; i <= 40; i++ {
		stacks = append(stacks, "test-"+strconv.Itoa(i))
	}
	for _, name := range stacks {
		s, err := ParseStack(name)
		require.NoError(t, err)
		n := Derive(s, fork)
		ids := append(n.Hostnames(), n.MailDomain, n.MailBucket, n.DaemonUser, n.SSHUser, n.DataRole, n.InstanceProfile, n.EIPTag, n.ReceiptRule, n.OIDCProviderARN)
		for _, c := range DataClasses {
			ids = append(ids, n.DataBuckets[c.Name], n.DataClassRoles[c.Name])
		}
		for _, id := range ids {
			if other, ok := seen[id]; ok {
				t.Fatalf("%s is derived for both %s and %s", id, other, name)
			}
			seen[id] = name
		}
		back, ok := StackForBrokerHost(n.BrokerHost, fork.Zone)
		assert.True(t, ok)
		assert.Equal(t, name, back, "the broker host identifies its stack")
	}
}

func TestStackForBrokerHostRejectsForeignNames(t *testing.T) {
	for _, h := range []string{"broker.other.org", "signer.example.org", "broker-test-1.example.org", "broker-staging.example.org", "x.broker.example.org"} {
		_, ok := StackForBrokerHost(h, "example.org")
		assert.False(t, ok, h)
	}
}
