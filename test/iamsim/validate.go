package iamsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"
)

// Policy kinds the validator knows.
const (
	KindIdentity = "identity"
	KindTrust    = "trust"
	KindResource = "resource"
)

// ValidateInput is one document to check.
type ValidateInput struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Policy any    `json:"policy"`
}

// ValidateResult lists the validator's complaints; empty means valid.
type ValidateResult struct {
	Name   string   `json:"name"`
	Errors []string `json:"errors"`
}

// Validate checks document syntax with @cloud-copilot/iam-policy.
func Validate(ctx context.Context, docs []ValidateInput) ([]ValidateResult, error) {
	in, err := json.Marshal(docs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "validate.mjs")
	cmd.Dir = Dir()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("node validate.mjs: %v: %s", err, stderr.String())
	}
	var out []ValidateResult
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("decode validator output: %v", err)
	}
	if len(out) != len(docs) {
		return nil, fmt.Errorf("validator answered %d of %d documents", len(out), len(docs))
	}
	return out, nil
}
