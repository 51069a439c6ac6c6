package standin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/stretchr/testify/require"
)

// Malformed broker values: BOOT_FAIL or a config error (exit 1) exactly
// where the broker refuses, a silent default where it falls back.
func TestBrokerMalformedValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		kv   []string
		code int // 0: starts
		says string
	}{
		{"http issuer", []string{contract.VarIssuer, "http://broker-test-2.example.org"}, 1, "BOOT_FAIL: BROKER_OIDC_ISSUER=\"http://broker-test-2.example.org\": must be https://"},
		{"http issuer in dev mode", []string{contract.VarIssuer, "http://127.0.0.1:8091", "BROKER_DEV_MODE", "true"}, 0, ""},
		{"dev mode is exactly true", []string{contract.VarIssuer, "http://127.0.0.1:8091", "BROKER_DEV_MODE", "TRUE"}, 1, "oidc-issuer"},
		{"trailing slash is not refused", []string{contract.VarIssuer, "https://broker-test-2.example.org/"}, 0, ""},
		{"method not compiled", []string{"BROKER_AUTH_METHODS", "wallet_sig,oauth2_google"}, 1, "BOOT_FAIL: BROKER_AUTH_METHODS=\"oauth2_google\""},
		{"unknown method", []string{"BROKER_AUTH_METHODS", "passkey"}, 1, "auth-method-not-compiled"},
		{"no method", []string{"BROKER_AUTH_METHODS", " , "}, 1, "auth-method-empty"},
		{"wallet_sig only", []string{"BROKER_AUTH_METHODS", "wallet_sig"}, 0, ""},
		{"sender", []string{"BROKER_EMAIL_SENDER", "smtp"}, 1, "BOOT_FAIL: BROKER_EMAIL_SENDER=\"smtp\": must be 'stub' or 'ses'"},
		{"oidc ttl low", []string{"BROKER_OIDC_JWT_TTL_SECONDS", "59"}, 1, "BROKER_OIDC_JWT_TTL_SECONDS must be between 60 and 3600, got 59"},
		{"oidc ttl high", []string{"BROKER_OIDC_JWT_TTL_SECONDS", "3601"}, 1, "between 60 and 3600"},
		{"oidc ttl text", []string{"BROKER_OIDC_JWT_TTL_SECONDS", "5m"}, 1, "could not be parsed"},
		{"oidc ttl edge", []string{"BROKER_OIDC_JWT_TTL_SECONDS", "60"}, 0, ""},
		{"session duration", []string{"BROKER_SESSION_DURATION_SECONDS", "899"}, 1, "between 900 and 43200"},
		{"grace negative", []string{"BROKER_SHUTDOWN_GRACE_SECONDS", "-1"}, 1, "BROKER_SHUTDOWN_GRACE_SECONDS=\"-1\" could not be parsed"},
		{"client id spaces", []string{"AGENTKEYS_CLIENT_ID", "agent terrier"}, 1, "contains whitespace/quotes"},
		{"client id blank", []string{"AGENTKEYS_CLIENT_ID", "  "}, 1, "is set but empty"},
		{"audit policy", []string{"BROKER_AUDIT_POLICY", "strict"}, 1, "audit-policy"},
		{"wallet provisioner", []string{"BROKER_WALLET_PROVISIONER", "server"}, 1, "wallet-provisioner-not-compiled"},
		{"evm anchor not compiled", []string{"BROKER_AUDIT_ANCHORS", "sqlite,evm_testnet"}, 1, "audit-anchor-not-compiled"},
		{"rate limit falls back", []string{"BROKER_EMAIL_RATE_LIMIT_PER_EMAIL_HOURLY", "lots"}, 0, ""},
		{"session jwt ttl falls back", []string{"BROKER_SESSION_JWT_TTL_SECONDS", "forever"}, 0, ""},
		{"body limit falls back", []string{"BROKER_REQUEST_BODY_LIMIT_BYTES", "1MB"}, 0, ""},
		{"data role from the account id", []string{"ACCOUNT_ID", "123456789012"}, 0, ""},
		{"audit db elsewhere", []string{"BROKER_AUDIT_DB_PATH", "/var/lib/agentkeys/db/audit.sqlite"}, 0, ""},
		{"audit db not creatable", []string{"BROKER_AUDIT_DB_PATH", "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json/audit.sqlite"}, 1, "BOOT_FAIL: BROKER_AUDIT_DB_PATH"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			env := with(f.env("broker"), c.kv...)
			if c.name == "data role from the account id" {
				env = without(env, "BROKER_DATA_ROLE_ARN")
			}
			if c.code == 0 {
				f.up("broker", env)
				return
			}
			f.refuses(f.start(standin.PkgBroker, f.args("broker"), env), "broker", c.code, c.says)
		})
	}
}

