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
}

// Step is one named, idempotent phase of a converge.
type Step interface {
	Name() string
	Run(ctx context.Context, env *Env) (Result, error)
}
