package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/naming"
)

func good() map[string]string {
	return map[string]string{
		"aws:region":             "us-east-1",
		"agentkeys:accountId":    "123456789012",
		"agentkeys:zone":         "example.org",
		"agentkeys:parentZoneId": "Z0EXAMPLE0ZONE0ID",
		"agentkeys:instanceId":   "i-00000000000000003",
	}
}

func TestParseGood(t *testing.T) {
	c, err := Parse("test-2", good())
	require.NoError(t, err)
	assert.Equal(t, "https://broker-test-2.example.org", c.Names().Issuer)
	assert.Equal(t, DefaultSSHUser, c.SSHUser)
	assert.Equal(t, DefaultRef, c.Ref)
	assert.False(t, c.SSHPrivateKey.Set())

	raw := good()
	raw["agentkeys:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
	raw["agentkeys:contracts"] = `{"SIDECAR_REGISTRY_ADDRESS":"0x1111111111111111111111111111111111111111","SCOPE_CONTRACT_ADDRESS":""}`
	raw["agentkeys:chain"] = "heima"
	raw["agentkeys:brokerHost"] = "id-test-2.example.org"
	c, err = Parse("test-2", raw)
	require.NoError(t, err)
	assert.Equal(t, "https://id-test-2.example.org", c.Names().Issuer)
	assert.Equal(t, "0x1111111111111111111111111111111111111111", c.Contracts["SIDECAR_REGISTRY_ADDRESS"])
	assert.True(t, c.SSHPrivateKey.Set())
	// The secret never prints.
	for _, s := range []string{fmt.Sprint(c.SSHPrivateKey), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c)} {
		assert.NotContains(t, s, "OPENSSH PRIVATE KEY", s)
	}
}