func jsonWithout(t *testing.T, b []byte, key string, set map[string]string) []byte {
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	delete(m, key)
	for k, v := range set {
		m[k] = v
	}
	out, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	return out
}

// The keypair files: what the broker's loaders accept and refuse.
func TestBrokerKeypairFormat(t *testing.T) {
	t.Parallel()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sec1, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	sec1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.FillBytes(make([]byte, 32))) }
	jwk, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "x": b64(k.X), "y": b64(k.Y), "d": b64(k.D), "kid": "v1-1"})
	cases := []struct {
		name string
		slot string // oidc or session
		mut  func(f *fixture, b []byte) []byte
		code int
		says string
	}{
		{"JWK instead of the broker format", "oidc", func(*fixture, []byte) []byte { return jwk }, 1, "BOOT_FAIL: BROKER_OIDC_KEYPAIR_PATH"},
		{"SEC1 PEM", "oidc", func(_ *fixture, b []byte) []byte {
			return jsonWithout(t, b, "", map[string]string{"private_key_pem": sec1PEM})
		}, 1, "PKCS#8"},
		{"session keypair in the oidc slot", "oidc", func(f *fixture, _ []byte) []byte {
			b, _ := os.ReadFile(f.host(contract.SessionKeypairPath))
			return b
		}, 1, `has purpose "session" but is the oidc keypair`},
		{"oidc keypair in the session slot", "session", func(f *fixture, _ []byte) []byte {
			b, _ := os.ReadFile(f.host(contract.OIDCKeypairPath))
			return b
		}, 1, "BOOT_FAIL: BROKER_SESSION_KEYPAIR_PATH"},
		{"session without purpose", "session", func(_ *fixture, b []byte) []byte { return jsonWithout(t, b, "purpose", nil) }, 1, `has no "purpose"`},
		{"oidc without purpose (defaults to oidc)", "oidc", func(_ *fixture, b []byte) []byte { return jsonWithout(t, b, "purpose", nil) }, 0, ""},
		{"unknown purpose", "oidc", func(_ *fixture, b []byte) []byte {
			return jsonWithout(t, b, "", map[string]string{"purpose": "signing"})
		}, 1, `has purpose "signing"`},
		{"extra fields are ignored", "session", func(_ *fixture, b []byte) []byte {
			return jsonWithout(t, b, "", map[string]string{"comment": "x"})
		}, 0, ""},
		{"oidc keypair missing", "oidc", nil, 1, "OIDC keypair file does not exist"},
		{"session keypair missing", "session", nil, 1, "session keypair file does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			path := map[string]string{"oidc": contract.OIDCKeypairPath, "session": contract.SessionKeypairPath}[c.slot]
			if c.mut == nil {
				require.NoError(t, os.Remove(f.host(path)))
			} else {
				b, err := os.ReadFile(f.host(path))
				require.NoError(t, err)
				f.write(path, c.mut(f, b), 0o600)
			}
			if c.code == 0 {
				f.up("broker", f.env("broker"))
				return
			}
			f.refuses(f.start(standin.PkgBroker, f.args("broker"), f.env("broker")), "broker", c.code, c.says)
		})
	}
}

