package standin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/agentkeys/agentkeys-infra/contract"
)

// The broker (agentkeys-broker-server). Sources, litentry/agent-terrier
// (contract/refs.go): brokerMain main.rs @16ea3a47 (clap, keygen, export,
// serve loop, SES probe, shutdown), brokerConfig config.rs @3ff7a2d6
// (from_env), brokerBoot boot.rs @3ff7a2d6 (run_tier1, build_registry),
// brokerStatus broker_status.rs @223352cb (/healthz, /readyz), plugins/mod.rs
// @5f79a9f6 (check names), brokerEmail email_link.rs @e5d54260 (ready(),
// SesVerifyCache), brokerOIDC/brokerSession (keypair files),
// brokerOIDCJWT handlers/oidc.rs (discovery), claim.rs @16ea3a47.

type brokerConfig struct {
	auditDBPath     string
	sessionDuration int64
	grace           uint64
	issuer          string
	oidcKeypairPath string
	devMode         bool
	authMethods     string
	auditAnchors    string
	strict          bool
}

func homeDefault(parts ...string) string {
	home := envOr("HOME", ".")
	return filepath.Join(append([]string{home, ".agentkeys", "broker"}, parts...)...)
}

// brokerConfigFromEnv is BrokerConfig::from_env, in its order; any error
// ends main with exit 1 ("Error: ...", no BOOT_FAIL line).
func brokerConfigFromEnv() (*brokerConfig, error) {
	c := &brokerConfig{}
	_, a := os.LookupEnv("BROKER_DATA_ROLE_ARN")
	_, b := os.LookupEnv("BROKER_AGENT_ROLE_ARN")
	_, acct := os.LookupEnv("ACCOUNT_ID")
	if !a && !b && !acct {
		return nil, errors.New("missing required env var: set BROKER_DATA_ROLE_ARN explicitly (legacy: BROKER_AGENT_ROLE_ARN), or set ACCOUNT_ID and the broker will derive arn:aws:iam::$ACCOUNT_ID:role/agentkeys-data-role")
	}
	c.auditDBPath = envOr("BROKER_AUDIT_DB_PATH", homeDefault("audit.sqlite"))
	parseInt := func(name string, bits int, def int64, unsigned bool) (int64, error) {
		v, ok := os.LookupEnv(name)
		if !ok {
			return def, nil
		}
		var n int64
		var err error
		if unsigned {
			var u uint64
			u, err = rustUint(v)
			n = int64(u)
		} else {
			n, err = rustInt(v, bits)
		}
		if err != nil {
			return 0, fmt.Errorf("%s=%s could not be parsed: %v", name, strconv.Quote(v), err)
		}
		return n, nil
	}
	var err error
	if c.sessionDuration, err = parseInt("BROKER_SESSION_DURATION_SECONDS", 32, 3600, false); err != nil {
		return nil, err
	}
	if c.sessionDuration < 900 || c.sessionDuration > 43200 {
		return nil, fmt.Errorf("BROKER_SESSION_DURATION_SECONDS must be between 900 and 43200, got %d", c.sessionDuration)
	}
	g, err := parseInt("BROKER_SHUTDOWN_GRACE_SECONDS", 64, 30, true)
	if err != nil {
		return nil, err
	}
	c.grace = uint64(g)
	iss, ok := os.LookupEnv(contract.VarIssuer)
	if !ok {
		return nil, errors.New("missing required env var: BROKER_OIDC_ISSUER")
	}
	c.issuer = iss
	c.oidcKeypairPath = envOr("BROKER_OIDC_KEYPAIR_PATH", homeDefault("oidc-keypair.json"))
	ttl, err := parseInt("BROKER_OIDC_JWT_TTL_SECONDS", 64, 300, true)
	if err != nil {
		return nil, err
	}
	if uint64(ttl) < 60 || uint64(ttl) > 3600 {
		return nil, fmt.Errorf("BROKER_OIDC_JWT_TTL_SECONDS must be between 60 and 3600, got %d", uint64(ttl))
	}
	c.devMode = os.Getenv("BROKER_DEV_MODE") == "true"
	c.authMethods = envOr("BROKER_AUTH_METHODS", "wallet_sig")
	c.auditAnchors = envOr("BROKER_AUDIT_ANCHORS", "sqlite")
	c.strict = os.Getenv("BROKER_REFUSE_TO_BOOT_STRICT") == "true"
	if v, ok := os.LookupEnv("AGENTKEYS_CLIENT_ID"); ok {
		t := strings.TrimSpace(v)
		if t == "" {
			return nil, errors.New("AGENTKEYS_CLIENT_ID is set but empty — unset it for the default (agentkeys) or set the stack's namespace explicitly")
		}
		if t != v || strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '\'' }) {
			return nil, fmt.Errorf("AGENTKEYS_CLIENT_ID=%s contains whitespace/quotes — a malformed namespace forks every derived identity", strconv.Quote(v))
		}
	}
	return c, nil
}

