package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
)

// engineFactory builds the Pulumi engine for the project in workDir.
type engineFactory func(workDir string, progress io.Writer) deploy.Engine

func autoEngine(workDir string, progress io.Writer) deploy.Engine {
	return deploy.AutoEngine{WorkDir: workDir, Progress: progress}
}

func (a *app) deployCmd() *cobra.Command {
	var (
		stacks       []string
		parallel     int
		allowReplace bool
		summary      string
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
			outs := deploy.Driver{Engine: eng, Parallel: parallel, AllowReplace: allowReplace}.Run(cmd.Context(), action, stacks)
			printOutcomes(a, outs)
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
}
