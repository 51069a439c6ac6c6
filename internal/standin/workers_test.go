package standin_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/sha3"
)

func keccak(b ...[]byte) []byte {
	h := sha3.NewLegacyKeccak256()
	for _, x := range b {
		h.Write(x)
	}
	return h.Sum(nil)
}

func sel(sig string) string { return hex.EncodeToString(keccak([]byte(sig))[:4]) }

// chain is a JSON-RPC node answering the three contract reads the workers
// make (verify.rs): getDevice, isServiceInScope, currentEpoch. A `to` that
// is not an address gets the JSON-RPC error a geth node gives.
type chain struct {
	mu       sync.Mutex
	operator string // 64 hex
	actor    string
	revoked  bool
	epoch    uint64
	inScope  bool
}

var addrRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)

func (c *chain) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Params []json.RawMessage `json:"params"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		var call struct{ To, Data string }
		if len(req.Params) > 0 {
			json.Unmarshal(req.Params[0], &call)
		}
		w.Header().Set("Content-Type", "application/json")
		if !addrRE.MatchString(call.To) {
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid argument 0: hex string has odd length"}}`)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		word := func(n uint64) string {
			b := make([]byte, 32)
			binary.BigEndian.PutUint64(b[24:], n)
			return hex.EncodeToString(b)
		}
		var out string
		switch {
		case strings.HasPrefix(call.Data, "0x"+sel("getDevice(bytes32)")):
			rev := uint64(0)
			if c.revoked {
				rev = 1
			}
			out = c.operator + c.actor + word(0) + word(0) + word(0) + word(0) + word(1) + word(1) + word(1700000000) + word(0) + word(rev)
		case strings.HasPrefix(call.Data, "0x"+sel("isServiceInScope(bytes32,bytes32,bytes32)")):
			b := uint64(0)
			if c.inScope {
				b = 1
			}
			out = word(b)
		case strings.HasPrefix(call.Data, "0x"+sel("currentEpoch()")):
			out = word(c.epoch)
		default:
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"error":{"code":3,"message":"execution reverted"}}`)
			return
		}
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":"0x%s"}`, out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

var (
	master   = strings.Repeat("a1", 32)
	delegate = strings.Repeat("b2", 32)
)

func newChain() *chain { return &chain{operator: master, actor: master, epoch: 1, inScope: true} }

func (f *fixture) capFor(op, class, operator, actor string) standin.CapToken {
	now := uint64(time.Now().Unix())
	tok, err := standin.SignCap(f.sessionKey, standin.CapPayload{
		OperatorOmni: "0x" + operator, ActorOmni: "0x" + actor, Service: "openrouter", Op: op, DataClass: class,
		DeviceKeyHash: "0x" + strings.Repeat("c3", 32), K3Epoch: 1, IssuedAt: now - 5, ExpiresAt: now + 600, Nonce: strings.Repeat("0", 32),
	})
	require.NoError(f.t, err)
	return tok
}

var sts = map[string]string{"X-Aws-Access-Key-Id": "ASIAEXAMPLE", "X-Aws-Secret-Access-Key": "secret", "X-Aws-Session-Token": "token"}

type workerRoute struct {
	svc, path, op, class string
	extra                map[string]any
}

var fetchRoutes = []workerRoute{
	{"creds", "/v1/cred/fetch", "fetch", "credentials", nil},
	{"memory", "/v1/memory/get", "fetch", "memory", nil},
	{"config", "/v1/config/get", "fetch", "config", nil},
	{"classify", "/v1/classify/tag", "classify", "memory", map[string]any{"data_class": "memory", "entity": "github"}},
}

func (f *fixture) callCap(r workerRoute, tok any, hdr map[string]string) (int, string) {
	body := map[string]any{"cap": tok}
	for k, v := range r.extra {
		body[k] = v
	}
	return f.post(r.svc, r.path, "application/json", body, hdr)
}

