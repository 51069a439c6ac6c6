package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// cliFake is the engine the CLI tests inject; its saved plans are real
// Pulumi plan files built from the scripted preview steps.
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
func (f *cliFake) PreviewPlan(ctx context.Context, s, file string) (deploy.Result, error) {
	r, _ := f.Preview(ctx, s)
	plan := apitype.DeploymentPlanV1{Manifest: apitype.ManifestV1{Magic: "fake"}, ResourcePlans: map[resource.URN]apitype.ResourcePlanV1{}}
	for _, st := range r.Steps {
		ops := []apitype.OpType{apitype.OpType(st.Op)}
		if st.Op == "replace" {
			ops = []apitype.OpType{"create-replacement", "replace", "delete-replaced"}
		}
		plan.ResourcePlans[resource.URN(st.URN)] = apitype.ResourcePlanV1{Steps: ops, Goal: &apitype.GoalV1{Type: tokens.Type(st.Type)}}
	}
	b, _ := json.Marshal(plan)
	return r, os.WriteFile(file, b, 0o600)
}
func (f *cliFake) UpPlan(ctx context.Context, s, file string) (deploy.Result, error) {
	if _, err := deploy.ReadPlan(file); err != nil {
		return deploy.Result{}, err
	}
	f.rec("up-plan " + s)
	return deploy.Result{Counts: map[string]int{"same": 1}}, nil
}

func fakeDeps(f *cliFake) deps {
	return deps{engine: func(string, io.Writer) deploy.Engine { return f }}
}