// bootFail is boot.rs boot_fail: the BOOT_FAIL line, then the same text as
// main's error (exit 1).
type bootFail struct{ msg string }

func (e *bootFail) Error() string { return e.msg }

func newBootFail(v, value, reason, anchor string) error {
	return &bootFail{fmt.Sprintf("BOOT_FAIL: %s=%s: %s; see runbook §%s", v, strconv.Quote(value), reason, anchor)}
}

type brokerBootState struct {
	oidc, session *contract.ParsedKeypair
	auth          []string // registered auth methods, sorted
	anchors       []string
	wallet        string
	emailFrom     string
	emailSender   string
	sesCache      string
}

func loadKeypair(slot, v, path, anchor, missing string) (*contract.ParsedKeypair, error) {
	if !exists(path) {
		return nil, newBootFail(v, path, missing, anchor)
	}
	b, err := os.ReadFile(hostPath(path))
	if err != nil {
		return nil, newBootFail(v, path, "read keypair: "+rustIOError(err).Error(), anchor)
	}
	k, err := contract.ParseKeypair(slot, b)
	if err != nil {
		return nil, newBootFail(v, path, fmt.Sprintf("keypair at %s %v", path, err), anchor)
	}
	return k, nil
}

// openStore stands in for a rusqlite store's open: its directory is
// created, the file must be creatable and writable.
func openStore(path string) error {
	if err := os.MkdirAll(filepath.Dir(hostPath(path)), 0o755); err != nil {
		return rustIOError(err)
	}
	f, err := os.OpenFile(hostPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("unable to open database file: %v", rustIOError(err))
	}
	return f.Close()
}

