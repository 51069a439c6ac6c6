// Package agent is the host agent's step framework: named, idempotent phases
// that each report changed, ok or skipped, and counters of what a run did.
package agent

import (
	"context"
	"io"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Status is the outcome of one step.
type Status string

const (
	Changed Status = "changed"
	OK      Status = "ok"
	Skipped Status = "skipped"
	Failed  Status = "failed"
)

// Result is what one step reports.
type Result struct {
	Step    string         `json:"step"`
	Status  Status         `json:"status"`
	Reason  string         `json:"reason,omitempty"`  // why skipped or failed
	Changes []string       `json:"changes,omitempty"` // what changed (or would change, in plan)
	Detail  map[string]any `json:"detail,omitempty"`  // step-specific facts (hosts issued, health...)
}

// Counters are what a run did to the host; a no-op apply leaves them all zero.
type Counters struct {
	FilesWritten int `json:"filesWritten"`
	Restarts     int `json:"restarts"`
	Reloads      int `json:"reloads"`
	ACMEOrders   int `json:"acmeOrders"`
}

// Env is what every step gets.
type Env struct {
	Spec *spec.HostSpec
	// Root prefixes every host path (empty on a real host, a sandbox dir in tests).
	Root string
	// DryRun: compute and report changes, write nothing (the plan command).
	DryRun   bool
	Log      io.Writer
	Counters *Counters
	// Sys is the host beyond files (commands, systemd, users, nginx).
	Sys System
	// Report collects hosts and health facts for the JSON summary.
	Report *Report
	// runs maps the runner's steps to whether this run carries them out
	// (set by Runner.Run).
	runs map[string]bool
}

// WillRun reports whether the named step runs in this run: false when
// --only leaves it out or --skip stands in for it; true for a step the
// runner does not have, or outside a runner. A step uses it to leave out
// preparations only another step needs (the toolchain for the build).
func (e *Env) WillRun(step string) bool {
	runs, known := e.runs[step]
	return !known || runs
}

// Skip stands in for a step left out of a run (--skip): it reports the
// step skipped with reason, and WillRun says it does not run.
func Skip(name, reason string) Step { return skippedStep{name, reason} }

type skippedStep struct{ name, reason string }

func (s skippedStep) Name() string { return s.name }
func (s skippedStep) Run(context.Context, *Env) (Result, error) {
	return Result{Step: s.name, Status: Skipped, Reason: s.reason}, nil
}

// Step is one named, idempotent phase of a converge.
type Step interface {
	Name() string
	Run(ctx context.Context, env *Env) (Result, error)
}
