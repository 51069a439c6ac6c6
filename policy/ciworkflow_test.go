package policy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

// docs/github-actions.yml, parsed and checked: who runs when, with which
// role, in which concurrency group; the OIDC subject each job would get,
// judged against the account stack's two trusts by the IAM evaluator; the
// slot claim run with a fake GitHub API; the comment's guard run for real.

const workflowPath = "../docs/github-actions.yml"

type wfStep struct {
	ID   string            `yaml:"id"`
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	If   string            `yaml:"if"`
	With map[string]any    `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

type wfJob struct {
	Name        string            `yaml:"name"`
	Needs       any               `yaml:"needs"`
	If          string            `yaml:"if"`
	Environment any               `yaml:"environment"`
	Concurrency any               `yaml:"concurrency"`
	Permissions any               `yaml:"permissions"`
	Env         map[string]string `yaml:"env"`
	Steps       []wfStep          `yaml:"steps"`
}

type workflow struct {
	On          map[string]any    `yaml:"on"`
	Permissions any               `yaml:"permissions"`
	Env         map[string]string `yaml:"env"`
	Jobs        map[string]*wfJob `yaml:"jobs"`
}

func loadWorkflow(t *testing.T) *workflow {
	t.Helper()
	b, err := os.ReadFile(workflowPath)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return &w
}

func (j *wfJob) needs() []string {
	switch v := j.Needs.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

func (j *wfJob) environment() string {
	switch v := j.Environment.(type) {
	case string:
		return v
	case map[string]any:
		return fmt.Sprint(v["name"])
	}
	return ""
}

// roles lists the role-to-assume values of the job's credential steps.
func (j *wfJob) roles() []string {
	var out []string
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "aws-actions/configure-aws-credentials") {
			out = append(out, fmt.Sprint(s.With["role-to-assume"]))
		}
	}
	return out
}

func (j *wfJob) perm(name string) string {
	if m, ok := j.Permissions.(map[string]any); ok {
		return fmt.Sprint(m[name])
	}
	return ""
}

func (j *wfJob) step(t *testing.T, match func(wfStep) bool) (int, wfStep) {
	t.Helper()
	for i, s := range j.Steps {
		if match(s) {
			return i, s
		}
	}
	t.Fatalf("job %q has no such step", j.Name)
	return -1, wfStep{}
}

// scenario is one triggering event with what the contexts hold.
type scenario struct {
	name, event, ref string
	fork             bool
	inputs           map[string]any
	slot             string // what slot-claim outputs
}

const wfRepo = "litentry/agentKeys"

func (s scenario) ctx() map[string]any {
	github := map[string]any{"event_name": s.event, "ref": s.ref, "repository": wfRepo, "sha": "mainsha0", "run_id": "42"}
	if s.event == "pull_request" {
		head := wfRepo
		if s.fork {
			head = "someone/agentKeys"
		}
		github["event"] = map[string]any{"pull_request": map[string]any{"number": 7.0, "head": map[string]any{"sha": "prheadsha", "repo": map[string]any{"full_name": head}}}}
	}
	group := "heima-test-deployer-nonce"
	if s.slot != "1" {
		group = "heima-test-slot-" + s.slot
	}
	inputs := map[string]any{}
	for k, v := range s.inputs {
		inputs[k] = v
	}
	return map[string]any{
		"github": github, "inputs": inputs, "vars": map[string]any{"AWS_ACCOUNT_ID": "123456789012"},
		"needs": map[string]any{"slot-claim": map[string]any{"outputs": map[string]any{"slot": s.slot, "group": group}}},
	}
}

var wfScenarios = []scenario{
	{name: "PR of the repository", event: "pull_request", ref: "refs/pull/7/merge", slot: "2"},
	{name: "PR from a fork", event: "pull_request", ref: "refs/pull/7/merge", fork: true, slot: "2"},
	{name: "push to main", event: "push", ref: "refs/heads/main", slot: "1"},
	{name: "dispatch: validate slot 3", event: "workflow_dispatch", ref: "refs/heads/main", slot: "3", inputs: map[string]any{"slot_override": "3", "prod": "none"}},
	{name: "dispatch: prod preview", event: "workflow_dispatch", ref: "refs/heads/main", slot: "1", inputs: map[string]any{"prod": "preview"}},
	{name: "dispatch: prod up", event: "workflow_dispatch", ref: "refs/heads/main", slot: "1", inputs: map[string]any{"prod": "up", "allow": "prod:prod-vault-bucket-policy"}},
	{name: "dispatch: prod up from a branch", event: "workflow_dispatch", ref: "refs/heads/feature", slot: "1", inputs: map[string]any{"prod": "up"}},
}

// running evaluates every job's `if` (with GitHub's implicit success() on
// its needs) and returns the jobs that run.
func (w *workflow) running(t *testing.T, s scenario) map[string]bool {
	t.Helper()
	ran := map[string]bool{}
	names := make([]string, 0, len(w.Jobs))
	for n := range w.Jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for range names { // needs chains are short: iterate to a fixed point
		for _, n := range names {
			j := w.Jobs[n]
			needsOK := true
			for _, d := range j.needs() {
				needsOK = needsOK && ran[d]
			}
			cond := true
			if j.If != "" {
				v, err := ghaEval(j.If, s.ctx())
				if err != nil {
					t.Fatalf("job %s if: %v", n, err)
				}
				cond = truthy(v)
			}
			if strings.Contains(j.If, "always()") {
				ran[n] = cond
			} else {
				ran[n] = cond && needsOK
			}
		}
	}
	return ran
}

// subject is the `sub` GitHub puts in the job's OIDC token.
func subject(s scenario, j *wfJob) string {
	switch {
	case j.environment() != "":
		return "repo:" + wfRepo + ":environment:" + j.environment()
	case s.event == "pull_request":
		return "repo:" + wfRepo + ":pull_request"
	}
	return "repo:" + wfRepo + ":ref:" + s.ref
}

func roleARN(role string) string { return "arn:aws:iam::${{ vars.AWS_ACCOUNT_ID }}:role/" + role }

// accountTrust is the trust of the committed Pulumi.account.yaml.
func accountTrust(t *testing.T) policy.CITrust {
	t.Helper()
	a, err := config.LoadAccountFile("..")
	if err != nil {
		t.Fatal(err)
	}
	if a.GitHubRepo != wfRepo {
		t.Fatalf("Pulumi.account.yaml's githubRepo is %s; this test assumes %s", a.GitHubRepo, wfRepo)
	}
	return a.Trust
}

// checkWorkflowRoles returns what is wrong with who may run with which role:
// the IAM evaluator decides every (scenario, job, role) cell.
func checkWorkflowRoles(t *testing.T, w *workflow, trust policy.CITrust) []string {
	t.Helper()
	testTrust, err := trust.TestTrust(acct)
	if err != nil {
		t.Fatal(err)
	}
	prodTrust, err := trust.ProdTrust(acct)
	if err != nil {
		t.Fatal(err)
	}
	trusts := map[string]policy.Document{policy.CITestRole: testTrust, policy.CIProdRole: prodTrust}
	var problems []string
	type cell struct {
		scenario, job, role string
		wantAllowed         bool
	}
	var cells []cell
	var reqs []iamsim.Request
	for _, s := range wfScenarios {
		for job, ran := range w.running(t, s) {
			if !ran {
				continue
			}
			j := w.Jobs[job]
			if s.event == "pull_request" && j.environment() != "" {
				problems = append(problems, fmt.Sprintf("%s: job %s binds environment %s on a pull request", s.name, job, j.environment()))
			}
			for _, r := range j.roles() {
				mine := ""
				for _, known := range []string{policy.CITestRole, policy.CIProdRole} {
					if r == roleARN(known) {
						mine = known
					}
				}
				if mine == "" {
					continue // another repository's role (the harness's e2e role)
				}
				if j.perm("id-token") != "write" {
					problems = append(problems, fmt.Sprintf("%s: job %s assumes %s without id-token: write", s.name, job, mine))
				}
				sub := subject(s, j)
				for role, tr := range trusts {
					cells = append(cells, cell{s.name, job, role, role == mine})
					reqs = append(reqs, iamsim.Request{Name: fmt.Sprintf("%s | %s | %s", s.name, job, role),
						Principal: policy.GitHubProviderARN(acct), Action: "sts:AssumeRoleWithWebIdentity",
						Resource: naming.RoleARN(acct, role), ResourceAccount: acct, ResourcePolicy: tr,
						Context:      map[string]any{policy.GitHubOIDCHost + ":aud": "sts.amazonaws.com", policy.GitHubOIDCHost + ":sub": sub},
						UnlistedKeys: []string{policy.GitHubOIDCHost + ":aud", policy.GitHubOIDCHost + ":sub"}})
				}
				if s.event == "pull_request" && mine != policy.CITestRole {
					problems = append(problems, fmt.Sprintf("%s: job %s runs on a pull request with %s", s.name, job, mine))
				}
			}
		}
	}
	got, err := iamsim.Evaluate(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		c := cells[i]
		if d.Decision == iamsim.Error {
			problems = append(problems, d.Name+": "+d.Error)
		} else if (d.Decision == iamsim.Allowed) != c.wantAllowed {
			problems = append(problems, fmt.Sprintf("%s: %s (job assumes it: %v)", d.Name, d.Decision, c.wantAllowed))
		}
	}
	return problems
}

func TestWorkflowRolePerJob(t *testing.T) {
	iamsim.Require(t)
	w := loadWorkflow(t)
	trust := accountTrust(t)
	for _, p := range checkWorkflowRoles(t, w, trust) {
		t.Error(p)
	}
	// Each job's role, by name.
	want := map[string][]string{
		"slot-claim": nil, "offline-plan": nil, "comment": nil,
		"test-slot":    {roleARN(policy.CITestRole), "${{ secrets.TEST_OIDC_AWS_ROLE_ARN }}"},
		"prod-preview": {roleARN(policy.CIProdRole)},
		"prod-up":      {roleARN(policy.CIProdRole)},
	}
	for name, j := range w.Jobs {
		r, ok := want[name]
		if !ok {
			t.Errorf("job %s is not known to this test: decide its role here", name)
		}
		if !slices.Equal(j.roles(), r) {
			t.Errorf("job %s assumes %v, want %v", name, j.roles(), r)
		}
		if (j.perm("id-token") == "write") != (len(r) > 0) {
			t.Errorf("job %s: id-token %q with roles %v", name, j.perm("id-token"), r)
		}
		if strings.HasPrefix(name, "prod-") && j.environment() != trust.ProdEnvironment {
			t.Errorf("job %s runs in environment %q, the prod role trusts %q", name, j.environment(), trust.ProdEnvironment)
		}
	}
	if m, ok := w.Permissions.(map[string]any); !ok || len(m) != 0 {
		t.Errorf("top-level permissions %v, want {} (each job asks for its own)", w.Permissions)
	}
	// Who runs when.
	runs := map[string][]string{
		"PR of the repository":            {"comment", "offline-plan", "slot-claim", "test-slot"},
		"PR from a fork":                  {"offline-plan", "slot-claim"}, // no OIDC token, no write token
		"push to main":                    {"prod-preview", "prod-up", "slot-claim", "test-slot"},
		"dispatch: validate slot 3":       {"slot-claim", "test-slot"},
		"dispatch: prod preview":          {"prod-preview"},
		"dispatch: prod up":               {"prod-preview", "prod-up"},
		"dispatch: prod up from a branch": nil,
	}
	for _, s := range wfScenarios {
		var got []string
		for j, ran := range w.running(t, s) {
			if ran {
				got = append(got, j)
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, runs[s.name]) {
			t.Errorf("%s: jobs %v, want %v", s.name, got, runs[s.name])
		}
	}
}

// A deliberately broken workflow is caught: the prod role on a job without
// the environment, the prod role in a PR job, the test role on prod jobs.
func TestWorkflowRoleCheckCatchesWeakening(t *testing.T) {
	iamsim.Require(t)
	trust := accountTrust(t)
	for name, edit := range map[string]func(w *workflow){
		"prod job without its environment": func(w *workflow) { w.Jobs["prod-preview"].Environment = nil },
		"prod role in the PR's slot job": func(w *workflow) {
			for i, s := range w.Jobs["test-slot"].Steps {
				if s.With["role-to-assume"] == roleARN(policy.CITestRole) {
					w.Jobs["test-slot"].Steps[i].With["role-to-assume"] = roleARN(policy.CIProdRole)
				}
			}
		},
		"prod jobs on pull requests": func(w *workflow) { w.Jobs["prod-up"].If = "always()"; w.Jobs["prod-up"].Needs = nil },
		"test role in prod-up": func(w *workflow) {
			for i, s := range w.Jobs["prod-up"].Steps {
				if s.With["role-to-assume"] == roleARN(policy.CIProdRole) {
					w.Jobs["prod-up"].Steps[i].With["role-to-assume"] = roleARN(policy.CITestRole)
				}
			}
		},
	} {
		w := loadWorkflow(t)
		edit(w)
		if p := checkWorkflowRoles(t, w, trust); len(p) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

// The slot job: its group, the commit it deploys, the harness after the
// deploy, the release last; the backend URL carries its region.
func TestWorkflowTestSlotFlow(t *testing.T) {
	w := loadWorkflow(t)
	j := w.Jobs["test-slot"]
	c, _ := j.Concurrency.(map[string]any)
	if c["group"] != "${{ needs.slot-claim.outputs.group }}" || c["cancel-in-progress"] != false {
		t.Errorf("test-slot concurrency %v: want the claimed slot's group, never cancelled", j.Concurrency)
	}
	if !slices.Equal(j.needs(), []string{"slot-claim"}) {
		t.Errorf("test-slot needs %v", j.needs())
	}
	for _, s := range wfScenarios {
		ctx := s.ctx()
		g, _ := ghaEval(fmt.Sprint(c["group"]), ctx)
		want := map[string]string{"1": "heima-test-deployer-nonce", "2": "heima-test-slot-2", "3": "heima-test-slot-3"}[s.slot]
		if g != want {
			t.Errorf("%s: group %v, want %s", s.name, g, want)
		}
		ref, _ := ghaEval(j.Env["AGENTKEYS_REF"], ctx)
		wantRef := "mainsha0"
		if s.event == "pull_request" {
			wantRef = "prheadsha" // the PR's commit, not GitHub's merge commit
		}
		if ref != wantRef {
			t.Errorf("%s: agentkeysRef %v, want %s", s.name, ref, wantRef)
		}
	}
	if j.Env["STACK"] != "${{ needs.slot-claim.outputs.stack }}" {
		t.Errorf("test-slot STACK %q", j.Env["STACK"])
	}
	first := j.Steps[0]
	if !strings.HasPrefix(first.Name, "test-fleet slot ${{ needs.slot-claim.outputs.slot }}") {
		t.Errorf("first step %q is not the runbook's slot marker", first.Name)
	}
	iDeploy, deploy := j.step(t, func(s wfStep) bool { return s.ID == "deploy" })
	setRef := strings.Index(deploy.Run, `pulumi config set agentkeys:agentkeysRef "$AGENTKEYS_REF" --stack "$STACK"`)
	up := strings.Index(deploy.Run, `bin/agentkeys deploy up --stack "$STACK"`)
	if setRef < 0 || up < 0 || setRef > up || strings.Contains(deploy.Run, "--stack prod") || strings.Contains(deploy.Run, "base") {
		t.Errorf("deploy step must set agentkeysRef then up the slot's stack only:\n%s", deploy.Run)
	}
	iCreds, _ := j.step(t, func(s wfStep) bool { return s.With["role-to-assume"] == roleARN(policy.CITestRole) })
	iVerify, _ := j.step(t, func(s wfStep) bool { return strings.Contains(s.Run, "bin/agentkeys verify --stack \"$STACK\"") })
	iCheckout, co := j.step(t, func(s wfStep) bool { return s.With["path"] == "agentkeys" })
	iHarness, h := j.step(t, func(s wfStep) bool { return s.Name == "harness" })
	iRelease, rel := j.step(t, func(s wfStep) bool { return s.Name == "release the slot" })
	if !(iCreds < iDeploy && iDeploy < iVerify && iVerify < iHarness && iCheckout < iHarness && iHarness < iRelease) {
		t.Errorf("order creds %d deploy %d verify %d checkout %d harness %d release %d", iCreds, iDeploy, iVerify, iCheckout, iHarness, iRelease)
	}
	if co.With["ref"] != "${{ env.AGENTKEYS_REF }}" {
		t.Errorf("the harness checks out %v, not the deployed commit", co.With["ref"])
	}
	if !strings.Contains(h.Run, "harness/v2-stage") {
		t.Errorf("harness step runs no harness:\n%s", h.Run)
	}
	if iRelease != len(j.Steps)-1 || rel.If != "always()" || !strings.Contains(rel.Run, "slot-release slot=$SLOT group=$GROUP") {
		t.Errorf("the release must be the last step, always run, and say slot-release: %+v", rel)
	}
	if u := w.Env["PULUMI_BACKEND_URL"]; !strings.Contains(u, "?region=") || !strings.HasPrefix(u, "s3://agentkeys-pulumi-state-") {
		t.Errorf("PULUMI_BACKEND_URL %q: the state bucket with its region", u)
	}
	// Live previews of prod-side stacks only in the prod jobs.
	for name, job := range w.Jobs {
		for _, s := range job.Steps {
			for _, st := range []string{"prod", "base", "account"} {
				if strings.Contains(s.Run, "deploy preview") && strings.Contains(s.Run, st) && !strings.HasPrefix(name, "prod-") {
					t.Errorf("job %s previews %s", name, st)
				}
			}
		}
	}
	_, pu := w.Jobs["prod-up"].step(t, func(s wfStep) bool { return strings.Contains(s.Run, "deploy up") })
	if !strings.Contains(pu.Run, `--plan "$RUNNER_TEMP/plans/$s.plan.json"`) || !strings.Contains(pu.Run, "--yes") {
		t.Errorf("prod-up must run the previewed plans:\n%s", pu.Run)
	}
}

// bash runs script with env in dir and returns GITHUB_OUTPUT and stdout.
func bash(t *testing.T, dir, script string, env ...string) (outputs map[string]string, stdout string, err error) {
	t.Helper()
	out := filepath.Join(dir, "github_output")
	_ = os.WriteFile(out, nil, 0o644)
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + dir + "/bin:" + os.Getenv("PATH"), "GITHUB_OUTPUT=" + out, "HOME=" + dir}, env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err = cmd.Run()
	raw, _ := os.ReadFile(out)
	outputs = map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			outputs[k] = v
		}
	}
	return outputs, b.String(), err
}

// fakeGH is a `gh api` that answers from files: <dir>/api/<path with / as _>.
const fakeGH = `#!/usr/bin/env bash
echo "$*" >>"$GH_LOG"
[ "$1" = api ] || exit 2
[ -n "${GH_FAIL:-}" ] && { echo "HTTP 502" >&2; exit 1; }
f="$GH_DIR/$(printf '%s' "$2" | tr '/?&=' '____')"
[ -f "$f" ] || { echo "no fixture $f" >&2; exit 1; }
if [ "$3" = --jq ]; then jq -r "$4" "$f"; else cat "$f"; fi
`

type claimRun struct {
	id, claim    string // claim: the slot its annotation names ("" none)
	claimDone    bool
	testSlotDone bool
	status       string
}

func writeClaimFixtures(t *testing.T, dir string, runs []claimRun) {
	t.Helper()
	api := filepath.Join(dir, "api")
	_ = os.MkdirAll(api, 0o755)
	put := func(path, body string) {
		_ = os.WriteFile(filepath.Join(api, strings.NewReplacer("/", "_", "?", "_", "&", "_", "=", "_").Replace(path)), []byte(body), 0o644)
	}
	byStatus := map[string][]string{"queued": nil, "in_progress": nil}
	for _, r := range runs {
		byStatus[r.status] = append(byStatus[r.status], `{"id":`+r.id+`}`)
		claimStatus, slotStatus := "in_progress", "queued"
		if r.claimDone {
			claimStatus = "completed"
		}
		if r.testSlotDone {
			slotStatus = "completed"
		}
		put("repos/litentry/agentKeys/actions/runs/"+r.id+"/jobs?per_page=100",
			`{"jobs":[{"id":`+r.id+`1,"name":"slot-claim","status":"`+claimStatus+`"},{"id":`+r.id+`2,"name":"test slot `+r.claim+`","status":"`+slotStatus+`"}]}`)
		msg := "[]"
		if r.claim != "" {
			msg = `[{"message":"slot-claim slot=` + r.claim + ` group=x"},{"message":"other"}]`
		}
		put("repos/litentry/agentKeys/check-runs/"+r.id+"1/annotations", msg)
	}
	for st, ids := range byStatus {
		put("repos/litentry/agentKeys/actions/workflows/agentkeys-deploy.yml/runs?status="+st+"&per_page=100", `{"workflow_runs":[`+strings.Join(ids, ",")+`]}`)
	}
}

// The slot claim, run as written: least loaded, ties to PR# % N + 1 then the
// lowest slot, the static slot when the API fails, slot 1 off PRs, the
// override checked; its own output is what other runs' claims parse.
func TestWorkflowSlotClaim(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq not installed")
	}
	w := loadWorkflow(t)
	_, claim := w.Jobs["slot-claim"].step(t, func(s wfStep) bool { return s.ID == "claim" })
	run := func(t *testing.T, runs []claimRun, env ...string) (map[string]string, string, string, error) {
		dir := t.TempDir()
		_ = os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
		_ = os.WriteFile(filepath.Join(dir, "bin", "gh"), []byte(fakeGH), 0o755)
		writeClaimFixtures(t, dir, runs)
		log := filepath.Join(dir, "gh.log")
		base := []string{"GH_DIR=" + filepath.Join(dir, "api"), "GH_LOG=" + log, "GITHUB_REPOSITORY=litentry/agentKeys", "GITHUB_RUN_ID=900",
			"GITHUB_WORKFLOW_REF=litentry/agentKeys/.github/workflows/agentkeys-deploy.yml@refs/pull/7/merge",
			"N=", "PR=", "OVERRIDE=", "EVENT=pull_request"}
		out, stdout, err := bash(t, dir, claim.Run, append(base, env...)...)
		calls, _ := os.ReadFile(log)
		return out, stdout, string(calls), err
	}
	// A notice from one run is the claim the next run counts.
	out, stdout, _, err := run(t, nil, "N=3", "PR=7")
	if err != nil || out["slot"] != "2" || out["stack"] != "test-2" || out["group"] != "heima-test-slot-2" {
		t.Fatalf("static claim: %v %v\n%s", out, err, stdout)
	}
	notice := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stdout), "::notice title=slot-claim::"))
	if !strings.HasPrefix(notice, "slot-claim slot=2 group=heima-test-slot-2") {
		t.Fatalf("annotation %q", stdout)
	}
	inflight := func(id, slot string) claimRun {
		return claimRun{id: id, claim: slot, claimDone: true, status: "in_progress"}
	}
	cases := []struct {
		name  string
		runs  []claimRun
		env   []string
		slot  string
		fails bool
		says  string
	}{
		{"one slot: always slot 1, no API call", nil, []string{"N=", "PR=8"}, "1", false, ""},
		{"least loaded", []claimRun{inflight("1", "2"), inflight("2", "2"), inflight("3", "1")}, []string{"N=3", "PR=7"}, "3", false, ""},
		{"all equal: the static slot", []claimRun{inflight("1", "1"), inflight("2", "2"), inflight("3", "3")}, []string{"N=3", "PR=7"}, "2", false, ""},
		{"tie below the static slot: the lowest", []claimRun{inflight("1", "2")}, []string{"N=3", "PR=7"}, "1", false, ""},
		{"released, unclaimed and own runs do not count", []claimRun{
			{id: "1", claim: "1", claimDone: true, testSlotDone: true, status: "in_progress"},
			{id: "2", claim: "1", claimDone: false, status: "queued"},
			{id: "900", claim: "1", claimDone: true, status: "in_progress"},
			inflight("4", "2"),
		}, []string{"N=3", "PR=7"}, "1", false, ""},
		{"API down: the static slot", nil, []string{"N=3", "PR=7", "GH_FAIL=1"}, "2", false, "GitHub API unavailable"},
		{"push: slot 1", []claimRun{inflight("1", "1")}, []string{"N=3", "EVENT=push"}, "1", false, ""},
		{"override", nil, []string{"N=3", "OVERRIDE=3", "EVENT=workflow_dispatch"}, "3", false, ""},
		{"override beyond N", nil, []string{"N=3", "OVERRIDE=4", "EVENT=workflow_dispatch"}, "", true, "not a slot in 1..3"},
		{"override not a number", nil, []string{"N=3", "OVERRIDE=two", "EVENT=workflow_dispatch"}, "", true, "not a slot"},
		{"bad N", nil, []string{"N=many", "PR=7"}, "1", false, "not a slot count"},
	}
	for _, c := range cases {
		out, stdout, calls, err := run(t, c.runs, c.env...)
		if c.fails {
			if err == nil || !strings.Contains(stdout, c.says) {
				t.Errorf("%s: want a failure saying %q, got %v %v\n%s", c.name, c.says, out, err, stdout)
			}
			continue
		}
		if err != nil || out["slot"] != c.slot || !strings.Contains(stdout, c.says) {
			t.Errorf("%s: slot %q (%v), want %s\n%s", c.name, out["slot"], err, c.slot, stdout)
		}
		if strings.HasPrefix(c.name, "one slot") && calls != "" {
			t.Errorf("%s: called the API: %s", c.name, calls)
		}
	}
}

// The comment is posted when a summary exists: the guards are steps that
// test the files themselves (hashFiles cannot see runner.temp).
func TestWorkflowCommentGuard(t *testing.T) {
	raw, _ := os.ReadFile(workflowPath)
	if strings.Contains(string(raw), "hashFiles(") {
		t.Error("the workflow uses hashFiles(), which sees only the workspace")
	}
	w := loadWorkflow(t)
	slot := w.Jobs["test-slot"]
	_, ready := slot.step(t, func(s wfStep) bool { return s.ID == "summary" })
	_, upload := slot.step(t, func(s wfStep) bool { return s.With["name"] == "summary-test-slot" })
	if ready.If != "always()" || upload.If != "always() && steps.summary.outputs.present == 'true'" || upload.With["path"] != "${{ runner.temp }}/deploy.md" {
		t.Errorf("summary guard %q / upload %q %v", ready.If, upload.If, upload.With["path"])
	}
	dir := t.TempDir()
	out, _, err := bash(t, dir, ready.Run, "RUNNER_TEMP="+dir)
	if err != nil || out["present"] != "" {
		t.Errorf("no summary: %v %v", out, err)
	}
	_ = os.WriteFile(filepath.Join(dir, "deploy.md"), []byte("### `pulumi up`\n"), 0o644)
	if out, _, err = bash(t, dir, ready.Run, "RUNNER_TEMP="+dir); err != nil || out["present"] != "true" {
		t.Errorf("with a summary: %v %v", out, err)
	}

	c := w.Jobs["comment"]
	if c.perm("pull-requests") != "write" || !strings.Contains(c.If, "always()") {
		t.Errorf("comment job: permissions %v if %q", c.Permissions, c.If)
	}
	_, body := c.step(t, func(s wfStep) bool { return s.ID == "body" })
	_, post := c.step(t, func(s wfStep) bool { return s.Name == "post" })
	if post.If != "steps.body.outputs.ready == 'true'" || !strings.Contains(post.Run, "--body-file comment.md") {
		t.Errorf("post: if %q run %q", post.If, post.Run)
	}
	dir = t.TempDir()
	if out, _, err := bash(t, dir, body.Run); err != nil || out["ready"] != "" {
		t.Errorf("no summaries: %v %v", out, err)
	}
	_ = os.MkdirAll(filepath.Join(dir, "summaries"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "summaries", "deploy.md"), []byte("deployed\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "summaries", "offline-plan.md"), []byte("planned\n"), 0o644)
	out, _, err = bash(t, dir, body.Run)
	posted, _ := os.ReadFile(filepath.Join(dir, "comment.md"))
	if err != nil || out["ready"] != "true" || !strings.Contains(string(posted), "deployed") || !strings.Contains(string(posted), "planned") {
		t.Errorf("summaries: %v %v %q", out, err, posted)
	}
}

// actionlint (expressions, contexts, job graph) with shellcheck on every
// run: script; both are installed by make deps (.ci/install.d/ci.sh).
func TestWorkflowLints(t *testing.T) {
	lint := filepath.Join("..", "bin", "actionlint")
	if _, err := os.Stat(lint); err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatalf("bin/actionlint missing (make deps): %v", err)
		}
		t.Skipf("bin/actionlint missing (make deps): %v", err)
	}
	args := []string{"-no-color"}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		args = append(args, "-shellcheck", sc)
	} else if os.Getenv("AGENTKEYS_E2E") == "1" {
		t.Fatal("shellcheck missing (make deps)")
	}
	out, err := exec.Command(lint, append(args, workflowPath)...).CombinedOutput()
	if err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
}