// tier1 is run_tier1 with build_registry.
func (p *proc) tier1(c *brokerConfig) (*brokerBootState, error) {
	if !c.devMode && !strings.HasPrefix(c.issuer, "https://") {
		return nil, newBootFail(contract.VarIssuer, c.issuer, "must be https:// in non-dev mode (set BROKER_DEV_MODE=true to relax)", "oidc-issuer")
	}
	s := &brokerBootState{}
	var err error
	if s.oidc, err = loadKeypair("oidc", "BROKER_OIDC_KEYPAIR_PATH", c.oidcKeypairPath, "oidc-keypair",
		"OIDC keypair file does not exist (run `agentkeys-broker-server keygen --purpose oidc --out PATH` first; silent generation is disabled per plan §6)"); err != nil {
		return nil, err
	}
	sessPath := envOr("BROKER_SESSION_KEYPAIR_PATH", homeDefault("session-keypair.json"))
	if s.session, err = loadKeypair("session", "BROKER_SESSION_KEYPAIR_PATH", sessPath, "session-keypair",
		"session keypair file does not exist (run `agentkeys-broker-server keygen --purpose session --out PATH` first)"); err != nil {
		return nil, err
	}
	p.logf("INFO ES256 keypairs loaded (purpose-tagged) oidc_kid=%s session_kid=%s", s.oidc.Kid, s.session.Kid)
	dir := filepath.Dir(c.auditDBPath)
	for _, st := range []struct{ file, name, anchor string }{
		{"auth_nonces.sqlite", "AuthNonceStore", "auth-nonces-db"},
		{"wallets.sqlite", "WalletStore", "wallets-db"},
		{"grants.sqlite", "GrantStore", "grants-db"},
		{"identity_links.sqlite", "IdentityLinkStore", "identity-links-db"},
		{"pairing_requests.sqlite", "PairingRequestStore", "pairing-requests-db"},
		{"agent_delegations.sqlite", "AgentDelegationStore", "agent-delegations-db"},
	} {
		if err := openStore(filepath.Join(dir, st.file)); err != nil {
			return nil, newBootFail("BROKER_AUDIT_DB_PATH", c.auditDBPath, st.name+": "+err.Error(), st.anchor)
		}
	}
	s.wallet = envOr("BROKER_WALLET_PROVISIONER", "client_keystore")
	policy := envOr("BROKER_AUDIT_POLICY", "dual_strict")
	if !oneOf(policy, []string{"dual_strict", "sqlite_primary", "evm_primary"}) {
		return nil, newBootFail("BROKER_AUDIT_POLICY", policy, "unknown audit policy (dual_strict, sqlite_primary or evm_primary)", "audit-policy")
	}

	auth := map[string]bool{}
	for _, m := range strings.Split(c.authMethods, ",") {
		switch m = strings.TrimSpace(m); {
		case m == "":
		case m == "wallet_sig" && p.features["auth-wallet-sig"]:
			auth[m] = true
		case m == "email_link" && p.features["auth-email-link"]:
			from, ok := os.LookupEnv("BROKER_EMAIL_FROM_ADDRESS")
			if !ok {
				return nil, newBootFail("BROKER_EMAIL_FROM_ADDRESS", "(unset)", "required when email_link is in BROKER_AUTH_METHODS", "email-from-address")
			}
			for _, st := range []struct{ file, name, anchor string }{
				{"email_tokens.sqlite", "EmailTokenStore", "email-tokens-db"},
				{"email_rate_limits.sqlite", "EmailRateLimitStore", "email-rate-limits-db"},
			} {
				if err := openStore(filepath.Join(dir, st.file)); err != nil {
					return nil, newBootFail("BROKER_AUDIT_DB_PATH", dir, st.name+": "+err.Error(), st.anchor)
				}
			}
			s.emailSender = envOr("BROKER_EMAIL_SENDER", "stub")
			if s.emailSender != "stub" && s.emailSender != "ses" {
				return nil, newBootFail("BROKER_EMAIL_SENDER", s.emailSender, "must be 'stub' or 'ses'", "email-sender-backend")
			}
			s.emailFrom = from
			s.sesCache = filepath.Join(envOr("BROKER_DATA_DIR", dir), "ses-verify.json")
			auth[m] = true
		case m == "oauth2_google" && p.features["auth-oauth2-google"]:
			if err := oauth2Google(dir); err != nil {
				return nil, err
			}
			auth[m] = true
		default:
			return nil, newBootFail("BROKER_AUTH_METHODS", m, "unknown or feature-gated-out auth method (compile with the matching --features flag)", "auth-method-not-compiled")
		}
	}
	if len(auth) == 0 {
		return nil, newBootFail("BROKER_AUTH_METHODS", c.authMethods, "at least one auth method must be enabled (default `wallet_sig`)", "auth-method-empty")
	}
	for m := range auth {
		s.auth = append(s.auth, m)
	}
	sort.Strings(s.auth)
	if !(s.wallet == "client_keystore" && p.features["wallet-keystore"]) {
		return nil, newBootFail("BROKER_WALLET_PROVISIONER", s.wallet, "unknown or feature-gated-out wallet provisioner", "wallet-provisioner-not-compiled")
	}
	for _, a := range strings.Split(c.auditAnchors, ",") {
		switch a = strings.TrimSpace(a); {
		case a == "":
		case a == "sqlite" && p.features["audit-sqlite"]:
			if err := openStore(c.auditDBPath); err != nil {
				return nil, newBootFail("BROKER_AUDIT_DB_PATH", c.auditDBPath, "SqliteAnchor: "+err.Error(), "audit-sqlite")
			}
			s.anchors = append(s.anchors, a)
		case a == "evm_testnet" && p.features["audit-evm"]:
			s.anchors = append(s.anchors, a)
		default:
			return nil, newBootFail("BROKER_AUDIT_ANCHORS", a, "unknown or feature-gated-out audit anchor", "audit-anchor-not-compiled")
		}
	}
	if len(s.anchors) == 0 {
		return nil, newBootFail("BROKER_AUDIT_ANCHORS", c.auditAnchors, "at least one audit anchor must be enabled (default `sqlite`)", "audit-anchor-empty")
	}
	return s, nil
}

