package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
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

func (a *app) deployCmd() *cobra.Command {
	var (
		stacks       []string
		parallel     int
		allowReplace bool
		summary      string
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "deploy preview|up|refresh|destroy --stack X[,Y...]",
		Short: "Run Pulumi operations on one or several stacks through the Automation API (CI driver)",
		Long: "Exit codes: 0 ok, 1 an operation failed, 2 bad usage, 3 refused by the prod gate " +
			"(a prod-posture stack whose preview replaces or deletes, or destroy of one, without --allow-replace).",
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
			}
			eng := a.deps.engine(a.projectDir, a.errOut)
			outs := deploy.Driver{Engine: eng, Parallel: parallel, AllowReplace: allowReplace, Notes: oidcNotes(a.projectDir)}.Run(cmd.Context(), action, stacks)
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
	f.BoolVar(&allowReplace, "allow-replace", false, "let a prod-posture stack replace or delete resources (and be destroyed)")
	f.StringVar(&summary, "summary", "", "write a Markdown summary (pull-request comment) to this file")
	f.BoolVar(&asJSON, "json", false, "print the outcomes as JSON (counts, steps, notes, non-secret outputs) instead of a table")
	return c
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
