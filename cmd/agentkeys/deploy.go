package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// engineFactory builds the Pulumi engine for the project in workDir.
type engineFactory func(workDir string, progress io.Writer) deploy.Engine

// autoEngine runs the program compiled into this binary (an inline
// program) through the Automation API; the host agent is built from the
// checkout in workDir (or AGENTKEYS_HOSTAGENT_BINARY).
func autoEngine(workDir string, progress io.Writer) deploy.Engine {
	root, err := filepath.Abs(workDir)
	if err != nil {
		root = workDir
	}
	return deploy.AutoEngine{ProjectDir: workDir, Progress: progress,
		Program: func(_ string, cfg *config.Raw) pulumi.RunFunc {
			return program.Inline(program.Source{Config: cfg, ProjectDir: root})
		}}
}

// oidcNotes says, for a broker stack's preview without its OIDC provider,
// that `up` creates it once the broker serves TLS.
func oidcNotes(projectDir string) func(string, deploy.Result) []string {
	return func(stack string, r deploy.Result) []string {
		if stack == naming.AccountStack {
			return nil
		}
		t, err := stackcfg.Load(projectDir, stack)
		if err != nil {
			return nil
		}
		if n := deploy.OIDCPendingNote(t.Names, r); n != "" {
			return []string{n}
		}
		return nil
	}
}

// The approval prompt's input: stdin, when it is a terminal (tests replace both).
var (
	promptIn   io.Reader = os.Stdin
	isTerminal           = func() bool {
		fi, err := os.Stdin.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
)

func (a *app) deployCmd() *cobra.Command {
	var (
		stacks       []string
		parallel     int
		allowReplace bool
		allow        []string
		planFile     string
		savePlan     string
		yes          bool
		summary      string
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "deploy preview|up|refresh|destroy --stack X[,Y...]",
		Short: "Run Pulumi operations on one or several stacks through the Automation API (CI driver)",
		Long: "On a prod-posture stack (prod, a chain stack, account), up previews into a saved Pulumi update plan, " +
			"refuses it while it replaces, deletes or destructively updates (bucket policies, lifecycle, trust, grants, " +
			"DNS of the issuer...) a resource not named by --allow STACK:NAME, asks for approval (--yes in CI), and runs " +
			"exactly that plan (pulumi up --plan): the engine stops if the program or the stack changed since. " +
			"Two steps: deploy preview --save-plan DIR, review, deploy up --plan DIR/STACK.plan.json.\n" +
			"Exit codes: 0 ok, 1 an operation failed, 2 bad usage, 3 refused (the prod gate, no approval, " +
			"or destroy of a prod-posture stack without --allow-replace).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			action, err := deploy.ParseAction(args[0])
			if err != nil {
				return fail(exitUsage, "%v", err)
			}
			if len(stacks) == 0 {
				return fail(exitUsage, "--stack is required (comma-separated for several: --stack test-2,test-3)")
			}
			if parallel < 1 {
				return fail(exitUsage, "--parallel %d: must be >= 1", parallel)
			}
			seen := map[string]bool{}
			for _, s := range stacks {
				if seen[s] {
					return fail(exitUsage, "--stack lists %s twice", s)
				}
				seen[s] = true
				// Validate every stack's config before touching any of them.
				if s == naming.AccountStack {
					_, err = config.LoadAccountFile(a.projectDir)
				} else {
					_, err = stackcfg.Load(a.projectDir, s)
				}
				if err != nil {
					return fail(exitUsage, "%v", err)
				}
				// A prod-side stack on the test key would be readable by PR jobs.
				raw, err := config.ReadStackFile(a.projectDir, s)
				if err != nil {
					return fail(exitUsage, "%v", err)
				}
				region := raw.Values["aws:region"]
				if region == "" {
					region = "us-east-1"
				}
				if err := policy.CheckSecretsProvider(s, raw.SecretsProvider, region); err != nil {
					return fail(exitUsage, "%v", err)
				}
			}
			d := deploy.Driver{Parallel: parallel, AllowReplace: allowReplace, Allow: map[string][]string{}, PlanFiles: map[string]string{},
				Notes: oidcNotes(a.projectDir)}
			if err := gateFlags(&d, action, stacks, allow, planFile, savePlan, allowReplace); err != nil {
				return err
			}
			if !yes {
				d.Approve = a.approver()
			}
			d.Engine = a.deps.engine(a.projectDir, a.errOut)
			outs := d.Run(cmd.Context(), action, stacks)
			if asJSON {
				if err := printJSON(a.out, outs); err != nil {
					return fail(exitFail, "--json: %v", err)
				}
			} else {
				printOutcomes(a, outs)
			}
			if summary != "" {
				if err := os.WriteFile(summary, []byte(deploy.Markdown(outs)), 0o644); err != nil {
					return fail(exitFail, "--summary: %v", err)
				}
			}
			if code := deploy.ExitCode(outs); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("deploy %s: %s", action, verdict(outs))}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&stacks, "stack", nil, "stack name(s), comma-separated")
	f.IntVar(&parallel, "parallel", 1, "converge at most this many stacks at once")
	f.StringArrayVar(&allow, "allow", nil, "STACK:NAME (resource name or URN): let up on a prod-posture stack replace, delete or destructively update it; repeat per resource")
	f.StringVar(&planFile, "plan", "", "up: run this reviewed plan file (from preview --save-plan) instead of a fresh preview; one prod-posture stack")
	f.StringVar(&savePlan, "save-plan", "", "preview: save each stack's plan as DIR/STACK.plan.json (and list what the gate would ask)")
	f.BoolVar(&yes, "yes", false, "up: apply the gated plan without asking (CI)")
	f.BoolVar(&allowReplace, "allow-replace", false, "destroy: let a prod-posture stack be destroyed")
	f.StringVar(&summary, "summary", "", "write a Markdown summary (pull-request comment) to this file")
	f.BoolVar(&asJSON, "json", false, "print the outcomes as JSON (counts, steps, notes, non-secret outputs) instead of a table")
	return c
}