// oauth2Google is the oauth2_google arm of build_registry: four variables,
// two files read.
func oauth2Google(dir string) error {
	need := func(v, anchor, why string) (string, error) {
		if x, ok := os.LookupEnv(v); ok {
			return x, nil
		}
		return "", newBootFail(v, "(unset)", why, anchor)
	}
	if _, err := need("BROKER_OAUTH2_GOOGLE_CLIENT_ID", "oauth2-google-client-id", "required when oauth2_google is in BROKER_AUTH_METHODS"); err != nil {
		return err
	}
	sf, err := need("BROKER_OAUTH2_GOOGLE_CLIENT_SECRET_FILE", "oauth2-google-client-secret-file", "required when oauth2_google is in BROKER_AUTH_METHODS")
	if err != nil {
		return err
	}
	sec, err := os.ReadFile(hostPath(sf))
	if err != nil {
		return newBootFail("BROKER_OAUTH2_GOOGLE_CLIENT_SECRET_FILE", sf, "read failed: "+rustIOError(err).Error(), "oauth2-google-client-secret-file")
	}
	if strings.TrimSpace(string(sec)) == "" {
		return newBootFail("BROKER_OAUTH2_GOOGLE_CLIENT_SECRET_FILE", sf, "client secret file is empty after trim", "oauth2-google-client-secret-file")
	}
	hk, err := need("BROKER_OAUTH2_STATE_HMAC_KEY_PATH", "oauth2-state-hmac-key", "required when OAuth2 is enabled")
	if err != nil {
		return err
	}
	if _, err := os.ReadFile(hostPath(hk)); err != nil {
		return newBootFail("BROKER_OAUTH2_STATE_HMAC_KEY_PATH", hk, "read failed: "+rustIOError(err).Error(), "oauth2-state-hmac-key")
	}
	if _, err := need("BROKER_OAUTH2_REDIRECT_URI", "oauth2-redirect-uri", "required when OAuth2 is enabled"); err != nil {
		return err
	}
	for _, st := range []struct{ file, name, anchor string }{
		{"oauth2_pending.sqlite", "OAuth2PendingStore", "oauth2-pending-db"},
		{"oauth2_rate_limits.sqlite", "OAuth2 rate-limit store", "oauth2-rate-limits-db"},
	} {
		if err := openStore(filepath.Join(dir, st.file)); err != nil {
			return newBootFail("BROKER_AUDIT_DB_PATH", dir, st.name+": "+err.Error(), st.anchor)
		}
	}
	return nil
}