// The cap check of every cap-checking worker, in verify_cap's order.
func TestWorkerCapChecks(t *testing.T) {
	t.Parallel()
	for _, r := range fetchRoutes {
		t.Run(r.svc, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ch := newChain()
			rpc := ch.start(t)
			f.up(r.svc, with(f.env(r.svc), "AGENTKEYS_CHAIN_RPC_HTTP", rpc))
			good := f.capFor(r.op, r.class, master, master)
			code, body := f.callCap(r, good, sts)
			require.Equal(t, 501, code, "every check passes; the stand-in stops before S3: %s", body)
			require.Equal(t, "standin_unimplemented", reason(t, body))

			if r.svc != "classify" { // REQUIRE_STS=1 in the deployment: the extractor runs before Json
				code, _ = f.post(r.svc, r.path, "text/plain", "x", nil)
				require.Equal(t, 401, code)
				code, _ = f.callCap(r, good, map[string]string{"X-Aws-Access-Key-Id": "A"})
				require.Equal(t, 401, code, "partial STS headers")
			}
			code, _ = f.post(r.svc, r.path, "text/plain", "x", sts)
			require.Equal(t, 415, code)
			code, _ = f.post(r.svc, r.path, "application/json", map[string]any{}, sts)
			require.Equal(t, 422, code, "no cap")
			bad := good
			bad.Payload.Op = "nonsense"
			code, _ = f.callCap(r, bad, sts)
			require.Equal(t, 422, code, "unknown op variant")

			expect := func(tok standin.CapToken, want string) {
				t.Helper()
				code, body := f.callCap(r, tok, sts)
				require.Equal(t, 403, code, body)
				require.Equal(t, want, reason(t, body), body)
			}
			tampered := good
			tampered.Payload.Service = "stripe"
			expect(tampered, "broker_sig_invalid")
			other := newFixture(t).capFor(r.op, r.class, master, master)
			expect(other, "broker_sig_invalid")
			wrongOp := r.op
			if wrongOp == "fetch" {
				wrongOp = "store"
			} else {
				wrongOp = "fetch"
			}
			expect(f.capFor(wrongOp, r.class, master, master), "cap_op_mismatch")
			expect(f.capFor(r.op, "speech", master, master), "cap_data_class_mismatch")
			expired := good
			expired.Payload.ExpiresAt = uint64(time.Now().Unix()) - 1
			expired, _ = standin.SignCap(f.sessionKey, expired.Payload)
			expect(expired, "cap_freshness_failed")

			ch.mu.Lock()
			ch.revoked = true
			ch.mu.Unlock()
			verdict := "chain_check_failed"
			if r.svc == "creds" {
				verdict = "device_inactive"
			}
			expect(good, verdict)
			ch.mu.Lock()
			ch.revoked, ch.epoch = false, 2
			ch.mu.Unlock()
			if r.svc == "creds" {
				verdict = "k3_epoch_mismatch"
			}
			expect(good, verdict)
		})
	}
}

// A malformed BROKER_CAP_PUBKEY_PEM is not a startup failure: /healthz
// stays 200 and every cap request is 403 broker_sig_invalid (capVerify
// parses it per request).
func TestWorkerMalformedPublicKey(t *testing.T) {
	t.Parallel()
	f0 := newFixture(t)
	p384, _ := x509.MarshalPKIXPublicKey(&genKey(t, elliptic.P384()).PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(f0.sessionKey)
	cases := map[string]string{
		"one line":      strings.ReplaceAll(f0.pubPEM, "\n", ""),
		"literal \\n":   strings.ReplaceAll(f0.pubPEM, "\n", `\n`),
		"not PEM":       "broker-public-key",
		"private key":   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		"P-384":         string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p384})),
		"empty":         "",
		"truncated PEM": f0.pubPEM[:len(f0.pubPEM)/2],
	}
	for _, r := range fetchRoutes {
		for name, v := range cases {
			t.Run(r.svc+"/"+name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				rpc := newChain().start(t)
				f.up(r.svc, with(f.env(r.svc), contract.VarCapPubKey, v, "AGENTKEYS_CHAIN_RPC_HTTP", rpc))
				code, body := f.callCap(r, f.capFor(r.op, r.class, master, master), sts)
				require.Equal(t, 403, code, body)
				require.Equal(t, "broker_sig_invalid", reason(t, body))
				f.healthy(r.svc, nil)
			})
		}
	}
}

