// Package iamsim evaluates IAM requests with a real policy evaluator that no
// one here wrote: @cloud-copilot/iam-simulate, run by node on eval.mjs beside
// this file. Test-only; install with `npm ci --prefix test/iamsim`.
package iamsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Decisions the evaluator returns.
const (
	Allowed          = "Allowed"
	ExplicitlyDenied = "ExplicitlyDenied"
	ImplicitlyDenied = "ImplicitlyDenied"
	Error            = "Error"
)

// NamedPolicy is an identity policy attached to the requesting principal.
type NamedPolicy struct {
	Name   string `json:"name"`
	Policy any    `json:"policy"` // a policy.Document or any JSON-marshalable document
}

// Request is one API call to evaluate.
type Request struct {
	Name             string         `json:"name"`
	Principal        string         `json:"principal"` // user/role/assumed-role ARN, OIDC provider ARN, or service principal
	Action           string         `json:"action"`
	Resource         string         `json:"resource"`
	ResourceAccount  string         `json:"resourceAccount"`
	IdentityPolicies []NamedPolicy  `json:"identityPolicies"`
	ResourcePolicy   any            `json:"resourcePolicy,omitempty"` // bucket or trust policy
	Context          map[string]any `json:"context"`                  // string or []string values
	// UnlistedKeys are context keys the evaluator's service data does not know
	// for the action (e.g. "<issuer host>:aud"); only these may be dropped by
	// its validated engine, which then re-evaluates with the full context.
	UnlistedKeys []string `json:"unlistedKeys,omitempty"`
	// SessionPolicy is the inline policy passed to AssumeRole* (Principal
	// must then be a role session); only the validated engine applies it.
	SessionPolicy any `json:"sessionPolicy,omitempty"`
	// Boundaries are the principal's permissions boundary (at most one in IAM).
	Boundaries []NamedPolicy `json:"permissionBoundaries,omitempty"`
}

// Decision is the evaluator's answer to one Request.
type Decision struct {
	Name               string   `json:"name"`
	Decision           string   `json:"decision"`
	Engine             string   `json:"engine,omitempty"`
	IgnoredContextKeys []string `json:"ignoredContextKeys,omitempty"`
	Error              string   `json:"error,omitempty"`
}

// Dir is the directory holding eval.mjs and node_modules.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Available reports why the evaluator cannot run, or nil.
func Available() error {
	if _, err := exec.LookPath("node"); err != nil {
		return errors.New("node not found in PATH (apt-get install nodejs)")
	}
	p := filepath.Join(Dir(), "node_modules", "@cloud-copilot", "iam-simulate", "package.json")
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("@cloud-copilot/iam-simulate not installed (run: npm ci --prefix test/iamsim): %v", err)
	}
	return nil
}

// Require skips t when the evaluator is missing, unless AGENTKEYS_E2E=1,
// where a missing evaluator fails the test.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatalf("IAM evaluator required (AGENTKEYS_E2E=1): %v", err)
		}
		t.Skipf("IAM evaluator unavailable: %v", err)
	}
}

// Evaluate runs every request in one node process and returns the decisions
// in request order. It fails on a process error, not on Error decisions:
// callers assert on those.
func Evaluate(ctx context.Context, reqs []Request) ([]Decision, error) {
	in, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "node", "eval.mjs")
	cmd.Dir = Dir()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("node eval.mjs: %v: %s", err, stderr.String())
	}
	var out []Decision
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("decode evaluator output: %v", err)
	}
	if len(out) != len(reqs) {
		return nil, fmt.Errorf("evaluator answered %d of %d requests", len(out), len(reqs))
	}
	for i := range out {
		if out[i].Name != reqs[i].Name {
			return nil, fmt.Errorf("evaluator answer %d is for %q, want %q", i, out[i].Name, reqs[i].Name)
		}
	}
	return out, nil
}
