package standin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/stretchr/testify/require"
)

// DEV_KEY_SERVICE_MASTER_SECRET (devKeySvc from_optional_secret_hex): a
// malformed value is exit 2 in both modes; unset or empty disables /dev/*.
func TestMasterSecret(t *testing.T) {
	t.Parallel()
	hex64 := strings.Repeat("ab", 31) + "cd"
	cases := []struct {
		name, v string
		code    int
	}{
		{"uppercase 0X", "0X" + hex64, 2},
		{"trailing newline", hex64 + "\n", 2},
		{"31 bytes", hex64[:62], 2},
		{"not hex", strings.Repeat("zz", 32), 2},
		{"quoted", `"` + hex64 + `"`, 2},
		{"0x prefix", "0x" + hex64, 0},
		// trim_start_matches("0x") strips every repeat (devKeySvc); the
		// deployment's CheckMasterSecret is stricter and refuses this.
		{"repeated 0x prefix", "0x0x" + hex64, 0},
		{"uppercase hex digits", strings.ToUpper(hex64), 0},
	}
	for _, svc := range []string{"backend", "signer"} {
		for _, c := range cases {
			t.Run(svc+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				env := with(f.env(svc), contract.VarMasterSecret, c.v)
				if c.code == 0 {
					f.up(svc, env)
					return
				}
				f.refuses(f.start(standin.PkgMock, f.args(svc), env), svc, c.code, "FATAL: invalid DEV_KEY_SERVICE_MASTER_SECRET")
			})
		}
	}
}

func genKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(t, err)
	return k
}

// The signer loads the broker's session public key once at boot
// (load_broker_pubkey): missing or unparsable is exit 2.
func TestSignerPublicKey(t *testing.T) {
	t.Parallel()
	other := genKey(t, elliptic.P256())
	pkcs8, err := x509.MarshalPKCS8PrivateKey(other)
	require.NoError(t, err)
	sec1, _ := x509.MarshalECPrivateKey(other)
	spki, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &other.PublicKey, other)
	require.NoError(t, err)
	p384, _ := x509.MarshalPKIXPublicKey(&genKey(t, elliptic.P384()).PublicKey)
	enc := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	cases := []struct {
		name string
		file []byte // nil: no file
		code int
	}{
		{"missing", nil, 2},
		{"garbage", []byte("not a key"), 2},
		{"private key", enc("PRIVATE KEY", pkcs8), 2},
		{"SEC1 private key", enc("EC PRIVATE KEY", sec1), 2},
		{"EC PUBLIC KEY label", enc("EC PUBLIC KEY", spki), 2},
		{"certificate", enc("CERTIFICATE", cert), 0},
		{"P-384 loads (the curve is checked per request)", enc("PUBLIC KEY", p384), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if c.file == nil {
				require.NoError(t, removeHost(f, contract.SessionPubPEMPath))
			} else {
				f.write(contract.SessionPubPEMPath, c.file, 0o644)
			}
			if c.code == 0 {
				f.up("signer", f.env("signer"))
				return
			}
			f.refuses(f.start(standin.PkgMock, f.args("signer"), f.env("signer")), "signer", c.code, "FATAL: cannot load broker session pubkey from "+contract.SessionPubPEMPath)
		})
	}
	t.Run("the backend never reads it", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		require.NoError(t, removeHost(f, contract.SessionPubPEMPath))
		f.up("backend", f.env("backend"))
	})
}

func removeHost(f *fixture, path string) error {
	return os.Remove(f.host(path))
}

func sessionJWT(t *testing.T, k *ecdsa.PrivateKey, omni, aud string, exp time.Time) string {
	tok, err := standin.SignSessionJWT(k, "ak-session-1", map[string]any{
		"iss": "https://broker-test-2.example.org", "sub": "agentkeys:user:" + omni, "aud": aud,
		"exp": exp.Unix(), "iat": time.Now().Unix(),
		"agentkeys": map[string]any{"omni_account": omni, "wallet_address": "", "identity_type": "email", "identity_value": "a@b"},
	})
	require.NoError(t, err)
	return tok
}