// An unreachable or odd RPC URL, or a malformed contract address, is not a
// startup failure either: each chain-checked request is 502 chain_rpc.
func TestWorkerChainFailures(t *testing.T) {
	t.Parallel()
	closed, err := ports.Free()
	require.NoError(t, err)
	cases := []struct {
		name string
		kv   func(rpc string) []string
	}{
		{"wss URL", func(string) []string {
			return []string{"AGENTKEYS_CHAIN_RPC_HTTP", "wss://rpc.heima-parachain.heima.network"}
		}},
		{"nothing listening", func(string) []string {
			return []string{"AGENTKEYS_CHAIN_RPC_HTTP", fmt.Sprintf("http://127.0.0.1:%d", closed)}
		}},
		{"not a URL", func(string) []string { return []string{"AGENTKEYS_CHAIN_RPC_HTTP", "heima"} }},
		{"malformed registry address", func(rpc string) []string {
			return []string{"AGENTKEYS_CHAIN_RPC_HTTP", rpc, "SIDECAR_REGISTRY_ADDRESS_HEIMA", "0x123"}
		}},
		{"empty epoch address", func(rpc string) []string {
			return []string{"AGENTKEYS_CHAIN_RPC_HTTP", rpc, "K3_EPOCH_COUNTER_ADDRESS_HEIMA", ""}
		}},
	}
	for _, r := range []workerRoute{fetchRoutes[0], fetchRoutes[3]} {
		for _, c := range cases {
			t.Run(r.svc+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				rpc := newChain().start(t)
				f.up(r.svc, with(f.env(r.svc), c.kv(rpc)...))
				code, body := f.callCap(r, f.capFor(r.op, r.class, master, master), sts)
				require.Equal(t, 502, code, body)
				require.Equal(t, "chain_rpc", reason(t, body))
				f.healthy(r.svc, nil)
			})
		}
	}
}

// The workers' startup validation: the KEK rules (exit 1) and clap's
// SocketAddr for WORKER_BIND (exit 2).
func TestWorkerMalformedValues(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("ab", 31) + "cd"
	keks := map[string]string{
		"short":         good[:62],
		"0x prefix":     "0x" + good,
		"not hex":       strings.Repeat("zz", 32),
		"all zero":      strings.Repeat("00", 32),
		"byte repeated": strings.Repeat("01", 32),
		"trailing NL":   good + "\n",
		"spaces":        " " + good[:62] + " ",
	}
	kekVar := map[string]string{"creds": "AGENTKEYS_WORKER_KEK_HEX", "memory": "AGENTKEYS_MEMORY_KEK_HEX", "config": "AGENTKEYS_CONFIG_KEK_HEX"}
	for svc, v := range kekVar {
		for name, val := range keks {
			t.Run(svc+"/kek "+name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				f.refuses(f.start(f.svc(svc).Package, f.args(svc), with(f.env(svc), v, val)), svc, 1, v)
			})
		}
		t.Run(svc+"/kek uppercase hex", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.up(svc, with(f.env(svc), v, strings.ToUpper(good)))
		})
	}
	t.Run("config/kek unset is v3-only mode", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.up("config", without(f.env("config"), "AGENTKEYS_CONFIG_KEK_HEX"))
	})
	for _, svc := range []string{"creds", "memory", "config", "classify"} {
		for _, bind := range []string{"localhost:%d", "%d", "127.0.0.1", "127.0.0.1:99999", "[127.0.0.1]:%d"} {
			t.Run(svc+"/bind "+bind, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				b := bind
				if strings.Contains(b, "%d") {
					b = fmt.Sprintf(b, f.port[svc])
				}
				f.refuses(f.start(f.svc(svc).Package, f.args(svc), with(f.env(svc), "WORKER_BIND", b)), svc, 2, "invalid socket address syntax")
			})
		}
		t.Run(svc+"/--bind wins over WORKER_BIND", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			env := f.env(svc)
			p := f.start(f.svc(svc).Package, []string{"--bind", env["WORKER_BIND"]}, with(env, "WORKER_BIND", "nonsense"))
			p.listening(env["WORKER_BIND"])
		})
	}
}

