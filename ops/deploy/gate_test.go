package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// The fake engine saves real Pulumi plan files (apitype v1) built from its
// scripted preview steps, so the gate reads what `preview --save-plan` writes.

func (f *fake) PreviewPlan(ctx context.Context, s, file string) (Result, error) {
	return writeFakePlan(f, s, file, nil)
}

func (f *fake) UpPlan(ctx context.Context, s, file string) (Result, error) {
	return f.Up(ctx, s)
}

// planFake adds changed inputs per URN to the plans it writes and records
// the plan file each up ran with.
type planFake struct {
	*fake
	changed map[string][]string
	applied []string // plan file contents, in order
	upErr   error
}

func (p *planFake) PreviewPlan(ctx context.Context, s, file string) (Result, error) {
	return writeFakePlan(p.fake, s, file, p.changed)
}

func (p *planFake) UpPlan(ctx context.Context, s, file string) (Result, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Result{}, err
	}
	p.applied = append(p.applied, string(b))
	r, err := p.fake.Up(ctx, s)
	if p.upErr != nil {
		return r, p.upErr
	}
	return r, err
}

func writeFakePlan(f *fake, s, file string, changed map[string][]string) (Result, error) {
	r, err := f.Preview(context.Background(), s)
	if err != nil {
		return r, err
	}
	plan := apitype.DeploymentPlanV1{ResourcePlans: map[resource.URN]apitype.ResourcePlanV1{}}
	for _, st := range r.Steps {
		var ops []apitype.OpType
		switch st.Op {
		case "replace":
			ops = []apitype.OpType{"create-replacement", "replace", "delete-replaced"}
		default:
			ops = []apitype.OpType{apitype.OpType(st.Op)}
		}
		rp := apitype.ResourcePlanV1{Steps: ops}
		if st.Op != "delete" {
			rp.Goal = &apitype.GoalV1{Type: tokens.Type(st.Type), Name: urnName(st.URN), Custom: true}
			upd := map[string]any{}
			for _, k := range changed[st.URN] {
				upd[k] = "new"
			}
			rp.Goal.InputDiff.Updates = upd
		}
		plan.ResourcePlans[resource.URN(st.URN)] = rp
	}
	plan.Manifest = apitype.ManifestV1{Magic: "fake", Version: "v3.274.1"}
	b, _ := json.Marshal(plan)
	return r, os.WriteFile(file, b, 0o600)
}

func step(stack, op, typ, name string) Step {
	return Step{Op: op, Type: typ, URN: fmt.Sprintf(urn, stack, typ, name)}
}

func TestGuardClassifiesPlans(t *testing.T) {
	u := func(typ, name string) string { return fmt.Sprintf(urn, "prod", typ, name) }
	plan := []PlannedResource{
		{URN: u("aws:s3/bucketPolicy:BucketPolicy", "vault-policy"), Type: "aws:s3/bucketPolicy:BucketPolicy", Ops: []string{"update"}, Changed: []string{"policy"}},
		{URN: u("aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2", "mail-expiry"), Type: "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2", Ops: []string{"update"}, Changed: []string{"rules"}},
		{URN: u("aws:iam/role:Role", "vault-role"), Type: "aws:iam/role:Role", Ops: []string{"update"}, Changed: []string{"assumeRolePolicy", "description"}},
		{URN: u("aws:iam/role:Role", "data-role"), Type: "aws:iam/role:Role", Ops: []string{"update"}, Changed: []string{"description", "tags"}},
		{URN: u("aws:route53/record:Record", "a-broker"), Type: "aws:route53/record:Record", Ops: []string{"update"}, Changed: []string{"records"}},
		{URN: u("aws:route53/record:Record", "a-mcp"), Type: "aws:route53/record:Record", Ops: []string{"update"}, Changed: []string{"ttl"}},
		{URN: u("aws:sesv2/emailIdentity:EmailIdentity", "mail"), Type: "aws:sesv2/emailIdentity:EmailIdentity", Ops: []string{"update"}, Changed: []string{"tags"}},
		{URN: u("aws:iam/user:User", "daemon"), Type: "aws:iam/user:User", Ops: []string{"delete"}},
		{URN: u("aws:iam/instanceProfile:InstanceProfile", "profile"), Type: "aws:iam/instanceProfile:InstanceProfile", Ops: []string{"create-replacement", "replace", "delete-replaced"}},
		{URN: u("command:remote:Command", "agentkeys-host-apply"), Type: "command:remote:Command", Ops: []string{"create-replacement", "replace", "delete-replaced"}},
		{URN: u("aws:iam/policy:Policy", "new"), Type: "aws:iam/policy:Policy", Ops: []string{"create"}, Changed: []string{"policy"}},
		{URN: u("aws:ses/receiptRuleSet:ReceiptRuleSet", "rule-set"), Type: "aws:ses/receiptRuleSet:ReceiptRuleSet", Ops: []string{"import"}},
		{URN: u("aws:kms/unknown:Thing", "x"), Type: "aws:kms/unknown:Thing", Ops: []string{"update"}, Changed: []string{"anything"}},
	}
	var got []string
	for _, f := range Guard(plan) {
		got = append(got, f.Op+" "+f.Name+" "+strings.Join(f.Keys, ","))
	}
	want := []string{
		"update vault-policy policy", "update mail-expiry rules", "update vault-role assumeRolePolicy",
		"update a-broker records", "delete daemon ", "replace profile ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings\n %q\nwant\n %q", got, want)
	}
}