// keygen: needs no environment, creates parent directories, writes the
// broker's format at 0600, refuses to overwrite.
func TestBrokerKeygen(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, purpose := range []string{"oidc", "session"} {
		out := "/var/lib/agentkeys/new/" + purpose + "/keypair.json"
		p := f.start(standin.PkgBroker, []string{"keygen", "--purpose", purpose, "--out", out}, nil)
		require.Equal(t, 0, p.exit(), p.out.String())
		b, err := os.ReadFile(f.host(out))
		require.NoError(t, err)
		k, err := contract.ParseKeypair(purpose, b)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(k.Kid, map[string]string{"oidc": "v1-", "session": "ak-session-"}[purpose]), k.Kid)
		st, err := os.Stat(f.host(out))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		require.Contains(t, p.out.String(), "wrote "+purpose+" keypair (kid="+k.Kid+") to "+out+" (mode 0600)")

		again := f.start(standin.PkgBroker, []string{"keygen", "--purpose", purpose, "--out", out}, nil)
		require.Equal(t, 1, again.exit())
		require.Contains(t, again.out.String(), out+" already exists; refusing to overwrite")
		b2, _ := os.ReadFile(f.host(out))
		require.Equal(t, b, b2, "the existing keypair is untouched")
	}
	for _, args := range [][]string{
		{"keygen", "--purpose", "signing", "--out", "/x"},
		{"keygen", "--out", "/x"},
		{"keygen", "--purpose", "oidc"},
		{"keygen", "--purpose", "oidc", "--out", "/x", "--port", "1"},
	} {
		p := f.start(standin.PkgBroker, args, nil)
		require.Equal(t, 2, p.exit(), "%v: %s", args, p.out)
	}
	_, err := os.Stat(f.host("/x"))
	require.True(t, os.IsNotExist(err))
}

// The session public key is exported on every boot, after the keypairs
// load: parent directories created, rewritten, 0644.
func TestBrokerExportsSessionKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	exp := "/var/lib/agentkeys/export/sub/session.pub.pem"
	args := f.args("broker")
	require.Equal(t, "--export-session-pubkey-to", args[4])
	args[5] = exp
	p := f.start(standin.PkgBroker, args, f.env("broker"))
	p.listening(f.wantBind("broker"))
	b, err := os.ReadFile(f.host(exp))
	require.NoError(t, err)
	require.Equal(t, f.pubPEM, string(b))
	require.NoError(t, p.cmd.Process.Kill())
	p.exit()

	f.write(exp, []byte("stale"), 0o600)
	p = f.start(standin.PkgBroker, args, f.env("broker"))
	p.listening(f.wantBind("broker"))
	b, _ = os.ReadFile(f.host(exp))
	require.Equal(t, f.pubPEM, string(b), "rewritten on every boot")
	st, _ := os.Stat(f.host(exp))
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())

	// A bad keypair fails before anything is exported.
	f2 := newFixture(t)
	f2.write(contract.SessionKeypairPath, []byte("{}"), 0o600)
	os.Remove(f2.host(contract.SessionPubPEMPath))
	f2.refuses(f2.start(standin.PkgBroker, f2.args("broker"), f2.env("broker")), "broker", 1, "session-keypair")
	_, err = os.Stat(f2.host(contract.SessionPubPEMPath))
	require.True(t, os.IsNotExist(err), "nothing exported")
}

func readyz(t *testing.T, f *fixture) (int, map[string]any) {
	code, body := f.get("broker", "/readyz")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	return code, m
}

