package standin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
)

// The cap token and its verification, as the workers' verify.rs does it
// (capVerify: litentry/agent-terrier crates/agentkeys-worker-creds/src/
// verify.rs, index 55610666453).

var capOps = []string{"store", "fetch", "canonical_fetch", "append", "teardown", "classify", "channel_publish", "channel_subscribe", "speech_use"}
var dataClasses = []string{"credentials", "memory", "config", "channel", "speech"}

// CapPayload is verify.rs CapPayload, fields in its declaration order (the
// signature covers serde_json::to_vec of it).
type CapPayload struct {
	OperatorOmni  string `json:"operator_omni"`
	ActorOmni     string `json:"actor_omni"`
	Service       string `json:"service"`
	Op            string `json:"op"`
	DataClass     string `json:"data_class"`
	DeviceKeyHash string `json:"device_key_hash"`
	K3Epoch       uint64 `json:"k3_epoch"`
	IssuedAt      uint64 `json:"issued_at"`
	ExpiresAt     uint64 `json:"expires_at"`
	Nonce         string `json:"nonce"`
}

// CapToken is verify.rs CapToken.
type CapToken struct {
	Payload   CapPayload `json:"payload"`
	BrokerSig string     `json:"broker_sig"`
	ClientSig *string    `json:"client_sig,omitempty"`
	ClientTS  *uint64    `json:"client_ts,omitempty"`
	ClientNon *string    `json:"client_nonce,omitempty"`
}

// canonical is serde_json::to_vec(&payload): compact, declaration order, no
// HTML escaping.
func (p CapPayload) canonical() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(p)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// SignCap signs p as the broker does (cap.rs sign_cap_payload: ECDSA P-256
// over Sha256(json(payload)), which the p256 signer hashes once more;
// base64url, no padding): for tests of the workers' cap check.
func SignCap(k *ecdsa.PrivateKey, p CapPayload) (CapToken, error) {
	sig, err := signP256(k, sha256Sum(sha256Sum(p.canonical())))
	if err != nil {
		return CapToken{}, err
	}
	return CapToken{Payload: p, BrokerSig: b64url.EncodeToString(sig)}, nil
}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// decodeCap is serde's Deserialize of CapToken: every payload field
// required with its type, op and data_class from their enums.
func decodeCap(raw json.RawMessage) (*CapToken, error) {
	var top map[string]json.RawMessage
	if err := strictUnmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("cap: %v", err)
	}
	var t CapToken
	var pm map[string]json.RawMessage
	if err := decodeFields(top, field{name: "payload", dst: &pm}, field{name: "broker_sig", dst: &t.BrokerSig},
		field{name: "client_sig", dst: &t.ClientSig, optional: true}, field{name: "client_nonce", dst: &t.ClientNon, optional: true},
		field{name: "client_ts", dst: &t.ClientTS, optional: true}); err != nil {
		return nil, fmt.Errorf("cap: %v", err)
	}
	p := &t.Payload
	if err := decodeFields(pm, field{name: "operator_omni", dst: &p.OperatorOmni}, field{name: "actor_omni", dst: &p.ActorOmni},
		field{name: "service", dst: &p.Service}, field{name: "op", dst: &p.Op}, field{name: "data_class", dst: &p.DataClass},
		field{name: "device_key_hash", dst: &p.DeviceKeyHash}, field{name: "k3_epoch", dst: &p.K3Epoch},
		field{name: "issued_at", dst: &p.IssuedAt}, field{name: "expires_at", dst: &p.ExpiresAt}, field{name: "nonce", dst: &p.Nonce}); err != nil {
		return nil, fmt.Errorf("cap.payload: %v", err)
	}
	if !oneOf(p.Op, capOps) {
		return nil, fmt.Errorf("cap.payload.op: unknown variant `%s`", p.Op)
	}
	if !oneOf(p.DataClass, dataClasses) {
		return nil, fmt.Errorf("cap.payload.data_class: unknown variant `%s`", p.DataClass)
	}
	return &t, nil
}