func TestReadPlanRefusesWhatIsNotAPlan(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"garbage": "{not json", "no manifest": `{"version":1,"plan":{}}`, "list": `[]`} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o600)
		if _, err := ReadPlan(p); err == nil {
			t.Errorf("%s read as a plan", name)
		}
	}
	if _, err := ReadPlan(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing plan read")
	}
}

// Destructive updates of data-bearing and trust inputs are refused until
// named; harmless updates pass; the up runs the very plan that was gated.
func TestGateRefusesDestructiveUpdatesUntilNamed(t *testing.T) {
	prev := Result{Steps: []Step{
		step("prod", "update", "aws:s3/bucketPolicy:BucketPolicy", "prod-vault-policy"),
		step("prod", "update", "aws:iam/role:Role", "prod-data-role"),
		step("prod", "same", "aws:iam/user:User", "prod-daemon"),
	}}
	changed := map[string][]string{
		prev.Steps[0].URN: {"policy"},
		prev.Steps[1].URN: {"description"},
	}
	p := &planFake{fake: &fake{preview: map[string]Result{"prod": prev}}, changed: changed}
	outs := Driver{Engine: p}.Run(context.Background(), Up, []string{"prod"})
	o := outs[0]
	if o.Status != Refused || !strings.Contains(o.Reason, "update aws:s3/bucketPolicy:BucketPolicy prod-vault-policy (policy)") ||
		!strings.Contains(o.Reason, "--allow prod:prod-vault-policy") || strings.Contains(o.Reason, "prod-data-role") {
		t.Fatalf("%+v", o)
	}
	if slices.Contains(p.calls, "up prod") || len(p.applied) != 0 {
		t.Fatalf("up ran: %v", p.calls)
	}
	if len(o.Findings) != 1 || !strings.Contains(Markdown(outs), "--allow prod:<name>") {
		t.Errorf("findings not reported: %+v\n%s", o.Findings, Markdown(outs))
	}

	// The blanket flag of earlier versions does not open the gate.
	p = &planFake{fake: &fake{preview: map[string]Result{"prod": prev}}, changed: changed}
	if o := (Driver{Engine: p, AllowReplace: true}).Run(context.Background(), Up, []string{"prod"})[0]; o.Status != Refused {
		t.Fatalf("--allow-replace opened the gate: %+v", o)
	}
	// Allowed for another stack only: still refused.
	if o := (Driver{Engine: p, Allow: map[string][]string{"base": {"prod-vault-policy"}}}).Run(context.Background(), Up, []string{"prod"})[0]; o.Status != Refused {
		t.Fatalf("an allow for base opened prod: %+v", o)
	}

	// Named (by name, then by URN): the up runs with the plan that was gated.
	for _, allow := range []string{"prod-vault-policy", prev.Steps[0].URN} {
		p = &planFake{fake: &fake{preview: map[string]Result{"prod": prev}}, changed: changed}
		o = Driver{Engine: p, Allow: map[string][]string{"prod": {allow}}}.Run(context.Background(), Up, []string{"prod"})[0]
		if o.Status != OK || !slices.Equal(p.calls, []string{"preview prod", "up prod"}) || len(p.applied) != 1 ||
			!strings.Contains(p.applied[0], "prod-vault-policy") {
			t.Fatalf("allowed %s: %+v calls %v", allow, o, p.calls)
		}
	}
}