// gateFlags checks the gate's flags against the action and stacks.
func gateFlags(d *deploy.Driver, action deploy.Action, stacks, allow []string, planFile, savePlan string, allowReplace bool) error {
	prodPosture := map[string]bool{}
	for _, s := range stacks {
		prodPosture[s] = deploy.ProdPosture(s)
	}
	if len(allow) > 0 && action != deploy.Up {
		return fail(exitUsage, "--allow applies to up only")
	}
	for _, a := range allow {
		s, name, ok := strings.Cut(a, ":")
		if !ok || name == "" {
			return fail(exitUsage, "--allow %q: want STACK:NAME, e.g. --allow prod:prod-vault-bucket-policy (the name the gate printed)", a)
		}
		if !prodPosture[s] {
			return fail(exitUsage, "--allow %q: %s is not a prod-posture stack of --stack (test slots are not gated)", a, s)
		}
		d.Allow[s] = append(d.Allow[s], name)
	}
	if allowReplace && action == deploy.Up {
		for _, s := range stacks {
			if prodPosture[s] {
				return fail(exitUsage, "--allow-replace does not open the gate of up on %s: review the plan and name each resource with --allow %s:NAME", s, s)
			}
		}
	}
	if planFile != "" {
		if action != deploy.Up || len(stacks) != 1 || !prodPosture[stacks[0]] {
			return fail(exitUsage, "--plan runs a reviewed plan: use it with up and exactly one prod-posture stack")
		}
		if _, err := os.Stat(planFile); err != nil {
			return fail(exitUsage, "--plan: %v", err)
		}
		d.PlanFiles[stacks[0]] = planFile
	}
	if savePlan != "" {
		if action != deploy.Preview {
			return fail(exitUsage, "--save-plan applies to preview only")
		}
		if err := os.MkdirAll(savePlan, 0o700); err != nil {
			return fail(exitUsage, "--save-plan: %v", err)
		}
		d.SavePlanDir = savePlan
	}
	return nil
}

