package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/naming"
)

const urn = "urn:pulumi:%s::agentkeys::%s::%s"

func replacePreview(stack string) Result {
	return Result{
		Counts: map[string]int{"replace": 1, "delete": 1, "same": 40, "update": 2},
		Steps: []Step{
			{Op: "replace", Type: "aws:iam/role:Role", URN: fmt.Sprintf(urn, stack, "aws:iam/role:Role", "data-role")},
			{Op: "delete", Type: "aws:s3/bucket:Bucket", URN: fmt.Sprintf(urn, stack, "aws:s3/bucket:Bucket", "old-bucket")},
			{Op: "update", Type: "aws:route53/record:Record", URN: fmt.Sprintf(urn, stack, "aws:route53/record:Record", "a-broker")},
			{Op: "same", Type: "aws:iam/user:User", URN: fmt.Sprintf(urn, stack, "aws:iam/user:User", "daemon")},
		},
	}
}

func TestUpOnProdPostureRefusedWhenPreviewReplaces(t *testing.T) {
	for _, stack := range []string{"prod", "base"} {
		f := &fake{preview: map[string]Result{stack: replacePreview(stack)}}
		outs := Driver{Engine: f}.Run(context.Background(), Up, []string{stack})
		if outs[0].Status != Refused || !strings.Contains(outs[0].Reason, "--allow "+stack+":data-role") {
			t.Fatalf("%s: %+v", stack, outs[0])
		}
		if slices.Contains(f.calls, "up "+stack) {
			t.Fatalf("%s: up ran despite the gate: %v", stack, f.calls)
		}
		if ExitCode(outs) != 3 {
			t.Fatalf("exit %d, want 3", ExitCode(outs))
		}
		// Each replace and delete allowed by name: up runs.
		f = &fake{preview: map[string]Result{stack: replacePreview(stack)}}
		outs = Driver{Engine: f, Allow: map[string][]string{stack: {"data-role", "old-bucket"}}}.Run(context.Background(), Up, []string{stack})
		if outs[0].Status != OK || !slices.Equal(f.calls, []string{"preview " + stack, "up " + stack}) {
			t.Fatalf("%s allowed by name: %+v calls %v", stack, outs[0], f.calls)
		}
	}
}

func TestUpGateLetsSafeProdAndAnyTestStackThrough(t *testing.T) {
	f := &fake{preview: map[string]Result{
		"prod":   {Counts: map[string]int{"update": 2, "create": 1, "same": 40}},
		"test-2": replacePreview("test-2"),
	}}
	outs := Driver{Engine: f, Parallel: 1}.Run(context.Background(), Up, []string{"prod", "test-2"})
	if outs[0].Status != OK || outs[1].Status != OK || ExitCode(outs) != 0 {
		t.Fatalf("%+v", outs)
	}
	// A test slot is not gated: no preview before its up.
	if slices.Contains(f.calls, "preview test-2") {
		t.Fatalf("test slot was previewed by the gate: %v", f.calls)
	}
}

func TestDestroyProdRefused(t *testing.T) {
	f := &fake{}
	outs := Driver{Engine: f}.Run(context.Background(), Destroy, []string{"prod", "test-3"})
	if outs[0].Status != Refused || outs[1].Status != OK || len(f.calls) != 1 || f.calls[0] != "destroy test-3" {
		t.Fatalf("%+v calls %v", outs, f.calls)
	}
}

func TestParallelIsBounded(t *testing.T) {
	stacks := []string{"test-2", "test-3", "test-4", "test-5", "test-6", "test-7"}
	for _, par := range []int{1, 2, 3} {
		// Each operation waits until par of them overlap: a driver that
		// allows fewer makes peak < par, one that allows more makes peak > par.
		f := &fake{hold: 10 * time.Millisecond, want: par}
		outs := Driver{Engine: f, Parallel: par}.Run(context.Background(), Refresh, stacks)
		if f.peak != par {
			t.Errorf("parallel %d: peak concurrency %d", par, f.peak)
		}
		for i, o := range outs {
			if o.Stack != stacks[i] || o.Status != OK {
				t.Errorf("outcome %d: %+v", i, o)
			}
		}
	}
}

func TestFailureExitCodeAndOtherStacksStillRun(t *testing.T) {
	f := &fake{fail: map[string]error{"up test-3": errors.New("engine: resource x failed")}}
	outs := Driver{Engine: f, Parallel: 2}.Run(context.Background(), Up, []string{"test-2", "test-3", "test-4"})
	if outs[1].Status != Failed || outs[0].Status != OK || outs[2].Status != OK {
		t.Fatalf("%+v", outs)
	}
	// A failure outranks a refusal.
	outs = append(outs, Outcome{Stack: "prod", Status: Refused})
	if ExitCode(outs) != 1 {
		t.Fatalf("exit %d, want 1", ExitCode(outs))
	}
	if o := (Driver{Engine: f}).Run(context.Background(), Preview, []string{"staging"}); o[0].Status != Failed || !strings.Contains(o[0].Reason, "not an AgentKeys stack") {
		t.Fatalf("bad stack name: %+v", o[0])
	}
}