// The memory worker's server-side STS routes need the caller's bearer and
// BROKER_URL (memState: empty = 500 broker_url_unset, after the cap check).
func TestMemoryBrokerURL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ch := newChain()
	ch.actor = delegate
	rpc := ch.start(t)
	f.up("memory", with(without(f.env("memory"), "BROKER_URL"), "AGENTKEYS_CHAIN_RPC_HTTP", rpc))
	r := workerRoute{"memory", "/v1/memory/canonical-get", "canonical_fetch", "memory", nil}
	tok := f.capFor(r.op, r.class, master, delegate)
	code, body := f.callCap(r, tok, nil)
	require.Equal(t, 403, code, body)
	require.Equal(t, "missing_session_bearer", reason(t, body))
	code, body = f.callCap(r, tok, map[string]string{"Authorization": "Bearer session"})
	require.Equal(t, 500, code, body)
	require.Equal(t, "broker_url_unset", reason(t, body))
	ch.mu.Lock()
	ch.inScope = false
	ch.mu.Unlock()
	code, body = f.callCap(r, tok, map[string]string{"Authorization": "Bearer session"})
	require.Equal(t, 403, code, "operator != actor consults the scope grant: %s", body)
	require.Equal(t, "chain_check_failed", reason(t, body))
}

// The config KEK is optional since #372: without it (or with
// AGENTKEYS_CONFIG_REQUIRE_V3=1) the legacy plaintext put fails per
// request, the service runs (cfgState, config handlers).
func TestConfigLegacyKEK(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		env    func(map[string]string) map[string]string
		code   int
		reason string
	}{
		{"no KEK", func(e map[string]string) map[string]string { return without(e, "AGENTKEYS_CONFIG_KEK_HEX") }, 500, "config_legacy_kek_missing"},
		{"v3 required", func(e map[string]string) map[string]string { return with(e, "AGENTKEYS_CONFIG_REQUIRE_V3", "1") }, 403, "config_plaintext_put_disabled"},
		{"v3 required is exactly 1", func(e map[string]string) map[string]string { return with(e, "AGENTKEYS_CONFIG_REQUIRE_V3", "true") }, 501, "standin_unimplemented"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			rpc := newChain().start(t)
			f.up("config", c.env(with(f.env("config"), "AGENTKEYS_CHAIN_RPC_HTTP", rpc)))
			r := workerRoute{"config", "/v1/config/put", "store", "config", map[string]any{"plaintext_b64": "c2VjcmV0"}}
			code, body := f.callCap(r, f.capFor(r.op, r.class, master, master), sts)
			require.Equal(t, c.code, code, body)
			require.Equal(t, c.reason, reason(t, body))
			r.extra = nil
			code, body = f.callCap(r, f.capFor(r.op, r.class, master, master), sts)
			require.Equal(t, 400, code, body)
			require.Equal(t, "config_put_body_empty", reason(t, body))
		})
	}
}

