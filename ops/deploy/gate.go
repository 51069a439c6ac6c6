package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// The prod gate. `up` on a prod-posture stack (prod, a chain stack, account)
// previews into a saved Pulumi update plan, refuses the plan while it
// replaces or deletes anything, or updates a data-bearing or trust input,
// unless each such resource is named by an allow, and then runs `up --plan`
// with that very file: the engine fails the update instead of doing anything
// the plan did not show (pulumi/pulumi "update plans").

// PlanEngine is an Engine that saves previews as update plans and runs
// updates constrained to one.
type PlanEngine interface {
	Engine
	// PreviewPlan runs a preview and saves its plan to planFile.
	PreviewPlan(ctx context.Context, stack, planFile string) (Result, error)
	// UpPlan runs an update that may do only what planFile holds.
	UpPlan(ctx context.Context, stack, planFile string) (Result, error)
}

// Finding is one planned operation the gate runs only when allowed by name.
type Finding struct {
	URN  string
	Type string
	Name string   // the resource name (URN's last part): what --allow takes
	Op   string   // replace, delete or update
	Keys []string // for an update: the guarded inputs it changes
	Why  string
}

func (f Finding) String() string {
	s := f.Op + " " + f.Type + " " + f.Name
	if len(f.Keys) > 0 {
		s += " (" + strings.Join(f.Keys, ", ") + ")"
	}
	return s + ": " + f.Why
}

// guarded lists, per resource type, the inputs whose update is destructive:
// they hold or expose data, or decide who may assume, read or send. "*" is
// every input but tags.
var guarded = map[string]struct {
	keys []string
	why  string
}{
	"aws:s3/bucketV2:BucketV2":                                                                   {[]string{"*"}, "data bucket"},
	"aws:s3/bucketPolicy:BucketPolicy":                                                           {[]string{"*"}, "who may read or write a bucket"},
	"aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2":                       {[]string{"*"}, "expiry deletes objects"},
	"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":                                     {[]string{"*"}, "bucket exposure"},
	"aws:s3/bucketOwnershipControls:BucketOwnershipControls":                                     {[]string{"*"}, "bucket ACLs"},
	"aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": {[]string{"*"}, "data encryption"},
	"aws:iam/role:Role":                                   {[]string{"assumeRolePolicy", "permissionsBoundary", "inlinePolicies", "managedPolicyArns"}, "who may assume the role, and what it may do"},
	"aws:iam/rolePolicy:RolePolicy":                       {[]string{"*"}, "a role's grant"},
	"aws:iam/userPolicy:UserPolicy":                       {[]string{"*"}, "a user's grant"},
	"aws:iam/policy:Policy":                               {[]string{"policy"}, "a managed grant"},
	"aws:iam/user:User":                                   {[]string{"permissionsBoundary"}, "a user's boundary"},
	"aws:iam/accessKey:AccessKey":                         {[]string{"*"}, "a credential"},
	"aws:iam/instanceProfile:InstanceProfile":             {[]string{"role"}, "the host's role"},
	"aws:iam/openIdConnectProvider:OpenIdConnectProvider": {[]string{"*"}, "the federation trust anchor"},
	"aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet":   {[]string{"*"}, "every stack's inbound mail"},
	"aws:ses/receiptRule:ReceiptRule":                     {[]string{"*"}, "where inbound mail goes"},
	"aws:sesv2/emailIdentity:EmailIdentity":               {[]string{"*"}, "the sending identity"},
	"aws:route53/record:Record":                           {[]string{"records", "aliases", "type"}, "where a hostname (an OIDC issuer) points"},
	"aws:ec2/eip:Eip":                                     {[]string{"*"}, "the broker's address"},
	"aws:ec2/eipAssociation:EipAssociation":               {[]string{"*"}, "the broker's address"},
	"aws:ec2/tag:Tag":                                     {[]string{"*"}, "an EIP's identity"},
}

// unguardedType is true for resources whose replace is no loss: a replaced
// pulumi-command resource is a re-run of the host bring-up (its triggers
// force a replace).
func unguardedType(typ string) bool { return strings.HasPrefix(typ, "command:") }

// PlannedResource is one resource of a saved plan.
type PlannedResource struct {
	URN     string
	Type    string
	Ops     []string
	Changed []string // inputs the plan adds, deletes or updates
}

// ReadPlan parses a plan file written by `pulumi preview --save-plan`.
func ReadPlan(path string) ([]PlannedResource, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	// `pulumi preview --save-plan` writes a bare DeploymentPlanV1.
	var p apitype.DeploymentPlanV1
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil || probe["manifest"] == nil {
		return nil, fmt.Errorf("%s is not a plan file of `pulumi preview --save-plan` (no manifest)", path)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	var out []PlannedResource
	for urn, r := range p.ResourcePlans {
		pr := PlannedResource{URN: string(urn), Type: string(urn.Type())}
		for _, op := range r.Steps {
			pr.Ops = append(pr.Ops, string(op))
		}
		if r.Goal != nil {
			if t := string(r.Goal.Type); t != "" {
				pr.Type = t
			}
			d := r.Goal.InputDiff
			for k := range d.Adds {
				pr.Changed = append(pr.Changed, k)
			}
			pr.Changed = append(pr.Changed, d.Deletes...)
			for k := range d.Updates {
				pr.Changed = append(pr.Changed, k)
			}
			sort.Strings(pr.Changed)
		}
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URN < out[j].URN })
	return out, nil
}

