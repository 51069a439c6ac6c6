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
		{"version", func(m map[string]any) { m["version"] = 2 }, "field version"},
		{"another stack's issuer", func(m map[string]any) { m["issuer"] = "https://broker.example.org" }, "issuer of stack prod"},
		{"issuer with a path", func(m map[string]any) { m["issuer"] = "https://broker-test-2.example.org/x" }, "field issuer"},
		{"chain of another stack", func(m map[string]any) { m["chain"] = "base" }, "field chain"},
		{"port clash", func(m map[string]any) {
			services(m)[1].(map[string]any)["port"] = services(m)[0].(map[string]any)["port"]
		}, "clashes with"},
		{"port clash with nginx", func(m map[string]any) { services(m)[2].(map[string]any)["port"] = 443 }, "clashes with nginx.httpsPort"},
		{"hostname outside the zone", func(m map[string]any) { services(m)[1].(map[string]any)["hostname"] = "signer.example.net" }, "outside zone example.org"},
		{"duplicate hostname", func(m map[string]any) {
			services(m)[4].(map[string]any)["hostname"] = services(m)[3].(map[string]any)["hostname"]
		}, "is also the hostname of"},
		{"binary outside the checkout", func(m map[string]any) { services(m)[0].(map[string]any)["binary"] = "../../bin/sh" }, "inside the checkout"},
		{"broker issuer env", func(m map[string]any) {
			services(m)[0].(map[string]any)["env"].(map[string]any)["BROKER_OIDC_ISSUER"] = "https://x.example.org"
		}, "BROKER_OIDC_ISSUER"},
		{"multi-line env value", func(m map[string]any) { services(m)[0].(map[string]any)["env"].(map[string]any)["X"] = "a\nb" }, "one line"},
		{"bad contract", func(m map[string]any) { m["contracts"] = map[string]any{"REGISTRY": "0x12"} }, "contracts.REGISTRY"},
		{"public IP", func(m map[string]any) { m["publicIp"] = "[unknown]" }, "publicIp"},
		{"relative state dir", func(m map[string]any) { m["stateDir"] = "var/lib/agentkeys" }, "stateDir"},
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

func TestTrailingData(t *testing.T) {
	b, _ := json.Marshal(golden(t))
	_, err := Decode(strings.NewReader(string(b) + "{}"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "trailing data")
}
