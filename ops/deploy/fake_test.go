package deploy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// fake is an Engine with scripted previews that records calls and the peak
// number of concurrent operations.
type fake struct {
	mu       sync.Mutex
	preview  map[string]Result
	fail     map[string]error
	calls    []string
	inflight int
	peak     int
	hold     time.Duration
	want     int // hold each operation until this many ran at once (bounded wait)
	stacks   []StackInfo
	listErr  error
	// protected lists each stack's protected resources.
	protected map[string][]string
}

func (f *fake) enter(op, stack string) error {
	f.mu.Lock()
	f.calls = append(f.calls, op+" "+stack)
	f.inflight++
	if f.inflight > f.peak {
		f.peak = f.inflight
	}
	err := f.fail[op+" "+stack]
	f.mu.Unlock()
	time.Sleep(f.hold) // let concurrent operations overlap
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		reached := f.peak >= f.want
		f.mu.Unlock()
		if reached {
			break
		}
	}
	f.mu.Lock()
	f.inflight--
	f.mu.Unlock()
	return err
}

func (f *fake) Preview(_ context.Context, s string) (Result, error) {
	return f.preview[s], f.enter("preview", s)
}
func (f *fake) Up(_ context.Context, s string) (Result, error) {
	r := f.preview[s]
	return r, f.enter("up", s)
}
func (f *fake) Refresh(_ context.Context, s string) (Result, error) {
	return Result{Counts: map[string]int{"same": 3}}, f.enter("refresh", s)
}
func (f *fake) Destroy(_ context.Context, s string) (Result, error) {
	err := f.enter("destroy", s)
	if err == nil {
		f.mu.Lock()
		for i := range f.stacks {
			if f.stacks[i].Name == s {
				f.stacks[i].Resources = 0
			}
		}
		f.mu.Unlock()
	}
	return Result{Counts: map[string]int{"delete": 3}}, err
}
func (f *fake) LastDeploy(_ context.Context, s string) (LastDeploy, bool, error) {
	return LastDeploy{}, false, errors.New("no history in fake")
}
func (f *fake) Protected(_ context.Context, stack string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.protected[stack], nil
}

func (f *fake) Stacks(context.Context) ([]StackInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "list")
	return f.stacks, f.listErr
}