// Guard lists the planned operations that need an explicit allow.
func Guard(plan []PlannedResource) []Finding {
	var out []Finding
	for _, r := range plan {
		if unguardedType(r.Type) {
			continue
		}
		f := Finding{URN: r.URN, Type: r.Type, Name: urnName(r.URN)}
		var replace, del, update bool
		for _, op := range r.Ops {
			switch op {
			case "replace", "create-replacement", "delete-replaced":
				replace = true
			case "delete":
				del = true
			case "update":
				update = true
			}
		}
		switch {
		case replace:
			f.Op, f.Why = "replace", "a new resource takes its place and the old one is deleted"
		case del:
			f.Op, f.Why = "delete", "the resource is deleted"
		case update:
			g, ok := guarded[r.Type]
			if !ok {
				continue
			}
			for _, k := range r.Changed {
				if k == "tags" || k == "tagsAll" || k == "__defaults" {
					continue
				}
				if g.keys[0] == "*" || contains(g.keys, k) {
					f.Keys = append(f.Keys, k)
				}
			}
			if len(f.Keys) == 0 {
				continue
			}
			f.Op, f.Why = "update", g.why
		default:
			continue
		}
		out = append(out, f)
	}
	return out
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// checkAllowed splits findings into those not allowed, and reports allows
// that name nothing in the plan (a stale allow must not pass silently).
func checkAllowed(findings []Finding, allow []string) (refused []Finding, stale []string) {
	named := map[string]bool{}
	for _, f := range findings {
		ok := false
		for _, a := range allow {
			if a == f.Name || a == f.URN {
				ok, named[a] = true, true
			}
		}
		if !ok {
			refused = append(refused, f)
		}
	}
	for _, a := range allow {
		if !named[a] {
			stale = append(stale, a)
		}
	}
	return refused, stale
}

// gatedUp runs up on a prod-posture stack through a saved plan.
func (d Driver) gatedUp(ctx context.Context, o Outcome, stack string) Outcome {
	failed := func(err error) Outcome {
		o.Status, o.Reason = Failed, err.Error()
		return o
	}
	pe, ok := d.Engine.(PlanEngine)
	if !ok {
		return failed(fmt.Errorf("%s is a prod-posture stack and this engine cannot save update plans; refusing to run an up it cannot constrain", stack))
	}
	planFile := d.PlanFiles[stack]
	if planFile == "" {
		dir, err := os.MkdirTemp("", "agentkeys-plan-")
		if err != nil {
			return failed(err)
		}
		defer os.RemoveAll(dir)
		planFile = filepath.Join(dir, stack+".plan.json")
		p, err := pe.PreviewPlan(ctx, stack, planFile)
		if err != nil {
			return failed(fmt.Errorf("gate preview: %w", err))
		}
		o.Preview = &p
		o.Notes = d.notes(stack, p)
	}
	plan, err := ReadPlan(planFile)
	if err != nil {
		return failed(err)
	}
	findings := Guard(plan)
	o.Findings = findings
	refused, stale := checkAllowed(findings, d.Allow[stack])
	if len(refused) > 0 || len(stale) > 0 {
		var parts []string
		for _, f := range refused {
			parts = append(parts, f.String())
		}
		reason := stack + " is a prod-posture stack"
		if len(parts) > 0 {
			reason += "; the plan would " + strings.Join(parts, "; ") +
				". Review it, then allow each by name: --allow " + stack + ":" + refused[0].Name
		}
		if len(stale) > 0 {
			reason += "; --allow names what this plan does not change destructively: " + strings.Join(stale, ", ")
		}
		o.Status, o.Reason = Refused, reason
		return o
	}
	if d.Approve != nil && !d.Approve(stack, o.Preview, findings) {
		o.Status, o.Reason = Refused, "not approved: nothing was changed"
		return o
	}
	r, err := pe.UpPlan(ctx, stack, planFile)
	o.Result = &r
	if err != nil {
		return failed(fmt.Errorf("up with the approved plan (the engine stops when the program or the stack no longer matches what was previewed; preview again): %w", err))
	}
	o.Status = OK
	return o
}

// previewPlan previews a stack into <SavePlanDir>/<stack>.plan.json and lists
// what the gate would ask allows for; `deploy up --plan` runs that file.
func (d Driver) previewPlan(ctx context.Context, o Outcome, stack string) Outcome {
	pe, ok := d.Engine.(PlanEngine)
	if !ok {
		o.Status, o.Reason = Failed, "this engine cannot save update plans"
		return o
	}
	file := filepath.Join(d.SavePlanDir, stack+".plan.json")
	p, err := pe.PreviewPlan(ctx, stack, file)
	o.Preview = &p
	if err != nil {
		o.Status, o.Reason = Failed, err.Error()
		return o
	}
	plan, err := ReadPlan(file)
	if err != nil {
		o.Status, o.Reason = Failed, err.Error()
		return o
	}
	if ProdPosture(stack) {
		o.Findings = Guard(plan)
	}
	o.Status = OK
	return o
}