func TestParseBadInputs(t *testing.T) {
	cases := []struct {
		name  string
		stack string
		edit  func(m map[string]string)
		want  []string // substrings of the error: the key, and a hint
	}{
		{"missing account", "test-2", func(m map[string]string) { delete(m, "agentkeys:accountId") }, []string{"agentkeys:accountId", "is required", "pulumi config set agentkeys:accountId"}},
		{"short account", "test-2", func(m map[string]string) { m["agentkeys:accountId"] = "12345" }, []string{"agentkeys:accountId", "12-digit", "example: 123456789012"}},
		{"account with letters", "prod", func(m map[string]string) { m["agentkeys:accountId"] = "12345678901a" }, []string{"agentkeys:accountId"}},
		{"zone trailing dot", "test-2", func(m map[string]string) { m["agentkeys:zone"] = "example.org." }, []string{"agentkeys:zone", "example: example.org"}},
		{"zone upper case", "test-2", func(m map[string]string) { m["agentkeys:zone"] = "Example.ORG" }, []string{"agentkeys:zone"}},
		{"zone id with prefix", "test-2", func(m map[string]string) { m["agentkeys:parentZoneId"] = "/hostedzone/Z0EXAMPLE" }, []string{"agentkeys:parentZoneId", "/hostedzone/ prefix"}},
		{"zone id lower", "test-2", func(m map[string]string) { m["agentkeys:parentZoneId"] = "z123abc" }, []string{"agentkeys:parentZoneId"}},
		{"instance id not hex", "test-2", func(m map[string]string) { m["agentkeys:instanceId"] = "i-zzzz" }, []string{"agentkeys:instanceId", "i-0123456789abcdef0"}},
		{"instance id missing prefix", "test-2", func(m map[string]string) { m["agentkeys:instanceId"] = "0123456789abcdef0" }, []string{"agentkeys:instanceId"}},
		{"missing instance", "test-2", func(m map[string]string) { delete(m, "agentkeys:instanceId") }, []string{"agentkeys:instanceId", "is required"}},
		{"bad allocation id", "test-2", func(m map[string]string) { m["agentkeys:eipAllocationId"] = "alloc-123" }, []string{"agentkeys:eipAllocationId", "eipalloc-"}},
		{"bad eip address", "test-2", func(m map[string]string) { m["agentkeys:eipAddress"] = "300.1.1.1" }, []string{"agentkeys:eipAddress", "IPv4"}},
		{"both eip keys", "test-2", func(m map[string]string) {
			m["agentkeys:eipAddress"] = "203.0.113.7"
			m["agentkeys:eipAllocationId"] = "eipalloc-0123456789abcdef0"
		}, []string{"eipAllocationId", "eipAddress", "set one of them"}},
		{"broker host outside zone", "test-2", func(m map[string]string) { m["agentkeys:brokerHost"] = "broker.other.org" }, []string{"agentkeys:brokerHost", "inside zone example.org"}},
		{"broker host of another stack", "test-2", func(m map[string]string) { m["agentkeys:brokerHost"] = "broker.example.org" }, []string{"agentkeys:brokerHost", "stack prod", "own issuer"}},
		{"mail domain outside zone", "test-2", func(m map[string]string) { m["agentkeys:mailDomain"] = "bots.example.net" }, []string{"agentkeys:mailDomain"}},
		{"chain contradicts base", "base", func(m map[string]string) { m["agentkeys:chain"] = "heima" }, []string{"stack base", "agentkeys:chain", "runs chain \"base\"", "(example: base)"}},
		{"chain contradicts prod", "prod", func(m map[string]string) { m["agentkeys:chain"] = "base" }, []string{"agentkeys:chain", "(example: heima)"}},
		{"chain contradicts test-2", "test-2", func(m map[string]string) { m["agentkeys:chain"] = "base" }, []string{"agentkeys:chain", "(example: heima)"}},
		{"bad contract address", "test-2", func(m map[string]string) { m["agentkeys:contracts"] = `{"SCOPE_CONTRACT_ADDRESS":"0x123"}` }, []string{"agentkeys:contracts", "SCOPE_CONTRACT_ADDRESS", "20-byte"}},
		{"contract with chain suffix", "base", func(m map[string]string) {
			m["agentkeys:contracts"] = `{"SIDECAR_REGISTRY_ADDRESS_BASE":"0x1111111111111111111111111111111111111111"}`
		}, []string{"agentkeys:contracts", "chain suffix", "write SIDECAR_REGISTRY_ADDRESS"}},
		{"contract the services do not read", "base", func(m map[string]string) { m["agentkeys:contracts"] = `{"REGISTRY":""}` },
			[]string{"agentkeys:contracts", `"REGISTRY" is not one the services read`, "SIDECAR_REGISTRY_ADDRESS, SCOPE_CONTRACT_ADDRESS, K3_EPOCH_COUNTER_ADDRESS"}},
		{"wss rpc", "test-2", func(m map[string]string) { m["agentkeys:rpcUrl"] = "wss://rpc.example.org" }, []string{"agentkeys:rpcUrl", "not an http(s) URL", "AGENTKEYS_CHAIN_RPC_HTTP"}},
		{"contracts not a map", "test-2", func(m map[string]string) { m["agentkeys:contracts"] = `["0x1"]` }, []string{"agentkeys:contracts", "map"}},
		{"ssh key not a key", "test-2", func(m map[string]string) { m["agentkeys:sshPrivateKey"] = "hunter2" }, []string{"agentkeys:sshPrivateKey", "private key"}},
		{"ssh user", "test-2", func(m map[string]string) { m["agentkeys:sshUser"] = "Root User" }, []string{"agentkeys:sshUser"}},
		{"host key", "test-2", func(m map[string]string) { m["agentkeys:sshHostKey"] = "AAAAC3Nza" }, []string{"agentkeys:sshHostKey"}},
		{"repo url", "test-2", func(m map[string]string) { m["agentkeys:agentkeysRepo"] = "github.com/litentry/agentKeys" }, []string{"agentkeys:agentkeysRepo"}},
		{"git ref", "test-2", func(m map[string]string) { m["agentkeys:agentkeysRef"] = "--upload-pack=evil" }, []string{"agentkeys:agentkeysRef"}},
		{"acme http", "test-2", func(m map[string]string) { m["agentkeys:acmeDirectory"] = "http://acme.example/dir" }, []string{"agentkeys:acmeDirectory", "https"}},
		{"resolver", "test-2", func(m map[string]string) { m["agentkeys:dnsResolver"] = "8.8.8.8" }, []string{"agentkeys:dnsResolver", "host:port"}},
		{"region", "test-2", func(m map[string]string) { m["aws:region"] = "mars-1" }, []string{"aws:region", "us-east-1"}},
		{"typo key", "test-2", func(m map[string]string) { m["agentkeys:instanceID"] = "i-00000000000000003" }, []string{"agentkeys:instanceID", "not a known key", "did you mean agentkeys:instanceId"}},
		{"stack test-1", "test-1", func(map[string]string) {}, []string{"stack \"test-1\"", "test-2 or higher"}},
		{"stack test-0", "test-0", func(map[string]string) {}, []string{"stack \"test-0\""}},
		{"stack test-x", "test-x", func(map[string]string) {}, []string{"stack \"test-x\"", "not a number"}},
		{"stack unknown", "staging", func(map[string]string) {}, []string{"stack \"staging\"", "prod, test, test-N"}},
	}
	require.GreaterOrEqual(t, len(cases), 15)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := good()
			tc.edit(raw)
			_, err := Parse(tc.stack, raw)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	raw := good()
	raw["agentkeys:accountId"] = "1"
	raw["agentkeys:instanceId"] = "x"
	_, err := Parse("test-2", raw)
	require.Error(t, err)
	assert.Len(t, err.(*Error).Problems, 2)
}

