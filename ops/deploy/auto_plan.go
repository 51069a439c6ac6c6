package deploy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
)

// The prod gate needs the real engine to save and run plans.
var _ PlanEngine = AutoEngine{}

// PreviewPlan runs pulumi preview --save-plan planFile.
func (e AutoEngine) PreviewPlan(ctx context.Context, name, planFile string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	return PreviewPlanOn(ctx, s, planFile, e.progress())
}

// UpPlan runs pulumi up --plan planFile.
func (e AutoEngine) UpPlan(ctx context.Context, name, planFile string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	return UpPlanOn(ctx, s, planFile, e.progress())
}

// collectWithErrors is collect plus the engine's error diagnostics (a plan
// violation is reported there, not in the CLI's exit error).
func collectWithErrors() (chan events.EngineEvent, func() ([]Step, []string)) {
	ch := make(chan events.EngineEvent)
	done := make(chan struct{})
	var steps []Step
	var diags []string
	go func() {
		defer close(done)
		for ev := range ch {
			if ev.ResourcePreEvent != nil {
				m := ev.ResourcePreEvent.Metadata
				steps = append(steps, Step{Op: string(m.Op), URN: m.URN, Type: m.Type})
			}
			if d := ev.DiagnosticEvent; d != nil && d.Severity == "error" {
				diags = append(diags, strings.TrimSpace(d.Message))
			}
		}
	}()
	return ch, func() ([]Step, []string) {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return steps, diags
	}
}

// tail keeps the last bytes of the engine's progress output (Pulumi masks
// secrets in it): where a failed run says why.
type tail struct {
	w   io.Writer
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if n := len(t.buf); n > 64<<10 {
		t.buf = t.buf[n-64<<10:]
	}
	return t.w.Write(p)
}

// withDiags adds the engine's error lines to the CLI's bare exit error.
func withDiags(err error, diags []string, out *tail) error {
	if err == nil {
		return nil
	}
	seen := map[string]bool{}
	var why []string
	for _, l := range append(diags, strings.Split(string(out.buf), "\n")...) {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, "error: "); i >= 0 && !seen[l[i:]] {
			seen[l[i:]] = true
			why = append(why, l[i+len("error: "):])
		}
	}
	if len(why) == 0 {
		return err
	}
	// The CLI's error repeats the whole log; its first line and the errors suffice.
	first, _, _ := strings.Cut(err.Error(), "\n")
	return fmt.Errorf("%s: %s", first, strings.Join(why, "; "))
}

// PreviewPlanOn previews stack s and saves the plan (any Automation API
// stack: local or inline program).
func PreviewPlanOn(ctx context.Context, s auto.Stack, planFile string, progress io.Writer) (Result, error) {
	if progress == nil {
		progress = io.Discard
	}
	out := &tail{w: progress}
	ch, wait := collectWithErrors()
	res, err := s.Preview(ctx, optpreview.Plan(planFile), optpreview.EventStreams(ch), optpreview.ProgressStreams(out))
	steps, diags := wait()
	if err != nil {
		return Result{Steps: steps}, withDiags(err, diags, out)
	}
	r := Result{Steps: steps, Counts: map[string]int{}}
	for op, n := range res.ChangeSummary {
		r.Counts[string(op)] = n
	}
	return r, nil
}

// UpPlanOn updates stack s constrained to planFile: the engine fails instead
// of doing anything the plan does not hold.
func UpPlanOn(ctx context.Context, s auto.Stack, planFile string, progress io.Writer) (Result, error) {
	if progress == nil {
		progress = io.Discard
	}
	out := &tail{w: progress}
	ch, wait := collectWithErrors()
	res, err := s.Up(ctx, optup.Plan(planFile), optup.EventStreams(ch), optup.ProgressStreams(out))
	steps, diags := wait()
	r := fromSummary(res.Summary.ResourceChanges, steps)
	r.Outputs = outputs(res.Outputs)
	return r, withDiags(err, diags, out)
}