// apiErr is the workers' ErrorBody response (errors.rs): {"error","reason"}.
type apiErr struct {
	status int
	msg    string
	reason string
}

func (e *apiErr) write(w http.ResponseWriter) {
	writeJSON(w, e.status, obj{{"error", e.msg}, {"reason", e.reason}})
}

func err403(msg, reason string) *apiErr { return &apiErr{http.StatusForbidden, msg, reason} }
func err502(msg, reason string) *apiErr { return &apiErr{http.StatusBadGateway, msg, reason} }

// chainErr is VerifyError from a chain check: a verdict (403) or a
// transport/parse failure (ChainRpc, 502 chain_rpc).
type chainErr struct {
	verdict string // "" = ChainRpc
	msg     string
}

func (e *chainErr) Error() string { return e.msg }

func rpcErr(format string, a ...any) *chainErr {
	return &chainErr{msg: "chain RPC error: " + fmt.Sprintf(format, a...)}
}

// capEnv is what verify_cap reads from the worker's config.
type capEnv struct {
	pubPEM, rpc, registry, scope, epoch string
	// namedVerdicts: the creds worker names each chain verdict; memory,
	// config and classify say chain_check_failed.
	namedVerdicts bool
	http          *http.Client
}

// verifyCap is the workers' verify_cap: signature, K10 PoP, op, data class,
// freshness, then the three chain checks.
func (c *capEnv) verifyCap(ctx context.Context, t *CapToken, op, class string) *apiErr {
	if err := verifySignature(c.pubPEM, t); err != nil {
		return err403(err.Error(), "broker_sig_invalid")
	}
	if err := enforceClientPop(t); err != nil {
		return err403(err.Error(), "cap_pop_invalid")
	}
	if t.Payload.Op != op {
		return err403(fmt.Sprintf("cap op %s does not match endpoint %s", t.Payload.Op, op), "cap_op_mismatch")
	}
	if t.Payload.DataClass != class {
		return err403(fmt.Sprintf("cap data_class %s does not match endpoint %s", t.Payload.DataClass, class), "cap_data_class_mismatch")
	}
	now := uint64(time.Now().Unix())
	if t.Payload.ExpiresAt <= now {
		return err403(fmt.Sprintf("cap expired at %d (now=%d)", t.Payload.ExpiresAt, now), "cap_freshness_failed")
	}
	if t.Payload.IssuedAt > now+60 {
		return err403(fmt.Sprintf("cap issued in the future at %d (now=%d)", t.Payload.IssuedAt, now), "cap_freshness_failed")
	}
	for _, check := range []func(context.Context, *CapToken) *chainErr{c.checkDevice, c.checkScope, c.checkEpoch} {
		if err := check(ctx, t); err != nil {
			switch {
			case err.verdict == "":
				return err502(err.msg, "chain_rpc")
			case c.namedVerdicts:
				return err403(err.msg, err.verdict)
			default:
				return err403(err.msg, "chain_check_failed")
			}
		}
	}
	return nil
}

// verifySignature is verify_signature: decode the signature, parse it, then
// parse the broker key (per request, p256 from_public_key_pem: an SPKI
// P-256 PEM), then verify over Sha256(json(payload)).
func verifySignature(pubPEM string, t *CapToken) error {
	digest := sha256Sum(t.Payload.canonical())
	sig, err := b64url.DecodeString(t.BrokerSig)
	if err != nil {
		return fmt.Errorf("signature decode (base64): %v", err)
	}
	if len(sig) != 64 || !validScalar(sig[:32]) || !validScalar(sig[32:]) {
		return errors.New("signature parse: signature error")
	}
	pub, err := contract.ParseSPKIP256([]byte(pubPEM))
	if err != nil {
		return fmt.Errorf("broker public key parse: %v", err)
	}
	if !verifyES256(pub, digest, sig) {
		return errors.New("signature verify failed")
	}
	return nil
}

var p256N, _ = new(big.Int).SetString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

func validScalar(b []byte) bool {
	n := new(big.Int).SetBytes(b)
	return n.Sign() > 0 && n.Cmp(p256N) < 0
}