func TestMarkdownSummary(t *testing.T) {
	f := &fake{preview: map[string]Result{
		"prod":   replacePreview("prod"),
		"test-2": {Counts: map[string]int{"create": 57}},
	}}
	outs := Driver{Engine: f, Parallel: 2}.Run(context.Background(), Preview, []string{"prod", "test-2"})
	md := Markdown(outs)
	for _, want := range []string{
		"| stack | status | create | update | replace | delete | same |",
		"| prod | ok ⚠️ prod | 0 | 2 | 1 | 1 | 40 |",
		"| test-2 | ok | 57 | 0 | 0 | 0 | 0 |",
		"| replace | `aws:iam/role:Role` | `data-role` |",
		"| delete | `aws:s3/bucket:Bucket` | `old-bucket` |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "`daemon`") {
		t.Errorf("unchanged resources listed:\n%s", md)
	}

	// Outputs: secret values never reach the comment.
	up := []Outcome{{Stack: "test-2", Action: Up, Status: OK, Result: &Result{
		Counts:  map[string]int{"same": 3},
		Outputs: map[string]Output{"brokerUrl": {Value: "https://broker-test-2.example.org"}, "sshKey": {Value: "-----BEGIN OPENSSH PRIVATE KEY-----hunter2", Secret: true}},
	}}}
	md = Markdown(up)
	if strings.Contains(md, "hunter2") || !strings.Contains(md, "| sshKey | [secret] |") || !strings.Contains(md, "https://broker-test-2.example.org") {
		t.Errorf("outputs:\n%s", md)
	}
}

func TestAccountStackDestroyRefusedWhileBrokerStacksHoldResources(t *testing.T) {
	f := &fake{stacks: []StackInfo{{"account", 12}, {"test-2", 72}, {"prod", -1}, {"test-3", 0}}}
	outs := Driver{Engine: f, AllowReplace: true}.Run(context.Background(), Destroy, []string{"account"})
	o := outs[0]
	if o.Status != Refused || ExitCode(outs) != 3 {
		t.Fatalf("%+v", o)
	}
	for _, want := range []string{"prod (resource count unknown)", "test-2 (72 resources)", "destroy them first"} {
		if !strings.Contains(o.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, o.Reason)
		}
	}
	if strings.Contains(o.Reason, "test-3") || slices.Contains(f.calls, "destroy account") {
		t.Fatalf("reason %q calls %v", o.Reason, f.calls)
	}

	// A listing failure is a failure, never a go-ahead.
	f = &fake{listErr: errors.New("backend unreachable")}
	outs = Driver{Engine: f, AllowReplace: true}.Run(context.Background(), Destroy, []string{"account"})
	if outs[0].Status != Failed || !strings.Contains(outs[0].Reason, "backend unreachable") || slices.Contains(f.calls, "destroy account") {
		t.Fatalf("%+v calls %v", outs[0], f.calls)
	}
}

func TestAccountStackDestroyedAfterTheBrokerStacksOfTheSameRun(t *testing.T) {
	f := &fake{stacks: []StackInfo{{"account", 12}, {"test-2", 72}, {"test-4", 60}}}
	outs := Driver{Engine: f, Parallel: 3, AllowReplace: true}.Run(context.Background(), Destroy, []string{"account", "test-2", "test-4"})
	for _, o := range outs {
		if o.Status != OK {
			t.Fatalf("%+v", outs)
		}
	}
	if n := len(f.calls); n != 4 || f.calls[n-2] != "list" || f.calls[n-1] != "destroy account" {
		t.Fatalf("calls %v: the account stack must go last, after a fresh listing", f.calls)
	}
	// Still prod posture: without --allow-replace it is refused.
	f = &fake{stacks: []StackInfo{{"account", 12}}}
	if o := (Driver{Engine: f}).Run(context.Background(), Destroy, []string{"account"}); o[0].Status != Refused || !strings.Contains(o[0].Reason, "--allow-replace") {
		t.Fatalf("%+v", o[0])
	}
}

