package standin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
)

// The cap-checking workers: creds, memory, config, classify. Sources (all
// litentry/agent-terrier, see contract/refs.go): credsMain/credsState,
// memMain/memState, cfgMain/cfgState, clsMain/clsState, handlers creds
// index 69251183843, memory 55872151883, classify 55696791114.

type capRoute struct {
	path  string
	op    string
	sts   bool     // OptionalStsCreds runs before Json (axum extractor order)
	extra []string // further required string fields of the request struct
	// after runs once the cap verified; nil = the stand-in stops there.
	after afterFn
}

// afterFn checks what a route checks after the cap; false = it answered.
type afterFn func(w http.ResponseWriter, r *http.Request, t *CapToken, body map[string]json.RawMessage) bool

type workerSpec struct {
	bind          string // clap default of --bind / WORKER_BIND
	bucket        string // required bucket variable ("" none)
	health        string // /healthz field carrying the bucket
	kek           string
	kekOpt        bool
	class         string
	namedVerdicts bool
	routes        []capRoute
}

// workerRT is what the routes read from the worker's config once it is
// loaded.
type workerRT struct {
	brokerURL string
	kekSet    bool
	requireV3 bool
}

// storeMode is the #372 body rule of the creds and config puts: exactly
// one of envelope_b64 / plaintext_b64 (400 otherwise).
func storeMode(w http.ResponseWriter, m map[string]json.RawMessage, ambiguous, empty string) (plaintext, ok bool) {
	has := func(k string) bool { v, ok := m[k]; return ok && string(v) != "null" }
	switch env, pt := has("envelope_b64"), has("plaintext_b64"); {
	case env && pt:
		(&apiErr{http.StatusBadRequest, "exactly one of envelope_b64 / plaintext_b64 (both given)", ambiguous}).write(w)
	case !env && !pt:
		(&apiErr{http.StatusBadRequest, "exactly one of envelope_b64 / plaintext_b64 (neither given)", empty}).write(w)
	default:
		return pt, true
	}
	return false, false
}

func (p *proc) workerSpec(rtc *workerRT) workerSpec {
	switch p.pkg.Name {
	case PkgCreds:
		return workerSpec{bind: "127.0.0.1:8080", bucket: "VAULT_BUCKET", health: "vault_bucket", kek: "AGENTKEYS_WORKER_KEK_HEX",
			class: "credentials", namedVerdicts: true, routes: []capRoute{
				{path: "/v1/cred/store", op: "store", sts: true, after: func(w http.ResponseWriter, r *http.Request, t *CapToken, body map[string]json.RawMessage) bool {
					if !masterSelf("cred store is master-self only (operator must equal actor) — agents cannot self-store credentials (single-vault)", "cred_store_not_master_self")(w, r, t, body) {
						return false
					}
					_, ok := storeMode(w, body, "store_mode_ambiguous", "store_mode_missing")
					return ok
				}},
				{path: "/v1/cred/fetch", op: "fetch", sts: true},
				{path: "/v1/cred/list", op: "fetch", sts: true, after: masterSelf("cred list is master-only (operator must equal actor)", "list_not_master_self")},
				{path: "/v1/cred/teardown", op: "teardown", sts: true},
			}}
	case PkgMemory:
		viaBroker := func(what string) afterFn {
			return func(w http.ResponseWriter, r *http.Request, _ *CapToken, _ map[string]json.RawMessage) bool {
				if bearer(r) == "" {
					err403(what+" requires the delegate session bearer (Authorization: Bearer …)", "missing_session_bearer").write(w)
					return false
				}
				if strings.TrimRight(rtc.brokerURL, "/") == "" {
					(&apiErr{http.StatusInternalServerError, what + " unavailable: BROKER_URL is not set on the memory worker", "broker_url_unset"}).write(w)
					return false
				}
				return true
			}
		}
		return workerSpec{bind: "127.0.0.1:8081", bucket: "MEMORY_BUCKET", health: "memory_bucket", kek: "AGENTKEYS_MEMORY_KEK_HEX",
			class: "memory", routes: []capRoute{
				{path: "/v1/memory/put", op: "store", sts: true, extra: []string{"plaintext_b64"}},
				{path: "/v1/memory/get", op: "fetch", sts: true},
				{path: "/v1/memory/canonical-get", op: "canonical_fetch", after: viaBroker("canonical-get")},
				{path: "/v1/memory/inbox-append", op: "append", extra: []string{"key", "plaintext_b64"}, after: viaBroker("inbox-append")},
				{path: "/v1/memory/teardown", op: "teardown", sts: true},
			}}
	case PkgConfig:
		return workerSpec{bind: "127.0.0.1:8083", bucket: "CONFIG_BUCKET", health: "config_bucket", kek: "AGENTKEYS_CONFIG_KEK_HEX", kekOpt: true,
			class: "config", routes: []capRoute{
				{path: "/v1/config/put", op: "store", sts: true, after: func(w http.ResponseWriter, _ *http.Request, _ *CapToken, body map[string]json.RawMessage) bool {
					pt, ok := storeMode(w, body, "config_put_body_ambiguous", "config_put_body_empty")
					switch {
					case !ok || !pt:
						return ok
					case rtc.requireV3:
						err403("plaintext config puts are disabled (AGENTKEYS_CONFIG_REQUIRE_V3=1) — send a client-encrypted v3 envelope_b64 (#372)", "config_plaintext_put_disabled").write(w)
					case !rtc.kekSet:
						(&apiErr{http.StatusInternalServerError, "legacy plaintext put needs AGENTKEYS_CONFIG_KEK_HEX, which this worker no longer carries — send a v3 envelope_b64 (#372)", "config_legacy_kek_missing"}).write(w)
					default:
						return true
					}
					return false
				}},
				{path: "/v1/config/get", op: "fetch", sts: true},
				{path: "/v1/config/teardown", op: "teardown", sts: true},
			}}
	default: // classify: the data class comes from the request (verify_classify_cap)
		return workerSpec{bind: "127.0.0.1:8085", routes: []capRoute{
			{path: "/v1/classify/tag", op: "classify", extra: []string{"entity"}},
			{path: "/v1/classify/compile", op: "classify", extra: []string{"sentence"}},
		}}
	}
}

