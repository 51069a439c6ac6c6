package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// InputError is bad input (spec, identity): the CLI exits 2 and nothing was changed.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// BadInput wraps err as an InputError.
func BadInput(err error) error { return &InputError{Err: err} }

// IsBadInput reports whether err is (or wraps) an InputError.
func IsBadInput(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// Summary is the machine-readable outcome of one run (--json).
type Summary struct {
	Stack    string                 `json:"stack"`
	Issuer   string                 `json:"issuer"`
	DryRun   bool                   `json:"dryRun"`
	Steps    []Result               `json:"steps"`
	Counters Counters               `json:"counters"`
	Hosts    HostsSummary           `json:"hosts"`
	Health   map[string]HealthCheck `json:"health"`
	Error    string                 `json:"error,omitempty"`
}

// Runner runs steps in order. Guard, when set, runs first on every run,
// including single-step runs, so that a host belonging to another stack is
// refused before any step changes anything.
type Runner struct {
	Guard Step
	Steps []Step
	// Out receives one progress line per step (and detail lines for changes).
	Out io.Writer
	// Lock, when set, is taken once the run's input is checked and before
	// any step runs, and released when the run ends (LockRun).
	Lock func(ctx context.Context) (unlock func(), err error)
}

// Names lists the runnable step names in order.
func (r *Runner) Names() []string {
	var out []string
	if r.Guard != nil {
		out = append(out, r.Guard.Name())
	}
	for _, s := range r.Steps {
		out = append(out, s.Name())
	}
	return out
}

// Run runs the guard then every step (or only the named ones), stopping at
// the first error. The summary is complete up to the failing step.
func (r *Runner) Run(ctx context.Context, env *Env, only ...string) (*Summary, error) {
	if env.Counters == nil {
		env.Counters = &Counters{}
	}
	if env.Report == nil {
		env.Report = &Report{}
	}
	if _, counted := env.Sys.(countingSystem); env.Sys != nil && !counted {
		sys := env.Sys
		env.Sys = countingSystem{System: sys, env: env}
		defer func() { env.Sys = sys }()
	}
	sum := &Summary{DryRun: env.DryRun, Steps: []Result{}}
	if env.Spec != nil {
		sum.Stack, sum.Issuer = env.Spec.Stack, env.Spec.Issuer
	}
	want := map[string]bool{}
	for _, o := range only {
		want[o] = true
	}
	known := map[string]bool{}
	for _, n := range r.Names() {
		known[n] = true
	}
	for o := range want {
		if !known[o] {
			return r.finish(sum, env, BadInput(fmt.Errorf("unknown step %q; steps are: %s", o, strings.Join(r.Names(), ", "))))
		}
	}
	if r.Lock != nil {
		unlock, err := r.Lock(ctx)
		if err != nil {
			return r.finish(sum, env, err)
		}
		defer unlock()
	}
	var list []Step
	if r.Guard != nil {
		list = append(list, r.Guard)
	}
	for _, s := range r.Steps {
		if len(want) == 0 || want[s.Name()] {
			list = append(list, s)
		}
	}
	env.runs = map[string]bool{}
	for _, s := range r.Steps {
		env.runs[s.Name()] = false
	}
	for _, s := range list {
		if _, left := s.(skippedStep); !left {
			env.runs[s.Name()] = true
		}
	}
	for _, s := range list {
		if err := ctx.Err(); err != nil {
			return r.finish(sum, env, err)
		}
		res, err := s.Run(ctx, env)
		if res.Step == "" {
			res.Step = s.Name()
		}
		if err != nil {
			res.Status, res.Reason = Failed, err.Error()
			sum.Steps = append(sum.Steps, res)
			r.line(res)
			return r.finish(sum, env, fmt.Errorf("%s: %w", s.Name(), err))
		}
		if res.Status == "" {
			res.Status = OK
			if len(res.Changes) > 0 {
				res.Status = Changed
			}
		}
		sum.Steps = append(sum.Steps, res)
		r.line(res)
	}
	return r.finish(sum, env, nil)
}

func (r *Runner) finish(sum *Summary, env *Env, err error) (*Summary, error) {
	sum.Counters = *env.Counters
	sum.Hosts = env.Report.Hosts()
	sum.Health = env.Report.HealthChecks()
	if err != nil {
		sum.Error = err.Error()
	}
	return sum, err
}

func (r *Runner) line(res Result) {
	if r.Out == nil {
		return
	}
	// A reason is shown whatever the status: an ok step may carry one (a
	// failed renewal while the current certificate still serves).
	if res.Reason != "" {
		fmt.Fprintf(r.Out, "%s: %s: %s\n", res.Step, res.Status, res.Reason)
	} else {
		fmt.Fprintf(r.Out, "%s: %s\n", res.Step, res.Status)
	}
	for _, c := range res.Changes {
		fmt.Fprintf(r.Out, "  %s\n", c)
	}
}

// WriteJSON writes the summary as one indented JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
