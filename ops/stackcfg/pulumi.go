package stackcfg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pulumi reads a stack's outputs and history through the pulumi CLI with
// --stack on every call: it never runs `pulumi stack select`, so the
// operator's current stack (the workspace file) is left as it was, and it
// never passes --show-secrets, so secret outputs stay "[secret]".
type Pulumi struct {
	Bin string // the CLI
	Dir string // the project directory (Pulumi.yaml)
	Env []string
}

// ErrNoCLI is returned by FindPulumi when no CLI is installed.
var ErrNoCLI = errors.New("no pulumi CLI (AGENTKEYS_PULUMI, <project>/bin/pulumi or PATH)")

// FindPulumi locates the CLI: $AGENTKEYS_PULUMI, <projectDir>/bin/pulumi
// (make deps builds it there), else pulumi on PATH.
func FindPulumi(projectDir string) (*Pulumi, error) {
	cands := []string{os.Getenv("AGENTKEYS_PULUMI"), filepath.Join(projectDir, "bin", "pulumi")}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return &Pulumi{Bin: c, Dir: projectDir}, nil
		}
	}
	if p, err := exec.LookPath("pulumi"); err == nil {
		return &Pulumi{Bin: p, Dir: projectDir}, nil
	}
	return nil, ErrNoCLI
}

func (p *Pulumi) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Bin, append(args, "--non-interactive", "--cwd", p.Dir)...)
	cmd.Env = append(os.Environ(), p.Env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, &CLIError{Cmd: "pulumi " + strings.Join(args[:2], " "), Msg: strings.TrimPrefix(msg, "error: ")}
	}
	return out.Bytes(), nil
}

// CLIError is a failed pulumi command and the first line it printed.
type CLIError struct{ Cmd, Msg string }

func (e *CLIError) Error() string { return e.Cmd + ": " + e.Msg }

// Outputs are one stack's outputs; secret values read "[secret]".
type Outputs map[string]any

// String is output key as a string ("" when absent or not a string).
func (o Outputs) String(key string) string {
	s, _ := o[key].(string)
	return s
}

// Outputs runs `pulumi stack output --json --stack <stack>`.
func (p *Pulumi) Outputs(ctx context.Context, stack string) (Outputs, error) {
	b, err := p.run(ctx, "stack", "output", "--json", "--stack", stack)
	if err != nil {
		return nil, err
	}
	var o Outputs
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("pulumi stack output --stack %s: not JSON: %v", stack, err)
	}
	return o, nil
}

// Update is one entry of a stack's history.
type Update struct {
	Kind   string    `json:"kind"`   // update, refresh, destroy, import, ...
	Result string    `json:"result"` // succeeded, failed, in-progress
	End    time.Time `json:"end"`
}

// LastUpdate runs `pulumi stack history --json --page-size 1 --stack
// <stack>`; false when the stack has no history.
func (p *Pulumi) LastUpdate(ctx context.Context, stack string) (Update, bool, error) {
	b, err := p.run(ctx, "stack", "history", "--json", "--page-size", "1", "--page", "1", "--stack", stack)
	if err != nil {
		return Update{}, false, err
	}
	var h []struct {
		Kind      string `json:"kind"`
		Result    string `json:"result"`
		StartTime string `json:"startTime"`
		EndTime   string `json:"endTime"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return Update{}, false, fmt.Errorf("pulumi stack history --stack %s: not JSON: %v", stack, err)
	}
	if len(h) == 0 {
		return Update{}, false, nil
	}
	u := Update{Kind: h[0].Kind, Result: h[0].Result}
	when := h[0].EndTime
	if when == "" {
		when = h[0].StartTime
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05.999999999 -0700 MST"} {
		if t, err := time.Parse(layout, when); err == nil {
			u.End = t
			break
		}
	}
	return u, true, nil
}