// approver asks on the terminal before a gated plan runs; without a
// terminal it refuses and says to pass --yes.
func (a *app) approver() func(string, *deploy.Result, []deploy.Finding) bool {
	var mu sync.Mutex
	var in *bufio.Reader
	return func(stack string, p *deploy.Result, findings []deploy.Finding) bool {
		mu.Lock()
		defer mu.Unlock()
		if !isTerminal() {
			fmt.Fprintf(a.errOut, "%s: not applied: no terminal to approve the plan on; pass --yes to apply the plan shown by the gate\n", stack)
			return false
		}
		if in == nil {
			in = bufio.NewReader(promptIn)
		}
		fmt.Fprintf(a.errOut, "\n%s: the plan to apply", stack)
		if p != nil {
			rep, del := deploy.Destructive(*p)
			fmt.Fprintf(a.errOut, " (create %d, update %d, replace %d, delete %d)", p.Counts["create"], p.Counts["update"], rep, del)
			for _, s := range p.Steps {
				if s.Op != "same" && s.Op != "read" {
					fmt.Fprintf(a.errOut, "\n  %s %s %s", s.Op, s.Type, s.URN[strings.LastIndex(s.URN, "::")+2:])
				}
			}
		}
		for _, f := range findings {
			fmt.Fprintf(a.errOut, "\n  allowed: %s", f)
		}
		fmt.Fprintf(a.errOut, "\nApply exactly this plan to %s? Type the stack name to confirm: ", stack)
		line, _ := in.ReadString('\n')
		return strings.TrimSpace(line) == stack
	}
}

func verdict(outs []deploy.Outcome) string {
	var parts []string
	for _, o := range outs {
		if o.Status != deploy.OK {
			parts = append(parts, o.Stack+" "+string(o.Status))
		}
	}
	return strings.Join(parts, ", ")
}

func printOutcomes(a *app, outs []deploy.Outcome) {
	rows := [][]string{}
	for _, o := range outs {
		r := o.Result
		if r == nil {
			r = o.Preview
		}
		var cr, up, rep, del int
		if r != nil {
			rep, del = deploy.Destructive(*r)
			cr, up = r.Counts["create"], r.Counts["update"]
		}
		rows = append(rows, []string{o.Stack, string(o.Action), string(o.Status), fmt.Sprint(cr), fmt.Sprint(up), fmt.Sprint(rep), fmt.Sprint(del), o.Reason})
	}
	_ = table.Write(a.out, []string{"STACK", "ACTION", "STATUS", "CREATE", "UPDATE", "REPLACE", "DELETE", "REASON"}, rows)
	for _, o := range outs {
		for _, n := range o.Notes {
			fmt.Fprintf(a.out, "note (%s): %s\n", o.Stack, n)
		}
	}
}

// jsonOutcome is one outcome as --json prints it: no property values, and
// secret outputs as "[secret]".
type jsonOutcome struct {
	Stack   string      `json:"stack"`
	Action  string      `json:"action"`
	Status  string      `json:"status"`
	Reason  string      `json:"reason,omitempty"`
	Notes   []string    `json:"notes,omitempty"`
	Preview *jsonResult `json:"preview,omitempty"`
	Result  *jsonResult `json:"result,omitempty"`
}

type jsonResult struct {
	Counts  map[string]int `json:"counts"`
	Steps   []deploy.Step  `json:"steps"`
	Outputs map[string]any `json:"outputs,omitempty"`
}

func toJSONResult(r *deploy.Result) *jsonResult {
	if r == nil {
		return nil
	}
	j := &jsonResult{Counts: r.Counts, Steps: r.Steps}
	if len(r.Outputs) > 0 {
		j.Outputs = map[string]any{}
		for k, o := range r.Outputs {
			if o.Secret {
				j.Outputs[k] = "[secret]"
			} else {
				j.Outputs[k] = o.Value
			}
		}
	}
	return j
}

func printJSON(w io.Writer, outs []deploy.Outcome) error {
	var list []jsonOutcome
	for _, o := range outs {
		list = append(list, jsonOutcome{Stack: o.Stack, Action: string(o.Action), Status: string(o.Status), Reason: o.Reason,
			Notes: o.Notes, Preview: toJSONResult(o.Preview), Result: toJSONResult(o.Result)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}