// The audit worker writes each flushed batch to
// <leaves_dir>/audit-leaves-<merkle root>.jsonl and never creates the
// directory: without it the flush fails (500) and the batch is lost.
func TestAuditFlush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.up("audit", f.env("audit"))
	op := "0x" + master
	h := func(s string) string { return "0x" + hex.EncodeToString(keccak([]byte(s))) }
	events := []map[string]any{
		{"operator_omni": op, "actor_omni": op, "service_hash": h("openrouter"), "op_type": 0, "payload_hash": h("blob-1"), "timestamp": 1700000000},
		{"operator_omni": op, "actor_omni": op, "service_hash": h("openrouter"), "op_type": 1, "payload_hash": h("blob-1"), "timestamp": 1700000001},
	}
	for i, e := range events {
		code, body := f.post("audit", "/v1/audit/append", "application/json", e, nil)
		require.Equal(t, 200, code, body)
		require.JSONEq(t, fmt.Sprintf(`{"ok":true,"queue_size":%d}`, i+1), body)
	}
	code, _ := f.post("audit", "/v1/audit/append", "application/json", map[string]any{"operator_omni": op}, nil)
	require.Equal(t, 422, code)

	// The root as merkle.rs computes it: leaves prefixed 0x00, sorted pairs 0x01.
	leaf := func(e map[string]any) []byte {
		dec := func(s string) []byte { b, _ := hex.DecodeString(strings.TrimPrefix(s, "0x")); return b }
		w := func(n uint64) []byte { b := make([]byte, 32); binary.BigEndian.PutUint64(b[24:], n); return b }
		return keccak(dec(e["actor_omni"].(string)), dec(e["service_hash"].(string)), w(uint64(e["op_type"].(int))),
			dec(e["payload_hash"].(string)), w(uint64(e["timestamp"].(int))))
	}
	a, b := keccak([]byte{0}, leaf(events[0])), keccak([]byte{0}, leaf(events[1]))
	if hex.EncodeToString(a) > hex.EncodeToString(b) {
		a, b = b, a
	}
	root := hex.EncodeToString(keccak([]byte{1}, a, b))

	code, body := f.post("audit", "/v1/audit/flush-all", "", nil, nil)
	require.Equal(t, 200, code, body)
	var resp struct {
		Flushed []struct {
			MerkleRootHex string `json:"merkle_root_hex"`
			EntryCount    int    `json:"entry_count"`
			LeavesPath    string `json:"leaves_path"`
		} `json:"flushed"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Len(t, resp.Flushed, 1)
	require.Equal(t, "0x"+root, resp.Flushed[0].MerkleRootHex)
	require.Equal(t, 2, resp.Flushed[0].EntryCount)
	path := contract.AuditLeavesDir + "/audit-leaves-" + root + ".jsonl"
	require.Equal(t, path, resp.Flushed[0].LeavesPath)
	lines, err := os.ReadFile(f.host(path))
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(string(lines)), "\n"), 2)
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.Split(string(lines), "\n")[0]), &line))
	require.ElementsMatch(t, []string{"leaf_index", "leaf", "proof", "event"}, keys(line))

	code, body = f.post("audit", "/v1/audit/flush-all", "", nil, nil)
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"ok":true,"flushed":[]}`, body, "the queue was drained")

	require.NoError(t, os.RemoveAll(f.host(contract.AuditLeavesDir)))
	code, _ = f.post("audit", "/v1/audit/append", "application/json", events[0], nil)
	require.Equal(t, 200, code)
	code, body = f.post("audit", "/v1/audit/flush-all", "", nil, nil)
	require.Equal(t, 500, code)
	require.Equal(t, "No such file or directory (os error 2)", body)
	code, body = f.post("audit", "/v1/audit/flush-all", "", nil, nil)
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"ok":true,"flushed":[]}`, body, "the failed batch is lost")
	_, err = os.Stat(f.host(contract.AuditLeavesDir))
	require.True(t, os.IsNotExist(err), "the worker never creates its leaves dir")
}

// The audit and email workers bind through the resolver (host:port, a
// name allowed; a failure is exit 1), and take flags from their env.
func TestAuditEmailBinds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		svc, v, val string
		code        int
		says        string
	}{
		{"audit", "AGENTKEYS_WORKER_AUDIT_BIND", "nonsense", 1, "Error:"},
		{"audit", "AGENTKEYS_WORKER_AUDIT_BIND", "127.0.0.1:99999", 1, "invalid port value"},
		{"email", "AGENTKEYS_WORKER_EMAIL_BIND", "nonsense", 1, "Error:"},
		{"audit", "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", "5m", 2, "invalid value '5m' for '--flush-interval-secs <FLUSH_INTERVAL_SECS>'"},
		{"audit", "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", "-1", 2, "invalid digit"},
		{"audit", "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", "0", 0, ""},
		{"audit", "AGENTKEYS_WORKER_AUDIT_LEAVES_DIR", "/nonexistent", 0, ""},
	} {
		t.Run(c.v+"="+c.val, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			val := c.val
			if strings.Contains(val, "%d") {
				val = fmt.Sprintf(val, f.port[c.svc])
			}
			env := with(f.env(c.svc), c.v, val)
			if c.code != 0 {
				f.refuses(f.start(f.svc(c.svc).Package, nil, env), c.svc, c.code, c.says)
				return
			}
			p := f.start(f.svc(c.svc).Package, nil, env)
			p.listening(fmt.Sprintf("127.0.0.1:%d", f.port[c.svc]))
			f.healthy(c.svc, nil)
		})
	}
	t.Run("--inbox-bucket wins over the env", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		p := f.start(standin.PkgEmail, []string{"--inbox-bucket", "other"}, without(f.env("email"), "AGENTKEYS_VAULT_BUCKET"))
		p.listening(f.wantBind("email"))
		code, body := f.get("email", "/v1/email/inbox/"+master)
		require.Equal(t, 500, code)
		require.Contains(t, body, "bucket other")
		code, _ = f.get("email", "/v1/email/inbox/xyz")
		require.Equal(t, 400, code)
	})
}

// Every package's clap surface: unknown flags and bad values exit 2, help
// exits 0, --version exists only where the command declares `version`.
func TestCLI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	run := func(args ...string) (int, string) {
		p := f.start(args[0], args[1:], nil)
		return p.exit(), p.out.String()
	}
	for _, pkg := range standin.Packages {
		code, out := run(pkg.Name, "--bogus")
		require.Equal(t, 2, code, pkg.Name)
		require.Contains(t, out, "error: unexpected argument '--bogus' found")
		code, out = run(pkg.Name, "--help")
		require.Equal(t, 0, code, pkg.Name)
		require.Contains(t, out, "Usage: "+pkg.Name)
		code, _ = run(pkg.Name, "--version")
		want := 2
		if pkg.Name == standin.PkgAudit || pkg.Name == standin.PkgEmail {
			want = 0
		}
		require.Equal(t, want, code, "%s --version", pkg.Name)
		code, _ = run(pkg.Name, "extra")
		require.Equal(t, 2, code, "%s takes no positional argument", pkg.Name)
	}
	for _, args := range [][]string{
		{standin.PkgBroker, "--port", "70000"},
		{standin.PkgBroker, "--port=abc"},
		{standin.PkgBroker, "--port"},
		{standin.PkgBroker, "--port", "1", "--port", "2"},
		{standin.PkgBroker, "--skip-startup-check=true"},
		{standin.PkgBroker, "--export-session-pubkey-to="},
		{standin.PkgMock, "--signer-only", "--signer-only"},
		{standin.PkgMock, "--broker-session-pubkey-path", ""},
		{standin.PkgCreds, "--bind", "localhost:1"},
	} {
		code, out := run(args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
	}
	p := f.startWith([]string{"agentkeys-nope"}, nil, true)
	require.Equal(t, 64, p.exit())

	// Invoked through a link named after the package, argv[0] selects it.
	link := filepath.Join(t.TempDir(), standin.PkgCreds)
	require.NoError(t, os.Symlink(f.bin, link))
	f.bin = link
	code, out := run("--bogus")
	require.Equal(t, 2, code)
	require.Contains(t, out, "Usage: "+standin.PkgCreds)
}