// enforceClientPop is enforce_client_pop. A supplied client_sig is always
// checked; recovering its secp256k1 signer is beyond the stand-in, so a
// fresh one is refused as invalid (say so rather than accept it).
func enforceClientPop(t *CapToken) error {
	if t.ClientSig == nil {
		if oneOf(envOr("AGENTKEYS_WORKER_REQUIRE_CAP_POP", ""), []string{"1", "true", "yes"}) {
			return errors.New("cap K10 proof-of-possession missing (no client_sig) — broker-only caps are rejected")
		}
		return nil
	}
	if t.ClientNon == nil || t.ClientTS == nil {
		return errors.New("cap K10 proof-of-possession missing (no client_sig) — broker-only caps are rejected")
	}
	now := uint64(time.Now().Unix())
	if *t.ClientTS > now+60 || (now > *t.ClientTS && now-*t.ClientTS > 300) {
		return fmt.Errorf("cap K10 proof-of-possession stale (client_ts %d, now %d)", *t.ClientTS, now)
	}
	return errors.New("cap K10 proof-of-possession invalid: the stand-in cannot recover secp256k1 signatures")
}

func selector(sig string) string { return hex.EncodeToString(keccak256([]byte(sig))[:4]) }

func pad32(s string) (string, *chainErr) {
	t := strings.TrimPrefix(s, "0x")
	if len(t) != 64 {
		return "", rpcErr("expected 64-hex (32 bytes), got %d chars", len(t))
	}
	return strings.ToLower(t), nil
}

func (c *capEnv) checkDevice(ctx context.Context, t *CapToken) *chainErr {
	arg, err := pad32(t.Payload.DeviceKeyHash)
	if err != nil {
		return err
	}
	raw, err := c.ethCall(ctx, c.registry, "0x"+selector("getDevice(bytes32)")+arg)
	if err != nil {
		return err
	}
	h := strings.TrimPrefix(raw, "0x")
	if len(h) < 11*64 {
		return rpcErr("getDevice returned %d bytes; expected ≥ 11×32 (post codex H1 struct)", len(h)/2)
	}
	roles, _ := strconv.ParseUint(h[7*64+62:7*64+64], 16, 8)
	registered, _ := strconv.ParseUint(h[8*64+48:8*64+64], 16, 64)
	revoked := strings.HasSuffix(strings.TrimLeft(h[10*64:11*64], "0"), "1")
	lc := func(s string) string { return strings.ToLower(strings.TrimPrefix(s, "0x")) }
	switch {
	case registered == 0 || revoked:
		return &chainErr{"device_inactive", "device not registered or revoked"}
	case strings.ToLower(h[0:64]) != lc(t.Payload.OperatorOmni):
		return &chainErr{"device_binding_mismatch", "device binding mismatch on operator_omni"}
	case strings.ToLower(h[64:128]) != lc(t.Payload.ActorOmni):
		return &chainErr{"device_binding_mismatch", "device binding mismatch on actor_omni"}
	case roles&1 == 0:
		return &chainErr{"device_role_missing", fmt.Sprintf("device lacks CAP_MINT role (got 0x%02x)", roles)}
	}
	return nil
}

func (c *capEnv) checkScope(ctx context.Context, t *CapToken) *chainErr {
	a, err := pad32(t.Payload.OperatorOmni)
	if err != nil {
		return err
	}
	b, err := pad32(t.Payload.ActorOmni)
	if err != nil {
		return err
	}
	if a == b { // master-self: the scope check is skipped
		return nil
	}
	svc := hex.EncodeToString(keccak256([]byte(strings.ToLower(t.Payload.Service))))
	raw, err := c.ethCall(ctx, c.scope, "0x"+selector("isServiceInScope(bytes32,bytes32,bytes32)")+a+b+svc)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(strings.TrimLeft(strings.TrimPrefix(raw, "0x"), "0"), "1") {
		return &chainErr{"service_not_in_scope", "requested service not in agent's on-chain scope"}
	}
	return nil
}

