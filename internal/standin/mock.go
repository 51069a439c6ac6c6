package standin

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
)

// The mock server: the backend (full router on 0.0.0.0:<port>) and, with
// --signer-only, the signer (/dev/* + /healthz on 127.0.0.1:<port>).
// Sources: mockMain (main.rs @f59e6ac9), mockLib (lib.rs @0b799d97),
// devKeySvc (from_optional_secret_hex), devKeys (dev_keys.rs @32744bab),
// signSTS (sign_sts.rs @120a4ac6). Boot order: clap, master secret (exit
// 2), signer-only: pubkey (exit 2), sign-sts config (exit 2), bind (a
// panic: exit 101).

const exitPanic = 101

func (p *proc) mock(args []string) int {
	cmd := &command{name: p.pkg.Name, opts: []opt{
		{long: "port", value: "PORT", def: "8090", hasDef: true, parse: parseU16},
		{long: "signer-only"},
		{long: "broker-session-pubkey-path", value: "BROKER_SESSION_PUBKEY_PATH", def: contract.SessionPubPEMPath, hasDef: true, path: true},
	}}
	m, e := cmd.parse(args)
	if e != nil {
		return p.cliDone(e)
	}
	signerOnly := m.has("signer-only")

	// DevKeyService::from_env: unset, empty or non-UTF-8 = disabled.
	var master []byte
	if raw := os.Getenv(contract.VarMasterSecret); raw != "" {
		s := raw
		for strings.HasPrefix(s, "0x") { // trim_start_matches strips every repeat
			s = s[2:]
		}
		b, err := hex.DecodeString(s)
		switch {
		case err != nil:
			fmt.Fprintf(p.stderr, "[mock-server] FATAL: invalid DEV_KEY_SERVICE_MASTER_SECRET: DEV_KEY_SERVICE_MASTER_SECRET is not valid hex: %v\n", err)
			return exitUsage
		case len(b) != 32:
			fmt.Fprintf(p.stderr, "[mock-server] FATAL: invalid DEV_KEY_SERVICE_MASTER_SECRET: DEV_KEY_SERVICE_MASTER_SECRET must decode to 32 bytes, got %d\n", len(b))
			return exitUsage
		}
		master = b
		fmt.Fprintln(p.stderr, "[mock-server] dev_key_service ENABLED (DEV ONLY — replace with TEE worker per issue #74 step 2)")
	} else {
		fmt.Fprintln(p.stderr, "[mock-server] dev_key_service disabled (set DEV_KEY_SERVICE_MASTER_SECRET to enable)")
	}

	var pub *ecdsa.PublicKey
	stsArmed := false
	if signerOnly {
		path := m.get("broker-session-pubkey-path")
		b, err := os.ReadFile(hostPath(path))
		if err == nil {
			pub, err = ecPEMKey(b)
			if err != nil {
				err = fmt.Errorf("parse EC PEM from %s: %v", path, err)
			}
		} else {
			err = fmt.Errorf("read %s: %v", path, rustIOError(err))
		}
		if err != nil {
			fmt.Fprintf(p.stderr, "[mock-server] FATAL: cannot load broker session pubkey from %s: %v\n", path, err)
			return exitUsage
		}
		fmt.Fprintf(p.stderr, "[mock-server] signer-only mode: broker session pubkey loaded from %s\n", path)
		armed, err := signStsConfig()
		if err != nil {
			fmt.Fprintf(p.stderr, "[mock-server] FATAL: sign-sts config invalid: %v\n", err)
			return exitUsage
		}
		stsArmed = armed
		if !armed {
			fmt.Fprintln(p.stderr, "[mock-server] sign-sts disabled (AGENTKEYS_SIGNER_STS_PROVIDER unset) — /dev/sign-sts will 503")
		}
	}

	port, _ := strconv.ParseUint(strings.TrimPrefix(m.get("port"), "+"), 10, 16)
	ip := netip.IPv4Unspecified()
	if signerOnly {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	bindAddr := netip.AddrPortFrom(ip, uint16(port)).String()
	rt := newRouter()
	rt.handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		writeText(w, http.StatusOK, "ok")
	})
	d := &devKeys{rt: rt, master: master, pub: pub, signerOnly: signerOnly}
	rt.handle(http.MethodPost, "/dev/derive-address", d.handler(true, false))
	rt.handle(http.MethodPost, "/dev/sign-message", d.handler(false, false))
	rt.handle(http.MethodPost, "/dev/sign-typed-data", d.handler(false, false))
	rt.handle(http.MethodPost, "/dev/derive-device", d.handler(false, true))
	rt.handle(http.MethodPost, "/dev/sign-device-cap-pop", d.handler(false, true))
	if signerOnly {
		fmt.Fprintf(p.stderr, "[mock-server] signer-only mode: serving /dev/* + /healthz on %s\n", bindAddr)
		rt.handle(http.MethodPost, "/dev/sign-sts", d.signSts(stsArmed))
	}
	// The backend's session, credential, rendezvous, auth-request and inbox
	// routes are not stood in for: they answer 404 here.
	l, err := listenAddrPort(netip.MustParseAddrPort(bindAddr))
	if err != nil {
		fmt.Fprintf(p.stderr, "thread 'main' panicked: called `Result::unwrap()` on an `Err` value: %v\n", err)
		return exitPanic
	}
	fmt.Fprintf(p.stdout, "Mock server running on %s\n", bindAddr)
	err = (&http.Server{Handler: rt, ReadHeaderTimeout: 30 * time.Second}).Serve(l)
	fmt.Fprintf(p.stderr, "thread 'main' panicked: called `Result::unwrap()` on an `Err` value: %v\n", err)
	return exitPanic
}