func TestStackFiles(t *testing.T) {
	// The committed stack files pass validation out of the box.
	stacks, err := StackFiles("../..")
	require.NoError(t, err)
	for _, want := range []string{"prod", "test", "test-2", "base"} {
		assert.Contains(t, stacks, want)
		c, err := LoadFile("../..", want)
		require.NoError(t, err, want)
		assert.Equal(t, want, c.Stack.Name)
	}
}

func TestReadStackFileSecureAndObjects(t *testing.T) {
	dir := t.TempDir()
	doc := `config:
  aws:region: eu-west-1
  agentkeys:accountId: "123456789012"
  agentkeys:zone: example.org
  agentkeys:parentZoneId: Z0EXAMPLE0ZONE0ID
  agentkeys:instanceId: i-00000000000000003
  agentkeys:sshPrivateKey:
    secure: AAABAKzFy5uJ0cGh
  agentkeys:contracts:
    SIDECAR_REGISTRY_ADDRESS: "0x1111111111111111111111111111111111111111"
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.test-2.yaml"), []byte(doc), 0o644))
	raw, err := ReadStackFile(dir, "test-2")
	require.NoError(t, err)
	assert.Equal(t, []string{"agentkeys:sshPrivateKey"}, raw.SecretKeys)
	assert.Equal(t, Encrypted, raw.Values["agentkeys:sshPrivateKey"])
	assert.JSONEq(t, `{"SIDECAR_REGISTRY_ADDRESS":"0x1111111111111111111111111111111111111111"}`, raw.Values["agentkeys:contracts"])
	c, err := LoadFile(dir, "test-2")
	require.NoError(t, err)
	assert.Equal(t, "eu-west-1", c.Fork.Region)
	assert.True(t, c.SSHPrivateKey.Set())

	_, err = LoadFile(dir, "test-3")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "Pulumi.test-3.yaml does not exist"), err)
}

// TestChainExampleIsTheStacksChain: a wrong agentkeys:chain suggests the value
// that stack needs, for every chain stack and the default-chain stacks.
func TestChainExampleIsTheStacksChain(t *testing.T) {
	stacks := map[string]string{"prod": naming.DefaultChain, "test": naming.DefaultChain, "test-2": naming.DefaultChain}
	for name, chain := range naming.Chains {
		stacks[name] = chain
	}
	for stack, chain := range stacks {
		t.Run(stack, func(t *testing.T) {
			raw := good()
			raw["agentkeys:chain"] = "not-" + chain
			_, err := Parse(stack, raw)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "(example: "+chain+")")
			for _, other := range append([]string{naming.DefaultChain}, chainValues()...) {
				if other != chain {
					assert.NotContains(t, err.Error(), "(example: "+other+")")
				}
			}
			raw["agentkeys:chain"] = chain
			_, err = Parse(stack, raw)
			assert.NoError(t, err, "the suggested value is accepted")
		})
	}
}

func chainValues() []string {
	var out []string
	for _, c := range naming.Chains {
		out = append(out, c)
	}
	return out
}

// TestNearMissNamespace: keys in a namespace that looks like a mistyped
// agentkeys are errors that name the key and the agentkeys: key meant; other
// providers' namespaces stay allowed.
func TestNearMissNamespace(t *testing.T) {
	cases := []struct {
		key  string
		want string // "" = allowed
	}{
		{"agentkey:zone", "did you mean agentkeys:zone?"},
		{"agentskeys:zone", "did you mean agentkeys:zone?"},
		{"agentkeys-infra:zone", "did you mean agentkeys:zone?"},
		{"agentkeyz:instanceId", "did you mean agentkeys:instanceId?"},
		{"AgentKeys:zone", "did you mean agentkeys:zone?"},
		{"agnetkeys:acmeEmail", "did you mean agentkeys:acmeEmail?"},
		{"agentkey:instanceID", "did you mean agentkeys:instanceId?"}, // the key is corrected too
		{"agentkeysinfra:redeploy", "did you mean agentkeys:redeploy?"},
		{"aws:profile", ""},
		{"pulumi:tags", ""},
		{"tls:something", ""},
		{"command:something", ""},
		{"agent:zone", ""}, // distance 4: another project's namespace
		{"keys:zone", ""},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			raw := good()
			raw[tc.key] = "example.org"
			_, err := Parse("test-2", raw)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "config key "+tc.key)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "stack test-2")
			assert.Len(t, err.(*Error).Problems, 1)
		})
	}
}

// TestSSHPrivateKeyMustBeSecret: a plain sshPrivateKey in a stack file, or
// one the running program gets outside PULUMI_CONFIG_SECRET_KEYS, is an
// error naming the key and the fix, and never printing the value.
func TestSSHPrivateKeyMustBeSecret(t *testing.T) {
	const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\ns3cr3tbody\n-----END OPENSSH PRIVATE KEY-----\n"
	const fix = "pulumi config set --secret agentkeys:sshPrivateKey < key.pem"
	head := `config:
  aws:region: us-east-1
  agentkeys:accountId: "123456789012"
  agentkeys:zone: example.org
  agentkeys:parentZoneId: Z0EXAMPLE0ZONE0ID
  agentkeys:instanceId: i-00000000000000003
`
	files := []struct {
		name, doc string
		wantErr   bool
	}{
		{"plain scalar", head + "  agentkeys:sshPrivateKey: \"-----BEGIN OPENSSH PRIVATE KEY-----\\ns3cr3tbody\\n-----END OPENSSH PRIVATE KEY-----\\n\"\n", true},
		{"plain block", head + "  agentkeys:sshPrivateKey: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    s3cr3tbody\n    -----END OPENSSH PRIVATE KEY-----\n", true},
		{"plain junk", head + "  agentkeys:sshPrivateKey: hunter2\n", true},
		{"plain mapping", head + "  agentkeys:sshPrivateKey:\n    value: s3cr3tbody\n", true},
		{"secure", head + "  agentkeys:sshPrivateKey:\n    secure: AAABAKzFy5uJ0cGh\n", false},
		{"absent", head, false},
		{"empty", head + "  agentkeys:sshPrivateKey: \"\"\n", false},
	}
	for _, tc := range files {
		t.Run("file/"+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.test-2.yaml"), []byte(tc.doc), 0o644))
			_, err := ReadStackFile(dir, "test-2")
			_, lerr := LoadFile(dir, "test-2")
			if !tc.wantErr {
				require.NoError(t, err)
				require.NoError(t, lerr)
				return
			}
			for _, e := range []error{err, lerr} {
				require.Error(t, e)
				assert.Contains(t, e.Error(), "Pulumi.test-2.yaml")
				assert.Contains(t, e.Error(), "stack test-2: config key agentkeys:sshPrivateKey")
				assert.Contains(t, e.Error(), "must be a secret")
				assert.Contains(t, e.Error(), fix)
				assert.NotContains(t, e.Error(), "s3cr3tbody")
				assert.NotContains(t, e.Error(), "hunter2")
			}
		})
	}

	env := []struct {
		name    string
		vals    map[string]string
		secret  string // PULUMI_CONFIG_SECRET_KEYS ("" = unset)
		wantErr []string
	}{
		{"plain", map[string]string{"agentkeys:sshPrivateKey": pem}, "", []string{"agentkeys:sshPrivateKey", "must be a secret", fix}},
		{"other key secret", map[string]string{"agentkeys:sshPrivateKey": pem}, `["agentkeys:sshHostKey"]`, []string{"agentkeys:sshPrivateKey", fix}},
		{"empty list", map[string]string{"agentkeys:sshPrivateKey": pem}, `[]`, []string{"agentkeys:sshPrivateKey", fix}},
		{"plain and other problems", map[string]string{"agentkeys:sshPrivateKey": pem, "agentkeys:instanceId": "x"}, `[]`, []string{"agentkeys:sshPrivateKey", fix, "agentkeys:instanceId"}},
		{"plain and not a key", map[string]string{"agentkeys:sshPrivateKey": "hunter2"}, `[]`, []string{fix, "is not a PEM"}},
		{"bad env", map[string]string{"agentkeys:sshPrivateKey": pem}, `not json`, []string{"PULUMI_CONFIG_SECRET_KEYS"}},
		{"secret", map[string]string{"agentkeys:sshPrivateKey": pem}, `["agentkeys:sshPrivateKey"]`, nil},
		{"absent", map[string]string{}, "", nil},
	}
	for _, tc := range env {
		t.Run("env/"+tc.name, func(t *testing.T) {
			vals := good()
			for k, v := range tc.vals {
				vals[k] = v
			}
			b, err := json.Marshal(vals)
			require.NoError(t, err)
			t.Setenv("PULUMI_CONFIG", string(b))
			t.Setenv("PULUMI_CONFIG_SECRET_KEYS", tc.secret)
			if tc.secret == "" {
				os.Unsetenv("PULUMI_CONFIG_SECRET_KEYS")
			}
			c, err := FromEnv("test-2")
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, tc.vals["agentkeys:sshPrivateKey"] != "", c.SSHPrivateKey.Set())
				return
			}
			require.Error(t, err)
			for _, w := range tc.wantErr {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "s3cr3tbody")
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
	// Parse alone knows no secret markers: callers that build the map
	// themselves (tests, the e2e fixtures) still parse a plain key.
	raw := good()
	raw["agentkeys:sshPrivateKey"] = pem
	_, err := Parse("test-2", raw)
	assert.NoError(t, err)
}

func TestHostArch(t *testing.T) {
	raw := func(arch string) map[string]string {
		m := good()
		if arch != "" {
			m["agentkeys:hostArch"] = arch
		}
		return m
	}
	c, err := Parse("test-2", raw(""))
	if err != nil || c.HostArch != "amd64" {
		t.Fatalf("default: %v %v", c, err)
	}
	if c, err := Parse("test-2", raw("arm64")); err != nil || c.HostArch != "arm64" {
		t.Fatalf("arm64: %v", err)
	}
	_, err = Parse("test-2", raw("x86_64"))
	if err == nil || !strings.Contains(err.Error(), "agentkeys:hostArch") || !strings.Contains(err.Error(), "amd64 or arm64") {
		t.Fatalf("x86_64: %v", err)
	}
}

func TestRPCURLWithCredentialsIsRefusedWithoutEchoingThem(t *testing.T) {
	raw := good()
	raw["agentkeys:rpcUrl"] = "https://alice:hunter2@rpc.example.org"
	_, err := Parse("test-2", raw)
	if err == nil || !strings.Contains(err.Error(), "agentkeys:rpcUrl") || !strings.Contains(err.Error(), "plain text") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("%v", err)
	}
}

// The config refuses what the host agent's spec validation would refuse on
// the host, so a stack never deploys a spec the agent rejects.
func TestResolverAndACMEDirectoryMatchTheAgent(t *testing.T) {
	for key, bad := range map[string][]string{
		"agentkeys:dnsResolver":   {"8.8.8.8:", ":53", "dns.google:domain", "8.8.8.8:70000", "8.8.8.8"},
		"agentkeys:acmeDirectory": {"https://user@acme.example.org/dir", "http://acme.example.org/dir", "/dir"},
	} {
		for _, v := range bad {
			raw := good()
			raw[key] = v
			if _, err := Parse("test-2", raw); err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s=%q accepted or not named: %v", key, v, err)
			}
		}
	}
	raw := good()
	raw["agentkeys:dnsResolver"] = "[2001:4860:4860::8888]:53"
	raw["agentkeys:acmeDirectory"] = "https://127.0.0.1:14000/dir"
	if _, err := Parse("test-2", raw); err != nil {
		t.Errorf("valid resolver and directory refused: %v", err)
	}
}

// The README's config table names every key the program reads.
func TestREADMEListsEveryConfigKey(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(b), "`"+k+"`") {
			t.Errorf("README.md does not document agentkeys:%s", k)
		}
	}
}