func TestAccountStackPreviewAndGatedUp(t *testing.T) {
	f := &fake{preview: map[string]Result{"account": replacePreview("account")}}
	if o := (Driver{Engine: f}).Run(context.Background(), Preview, []string{"account"}); o[0].Status != OK {
		t.Fatalf("preview: %+v", o[0])
	}
	o := Driver{Engine: f}.Run(context.Background(), Up, []string{"account"})
	if o[0].Status != Refused || slices.Contains(f.calls, "up account") {
		t.Fatalf("up with a replacing preview: %+v calls %v", o[0], f.calls)
	}
}

// A redeploy replaces the bring-up's pulumi-command resources on every agent
// or spec change: that is a re-run, and prod's gate lets it through.
func TestGateLetsBringUpReRunsThrough(t *testing.T) {
	rerun := Result{
		Counts: map[string]int{"replace": 3, "same": 60},
		Steps: []Step{
			{Op: "replace", Type: "command:remote:Command", URN: fmt.Sprintf(urn, "prod", "command:remote:Command", "agentkeys-host-stage")},
			{Op: "replace", Type: "command:remote:CopyToRemote", URN: fmt.Sprintf(urn, "prod", "command:remote:CopyToRemote", "agentkeys-host-agent")},
			{Op: "replace", Type: "command:remote:Command", URN: fmt.Sprintf(urn, "prod", "command:remote:Command", "agentkeys-host-apply")},
			{Op: "same", Type: "aws:iam/role:Role", URN: fmt.Sprintf(urn, "prod", "aws:iam/role:Role", "data-role")},
		},
	}
	f := &fake{preview: map[string]Result{"prod": rerun}}
	outs := Driver{Engine: f}.Run(context.Background(), Up, []string{"prod"})
	if outs[0].Status != OK || !slices.Contains(f.calls, "up prod") {
		t.Fatalf("bring-up re-run refused: %+v", outs[0])
	}
	// A replaced role among them is still refused.
	rerun.Steps = append(rerun.Steps, Step{Op: "replace", Type: "aws:iam/role:Role", URN: fmt.Sprintf(urn, "prod", "aws:iam/role:Role", "host-role")})
	f = &fake{preview: map[string]Result{"prod": rerun}}
	if outs := (Driver{Engine: f}).Run(context.Background(), Up, []string{"prod"}); outs[0].Status != Refused || !strings.Contains(outs[0].Reason, "replace aws:iam/role:Role host-role") {
		t.Fatalf("%+v", outs[0])
	}
}

func TestDestroyWithProtectedResourcesRefusedBeforeAnythingIsDeleted(t *testing.T) {
	urn := "urn:pulumi:prod::agentkeys::agentkeys:index:BrokerStack$aws:s3/bucketV2:BucketV2::agentkeys-vault-bucket"
	f := &fake{protected: map[string][]string{"prod": {urn}, "test-2": nil}}
	outs := Driver{Engine: f, AllowReplace: true}.Run(context.Background(), Destroy, []string{"prod", "test-2"})
	if outs[0].Status != Refused || !strings.Contains(outs[0].Reason, "agentkeys-vault-bucket") || !strings.Contains(outs[0].Reason, "nothing was deleted") {
		t.Fatalf("prod: %+v", outs[0])
	}
	if slices.Contains(f.calls, "destroy prod") || !slices.Contains(f.calls, "destroy test-2") || outs[1].Status != OK {
		t.Fatalf("calls %v, test-2 %+v", f.calls, outs[1])
	}
}

func TestPreviewNotesReachTheSummary(t *testing.T) {
	st, err := naming.ParseStack("test-2")
	if err != nil {
		t.Fatal(err)
	}
	n := naming.Derive(st, naming.Fork{AccountID: "123456789012", Zone: "example.org"})
	pending := Result{Counts: map[string]int{"create": 2}, Steps: []Step{{Op: "create", Type: "aws:iam/role:Role", URN: "urn:x::r"}}}
	note := OIDCPendingNote(n, pending)
	if !strings.Contains(note, n.OIDCProviderARN) || !strings.Contains(note, "serving OIDC discovery over TLS") {
		t.Fatalf("note %q", note)
	}
	if OIDCPendingNote(n, Result{Steps: []Step{{Op: "same", Type: OIDCProviderType}}}) != "" {
		t.Fatal("a preview with the provider got the note")
	}
	f := &fake{preview: map[string]Result{"test-2": pending}}
	d := Driver{Engine: f, Notes: func(stack string, r Result) []string { return []string{OIDCPendingNote(n, r)} }}
	outs := d.Run(context.Background(), Preview, []string{"test-2"})
	if md := Markdown(outs); !strings.Contains(md, "**test-2** (note): the IAM OIDC provider "+n.OIDCProviderARN) {
		t.Fatalf("summary:\n%s", md)
	}
}