// The signer's /dev/* bearer check (devKeys): an ES256 JWT from the
// broker's session key, aud agentkeys:broker, unexpired, bound to the
// body's omni; then 503 signer_disabled without a master secret.
func TestSignerBearer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.up("signer", f.env("signer"))
	omni := strings.Repeat("a1", 32)
	body := map[string]string{"omni_account": omni}
	try := func(tok string) (int, string) {
		h := map[string]string{}
		if tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		return f.post("signer", "/dev/derive-address", "application/json", body, h)
	}
	other := genKey(t, elliptic.P256())
	for name, tok := range map[string]string{
		"no bearer":     "",
		"garbage":       "abc.def.ghi",
		"other key":     sessionJWT(t, other, omni, "agentkeys:broker", time.Now().Add(time.Hour)),
		"wrong aud":     sessionJWT(t, f.sessionKey, omni, "sts.amazonaws.com", time.Now().Add(time.Hour)),
		"expired":       sessionJWT(t, f.sessionKey, omni, "agentkeys:broker", time.Now().Add(-time.Hour)),
		"omni mismatch": sessionJWT(t, f.sessionKey, strings.Repeat("b2", 32), "agentkeys:broker", time.Now().Add(time.Hour)),
	} {
		code, resp := try(tok)
		require.Equal(t, 401, code, "%s: %s", name, resp)
		require.Equal(t, "unauthorized", reason(t, resp), name)
	}
	code, resp := try(sessionJWT(t, f.sessionKey, omni, "agentkeys:broker", time.Now().Add(time.Hour)))
	require.Equal(t, 200, code, resp)
	require.Contains(t, resp, `"address":"0x`)
	// Within jsonwebtoken's 60 s leeway an expired token still passes.
	code, _ = try(sessionJWT(t, f.sessionKey, omni, "agentkeys:broker", time.Now().Add(-10*time.Second)))
	require.Equal(t, 200, code)
	code, _ = f.post("signer", "/dev/derive-address", "text/plain", body, nil)
	require.Equal(t, 415, code, "the Json extractor runs first")
	code, _ = f.post("signer", "/dev/sign-sts", "application/json", map[string]string{},
		map[string]string{"Authorization": "Bearer " + sessionJWT(t, f.sessionKey, omni, "agentkeys:broker", time.Now().Add(time.Hour))})
	require.Equal(t, 503, code, "sign-sts is not armed")
	code, _ = f.get("signer", "/session/validate")
	require.Equal(t, 404, code, "signer-only serves /dev/* and /healthz")

	g := newFixture(t)
	g.up("signer", without(g.env("signer"), contract.VarMasterSecret))
	code, resp = g.post("signer", "/dev/derive-address", "application/json", body,
		map[string]string{"Authorization": "Bearer " + sessionJWT(t, g.sessionKey, omni, "agentkeys:broker", time.Now().Add(time.Hour))})
	require.Equal(t, 503, code)
	require.Equal(t, "signer_disabled", reason(t, resp))
	code, _ = g.post("signer", "/dev/derive-address", "application/json", body, nil)
	require.Equal(t, 401, code, "the bearer check comes before signer_disabled")
}

// A P-256-less key loads but every request fails verification (401).
func TestSignerForeignCurve(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p384, _ := x509.MarshalPKIXPublicKey(&genKey(t, elliptic.P384()).PublicKey)
	f.write(contract.SessionPubPEMPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p384}), 0o644)
	f.up("signer", f.env("signer"))
	omni := strings.Repeat("a1", 32)
	code, _ := f.post("signer", "/dev/derive-address", "application/json", map[string]string{"omni_account": omni},
		map[string]string{"Authorization": "Bearer " + sessionJWT(t, f.sessionKey, omni, "agentkeys:broker", time.Now().Add(time.Hour))})
	require.Equal(t, 401, code)
}

// The backend serves /dev/* without a JWT on 0.0.0.0 (no pubkey loaded);
// its device routes fail closed.
func TestBackendDevRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.up("backend", f.env("backend"))
	omni := strings.Repeat("a1", 32)
	code, resp := f.post("backend", "/dev/derive-address", "application/json", map[string]string{"omni_account": omni}, nil)
	require.Equal(t, 200, code, resp)
	code, resp = f.post("backend", "/dev/derive-device", "application/json", map[string]string{}, nil)
	require.Equal(t, 503, code)
	require.Equal(t, "signer_auth_not_configured", reason(t, resp))
	code, _ = f.post("backend", "/dev/sign-sts", "application/json", map[string]string{}, nil)
	require.Equal(t, 404, code, "sign-sts exists only in signer-only mode")

	g := newFixture(t)
	g.up("backend", with(g.env("backend"), contract.VarMasterSecret, ""))
	code, resp = g.post("backend", "/dev/derive-address", "application/json", map[string]string{"omni_account": omni}, nil)
	require.Equal(t, 503, code)
	require.Equal(t, "signer_disabled", reason(t, resp))
}

// AGENTKEYS_SIGNER_STS_PROVIDER (signSTS): read in signer-only mode only;
// anything but "ve" is exit 2, and "ve" needs its whole configuration.
func TestSignStsProvider(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.refuses(f.start(standin.PkgMock, f.args("signer"), with(f.env("signer"), "AGENTKEYS_SIGNER_STS_PROVIDER", "aws")), "signer", 2, "FATAL: sign-sts config invalid")
	f.refuses(f.start(standin.PkgMock, f.args("signer"), with(f.env("signer"), "AGENTKEYS_SIGNER_STS_PROVIDER", "ve")), "signer", 2, "VOLCENGINE_ACCESS_KEY is unset")
	f.up("signer", with(f.env("signer"), "AGENTKEYS_SIGNER_STS_PROVIDER", "  "))
	f.up("backend", with(f.env("backend"), "AGENTKEYS_SIGNER_STS_PROVIDER", "aws"))
}