// An allow that names nothing the plan changes destructively is an error:
// allows must describe the reviewed plan, not a standing exemption.
func TestGateRefusesStaleAllows(t *testing.T) {
	p := &planFake{fake: &fake{preview: map[string]Result{"prod": {Steps: []Step{step("prod", "update", "aws:iam/role:Role", "r")}}}}}
	o := Driver{Engine: p, Allow: map[string][]string{"prod": {"prod-vault-bucket"}}}.Run(context.Background(), Up, []string{"prod"})[0]
	if o.Status != Refused || !strings.Contains(o.Reason, "prod-vault-bucket") || slices.Contains(p.calls, "up prod") {
		t.Fatalf("%+v calls %v", o, p.calls)
	}
}

func TestGateApprovalAndReviewedPlanFile(t *testing.T) {
	prev := Result{Steps: []Step{step("base", "create", "aws:iam/policy:Policy", "p")}}
	// Not approved: nothing runs.
	p := &planFake{fake: &fake{preview: map[string]Result{"base": prev}}}
	var asked []string
	no := func(s string, r *Result, f []Finding) bool { asked = append(asked, s); return false }
	o := Driver{Engine: p, Approve: no}.Run(context.Background(), Up, []string{"base"})[0]
	if o.Status != Refused || !slices.Equal(asked, []string{"base"}) || slices.Contains(p.calls, "up base") {
		t.Fatalf("%+v asked %v calls %v", o, asked, p.calls)
	}

	// Two steps: preview --save-plan, review, up --plan FILE: no second preview.
	dir := t.TempDir()
	p = &planFake{fake: &fake{preview: map[string]Result{"base": prev}}}
	if o := (Driver{Engine: p, SavePlanDir: dir}).Run(context.Background(), Preview, []string{"base"})[0]; o.Status != OK {
		t.Fatalf("save plan: %+v", o)
	}
	saved, err := os.ReadFile(filepath.Join(dir, "base.plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	p.calls = nil
	o = Driver{Engine: p, PlanFiles: map[string]string{"base": filepath.Join(dir, "base.plan.json")}}.Run(context.Background(), Up, []string{"base"})[0]
	if o.Status != OK || !slices.Equal(p.calls, []string{"up base"}) || len(p.applied) != 1 || p.applied[0] != string(saved) {
		t.Fatalf("reviewed plan: %+v calls %v", o, p.calls)
	}

	// The engine refuses a plan the stack no longer matches: a failure, said plainly.
	p = &planFake{fake: &fake{preview: map[string]Result{"base": prev}}, upErr: errors.New("resource violates plan")}
	o = Driver{Engine: p}.Run(context.Background(), Up, []string{"base"})[0]
	if o.Status != Failed || !strings.Contains(o.Reason, "preview again") || !strings.Contains(o.Reason, "violates plan") {
		t.Fatalf("%+v", o)
	}
}

// An engine that cannot constrain an up to a plan is refused on prod posture
// and still serves test slots.
func TestGateNeedsAPlanEngine(t *testing.T) {
	type plain struct{ Engine }
	f := &fake{preview: map[string]Result{}}
	outs := Driver{Engine: plain{f}}.Run(context.Background(), Up, []string{"account", "test-3"})
	if outs[0].Status != Failed || !strings.Contains(outs[0].Reason, "cannot save update plans") || outs[1].Status != OK {
		t.Fatalf("%+v", outs)
	}
	if slices.Contains(f.calls, "up account") {
		t.Fatalf("account converged without a plan: %v", f.calls)
	}
}