// /readyz: with email_link, tier2/ses is unready (503) until the SES probe
// passes; a wallet_sig-only broker is ready at once.
func TestBrokerReadiness(t *testing.T) {
	t.Parallel()
	t.Run("ses unverified", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.up("broker", with(f.env("broker"), standin.EnvSES, "fail"))
		code, m := readyz(t, f)
		require.Equal(t, 503, code)
		require.Equal(t, "unready", m["status"])
		require.Contains(t, mustJSON(t, m["checks"]), `"name":"tier2/ses","reason":"SES sender identity not yet verified since boot","status":"unready"`)
		require.Contains(t, mustJSON(t, m["checks"]), `"name":"auth/email_link"`)
	})
	for _, env := range [][]string{{standin.EnvSES, "ok"}, {"BROKER_EMAIL_SENDER", "stub"}} {
		t.Run("verified via "+env[0], func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.up("broker", with(f.env("broker"), env...))
			var code int
			var m map[string]any
			deadline := time.Now().Add(startTimeout)
			for code, m = readyz(t, f); code != 200 && time.Now().Before(deadline); code, m = readyz(t, f) {
				time.Sleep(20 * time.Millisecond)
			}
			require.Equal(t, 200, code, m)
			require.Equal(t, "ready", m["status"])
			require.Contains(t, m["ready"], "tier2/ses")
			require.Contains(t, m["ready"], "auth/email_link")
			_, err := os.Stat(f.host(contract.KeyDir + "/ses-verify.json"))
			require.NoError(t, err, "the probe persists its cache next to the audit DB")
		})
	}
	t.Run("wallet_sig only", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.up("broker", with(f.env("broker"), "BROKER_AUTH_METHODS", "wallet_sig"))
		code, m := readyz(t, f)
		require.Equal(t, 200, code)
		require.Equal(t, []any{"auth/wallet_sig", "wallet/client_keystore", "audit/sqlite"}, m["ready"])
	})
	t.Run("strict mode exits when SES fails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		p := f.start(standin.PkgBroker, f.args("broker"), with(f.env("broker"), "BROKER_REFUSE_TO_BOOT_STRICT", "true"))
		require.Equal(t, 1, p.exit(), p.out.String())
		require.Contains(t, p.out.String(), "broker listening on", "Tier 2 runs after bind")
	})
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// Discovery and JWKS: the real field set, the OIDC key's public half.
func TestBrokerOIDCDocuments(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.up("broker", f.env("broker"))
	code, body := f.get("broker", "/.well-known/openid-configuration")
	require.Equal(t, 200, code)
	var disc map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &disc))
	iss := f.env("broker")[contract.VarIssuer]
	require.Equal(t, iss, disc["issuer"])
	require.Equal(t, iss+"/.well-known/jwks.json", disc["jwks_uri"])
	require.Equal(t, []any{"ES256"}, disc["id_token_signing_alg_values_supported"])
	require.ElementsMatch(t, []string{"issuer", "jwks_uri", "response_types_supported", "subject_types_supported",
		"id_token_signing_alg_values_supported", "scopes_supported", "token_endpoint_auth_methods_supported", "claims_supported"}, keys(disc))

	code, body = f.get("broker", "/.well-known/jwks.json")
	require.Equal(t, 200, code)
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &jwks))
	require.Len(t, jwks.Keys, 1, "the OIDC key only; the session key is never published")
	jk := jwks.Keys[0]
	b, _ := os.ReadFile(f.host(contract.OIDCKeypairPath))
	k, err := contract.ParseKeypair("oidc", b)
	require.NoError(t, err)
	require.Equal(t, k.Kid, jk["kid"])
	require.Equal(t, f.oidcKid, jk["kid"])
	x, _ := base64.RawURLEncoding.DecodeString(jk["x"])
	y, _ := base64.RawURLEncoding.DecodeString(jk["y"])
	require.Equal(t, k.Key.X.FillBytes(make([]byte, 32)), x)
	require.Equal(t, k.Key.Y.FillBytes(make([]byte, 32)), y)
	require.Equal(t, map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"},
		map[string]string{"kty": jk["kty"], "crv": jk["crv"], "alg": jk["alg"], "use": jk["use"]})
	code, _ = f.get("broker", "/nope")
	require.Equal(t, 404, code)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// POST /v1/agent/pairing/claim: the Json extractor runs before the bearer
// check (claim.rs): 415, 400, 422, then 401.
func TestBrokerPairingClaim(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.up("broker", f.env("broker"))
	const path = "/v1/agent/pairing/claim"
	good := map[string]string{"pairing_code": "ABCD-1234", "label": "laptop"}
	code, _ := f.post("broker", path, "", nil, nil)
	require.Equal(t, 415, code)
	code, _ = f.post("broker", path, "text/plain", good, nil)
	require.Equal(t, 415, code)
	code, _ = f.post("broker", path, "application/json", "{not json", nil)
	require.Equal(t, 400, code)
	code, _ = f.post("broker", path, "application/json", map[string]string{}, nil)
	require.Equal(t, 422, code)
	code, _ = f.post("broker", path, "application/json", map[string]string{"pairing_code": "x"}, nil)
	require.Equal(t, 422, code)
	code, body := f.post("broker", path, "application/json; charset=utf-8", good, nil)
	require.Equal(t, 401, code)
	require.JSONEq(t, `{"error":"unauthorized","message":"unauthorized: missing or malformed Authorization header"}`, body)
	code, _ = f.post("broker", path, "application/json", good, map[string]string{"Authorization": "bearer x"})
	require.Equal(t, 401, code, "the scheme is case-sensitive")
	code, _ = f.post("broker", path, "application/json", good, map[string]string{"Authorization": "Bearer not-a-jwt"})
	require.Equal(t, 401, code)
	code, _ = f.get("broker", path)
	require.Equal(t, 405, code)
}