func (p *proc) broker(args []string) int {
	cmd := &command{name: PkgBroker, about: "AgentKeys credential broker", opts: []opt{
		{long: "port", value: "PORT", def: "8091", hasDef: true, parse: parseU16},
		{long: "bind", value: "BIND", def: "0.0.0.0", hasDef: true},
		{long: "skip-startup-check"},
		{long: "export-session-pubkey-to", value: "EXPORT_SESSION_PUBKEY_TO", path: true},
	}, subs: []*command{{name: "keygen", about: "Generate an ES256 keypair and persist it at --out (mode 0600).", opts: []opt{
		{long: "purpose", value: "PURPOSE", required: true, possible: []string{"oidc", "session"}},
		{long: "out", value: "OUT", required: true, path: true},
	}}}}
	m, e := cmd.parse(args)
	if e != nil {
		return p.cliDone(e)
	}
	if m.sub == "keygen" {
		return p.keygen(m.subm.get("purpose"), m.subm.get("out"))
	}
	c, err := brokerConfigFromEnv()
	if err != nil {
		return p.fatal(err)
	}
	maxUp := 24 * time.Hour
	if v, ok := os.LookupEnv(EnvMaxUptime); ok {
		if maxUp, err = time.ParseDuration(v); err != nil || maxUp <= 0 {
			fmt.Fprintf(p.stderr, "agentkeys-standin: %s=%q is not a positive Go duration\n", EnvMaxUptime, v)
			return exitStandin
		}
	}
	host, _, _ := strings.Cut(m.get("bind"), ":")
	if ip, err := netip.ParseAddr(host); (err == nil && !ip.IsLoopback()) || (err != nil && host != "localhost") {
		p.logf("WARN broker is binding to a non-loopback address without TLS bind=%s", m.get("bind"))
	}
	s, err := p.tier1(c)
	if err != nil {
		var bf *bootFail
		if errors.As(err, &bf) {
			p.logf("ERROR %s", bf.msg)
		}
		return p.fatal(err)
	}
	if exp := m.get("export-session-pubkey-to"); exp != "" {
		pemBytes, err := contract.PublicPEM(&s.session.Key.PublicKey)
		if err != nil {
			return p.fatal(fmt.Errorf("export session pubkey: %v", err))
		}
		if err := os.MkdirAll(filepath.Dir(hostPath(exp)), 0o755); err != nil {
			return p.fatal(fmt.Errorf("create dirs for pubkey export: %v", rustIOError(err)))
		}
		if err := os.WriteFile(hostPath(exp), pemBytes, 0o644); err != nil {
			return p.fatal(fmt.Errorf("write session pubkey to %q: %v", exp, rustIOError(err)))
		}
		if err := os.Chmod(hostPath(exp), 0o644); err != nil {
			return p.fatal(fmt.Errorf("chmod 0644 %q: %v", exp, rustIOError(err)))
		}
		p.logf("INFO wrote session pubkey PEM (signer can read it) path=%s", exp)
	}
	if err := openStore(c.auditDBPath); err != nil { // AuditLog::open
		return p.fatal(err)
	}
	sesOK := false
	if s.emailSender == "ses" {
		switch v := os.Getenv(EnvSES); v {
		case "ok":
			sesOK = true
		case "", "fail":
		default:
			fmt.Fprintf(p.stderr, "agentkeys-standin: %s=%q is not ok or fail\n", EnvSES, v)
			return exitStandin
		}
	}
	if !m.has("skip-startup-check") {
		p.logf("WARN startup STS GetCallerIdentity probe failed — the stand-in has no AWS credentials. Pass --skip-startup-check to silence this warning.")
	}

	b := &brokerHTTP{cfg: c, boot: s, rt: newRouter()}
	b.rt.limit = bodyLimit("BROKER_REQUEST_BODY_LIMIT_BYTES", 1<<20)
	b.routes()
	addr := m.get("bind") + ":" + m.get("port")
	l, err := listenRust(addr)
	if err != nil {
		return p.fatal(err)
	}
	// Signal handlers exist only once the listener serves (shutdown_signal).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	p.logf("INFO broker listening on %s", addr)
	srv := &http.Server{Handler: b.rt, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	if s.emailSender != "" {
		go p.sesProbe(b, sesOK, c.strict)
	}

	deadline := time.After(maxUp) // tokio::time::timeout around serve
	select {
	case <-deadline:
		p.logf("ERROR broker hit max-uptime timeout (24h serve loop)")
		return exitOK
	case err := <-served:
		return p.fatal(err)
	case <-sig:
	}
	p.logf("INFO shutdown signal received; draining in-flight requests")
	select {
	case <-deadline:
		p.logf("ERROR broker hit max-uptime timeout (24h serve loop)")
		return exitOK
	case <-time.After(time.Duration(c.grace) * time.Second): // still serving
	}
	p.logf("WARN shutdown grace expired; forcing exit even if requests are still in flight grace_seconds=%d", c.grace)
	done := make(chan struct{})
	go func() { srv.Shutdown(context.Background()); close(done) }()
	select {
	case <-deadline:
		p.logf("ERROR broker hit max-uptime timeout (24h serve loop)")
	case <-done:
		p.logf("INFO broker shut down cleanly")
	}
	return exitOK
}

func (p *proc) keygen(purpose, out string) int {
	if exists(out) {
		return p.fatal(fmt.Errorf("%s already exists; refusing to overwrite. Move/remove the existing file first if rotation is intended.", out))
	}
	b, err := contract.MintKeypair(purpose, time.Now())
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(hostPath(out)), 0o755); err == nil {
			if err = os.WriteFile(hostPath(out), b, 0o644); err == nil {
				err = os.Chmod(hostPath(out), 0o600)
			}
		}
	}
	if err != nil {
		return p.fatal(fmt.Errorf("%s keygen failed: %v", purpose, rustIOError(err)))
	}
	k, _ := contract.ParseKeypair(purpose, b)
	fmt.Fprintf(p.stderr, "wrote %s keypair (kid=%s) to %s (mode 0600)\n", purpose, k.Kid, out)
	return exitOK
}

