// Package deploy drives pulumi preview/up/refresh/destroy for one or several
// stacks behind an Engine interface (the real one wraps the Automation API;
// the Pulumi CLI it needs is absent on dev machines), with the CI rules:
// a prod-posture stack's up runs exactly its previewed plan and never
// replaces, deletes or destructively updates a resource not allowed by name
// (gate.go), stacks converge with bounded concurrency, previews become a
// Markdown summary.
package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// Action is a lifecycle operation.
type Action string

const (
	Preview Action = "preview"
	Up      Action = "up"
	Refresh Action = "refresh"
	Destroy Action = "destroy"
)

// ParseAction validates an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Preview, Up, Refresh, Destroy:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q: use preview, up, refresh or destroy", s)
}

// Step is one resource step of an operation.
type Step struct {
	Op   string `json:"op"` // create, update, replace, create-replacement, delete-replaced, delete, same, ...
	URN  string `json:"urn"`
	Type string `json:"type"`
}

// Output is one stack output; Secret values are never rendered.
type Output struct {
	Value  any
	Secret bool
}

// Result is what an engine reports for one operation on one stack.
type Result struct {
	Counts  map[string]int // op -> number of resources
	Steps   []Step
	Outputs map[string]Output
}

// LastDeploy summarises a stack's most recent update.
type LastDeploy struct {
	Kind   string // update, refresh, destroy, ...
	Result string // succeeded, failed, in-progress
	End    time.Time
}

// Engine runs Pulumi operations on one stack.
type Engine interface {
	Preview(ctx context.Context, stack string) (Result, error)
	Up(ctx context.Context, stack string) (Result, error)
	Refresh(ctx context.Context, stack string) (Result, error)
	Destroy(ctx context.Context, stack string) (Result, error)
	// LastDeploy returns false when the stack has no history.
	LastDeploy(ctx context.Context, stack string) (LastDeploy, bool, error)
	// Stacks lists the project's stacks in the backend.
	Stacks(ctx context.Context) ([]StackInfo, error)
	// Protected lists the URNs of the stack's protected resources.
	Protected(ctx context.Context, stack string) ([]string, error)
}

// StackInfo is one stack of the backend; Resources is -1 when unknown.
type StackInfo struct {
	Name      string
	Resources int
}

// Status of one stack's outcome.
type Status string

const (
	OK      Status = "ok"
	Failed  Status = "failed"
	Refused Status = "refused"
)

// Outcome is what happened to one stack.
type Outcome struct {
	Stack   string
	Action  Action
	Status  Status
	Reason  string // why refused or failed
	Preview *Result
	Result  *Result
	// Notes say in words what the counts cannot (e.g. a resource that is
	// declared only during the up).
	Notes []string
	// Findings are the plan's operations that need an allow (prod posture).
	Findings []Finding
}

// Driver applies an action to stacks.
type Driver struct {
	Engine       Engine
	Parallel     int  // at most this many stacks at once (>= 1)
	AllowReplace bool // let a prod-posture stack be destroyed
	// Notes adds notes to a preview's outcome (nil = none).
	Notes func(stack string, preview Result) []string
	// The prod gate (gate.go): per stack, the resources (names or URNs) whose
	// replace, delete or destructive update is allowed; a reviewed plan file
	// to run instead of a fresh preview; and a last approval of the shown
	// plan (nil approves).
	Allow     map[string][]string
	PlanFiles map[string]string
	Approve   func(stack string, preview *Result, findings []Finding) bool
	// SavePlanDir makes preview save each stack's plan as <dir>/<stack>.plan.json.
	SavePlanDir string
}

// Destructive counts steps that replace or delete a resource. A replaced
// pulumi-command resource is a re-run of the host bring-up (its triggers
// force a replace), not a loss, so it does not count.
func Destructive(r Result) (replaces, deletes int) {
	if len(r.Steps) > 0 {
		for _, s := range r.Steps {
			if strings.HasPrefix(s.Type, "command:") {
				continue
			}
			switch s.Op {
			case "replace":
				replaces++
			case "delete", "discard":
				deletes++
			}
		}
		return replaces, deletes
	}
	// Step events report one logical replace as create-replacement, replace
	// and delete-replaced; the change summary as "replace". Count it once.
	replaces = r.Counts["replace"]
	if replaces == 0 {
		replaces = r.Counts["create-replacement"]
	}
	return replaces, r.Counts["delete"] + r.Counts["discard"]
}

