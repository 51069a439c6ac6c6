package agent

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEnvLikeSystemd(t *testing.T) {
	pem := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
	in := "# header\n; other comment\n\nA=1\n  B = two words  \nC=\"" + pem + "\"\nD='single $x'\nE=a\\\nb\nF=\"esc \\\" \\\\ \\$ \\n\"\nA=2\nEMPTY=\n"
	got, err := ParseEnv([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, []string{"A=1", "B=two words", "C=" + pem, "D=single $x", "E=ab", `F=esc " \ $ \n`, "A=2", "EMPTY="}, got)

	_, err = ParseEnv([]byte("X=\"unterminated\n"))
	assert.ErrorContains(t, err, "unterminated double quote")
	_, err = ParseEnv([]byte("no equals sign\n"))
	assert.ErrorContains(t, err, "has no '='")
}

func TestRenderEnvRoundTrips(t *testing.T) {
	m := map[string]string{
		"PEM": "-----BEGIN PUBLIC KEY-----\nabc+/=\n-----END PUBLIC KEY-----\n",
		"URL": "https://rpc.example.org/v1?x=1", "ARN": "arn:aws:iam::123456789012:role/x",
		"ODD": `a "b" \c $d ` + "`e`", "EMPTY": "", "LIST": "wallet_sig,email_link",
	}
	b := RenderEnv("Managed by agentkeys-hostagent", m)
	back, err := EnvMap(b)
	require.NoError(t, err)
	assert.Equal(t, m, back)
	assert.Contains(t, string(b), "LIST=wallet_sig,email_link\n", "plain values stay bare, as operators grep them")
}