// kmsProject is project() with each stack file on its side's secrets key.
func kmsProject(t *testing.T, stacks ...string) string {
	dir := project(t, stacks...)
	for _, s := range stacks {
		p := filepath.Join(dir, "Pulumi."+s+".yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := policy.SecretsProvider(s, "us-east-1")
		if err := os.WriteFile(p, append([]byte("secretsprovider: "+sp+"\n"), b...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const prodRoleURN = "urn:pulumi:prod::agentkeys::aws:iam/role:Role::data-role"

func TestDeployCommand(t *testing.T) {
	dir := kmsProject(t, "prod", "test-2", "test-3")
	f := &cliFake{prev: map[string]deploy.Result{
		"prod":   {Counts: map[string]int{"replace": 1}, Steps: []deploy.Step{{Op: "replace", Type: "aws:iam/role:Role", URN: prodRoleURN}}},
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
	code, out, errs = runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod,test-2", "--parallel", "2", "--yes")
	if code != exitRefused || !strings.Contains(out, "--allow prod:data-role") || !strings.Contains(errs, "prod refused") {
		t.Fatalf("gated up: exit %d\n%s\n%s", code, out, errs)
	}
	if slices.Contains(f.calls, "up prod") || slices.Contains(f.calls, "up-plan prod") || !slices.Contains(f.calls, "up test-2") {
		t.Fatalf("calls %v", f.calls)
	}

	// Named: the gated plan runs (and the blanket flag of old is refused).
	if code, _, errs := runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--allow-replace", "--yes"); code != exitUsage || !strings.Contains(errs, "--allow prod:NAME") {
		t.Fatalf("--allow-replace on up: exit %d %s", code, errs)
	}
	f.calls = nil
	if code, out, errs := runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--allow", "prod:data-role", "--yes"); code != 0 || !slices.Equal(f.calls, []string{"preview prod", "up-plan prod"}) {
		t.Fatalf("--allow: exit %d calls %v\n%s%s", code, f.calls, out, errs)
	}

	// No terminal and no --yes: shown, not applied.
	origTerminal, origIn := isTerminal, promptIn
	t.Cleanup(func() { isTerminal, promptIn = origTerminal, origIn })
	isTerminal = func() bool { return false }
	f.calls = nil
	code, _, errs = runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--allow", "prod:data-role")
	if code != exitRefused || !strings.Contains(errs, "pass --yes") || slices.Contains(f.calls, "up-plan prod") {
		t.Fatalf("no terminal: exit %d %s calls %v", code, errs, f.calls)
	}
	// A terminal: only the stack's name confirms.
	isTerminal = func() bool { return true }
	for answer, want := range map[string]int{"y\n": exitRefused, "prod\n": 0} {
		promptIn = strings.NewReader(answer)
		f.calls = nil
		code, _, errs = runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--allow", "prod:data-role")
		if code != want || !strings.Contains(errs, "Apply exactly this plan to prod?") || !strings.Contains(errs, "replace aws:iam/role:Role data-role") {
			t.Fatalf("answer %q: exit %d, want %d\n%s", answer, code, want, errs)
		}
	}

	// Two steps: save the plan, then run that file.
	plans := t.TempDir()
	if code, out, errs := runCLI(t, fakeDeps(f), "deploy", "preview", "--project-dir", dir, "--stack", "prod", "--save-plan", plans, "--summary", sum); code != 0 {
		t.Fatalf("save plan: %d %s %s", code, out, errs)
	}
	if md, _ := os.ReadFile(sum); !strings.Contains(string(md), "replace aws:iam/role:Role data-role") {
		t.Fatalf("saved plan's findings not in the summary:\n%s", md)
	}
	f.calls = nil
	if code, out, errs := runCLI(t, fakeDeps(f), "deploy", "up", "--project-dir", dir, "--stack", "prod", "--plan", filepath.Join(plans, "prod.plan.json"), "--allow", "prod:data-role", "--yes"); code != 0 || !slices.Equal(f.calls, []string{"up-plan prod"}) {
		t.Fatalf("--plan: exit %d calls %v\n%s%s", code, f.calls, out, errs)
	}

	// Bad input fails before the engine is touched.
	f.calls = nil
	for _, args := range [][]string{
		{"deploy", "apply", "--stack", "test-2"},
		{"deploy", "up"},
		{"deploy", "up", "--stack", "test-2,test-9"}, // no Pulumi.test-9.yaml
		{"deploy", "up", "--stack", "test-2,test-2"},
		{"deploy", "up", "--stack", "test-2", "--parallel", "0"},
		{"deploy", "up", "--stack", "prod", "--allow", "data-role"},
		{"deploy", "up", "--stack", "prod,test-2", "--allow", "test-2:x"},
		{"deploy", "preview", "--stack", "prod", "--allow", "prod:data-role"},
		{"deploy", "up", "--stack", "prod,test-2", "--plan", filepath.Join(plans, "prod.plan.json")},
		{"deploy", "up", "--stack", "prod", "--plan", filepath.Join(plans, "missing.json")},
		{"deploy", "up", "--stack", "test-2", "--save-plan", plans},
	} {
		if code, _, errs := runCLI(t, fakeDeps(f), append(args, "--project-dir", dir)...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errs)
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("engine called on bad input: %v", f.calls)
	}
}

// A stack whose secrets provider is not its side's key is refused before
// anything runs: a prod stack on the test key would be readable by PR jobs.
func TestDeployRefusesTheWrongSecretsKey(t *testing.T) {
	dir := kmsProject(t, "prod", "test-2")
	p := filepath.Join(dir, "Pulumi.prod.yaml")
	b, _ := os.ReadFile(p)
	_ = os.WriteFile(p, []byte(strings.Replace(string(b), "agentkeys-pulumi-prod", "agentkeys-pulumi-test", 1)), 0o644)
	f := &cliFake{}
	code, _, errs := runCLI(t, fakeDeps(f), "deploy", "preview", "--project-dir", dir, "--stack", "test-2,prod")
	if code != exitUsage || !strings.Contains(errs, "agentkeys-pulumi-prod") || !strings.Contains(errs, "change-secrets-provider") || len(f.calls) != 0 {
		t.Fatalf("exit %d: %s calls %v", code, errs, f.calls)
	}
}

func TestDeployAccountStack(t *testing.T) {
	dir := kmsProject(t, "test-2")
	acct := "secretsprovider: awskms://alias/agentkeys-pulumi-prod?region=us-east-1\nconfig:\n  aws:region: us-east-1\n  agentkeys:accountId: \"123456789012\"\n  agentkeys:zone: example.test\n  agentkeys:githubRepo: litentry/agentKeys\n  agentkeys:ciBranches: [main]\n"
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
