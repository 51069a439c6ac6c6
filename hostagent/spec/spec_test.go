package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// golden is the spec the Pulumi program emits for test-2 (pinned by its golden test).
func golden(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../infra/program/testdata/hostspec-test-2.json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func decode(t *testing.T, m map[string]any) error {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	_, err = Decode(bytes.NewReader(b))
	return err
}

func services(m map[string]any) []any { return m["services"].([]any) }
func env(m map[string]any, i int) map[string]any {
	return services(m)[i].(map[string]any)["env"].(map[string]any)
}
func nginx(m map[string]any) map[string]any { return m["nginx"].(map[string]any) }
func acme(m map[string]any) map[string]any  { return m["acme"].(map[string]any) }

func TestProgramSpecIsValid(t *testing.T) {
	require.NoError(t, decode(t, golden(t)))
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"unknown field", func(m map[string]any) { m["hostnmae"] = "x" }, `unknown field "hostnmae"`},
		{"version", func(m map[string]any) { m["version"] = 1 }, "field version: is 1, this agent understands 2"},
		{"another stack's issuer", func(m map[string]any) { m["issuer"] = "https://broker.example.org" }, "issuer of stack prod"},
		{"issuer with a path", func(m map[string]any) { m["issuer"] = "https://broker-test-2.example.org/x" }, "field issuer"},
		{"chain of another stack", func(m map[string]any) { m["chain"] = "base" }, "field chain"},
		{"port clash", func(m map[string]any) {
			services(m)[1].(map[string]any)["port"] = services(m)[0].(map[string]any)["port"]
		}, "clashes with"},
		{"port clash with nginx", func(m map[string]any) { services(m)[2].(map[string]any)["port"] = 443 }, "clashes with nginx.httpsPort"},
		{"hostname outside the zone", func(m map[string]any) { services(m)[2].(map[string]any)["hostname"] = "signer.example.net" }, "outside zone example.org"},
		{"duplicate hostname", func(m map[string]any) {
			services(m)[4].(map[string]any)["hostname"] = services(m)[3].(map[string]any)["hostname"]
		}, "is also the hostname of"},
		{"binary outside the checkout", func(m map[string]any) { services(m)[0].(map[string]any)["binary"] = "../../bin/sh" }, "inside the checkout"},
		{"broker issuer env", func(m map[string]any) {
			services(m)[0].(map[string]any)["env"].(map[string]any)["BROKER_OIDC_ISSUER"] = "https://x.example.org"
		}, "BROKER_OIDC_ISSUER"},
		{"multi-line env value", func(m map[string]any) { services(m)[0].(map[string]any)["env"].(map[string]any)["X"] = "a\nb" }, "one line"},
		{"a variable the binary never reads", func(m map[string]any) { env(m, 5)["WORKER_LISTEN"] = "127.0.0.1:9094" },
			"host spec field services[5].env.WORKER_LISTEN: agentkeys-worker-creds never reads WORKER_LISTEN; remove it"},
		{"a bind the binary rejects", func(m map[string]any) { env(m, 5)["WORKER_BIND"] = "localhost:9094" },
			`services[5].env.WORKER_BIND: "localhost:9094" is not IP:port; agentkeys-worker-creds would not IP:port: exit 2`},
		{"a wss chain endpoint", func(m map[string]any) { env(m, 0)["AGENTKEYS_CHAIN_RPC_HTTP"] = "wss://rpc.example.org" },
			"services[0].env.AGENTKEYS_CHAIN_RPC_HTTP: \"wss://rpc.example.org\" is not an http(s) URL"},
		{"a VE-only variable", func(m map[string]any) { env(m, 5)["AGENTKEYS_TOS_ENDPOINT"] = "https://tos.example.org" }, "must not be set for creds"},
		{"a malformed contract address", func(m map[string]any) { env(m, 0)["SCOPE_CONTRACT_ADDRESS_HEIMA"] = "0x12" }, "SCOPE_CONTRACT_ADDRESS_HEIMA: \"0x12\" is not a 0x-prefixed 20-byte address"},
		{"a service the contract does not have", func(m map[string]any) { services(m)[8].(map[string]any)["name"] = "channel" }, `services[8].name: "channel" is not a service of the contract`},
		{"a secret in another service's env file", func(m map[string]any) { services(m)[6].(map[string]any)["secrets"] = []any{"kek-creds"} },
			"secret \"kek-creds\" lives in /etc/agentkeys/worker-creds.env, not in this service's env file /etc/agentkeys/worker-memory.env"},
		{"an unknown secret", func(m map[string]any) { services(m)[6].(map[string]any)["secrets"] = []any{"kek-nope"} }, `names secret "kek-nope", which secrets does not define`},
		{"a unit outside the namespace", func(m map[string]any) { services(m)[3].(map[string]any)["unit"] = "ssh.service" }, `services[3].unit: "ssh.service" must be agentkeys-<name>.service`},
		{"an argument that breaks ExecStart", func(m map[string]any) { services(m)[0].(map[string]any)["args"] = []any{"--port", "8091; rm -rf /"} }, "cannot go into an ExecStart line"},
		{"public IP", func(m map[string]any) { m["publicIp"] = "[unknown]" }, "publicIp"},
		{"relative state dir", func(m map[string]any) { m["stateDir"] = "var/lib/agentkeys" }, "stateDir"},
		{"shared env file", func(m map[string]any) { services(m)[3].(map[string]any)["envFile"] = "/etc/agentkeys/broker.env" },
			`host spec field services[3].envFile: "/etc/agentkeys/broker.env" is also the envFile of services[0] (broker); give each service its own`},
		{"unclean env file path", func(m map[string]any) {
			services(m)[3].(map[string]any)["envFile"] = "/etc/agentkeys//worker-audit.env"
		},
			"must be an absolute path"},
		{"service port 0", func(m map[string]any) { services(m)[1].(map[string]any)["port"] = 0 }, "host spec field services[1].port: 0 is not a TCP port; use a free port in 1..65535"},
		{"service port too high", func(m map[string]any) { services(m)[1].(map[string]any)["port"] = 65536 }, "host spec field services[1].port: 65536 is not a TCP port"},
		{"nginx http port too high", func(m map[string]any) { nginx(m)["httpPort"] = 70000 }, "host spec field nginx.httpPort: 70000 is not a TCP port; use 1..65535"},
		{"nginx https port negative", func(m map[string]any) { nginx(m)["httpsPort"] = -1 }, "host spec field nginx.httpsPort: -1 is not a TCP port"},
		{"nginx https port missing", func(m map[string]any) { delete(nginx(m), "httpsPort") }, "host spec field nginx.httpsPort: 0 is not a TCP port"},
		{"nginx ports equal", func(m map[string]any) { nginx(m)["httpsPort"] = nginx(m)["httpPort"] }, "host spec field nginx.httpsPort: 80 is also nginx.httpPort"},
		{"acme directory over http", func(m map[string]any) { acme(m)["directory"] = "http://acme.example.org/directory" },
			`host spec field acme.directory: "http://acme.example.org/directory" must be an absolute https:// URL`},
		{"acme directory relative", func(m map[string]any) { acme(m)["directory"] = "acme-v02.api.letsencrypt.org/directory" }, "field acme.directory"},
		{"acme directory without host", func(m map[string]any) { acme(m)["directory"] = "https:///directory" }, "field acme.directory"},
		{"resolver without port", func(m map[string]any) { acme(m)["resolver"] = "8.8.8.8" },
			`host spec field acme.resolver: "8.8.8.8" must be host:port of a DNS resolver, such as 8.8.8.8:53`},
		{"resolver without host", func(m map[string]any) { acme(m)["resolver"] = ":53" }, "field acme.resolver"},
		{"resolver port not a number", func(m map[string]any) { acme(m)["resolver"] = "8.8.8.8:dns" }, "field acme.resolver"},
		{"resolver port out of range", func(m map[string]any) { acme(m)["resolver"] = "8.8.8.8:0" }, "field acme.resolver"},
		{"bare IPv6 resolver", func(m map[string]any) { acme(m)["resolver"] = "2001:4860:4860::8888" }, "field acme.resolver"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := golden(t)
			tc.edit(m)
			err := decode(t, m)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// What the checks must keep accepting: the test CAs' loopback https
// directories, bracketed IPv6 and named resolvers, the system resolver.
func TestValidateAccepts(t *testing.T) {
	cases := []struct {
		name string
		edit func(m map[string]any)
	}{
		{"pebble directory", func(m map[string]any) { acme(m)["directory"] = "https://127.0.0.1:14000/dir" }},
		{"localhost directory", func(m map[string]any) { acme(m)["directory"] = "https://localhost:14000/dir" }},
		{"IPv6 resolver", func(m map[string]any) { acme(m)["resolver"] = "[2001:4860:4860::8888]:53" }},
		{"named resolver", func(m map[string]any) { acme(m)["resolver"] = "resolver.example.org:5353" }},
		{"system resolver", func(m map[string]any) { delete(acme(m), "resolver") }},
		{"high ports", func(m map[string]any) { nginx(m)["httpPort"] = 18080; nginx(m)["httpsPort"] = 65535 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := golden(t)
			tc.edit(m)
			require.NoError(t, decode(t, m))
		})
	}
}

func TestTrailingData(t *testing.T) {
	b, _ := json.Marshal(golden(t))
	_, err := Decode(strings.NewReader(string(b) + "{}"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "trailing data")
}