// Run applies action to every stack, at most Parallel at a time, and returns
// the outcomes in the order of stacks.
func (d Driver) Run(ctx context.Context, action Action, stacks []string) []Outcome {
	par := d.Parallel
	if par < 1 {
		par = 1
	}
	out := make([]Outcome, len(stacks))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	last := -1 // the account stack is destroyed after the broker stacks of the same run
	for i, s := range stacks {
		if action == Destroy && s == naming.AccountStack {
			last = i
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = Outcome{Stack: s, Action: action, Status: Failed, Reason: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			out[i] = d.one(ctx, action, s)
		}()
	}
	wg.Wait()
	if last >= 0 {
		out[last] = d.one(ctx, action, stacks[last])
	}
	return out
}

func (d Driver) one(ctx context.Context, action Action, stack string) Outcome {
	o := Outcome{Stack: stack, Action: action}
	if _, err := naming.ParseStack(stack); err != nil && stack != naming.AccountStack {
		o.Status, o.Reason = Failed, err.Error()
		return o
	}
	prodPosture := ProdPosture(stack)
	failed := func(err error) Outcome {
		o.Status, o.Reason = Failed, err.Error()
		return o
	}
	var r Result
	var err error
	switch action {
	case Preview:
		if d.SavePlanDir != "" {
			return d.previewPlan(ctx, o, stack)
		}
		r, err = d.Engine.Preview(ctx, stack)
		if err != nil {
			return failed(err)
		}
		o.Preview = &r
		o.Notes = d.notes(stack, r)
	case Up:
		if prodPosture {
			return d.gatedUp(ctx, o, stack)
		}
		r, err = d.Engine.Up(ctx, stack)
		if err != nil {
			return failed(err)
		}
	case Refresh:
		r, err = d.Engine.Refresh(ctx, stack)
		if err != nil {
			return failed(err)
		}
	case Destroy:
		if stack == naming.AccountStack {
			users, err := d.brokerStacks(ctx)
			if err != nil {
				return failed(fmt.Errorf("list the stacks that use %s: %w", stack, err))
			}
			if len(users) > 0 {
				o.Status = Refused
				o.Reason = fmt.Sprintf("%s holds what broker stacks share (SES rule set, GitHub OIDC provider, CI deploy role) and these stacks still have resources: %s; destroy them first", stack, strings.Join(users, ", "))
				return o
			}
		}
		if prodPosture && !d.AllowReplace {
			o.Status = Refused
			o.Reason = fmt.Sprintf("%s is a prod-posture stack: destroy deletes every resource; re-run with --allow-replace if that is really intended", stack)
			return o
		}
		// The Automation API destroys without a preview: it would delete
		// every unprotected resource and only then fail on the protected
		// ones. Refuse before anything is deleted.
		prot, err := d.Engine.Protected(ctx, stack)
		if err != nil {
			return failed(fmt.Errorf("reading which resources of %s are protected: %w", stack, err))
		}
		if len(prot) > 0 {
			names := make([]string, 0, len(prot))
			for _, u := range prot {
				names = append(names, urnName(u))
			}
			sort.Strings(names)
			o.Status = Refused
			o.Reason = fmt.Sprintf("%s holds %d protected resource(s) (%s); nothing was deleted. Retiring them is deliberate: `pulumi state unprotect --stack %s <urn>` for each (or --all), then destroy again", stack, len(prot), strings.Join(names, ", "), stack)
			return o
		}
		r, err = d.Engine.Destroy(ctx, stack)
		if err != nil {
			return failed(err)
		}
	default:
		return failed(fmt.Errorf("unknown action %q", action))
	}
	if action != Preview {
		o.Result = &r
	}
	o.Status = OK
	return o
}

func (d Driver) notes(stack string, r Result) []string {
	if d.Notes == nil {
		return nil
	}
	return d.Notes(stack, r)
}

// OIDCProviderType is the token of the IAM OIDC provider.
const OIDCProviderType = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"

// OIDCPendingNote explains a broker stack's preview that does not show its
// OIDC provider: the program declares it inside the up, once the host
// bring-up reports the broker serving OIDC discovery over TLS (IAM fetches
// the issuer's certificate when the provider is registered).
func OIDCPendingNote(n naming.Names, preview Result) string {
	for _, s := range preview.Steps {
		if s.Type == OIDCProviderType {
			return ""
		}
	}
	return fmt.Sprintf("the IAM OIDC provider %s is not in this preview: `up` creates it once the host bring-up reports %s serving OIDC discovery over TLS (one more resource than previewed), and in the same run the data and class roles switch from the static trust to trusting only it", n.OIDCProviderARN, n.Issuer)
}

// brokerStacks lists the backend's other stacks that still hold resources
// (an unknown count counts as holding some).
func (d Driver) brokerStacks(ctx context.Context) ([]string, error) {
	all, err := d.Engine.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, s := range all {
		switch {
		case s.Name == naming.AccountStack || s.Resources == 0:
		case s.Resources < 0:
			users = append(users, s.Name+" (resource count unknown)")
		default:
			users = append(users, fmt.Sprintf("%s (%d resources)", s.Name, s.Resources))
		}
	}
	sort.Strings(users)
	return users, nil
}

// ExitCode maps outcomes to the CLI's exit code: 1 if any failed, else 3 if
// any was refused by the gate, else 0.
func ExitCode(outs []Outcome) int {
	code := 0
	for _, o := range outs {
		switch o.Status {
		case Failed:
			return 1
		case Refused:
			code = 3
		}
	}
	return code
}

// opOrder is the column order of summaries.
var opOrder = []string{"create", "update", "replace", "delete", "same"}

// counts folds raw op counts into the summary columns.
func counts(r Result) map[string]int {
	rep, del := Destructive(r)
	return map[string]int{"create": r.Counts["create"], "update": r.Counts["update"], "replace": rep, "delete": del, "same": r.Counts["same"]}
}

// Markdown renders outcomes for a pull-request comment. It prints op counts,
// resource URNs and non-secret outputs only: never a property value.
func Markdown(outs []Outcome) string {
	var b strings.Builder
	action := Preview
	if len(outs) > 0 {
		action = outs[0].Action
	}
	fmt.Fprintf(&b, "### `pulumi %s`\n\n", action)
	b.WriteString("| stack | status | create | update | replace | delete | same |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, o := range outs {
		r := o.Result
		if r == nil {
			r = o.Preview
		}
		c := map[string]int{}
		if r != nil {
			c = counts(*r)
		}
		status := string(o.Status)
		if o.Status != OK {
			status = "**" + status + "**"
		}
		if rep := c["replace"] + c["delete"]; rep > 0 && ProdPosture(o.Stack) {
			status += " ⚠️ prod"
		}
		fmt.Fprintf(&b, "| %s | %s |", o.Stack, status)
		for _, op := range opOrder {
			fmt.Fprintf(&b, " %d |", c[op])
		}
		b.WriteString("\n")
	}
	for _, o := range outs {
		if o.Reason != "" {
			fmt.Fprintf(&b, "\n> **%s**: %s\n", o.Stack, mdEscape(o.Reason))
		}
		for _, n := range o.Notes {
			fmt.Fprintf(&b, "\n> **%s** (note): %s\n", o.Stack, mdEscape(n))
		}
		if len(o.Findings) > 0 {
			fmt.Fprintf(&b, "\n%s: the prod gate runs these only when allowed by name (`--allow %s:<name>`):\n\n", o.Stack, o.Stack)
			for _, f := range o.Findings {
				fmt.Fprintf(&b, "- %s\n", mdEscape(f.String()))
			}
		}
		r := o.Result
		if r == nil {
			r = o.Preview
		}
		if r == nil {
			continue
		}
		var changed []Step
		for _, s := range r.Steps {
			if s.Op != "same" && s.Op != "read" {
				changed = append(changed, s)
			}
		}
		if len(changed) > 0 {
			fmt.Fprintf(&b, "\n<details><summary>%s: %d change(s)</summary>\n\n| op | type | name |\n|---|---|---|\n", o.Stack, len(changed))
			for _, s := range changed {
				fmt.Fprintf(&b, "| %s | `%s` | `%s` |\n", s.Op, s.Type, urnName(s.URN))
			}
			b.WriteString("\n</details>\n")
		}
		if len(r.Outputs) > 0 {
			keys := make([]string, 0, len(r.Outputs))
			for k := range r.Outputs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(&b, "\n<details><summary>%s: outputs</summary>\n\n| output | value |\n|---|---|\n", o.Stack)
			for _, k := range keys {
				v := "[secret]"
				if !r.Outputs[k].Secret {
					v = "`" + mdEscape(fmt.Sprint(r.Outputs[k].Value)) + "`"
				}
				fmt.Fprintf(&b, "| %s | %s |\n", k, v)
			}
			b.WriteString("\n</details>\n")
		}
	}
	return b.String()
}

// ProdPosture reports whether a stack is gated like prod: prod, base and the
// account stack.
func ProdPosture(stack string) bool {
	if stack == naming.AccountStack {
		return true
	}
	st, err := naming.ParseStack(stack)
	return err == nil && st.ProdPosture()
}

// urnName is the resource name part of a URN (after the last "::").
func urnName(urn string) string {
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		return urn[i+2:]
	}
	return urn
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "`", "'").Replace(s)
}