// signStsConfig is SignStsConfig::from_env: the provider trimmed; empty or
// unset = off; "ve" needs every VE variable (unset or blank: fatal); any
// other value is fatal.
func signStsConfig() (bool, error) {
	prov := strings.TrimSpace(os.Getenv("AGENTKEYS_SIGNER_STS_PROVIDER"))
	switch prov {
	case "":
		return false, nil
	case "ve":
	default:
		return false, fmt.Errorf(`AGENTKEYS_SIGNER_STS_PROVIDER=%s — only "ve" is implemented`, prov)
	}
	need := []string{"VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "AGENTKEYS_VE_OIDC_PROVIDER_TRN"}
	for _, c := range []string{"VAULT", "MEMORY", "CONFIG", "CHANNEL"} {
		need = append(need, "AGENTKEYS_STS_ROLE_TRN_"+c, "AGENTKEYS_STS_BUCKET_"+c)
	}
	if g := os.Getenv("AGENTKEYS_SIGNER_REQUIRE_CHAIN_GRANT"); g == "1" || g == "true" {
		need = append(need, "AGENTKEYS_CHAIN_RPC_HTTP", "AGENTKEYS_REGISTRY_ADDRESS")
	}
	for _, k := range need {
		if strings.TrimSpace(os.Getenv(k)) == "" {
			return false, fmt.Errorf("sign-sts armed but %s is unset — partial config is fatal", k)
		}
	}
	if v, ok := os.LookupEnv("AGENTKEYS_SIGNER_STS_TTL_CEILING"); ok {
		if _, err := rustUint(v); err != nil {
			return false, fmt.Errorf("AGENTKEYS_SIGNER_STS_TTL_CEILING=%s: %v", v, err)
		}
	}
	return true, nil
}

type devKeys struct {
	rt         *router
	master     []byte
	pub        *ecdsa.PublicKey
	signerOnly bool
}

// session is verify_session_jwt_claims: skipped when no pubkey is loaded
// (backend mode), else a Bearer JWT the broker's session key signed.
func (d *devKeys) session(w http.ResponseWriter, r *http.Request) (*sessionClaims, bool) {
	if !d.signerOnly {
		return nil, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeJSON(w, http.StatusUnauthorized, obj{{"error", "unauthorized"}, {"message", "missing Authorization: Bearer <jwt> header"}})
		return nil, false
	}
	c, err := verifySessionJWT(d.pub, strings.TrimSpace(tok), time.Now())
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, obj{{"error", "unauthorized"}, {"message", "invalid session JWT: " + err.Error()}})
		return nil, false
	}
	return c, true
}

// handler serves a /dev/* route: Json body (omni_account required), the
// bearer check with the omni binding, then 503 signer_disabled without a
// master secret. derive-address answers with a stand-in address (HMAC of
// the omni under the secret, not the real secp256k1 derivation); the
// signing routes stop at 501. Device routes in backend mode fail closed
// with 503 signer_auth_not_configured (dev_device.rs).
func (d *devKeys) handler(derive, device bool) func(http.ResponseWriter, *http.Request, map[string]string) {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		body, ok := d.rt.jsonBody(w, r)
		if !ok {
			return
		}
		var omni string
		if !device { // the device routes' bodies are not stood in for
			if err := decodeFields(body, field{name: "omni_account", dst: &omni}); err != nil {
				dataError(w, err)
				return
			}
		}
		if device && !d.signerOnly {
			writeJSON(w, http.StatusServiceUnavailable, obj{{"error", "signer_auth_not_configured"}, {"message", "device routes need the signer's broker session pubkey"}})
			return
		}
		c, ok := d.session(w, r)
		if !ok {
			return
		}
		if c != nil && !device && c.OmniAcct != omni {
			writeJSON(w, http.StatusUnauthorized, obj{{"error", "unauthorized"}, {"message", "JWT omni_account claim does not match request body"}})
			return
		}
		if d.master == nil {
			signerDisabled(w)
			return
		}
		if !derive {
			unimplemented(w, "sign with secp256k1")
			return
		}
		mac := hmac.New(sha256.New, d.master)
		mac.Write([]byte("agentkeys-standin-address\x00" + omni))
		writeJSON(w, http.StatusOK, obj{{"address", "0x" + hex.EncodeToString(mac.Sum(nil)[:20])}, {"key_version", 1}})
	}
}

func signerDisabled(w http.ResponseWriter) {
	writeJSON(w, http.StatusServiceUnavailable, obj{{"error", "signer_disabled"}, {"message", "dev_key_service disabled — set DEV_KEY_SERVICE_MASTER_SECRET to enable"}})
}

// signSts: the actor comes from the verified bearer; unarmed = 503.
func (d *devKeys) signSts(armed bool) func(http.ResponseWriter, *http.Request, map[string]string) {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		if _, ok := d.rt.jsonBody(w, r); !ok {
			return
		}
		if _, ok := d.session(w, r); !ok {
			return
		}
		if !armed {
			writeJSON(w, http.StatusServiceUnavailable, obj{{"error", "sts_signing_not_configured"}, {"message", "sign-sts disabled (AGENTKEYS_SIGNER_STS_PROVIDER unset)"}})
			return
		}
		unimplemented(w, "call VE STS")
	}
}