type brokerHTTP struct {
	cfg         *brokerConfig
	boot        *brokerBootState
	rt          *router
	sesVerified atomic.Bool
}

// sesProbe is spawn_ses_verify_probe: verify (stub: always; ses: the test
// hook), persist ses-verify.json, flip tier2/ses; on failure back off 30 s
// doubling to 300 s, or exit 1 in strict mode.
func (p *proc) sesProbe(b *brokerHTTP, sesOK, strict bool) {
	backoff := 30 * time.Second
	for {
		if b.boot.emailSender == "stub" || sesOK {
			cache, _ := json.MarshalIndent(obj{{"last_verified_at", time.Now().Unix()}, {"sender_email", b.boot.emailFrom}}, "", "  ")
			os.MkdirAll(filepath.Dir(hostPath(b.boot.sesCache)), 0o755)
			if err := os.WriteFile(hostPath(b.boot.sesCache), cache, 0o644); err != nil {
				p.logf("ERROR Tier-2 SES probe: verify succeeded but cache save failed; auth/email_link readiness will stay degraded: write ses-verify cache: %v", rustIOError(err))
			} else {
				b.sesVerified.Store(true)
				p.logf("INFO Tier-2 SES probe: sender verified; cache persisted sender=%s", b.boot.emailFrom)
			}
			backoff = 30 * time.Second
			time.Sleep(12 * time.Hour)
			continue
		}
		err := fmt.Sprintf("verify failed: ses GetEmailIdentity(%s): the stand-in's %s hook is not ok", b.boot.emailFrom, EnvSES)
		if strict {
			p.logf("ERROR BROKER_REFUSE_TO_BOOT_STRICT=true and SES sender verify failed; exiting error=%s", err)
			os.Exit(exitError)
		}
		p.logf("WARN Tier-2 SES probe: sender verify failed; /readyz will report unready until verified error=%s retry_seconds=%d", err, int(backoff.Seconds()))
		time.Sleep(backoff)
		backoff = min(backoff*2, 300*time.Second)
	}
}

func runbookAnchor(name string) string {
	return "https://docs.agentkeys.dev/operator-runbook-stage7#" + strings.NewReplacer("/", "-", "_", "-").Replace(name)
}