func (c *capEnv) checkEpoch(ctx context.Context, t *CapToken) *chainErr {
	raw, err := c.ethCall(ctx, c.epoch, "0x"+selector("currentEpoch()"))
	if err != nil {
		return err
	}
	n, perr := strconv.ParseUint(strings.TrimPrefix(raw, "0x"), 16, 64)
	if perr != nil {
		return rpcErr("u64 parse: %v", perr)
	}
	if n != t.Payload.K3Epoch {
		return &chainErr{"k3_epoch_mismatch", fmt.Sprintf("K3 epoch mismatch (expected %d, got %d)", n, t.Payload.K3Epoch)}
	}
	return nil
}

// ethCall is verify.rs eth_call: 5 attempts, backoff 150/300/600/1200 ms,
// retrying transport errors, 5xx, non-JSON bodies and rate-limit JSON-RPC
// errors; any other JSON-RPC error is final.
func (c *capEnv) ethCall(ctx context.Context, to, data string) (string, *chainErr) {
	body, _ := json.Marshal(obj{{"jsonrpc", "2.0"}, {"method", "eth_call"},
		{"params", []any{obj{{"to", to}, {"data", data}}, "latest"}}, {"id", 1}})
	const attempts = 5
	last := ""
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-time.After(time.Duration(150<<(i-1)) * time.Millisecond):
			case <-ctx.Done():
				return "", rpcErr("%v", ctx.Err())
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.rpc, bytes.NewReader(body))
		if err != nil {
			last = "eth_call POST: builder error: " + err.Error()
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			last = "eth_call POST: " + err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			last = fmt.Sprintf("eth_call HTTP %d", resp.StatusCode)
			continue
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			last = "eth_call json: " + err.Error()
			continue
		}
		m, _ := v.(map[string]any)
		if e, ok := m["error"]; ok {
			if rateLimited(e) {
				last = fmt.Sprintf("eth_call rate-limited: %v", e)
				continue
			}
			eb, _ := json.Marshal(e)
			return "", rpcErr("rpc error: %s", eb)
		}
		if r, ok := m["result"].(string); ok {
			return r, nil
		}
		return "", rpcErr("missing 'result'")
	}
	return "", rpcErr("eth_call failed after %d attempts: %s", attempts, last)
}

func rateLimited(e any) bool {
	m, _ := e.(map[string]any)
	if code, ok := m["code"].(float64); ok && (code == -32016 || code == -32005 || code == -32029) {
		return true
	}
	msg, _ := m["message"].(string)
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "rate limit") || strings.Contains(msg, "too many requests") || strings.Contains(msg, "limit exceeded")
}

// stsCreds is the OptionalStsCreds extractor (awsCreds): all three X-Aws-*
// headers non-empty, or none; partial is always 401, none is 401 when
// AGENTKEYS_WORKER_REQUIRE_STS is 1 or true (any case). Plain-text body.
func stsCreds(w http.ResponseWriter, r *http.Request) bool {
	names := []string{"X-Aws-Access-Key-Id", "X-Aws-Secret-Access-Key", "X-Aws-Session-Token"}
	some, all := false, true
	for _, n := range names {
		_, present := r.Header[n]
		some = some || present
		all = all && r.Header.Get(n) != ""
	}
	switch {
	case all:
		return true
	case some:
		writeText(w, http.StatusUnauthorized, "partial X-Aws-* headers — must pass all three (X-Aws-Access-Key-Id, X-Aws-Secret-Access-Key, X-Aws-Session-Token) or none")
		return false
	}
	if v := envOr("AGENTKEYS_WORKER_REQUIRE_STS", ""); v == "1" || strings.EqualFold(v, "true") {
		writeText(w, http.StatusUnauthorized, "AGENTKEYS_WORKER_REQUIRE_STS=1 — request must carry OIDC-minted STS creds via X-Aws-* headers")
		return false
	}
	return true
}

// unimplemented is the stand-in's answer once every check the real binary
// runs before its AWS/secp256k1 work has passed.
func unimplemented(w http.ResponseWriter, what string) {
	writeJSON(w, http.StatusNotImplemented, obj{{"error", "standin_unimplemented"}, {"message", "the stand-in does not " + what}})
}