func masterSelf(msg, reason string) afterFn {
	return func(w http.ResponseWriter, _ *http.Request, t *CapToken, _ map[string]json.RawMessage) bool {
		if t.Payload.OperatorOmni != t.Payload.ActorOmni {
			err403(msg, reason).write(w)
			return false
		}
		return true
	}
}

// bearer is the memory worker's bearer_from_headers ("Bearer " or
// "bearer ", trimmed, non-empty).
func bearer(r *http.Request) string {
	v := r.Header.Get("Authorization")
	t, ok := strings.CutPrefix(v, "Bearer ")
	if !ok {
		t, ok = strings.CutPrefix(v, "bearer ")
	}
	if !ok {
		return ""
	}
	return strings.TrimSpace(t)
}

// mustEnv is std::env::var(..).context(msg)?: presence only (an empty value
// passes).
func mustEnv(name, msg string) (string, error) {
	if v, ok := os.LookupEnv(name); ok {
		return v, nil
	}
	return "", fmt.Errorf("%s\n\nCaused by:\n    environment variable not found", msg)
}

func (p *proc) capWorker(args []string) int {
	rtc := &workerRT{}
	spec := p.workerSpec(rtc)
	cmd := &command{name: p.pkg.Name, opts: []opt{
		{long: "bind", value: "BIND", env: "WORKER_BIND", def: spec.bind, hasDef: true, parse: parseSocketAddr},
	}}
	m, e := cmd.parse(args)
	if e != nil {
		return p.cliDone(e)
	}

	// from_env, in the sources' order (credsState and siblings).
	profile := envOr("AGENTKEYS_CHAIN", "heima")
	sfx := contract.ChainSuffix(profile)
	var bucket string
	var err error
	if spec.bucket != "" {
		if bucket, err = mustEnv(spec.bucket, spec.bucket+" must be set"); err != nil {
			return p.fatal(err)
		}
	}
	c := &capEnv{namedVerdicts: spec.namedVerdicts, http: &http.Client{}}
	if c.pubPEM, err = mustEnv(contract.VarCapPubKey, "BROKER_CAP_PUBKEY_PEM must be set"); err != nil {
		return p.fatal(err)
	}
	rpcSet := false
	for _, n := range []string{"AGENTKEYS_CHAIN_RPC_HTTP", "CHAIN_RPC_HTTP_" + sfx, "HEIMA_RPC_HTTP"} {
		if v, ok := os.LookupEnv(n); ok {
			c.rpc, rpcSet = v, true
			break
		}
	}
	if !rpcSet {
		return p.fatal(errors.New("AGENTKEYS_CHAIN_RPC_HTTP must be set\n\nCaused by:\n    environment variable not found"))
	}
	for _, a := range []struct {
		stem string
		dst  *string
	}{{contract.AddrSidecarRegistry, &c.registry}, {contract.AddrScopeContract, &c.scope}, {contract.AddrK3EpochCounter, &c.epoch}} {
		key := a.stem + "_" + sfx
		if *a.dst, err = mustEnv(key, key+" must be set"); err != nil {
			return p.fatal(err)
		}
	}
	if spec.kek != "" {
		v, ok := os.LookupEnv(spec.kek)
		switch {
		case spec.kekOpt && (!ok || strings.TrimSpace(v) == ""):
			// config: optional since #372; blank means v3-only mode.
			fmt.Fprintf(p.stderr, "==> %s: no %s — v3-only mode\n", p.pkg.Name, spec.kek)
		case !ok:
			return p.fatal(fmt.Errorf("%s must be set (32-byte hex)\n\nCaused by:\n    environment variable not found", spec.kek))
		default:
			// Length is checked on the untrimmed value (cfgState).
			if err := contract.CheckKEK(v); err != nil {
				return p.fatal(fmt.Errorf("%s %v", spec.kek, err))
			}
			rtc.kekSet = true
		}
	}
	switch p.pkg.Name {
	case PkgMemory:
		rtc.brokerURL = os.Getenv("BROKER_URL")
	case PkgConfig:
		rtc.requireV3 = os.Getenv("AGENTKEYS_CONFIG_REQUIRE_V3") == "1"
	}

	rt := newRouter()
	rt.handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		body := obj{{"ok", true}}
		if spec.health != "" {
			body = append(body, kv{spec.health, bucket})
		} else {
			// agentkeys_catalog's version is not in the index; 1 stands in.
			body = append(body, kv{"catalog_version", 1})
		}
		writeJSON(w, http.StatusOK, append(body, kv{"chain_profile", profile}, kv{"version", p.pkg.Version}))
	})
	for _, ro := range spec.routes {
		rt.handle(http.MethodPost, ro.path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
			if ro.sts && !stsCreds(w, r) {
				return
			}
			body, ok := rt.jsonBody(w, r)
			if !ok {
				return
			}
			var capRaw json.RawMessage
			fs := []field{{name: "cap", dst: &capRaw}}
			class := spec.class
			if spec.class == "" {
				fs = append(fs, field{name: "data_class", dst: &class})
			}
			for _, x := range ro.extra {
				fs = append(fs, field{name: x, dst: new(string)})
			}
			if err := decodeFields(body, fs...); err != nil {
				dataError(w, err)
				return
			}
			if spec.class == "" && !oneOf(class, dataClasses) {
				dataError(w, fmt.Errorf("data_class: unknown variant `%s`", class))
				return
			}
			t, err := decodeCap(capRaw)
			if err != nil {
				dataError(w, err)
				return
			}
			if e := c.verifyCap(r.Context(), t, ro.op, class); e != nil {
				e.write(w)
				return
			}
			if ro.after != nil && !ro.after(w, r, t, body) {
				return
			}
			unimplemented(w, "reach S3, the broker or the catalog")
		})
	}
	bind := m.get("bind")
	ap, _ := rustSocketAddr(bind)
	l, err := listenAddrPort(ap)
	if err != nil {
		return p.fatal(err)
	}
	p.logf("listening on %s (chain=%s)", bind, profile)
	return p.serveForever(l, rt)
}