func (b *brokerHTTP) routes() {
	rt := b.rt
	rt.handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		writeText(w, http.StatusOK, "ok")
	})
	rt.handle(http.MethodGet, "/readyz", b.readyz)
	iss := b.cfg.issuer
	rt.handle(http.MethodGet, "/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": iss, "jwks_uri": iss + "/.well-known/jwks.json",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"}, "scopes_supported": []string{"openid"},
			"token_endpoint_auth_methods_supported": []string{"none"},
			"claims_supported": []string{"iss", "sub", "aud", "iat", "exp", "nbf", "agentkeys_attested_at", "agentkeys_enclave_tier",
				"agentkeys_child_wallet", "agentkeys_grant_id", "agentkeys_operation", "agentkeys_user_wallet", "agentkeys_actor_omni",
				"https://aws.amazon.com/tags"},
		})
	})
	rt.handle(http.MethodGet, "/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		pub := b.boot.oidc.Key.PublicKey
		x, y := make([]byte, 32), make([]byte, 32)
		pub.X.FillBytes(x)
		pub.Y.FillBytes(y)
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{map[string]string{
			"kty": "EC", "crv": "P-256", "x": b64url.EncodeToString(x), "y": b64url.EncodeToString(y),
			"kid": b.boot.oidc.Kid, "alg": "ES256", "use": "sig"}}})
	})
	rt.handle(http.MethodPost, "/v1/agent/pairing/claim", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		body, ok := rt.jsonBody(w, r)
		if !ok {
			return
		}
		var code, label string
		if err := decodeFields(body, field{name: "pairing_code", dst: &code}, field{name: "label", dst: &label}); err != nil {
			dataError(w, err)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			writeJSON(w, http.StatusUnauthorized, obj{{"error", "unauthorized"}, {"message", "unauthorized: missing or malformed Authorization header"}})
			return
		}
		if _, err := verifySessionJWT(&b.boot.session.Key.PublicKey, tok, time.Now()); err != nil {
			writeJSON(w, http.StatusUnauthorized, obj{{"error", "unauthorized"}, {"message", "unauthorized: invalid session token: " + err.Error()}})
			return
		}
		unimplemented(w, "run the pairing flow")
	})
}

// readyz is broker_status.rs readyz over the registry's checks.
func (b *brokerHTTP) readyz(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	checks := []any{}
	ready := []string{}
	degraded, unready := false, false
	add := func(name, status, why, docs string) {
		switch status {
		case "ready":
			ready = append(ready, name)
			return
		case "degraded":
			degraded = true
		default:
			unready = true
		}
		checks = append(checks, map[string]string{"name": name, "status": status, "reason": why, "docs": docs})
	}
	for _, m := range b.boot.auth {
		status, why := "ready", ""
		if m == "email_link" {
			status, why = emailLinkReadiness(b.boot.sesCache)
		}
		add("auth/"+m, status, why, runbookAnchor("auth/"+m))
	}
	add("wallet/"+b.boot.wallet, "ready", "", "")
	for _, a := range b.boot.anchors {
		add("audit/"+a, "ready", "", "")
	}
	if oneOf("email_link", b.boot.auth) {
		if b.sesVerified.Load() {
			ready = append(ready, "tier2/ses")
		} else {
			add("tier2/ses", "unready", "SES sender identity not yet verified since boot", runbookAnchor("ses-verification"))
		}
	}
	if oneOf("evm_testnet", b.boot.anchors) { // no EVM probe exists yet: never reachable
		add("tier2/evm_rpc", "unready", "EVM RPC eth_chainId probe has not succeeded since boot", runbookAnchor("evm-rpc-reachability"))
		add("tier2/evm_fee_payer", "unready", "EVM fee-payer balance below BROKER_EVM_FEE_PAYER_MIN_BALANCE", runbookAnchor("evm-fee-payer-balance"))
	}
	switch {
	case unready:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unready", "degraded": false, "checks": checks, "ready": ready})
	case degraded:
		writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "degraded": true, "checks": checks, "ready": ready})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "degraded": false, "checks": []any{}, "ready": ready})
	}
}

// emailLinkReadiness is EmailLinkAuth::ready(): the SES verify cache fresh
// (< 24 h) = ready, stale or absent = degraded.
func emailLinkReadiness(cachePath string) (string, string) {
	b, err := os.ReadFile(hostPath(cachePath))
	var cache struct {
		LastVerifiedAt *int64  `json:"last_verified_at"`
		SenderEmail    *string `json:"sender_email"`
	}
	if err != nil || json.Unmarshal(b, &cache) != nil || cache.LastVerifiedAt == nil || cache.SenderEmail == nil {
		return "degraded", "email_link: SES verification cache absent at " + cachePath
	}
	if time.Now().Unix()-*cache.LastVerifiedAt < 24*3600 {
		return "ready", ""
	}
	return "degraded", fmt.Sprintf("email_link: SES sender %s cache stale (>24h)", *cache.SenderEmail)
}
