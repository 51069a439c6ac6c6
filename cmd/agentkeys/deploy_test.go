package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentkeys/agentkeys-infra/ops/deploy"
)

// cliFake is the engine the CLI tests inject.
type cliFake struct {
	mu     sync.Mutex
	calls  []string
	prev   map[string]deploy.Result
	stacks []deploy.StackInfo
}

func (f *cliFake) rec(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }
func (f *cliFake) Preview(_ context.Context, s string) (deploy.Result, error) {
	f.rec("preview " + s)
	return f.prev[s], nil
}
func (f *cliFake) Up(_ context.Context, s string) (deploy.Result, error) {
	f.rec("up " + s)
	return deploy.Result{Counts: map[string]int{"same": 1}}, nil
}
func (f *cliFake) Refresh(_ context.Context, s string) (deploy.Result, error) {
	f.rec("refresh " + s)
	return deploy.Result{}, nil
}
func (f *cliFake) Destroy(_ context.Context, s string) (deploy.Result, error) {
	f.rec("destroy " + s)
	return deploy.Result{}, nil
}
func (f *cliFake) Stacks(context.Context) ([]deploy.StackInfo, error) {
	f.rec("list")
	return f.stacks, nil
}
func (f *cliFake) Protected(context.Context, string) ([]string, error) { return nil, nil }
func (f *cliFake) LastDeploy(context.Context, string) (deploy.LastDeploy, bool, error) {
	return deploy.LastDeploy{}, false, nil
}

func fakeDeps(f *cliFake) deps {
	return deps{engine: func(string, io.Writer) deploy.Engine { return f }}
}

func TestDeployCommand(t *testing.T) {
	dir := project(t, "prod", "test-2", "test-3")
	f := &cliFake{prev: map[string]deploy.Result{
		"prod":   {Counts: map[string]int{"replace": 1}, Steps: []deploy.Step{{Op: "replace", Type: "aws:iam/role:Role", URN: "urn:pulumi:prod::agentkeys::aws:iam/role:Role::data-role"}}},
		"test-2": {Counts: map[string]int{"create": 5}},
	}}
	sum := filepath.Join(t.TempDir(), "summary.md")

	code, out, errs := runCLI(t, fakeDeps(f), "deploy", "preview", "--project-dir", dir, "--stack", "prod,test-2", "--summary", sum)
	if code != 0 {
		t.Fatalf("preview exit %d: %s %s", code, out, errs)
	}
	md, _ := os.ReadFile(sum)
	if !strings.Contains(string(md), "| prod | ok ⚠️ prod | 0 | 0 | 1 | 0 | 0 |") || !strings.Contains(string(md), "| test-2 | ok | 5 |") {
		t.Fatalf("summary:\n%s", md)
	}

	f.calls = nil
	code, out, errs = runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod,test-2", "--parallel", "2")
	if code != exitRefused || !strings.Contains(out, "refused") || !strings.Contains(errs, "prod refused") {
		t.Fatalf("gated up: exit %d\n%s\n%s", code, out, errs)
	}
	for _, c := range f.calls {
		if c == "up prod" {
			t.Fatalf("prod was converged despite the gate: %v", f.calls)
		}
	}

	code, _, _ = runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--allow-replace")
	if code != 0 {
		t.Fatalf("--allow-replace: exit %d", code)
	}

	// Bad input fails before the engine is touched.
	f.calls = nil
	for _, args := range [][]string{
		{"deploy", "apply", "--stack", "test-2"},
		{"deploy", "up"},
		{"deploy", "up", "--stack", "test-2,test-9"}, // no Pulumi.test-9.yaml
		{"deploy", "up", "--stack", "test-2,test-2"},
		{"deploy", "up", "--stack", "test-2", "--parallel", "0"},
	} {
		if code, _, errs := runCLI(t, fakeDeps(f), append(args, "--project-dir", dir)...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errs)
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("engine called on bad input: %v", f.calls)
	}
}

func TestDeployAccountStack(t *testing.T) {
	dir := project(t, "test-2")
	acct := "config:\n  aws:region: us-east-1\n  agentkeys:accountId: \"123456789012\"\n  agentkeys:zone: example.test\n  agentkeys:githubRepo: litentry/agentKeys\n  agentkeys:ciBranches: [main]\n"
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.account.yaml"), []byte(acct), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &cliFake{stacks: []deploy.StackInfo{{Name: "account", Resources: 12}, {Name: "test-2", Resources: 72}}}
	code, out, errs := runCLI(t, fakeDeps(f), "deploy", "preview", "--project-dir", dir, "--stack", "account")
	if code != 0 {
		t.Fatalf("preview account: exit %d\n%s\n%s", code, out, errs)
	}
	// Refused while test-2 still holds resources, even with --allow-replace.
	code, out, errs = runCLI(t, fakeDeps(f), "deploy", "destroy", "--project-dir", dir, "--stack", "account", "--allow-replace")
	if code != exitRefused || !strings.Contains(out+errs, "test-2 (72 resources)") {
		t.Fatalf("destroy account: exit %d\n%s\n%s", code, out, errs)
	}
	for _, c := range f.calls {
		if c == "destroy account" {
			t.Fatalf("account destroyed while in use: %v", f.calls)
		}
	}
	// A broken account file is a usage error naming the file and key.
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.account.yaml"), []byte("config:\n  aws:region: us-east-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, fakeDeps(f), "deploy", "preview", "--project-dir", dir, "--stack", "account")
	if code != exitUsage || !strings.Contains(errs, "Pulumi.account.yaml") || !strings.Contains(errs, "agentkeys:accountId") {
		t.Fatalf("bad account file: exit %d: %s", code, errs)
	}
}
