package deploy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/opthistory"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optrefresh"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
)

// AutoEngine is the real Engine: the Automation API over the project in
// WorkDir (needs the pulumi CLI on PATH and a logged-in backend).
type AutoEngine struct {
	WorkDir  string
	Progress io.Writer // engine progress (secrets masked by Pulumi); nil = discard
}

// selectMu serializes stack selection: `pulumi stack select` rewrites the
// project's workspace.json, which concurrent selects corrupt
// (pulumi/pulumi#8186). Operations themselves pass --stack and run in parallel.
var selectMu sync.Mutex

func (e AutoEngine) stack(ctx context.Context, name string) (auto.Stack, error) {
	selectMu.Lock()
	defer selectMu.Unlock()
	s, err := auto.UpsertStackLocalSource(ctx, name, e.WorkDir)
	if err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s in %s: %w", name, e.WorkDir, err)
	}
	return s, nil
}

func (e AutoEngine) progress() io.Writer {
	if e.Progress == nil {
		return io.Discard
	}
	return e.Progress
}

// collect gathers step events until the engine closes the channel.
func collect() (chan events.EngineEvent, func() []Step) {
	ch := make(chan events.EngineEvent)
	done := make(chan struct{})
	var steps []Step
	go func() {
		defer close(done)
		for ev := range ch {
			if ev.ResourcePreEvent != nil {
				m := ev.ResourcePreEvent.Metadata
				steps = append(steps, Step{Op: string(m.Op), URN: m.URN, Type: m.Type})
			}
		}
	}()
	return ch, func() []Step {
		// The engine closes the channel when its stream ends; an operation that
		// failed before streaming may never do so.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return steps
	}
}

func stepCounts(steps []Step) map[string]int {
	m := map[string]int{}
	for _, s := range steps {
		m[s.Op]++
	}
	return m
}

func fromSummary(rc *map[string]int, steps []Step) Result {
	r := Result{Steps: steps, Counts: stepCounts(steps)}
	if rc != nil {
		r.Counts = *rc
	}
	return r
}

func outputs(m auto.OutputMap) map[string]Output {
	out := map[string]Output{}
	for k, v := range m {
		out[k] = Output{Value: v.Value, Secret: v.Secret}
	}
	return out
}

// Preview runs pulumi preview.
func (e AutoEngine) Preview(ctx context.Context, name string) (Result, error) {
	s, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	ch, wait := collect()
	res, err := s.Preview(ctx, optpreview.EventStreams(ch), optpreview.ProgressStreams(e.progress()))
	steps := wait()
	if err != nil {
		return Result{Steps: steps}, err
	}
	r := Result{Steps: steps, Counts: map[string]int{}}
	for op, n := range res.ChangeSummary {
		r.Counts[string(op)] = n
	}
	return r, nil
}

// Up runs pulumi up.
func (e AutoEngine) Up(ctx context.Context, name string) (Result, error) {
	s, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	ch, wait := collect()
	res, err := s.Up(ctx, optup.EventStreams(ch), optup.ProgressStreams(e.progress()))
	steps := wait()
	r := fromSummary(res.Summary.ResourceChanges, steps)
	r.Outputs = outputs(res.Outputs)
	return r, err
}

// Refresh runs pulumi refresh.
func (e AutoEngine) Refresh(ctx context.Context, name string) (Result, error) {
	s, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	ch, wait := collect()
	res, err := s.Refresh(ctx, optrefresh.EventStreams(ch), optrefresh.ProgressStreams(e.progress()))
	steps := wait()
	return fromSummary(res.Summary.ResourceChanges, steps), err
}

// Destroy runs pulumi destroy.
func (e AutoEngine) Destroy(ctx context.Context, name string) (Result, error) {
	s, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	ch, wait := collect()
	res, err := s.Destroy(ctx, optdestroy.EventStreams(ch), optdestroy.ProgressStreams(e.progress()))
	steps := wait()
	return fromSummary(res.Summary.ResourceChanges, steps), err
}

// Stacks lists the project's stacks in the logged-in backend.
func (e AutoEngine) Stacks(ctx context.Context) ([]StackInfo, error) {
	ws, err := auto.NewLocalWorkspace(ctx, auto.WorkDir(e.WorkDir))
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", e.WorkDir, err)
	}
	list, err := ws.ListStacks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]StackInfo, 0, len(list))
	for _, s := range list {
		n := -1
		if s.ResourceCount != nil {
			n = *s.ResourceCount
		}
		out = append(out, StackInfo{Name: s.Name, Resources: n})
	}
	return out, nil
}

// LastDeploy reads the newest entry of the stack's history.
func (e AutoEngine) LastDeploy(ctx context.Context, name string) (LastDeploy, bool, error) {
	selectMu.Lock()
	s, err := auto.SelectStackLocalSource(ctx, name, e.WorkDir)
	selectMu.Unlock()
	if err != nil {
		return LastDeploy{}, false, err
	}
	h, err := s.History(ctx, 1, 1, opthistory.ShowSecrets(false))
	if err != nil || len(h) == 0 {
		return LastDeploy{}, false, err
	}
	ld := LastDeploy{Kind: h[0].Kind, Result: h[0].Result}
	when := h[0].StartTime
	if h[0].EndTime != nil {
		when = *h[0].EndTime
	}
	if t, err := time.Parse(time.RFC3339, when); err == nil {
		ld.End = t
	} else if t, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", when); err == nil {
		ld.End = t
	}
	return ld, true, nil
}