// The audit worker (auditMain, auditState, handlers index 55728597497).
func (p *proc) audit(args []string) int {
	cmd := &command{name: p.pkg.Name, version: p.pkg.Version, opts: []opt{
		{long: "bind", value: "BIND", env: "AGENTKEYS_WORKER_AUDIT_BIND", def: "127.0.0.1:9092", hasDef: true},
		{long: "leaves-dir", value: "LEAVES_DIR", env: "AGENTKEYS_WORKER_AUDIT_LEAVES_DIR", def: "/tmp", hasDef: true},
		{long: "flush-interval-secs", value: "FLUSH_INTERVAL_SECS", env: "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", def: "300", hasDef: true, parse: parseU64},
	}}
	m, e := cmd.parse(args)
	if e != nil {
		return p.cliDone(e)
	}
	st := &auditState{leavesDir: m.get("leaves-dir"), queues: map[string][]auditEvent{}}
	interval, _ := rustUint(m.get("flush-interval-secs"))
	if interval > 0 {
		go st.timer(p, interval)
	}
	rt := newRouter()
	rt.handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		writeText(w, http.StatusOK, "ok")
	})
	rt.handle(http.MethodPost, "/v1/audit/append", st.appendHandler(rt))
	rt.handle(http.MethodPost, "/v1/audit/flush/:operator_omni", func(w http.ResponseWriter, _ *http.Request, ps map[string]string) {
		st.flushHandler(w, []string{ps["operator_omni"]})
	})
	rt.handle(http.MethodPost, "/v1/audit/flush-all", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		st.flushHandler(w, nil)
	})
	rt.handle(http.MethodGet, "/v1/audit/queue-size/:operator_omni", func(w http.ResponseWriter, _ *http.Request, ps map[string]string) {
		writeJSON(w, http.StatusOK, obj{{"operator_omni", ps["operator_omni"]}, {"queue_size", 0}}) // the source's TODO: always 0
	})
	rt.handle(http.MethodPost, "/v1/audit/append/v2", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		if _, ok := rt.jsonBody(w, r); ok {
			unimplemented(w, "encode canonical CBOR envelopes")
		}
	})
	rt.handle(http.MethodGet, "/v1/audit/envelope/:hash", func(w http.ResponseWriter, _ *http.Request, ps map[string]string) {
		writeJSON(w, http.StatusNotFound, obj{{"error", "envelope_not_found"}, {"message", "no envelope at " + ps["hash"]}})
	})
	l, err := listenRust(m.get("bind"))
	if err != nil {
		return p.fatal(err)
	}
	p.logf("agentkeys-worker-audit listening bind=%s", m.get("bind"))
	return p.serveForever(l, rt)
}

