package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	// Ship a stand-in agent so the plan does not cross-compile one per test.
	os.Setenv("AGENTKEYS_HOSTAGENT_BINARY", "/bin/true")
	os.Exit(m.Run())
}

func TestPlanJSONIsShapedLikePreview(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"--stack", "test-2", "--json", "--dir", "../../.."}, &out, &errb), errb.String())
	var doc struct {
		Steps []struct {
			Op       string `json:"op"`
			URN      string `json:"urn"`
			NewState struct {
				Type         string         `json:"type"`
				URN          string         `json:"urn"`
				Parent       string         `json:"parent"`
				Dependencies []string       `json:"dependencies"`
				Protect      bool           `json:"protect"`
				Inputs       map[string]any `json:"inputs"`
			} `json:"newState"`
		} `json:"steps"`
		Outputs map[string]any `json:"outputs"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	require.NotEmpty(t, doc.Steps)
	byType := map[string]int{}
	urns := map[string]bool{}
	for _, s := range doc.Steps {
		assert.Equal(t, "create", s.Op)
		assert.Equal(t, s.URN, s.NewState.URN)
		assert.True(t, strings.HasPrefix(s.URN, "urn:pulumi:test-2::agentkeys::"), s.URN)
		byType[s.NewState.Type]++
		urns[s.URN] = true
	}
	for _, s := range doc.Steps {
		for _, d := range s.NewState.Dependencies {
			assert.True(t, urns[d], "dependency %s of %s is a declared resource", d, s.URN)
		}
		if s.NewState.Type == "aws:route53/record:Record" && s.NewState.Inputs["type"] == "A" {
			assert.Equal(t, []any{"[unknown]"}, s.NewState.Inputs["records"], "an allocated address is unknown in a preview")
		}
		if s.NewState.Type == "command:remote:Command" {
			assert.Equal(t, "[secret]", s.NewState.Inputs["connection"])
		}
	}
	assert.Equal(t, 9, byType["aws:route53/record:Record"]-6, "nine A records besides the six mail records")
	assert.Equal(t, 1, byType["agentkeys:index:BrokerStack"])
	assert.Equal(t, 3, byType["agentkeys:index:DataClassRole"])
	assert.Equal(t, "https://broker-test-2.example.org", doc.Outputs["issuer"])
	assert.Equal(t, "[unknown]", doc.Outputs["eip"])
	assert.Equal(t, "[secret]", doc.Outputs["credentials"])
}

func TestPlanTextGroupsByComponent(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"--stack", "base", "--dir", "../../..", "--critical-path"}, &out, &errb), errb.String())
	s := out.String()
	assert.Contains(t, s, "+ agentkeys:index:MailBackend agentkeys-mail")
	assert.Contains(t, s, "agentkeys-vault-base-123456789012  [protected]")
	assert.Contains(t, s, "issuer                 \"https://broker-base.example.org\"")
	assert.Contains(t, s, "Critical path:")
}

func TestBadConfigFailsWithNothingOnStdout(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../../../Pulumi.test-2.yaml")
	require.NoError(t, err)
	bad := strings.Replace(string(b), `"123456789012"`, `"12345"`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.test-2.yaml"), []byte(bad), 0o644))
	var out, errb bytes.Buffer
	assert.Equal(t, 1, run([]string{"--stack", "test-2", "--json", "--dir", dir}, &out, &errb))
	assert.Empty(t, out.String())
	assert.Contains(t, errb.String(), "agentkeys:accountId")
	assert.Contains(t, errb.String(), "example: 123456789012")

	out.Reset()
	errb.Reset()
	assert.Equal(t, 1, run([]string{"--stack", "test-1", "--dir", dir}, &out, &errb))
	assert.Empty(t, out.String())
	assert.Contains(t, errb.String(), "test-2 or higher")
	assert.Equal(t, 2, run(nil, &out, &errb))
}

func TestPlanConvergedState(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"--stack", "test-2", "--state", "converged", "--json", "--dir", "../../.."}, &out, &errb), errb.String())
	assert.NotContains(t, out.String(), "[unknown]")
	assert.Contains(t, out.String(), `"op": "same"`)
	assert.Contains(t, out.String(), "aws:iam/openIdConnectProvider:OpenIdConnectProvider")

	out.Reset()
	require.Equal(t, 0, run([]string{"--stack", "test-2", "--state", "converged", "--dir", "../../.."}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "Stack test-2 (converged)")
	assert.Contains(t, out.String(), "assumeRolePolicy:")

	out.Reset()
	errb.Reset()
	assert.Equal(t, 2, run([]string{"--stack", "test-2", "--state", "after", "--dir", "../../.."}, &out, &errb))
	assert.Empty(t, out.String())
	assert.Contains(t, errb.String(), `unknown state "after": use first-up`)
}
