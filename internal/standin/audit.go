package standin

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The audit worker's queue and flush (auditState: litentry/agent-terrier
// crates/agentkeys-worker-audit/src/state.rs @4bf7dd84; merkle.rs
// @c71b44b6, index 55715272004). Flushing drains the queue first and then
// writes <leaves_dir>/audit-leaves-<root>.jsonl; the directory is never
// created, so a missing one fails the flush and the batch is lost.

type auditEvent struct {
	ActorOmni   string `json:"actor_omni"`
	ServiceHash string `json:"service_hash"`
	OpType      uint8  `json:"op_type"`
	PayloadHash string `json:"payload_hash"`
	Timestamp   uint64 `json:"timestamp"`
}

type auditState struct {
	mu        sync.Mutex
	leavesDir string
	queues    map[string][]auditEvent
}

type flushResult struct {
	OperatorOmni  string       `json:"operator_omni"`
	MerkleRootHex string       `json:"merkle_root_hex"`
	EntryCount    uint64       `json:"entry_count"`
	LeavesPath    string       `json:"leaves_path"`
	Events        []auditEvent `json:"events"`
}

func (s *auditState) appendHandler(rt *router) func(http.ResponseWriter, *http.Request, map[string]string) {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		body, ok := rt.jsonBody(w, r)
		if !ok {
			return
		}
		var op string
		var e auditEvent
		if err := decodeFields(body, field{name: "operator_omni", dst: &op}, field{name: "actor_omni", dst: &e.ActorOmni},
			field{name: "service_hash", dst: &e.ServiceHash}, field{name: "op_type", dst: &e.OpType},
			field{name: "payload_hash", dst: &e.PayloadHash}, field{name: "timestamp", dst: &e.Timestamp}); err != nil {
			dataError(w, err)
			return
		}
		if e.Timestamp == 0 {
			e.Timestamp = uint64(time.Now().Unix())
		}
		s.mu.Lock()
		s.queues[op] = append(s.queues[op], e)
		n := len(s.queues[op])
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, obj{{"ok", true}, {"queue_size", n}})
	}
}

// flushHandler flushes ops (nil: every queue) and answers as flush_one /
// flush_all do: 500 with the error text, else {"ok":true,"flushed":[...]}.
func (s *auditState) flushHandler(w http.ResponseWriter, ops []string) {
	rs, err := s.flush(ops)
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	if rs == nil {
		rs = []flushResult{}
	}
	writeJSON(w, http.StatusOK, obj{{"ok", true}, {"flushed", rs}})
}

func (s *auditState) flush(ops []string) ([]flushResult, error) {
	if ops == nil {
		s.mu.Lock()
		for op := range s.queues {
			ops = append(ops, op)
		}
		s.mu.Unlock()
		sort.Strings(ops)
	}
	var out []flushResult
	for _, op := range ops {
		s.mu.Lock()
		events := s.queues[op]
		delete(s.queues, op)
		s.mu.Unlock()
		if len(events) == 0 {
			continue
		}
		leaves := make([][]byte, len(events))
		for i, e := range events {
			leaves[i] = eventLeaf(e)
		}
		root := "0x" + hex.EncodeToString(merkleRoot(leaves))
		path := fmt.Sprintf("%s/audit-leaves-%s.jsonl", s.leavesDir, root[2:])
		var b bytes.Buffer
		for i, e := range events {
			var proof []string
			for _, p := range merkleProof(leaves, i) {
				proof = append(proof, "0x"+hex.EncodeToString(p))
			}
			if proof == nil {
				proof = []string{}
			}
			// json! builds a map: keys come out sorted, the event's too.
			line, _ := json.Marshal(map[string]any{"leaf_index": i, "leaf": "0x" + hex.EncodeToString(leaves[i]), "proof": proof,
				"event": map[string]any{"actor_omni": e.ActorOmni, "service_hash": e.ServiceHash, "op_type": e.OpType, "payload_hash": e.PayloadHash, "timestamp": e.Timestamp}})
			b.Write(line)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(hostPath(path), b.Bytes(), 0o644); err != nil {
			return nil, rustIOError(err)
		}
		out = append(out, flushResult{op, root, uint64(len(events)), path, events})
	}
	return out, nil
}

func (s *auditState) timer(p *proc, secs uint64) {
	t := time.NewTicker(time.Duration(secs) * time.Second)
	for range t.C { // the first tick is skipped, as tokio's interval is
		rs, err := s.flush(nil)
		if err != nil {
			p.logf("ERROR flush failed: %v", err)
			continue
		}
		for _, r := range rs {
			p.logf("auto-flush: Merkle root ready for on-chain appendRoot operator_omni=%s entries=%d root=%s leaves=%s", r.OperatorOmni, r.EntryCount, r.MerkleRootHex, r.LeavesPath)
		}
	}
}

// rustIOError renders err as std::io::Error's Display: "<strerror> (os
// error N)".
func rustIOError(err error) error {
	var no syscall.Errno
	if errors.As(err, &no) {
		msg := no.Error()
		return fmt.Errorf("%s%s (os error %d)", strings.ToUpper(msg[:1]), msg[1:], int(no))
	}
	return err
}

// decode32 is state.rs decode32: strip every leading "0x", hex-decode (an
// error gives nothing), copy at most 32 bytes.
func decode32(s string) []byte {
	for strings.HasPrefix(s, "0x") {
		s = s[2:]
	}
	out := make([]byte, 32)
	if v, err := hex.DecodeString(s); err == nil {
		copy(out, v)
	}
	return out
}

// eventLeaf is keccak256(abi.encode(actor, service, op_type, payload_hash,
// timestamp)).
func eventLeaf(e auditEvent) []byte {
	op := make([]byte, 32)
	op[31] = e.OpType
	ts := make([]byte, 32)
	binary.BigEndian.PutUint64(ts[24:], e.Timestamp)
	return keccak256(decode32(e.ActorOmni), decode32(e.ServiceHash), op, decode32(e.PayloadHash), ts)
}

func leafPrefix(l []byte) []byte { return keccak256([]byte{0x00}, l) }

func hashPair(a, b []byte) []byte {
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	return keccak256([]byte{0x01}, a, b)
}

func nextLevel(level [][]byte) [][]byte {
	var next [][]byte
	for i := 0; i < len(level); i += 2 {
		r := level[i]
		if i+1 < len(level) {
			r = level[i+1]
		}
		next = append(next, hashPair(level[i], r))
	}
	return next
}

func prefixed(leaves [][]byte) [][]byte {
	level := make([][]byte, len(leaves))
	for i, l := range leaves {
		level[i] = leafPrefix(l)
	}
	return level
}

// merkleRoot: sorted pairs, leaves domain-prefixed 0x00, nodes 0x01, an odd
// node paired with itself.
func merkleRoot(leaves [][]byte) []byte {
	if len(leaves) == 0 {
		return make([]byte, 32)
	}
	level := prefixed(leaves)
	for len(level) > 1 {
		level = nextLevel(level)
	}
	return level[0]
}

func merkleProof(leaves [][]byte, idx int) [][]byte {
	var proof [][]byte
	level := prefixed(leaves)
	for len(level) > 1 {
		sib := level[idx]
		if idx%2 == 0 && idx+1 < len(level) {
			sib = level[idx+1]
		} else if idx%2 == 1 {
			sib = level[idx-1]
		}
		proof = append(proof, sib)
		level = nextLevel(level)
		idx /= 2
	}
	return proof
}