// Max uptime: the serve loop ends after 24 h with exit 0 (hence
// Restart=always); the hook shortens it.
func TestBrokerMaxUptime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.start(standin.PkgBroker, f.args("broker"), with(f.env("broker"), standin.EnvMaxUptime, "1s"))
	p.listening(f.wantBind("broker"))
	require.Equal(t, 0, p.exit())
	require.Contains(t, p.out.String(), "broker hit max-uptime timeout (24h serve loop)")
}

// SIGTERM: the broker keeps serving for BROKER_SHUTDOWN_GRACE_SECONDS, then
// drains and exits 0.
func TestBrokerShutdownGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.start(standin.PkgBroker, f.args("broker"), with(f.env("broker"), "BROKER_SHUTDOWN_GRACE_SECONDS", "3"))
	p.listening(f.wantBind("broker"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(300 * time.Millisecond) // well inside the 3 s grace
	f.healthy("broker", nil)           // still serving
	require.Equal(t, 0, p.exit(), p.out.String())
	require.Contains(t, p.out.String(), "shutdown grace expired")
}

// A broker built without auth-email-link refuses email_link (BOOT_FAIL),
// with it (or without --standin-features: the deployment's build) starts.
func TestBrokerFeatures(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	feats := func(fs string) []string {
		return append([]string{standin.PkgBroker, standin.FeaturesFlag, fs}, f.args("broker")...)
	}
	p := f.startWith(feats("auth-wallet-sig,wallet-keystore,audit-sqlite"), f.env("broker"), true)
	f.refuses(p, "broker", 1, `BOOT_FAIL: BROKER_AUTH_METHODS="email_link": unknown or feature-gated-out auth method`)
	p = f.startWith(feats("auth-email-link"), f.env("broker"), true)
	f.refuses(p, "broker", 1, "BOOT_FAIL: BROKER_AUTH_METHODS=\"wallet_sig\"") // --no-default-features
	p = f.startWith(feats("auth-wallet-sig,wallet-keystore"), with(f.env("broker"), "BROKER_AUTH_METHODS", "wallet_sig"), true)
	f.refuses(p, "broker", 1, "audit-anchor-not-compiled")
	p = f.startWith(feats("auth-wallet-sig,wallet-keystore,audit-sqlite,auth-email-link"), f.env("broker"), true)
	p.listening(f.wantBind("broker"))
	require.NoError(t, p.cmd.Process.Kill())
	p.exit()
	p = f.startWith(feats("auth-wallet-sig,wallet-keystore,audit-sqlite,auth-oauth2-google"),
		with(f.env("broker"), "BROKER_AUTH_METHODS", "wallet_sig,oauth2_google"), true)
	f.refuses(p, "broker", 1, "BOOT_FAIL: BROKER_OAUTH2_GOOGLE_CLIENT_ID=\"(unset)\"")
	p = f.startWith(feats("no-such-feature"), f.env("broker"), true)
	require.Equal(t, 64, p.exit(), "a stand-in misuse, not a service failure")
}

// Without the sandbox, absolute paths are used as they are.
func TestBrokerWithoutSandbox(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := t.TempDir()
	env := with(f.env("broker"),
		"HOME", dir,
		"BROKER_OIDC_KEYPAIR_PATH", f.host(contract.OIDCKeypairPath),
		"BROKER_SESSION_KEYPAIR_PATH", f.host(contract.SessionKeypairPath))
	exp := filepath.Join(dir, "pub", "session.pem")
	args := []string{standin.PkgBroker, "--port", f.args("broker")[1], "--bind", "127.0.0.1", "--export-session-pubkey-to", exp}
	p := f.startWith(args, env, false)
	p.listening(f.wantBind("broker"))
	b, err := os.ReadFile(exp)
	require.NoError(t, err)
	require.Equal(t, f.pubPEM, string(b))
	_, err = os.Stat(filepath.Join(dir, ".agentkeys", "broker", "audit.sqlite"))
	require.NoError(t, err, "the audit DB defaults under $HOME")
}