// The email worker (emailMain, emailState): unauthenticated SES/S3 relay.
func (p *proc) email(args []string) int {
	cmd := &command{name: p.pkg.Name, version: p.pkg.Version, opts: []opt{
		{long: "bind", value: "BIND", env: "AGENTKEYS_WORKER_EMAIL_BIND", def: "127.0.0.1:9093", hasDef: true},
		{long: "inbox-bucket", value: "INBOX_BUCKET", env: "AGENTKEYS_VAULT_BUCKET", required: true},
	}}
	m, e := cmd.parse(args)
	if e != nil {
		return p.cliDone(e)
	}
	rt := newRouter()
	rt.handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		writeText(w, http.StatusOK, "ok")
	})
	rt.handle(http.MethodPost, "/v1/email/send", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		if _, ok := rt.jsonBody(w, r); ok {
			writeText(w, http.StatusInternalServerError, "SES SendEmail: the stand-in has no SES")
		}
	})
	rt.handle(http.MethodGet, "/v1/email/inbox/:actor_omni", func(w http.ResponseWriter, _ *http.Request, ps map[string]string) {
		h := strings.TrimPrefix(ps["actor_omni"], "0x")
		if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
			writeText(w, http.StatusBadRequest, "actor_omni must be 64 hex characters")
			return
		}
		writeText(w, http.StatusInternalServerError, "S3 ListObjectsV2: the stand-in has no S3 (bucket "+m.get("inbox-bucket")+")")
	})
	l, err := listenRust(m.get("bind"))
	if err != nil {
		return p.fatal(err)
	}
	p.logf("agentkeys-worker-email listening bind=%s bucket=%s", m.get("bind"), m.get("inbox-bucket"))
	return p.serveForever(l, rt)
}
