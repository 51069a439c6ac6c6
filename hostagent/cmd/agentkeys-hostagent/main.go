// Command agentkeys-hostagent converges an AgentKeys broker host from a host
// spec: apply, plan, renew, status, version. Exit status: 0 success, 1 a
// step failed, 2 bad input (spec, flags, cross-wiring) with nothing changed.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/hostagent/steps"
)

// version is set at link time (-X main.version=...).
var version = "dev"

// DefaultSpec is where the Pulumi program puts the host spec.
const DefaultSpec = spec.DefaultPath

type opts struct {
	spec string
	root string
	json bool
	only []string
	skip []string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "agentkeys-hostagent",
		Short:         "Converge an AgentKeys broker host from its host spec",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	var o opts
	flags := func(c *cobra.Command, steps bool) {
		c.Flags().StringVar(&o.spec, "spec", DefaultSpec, "host spec JSON file")
		c.Flags().StringVar(&o.root, "root", "", "sandbox root: every host path goes under DIR and users/services are simulated (tests)")
		c.Flags().BoolVar(&o.json, "json", false, "print one JSON summary on stdout (progress goes to stderr)")
		if steps {
			c.Flags().StringSliceVar(&o.only, "only", nil, "run only these steps (identity always runs first)")
			c.Flags().StringSliceVar(&o.skip, "skip", nil, "leave these steps out (reported skipped)")
		}
	}
	apply := &cobra.Command{Use: "apply", Short: "Converge the host", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return converge(ctx, &o, false, false, stdout, stderr) }}
	plan := &cobra.Command{Use: "plan", Short: "Print what apply would change; change nothing", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return converge(ctx, &o, true, false, stdout, stderr) }}
	renew := &cobra.Command{Use: "renew", Short: "Renew certificates that are due (the timer runs this)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return converge(ctx, &o, false, true, stdout, stderr) }}
	status := &cobra.Command{Use: "status", Short: "Print the deployed identity and each step's state", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return showStatus(ctx, &o, stdout, stderr) }}
	var waitTimeout time.Duration
	var waitPID string
	wait := &cobra.Command{Use: steps.WaitReadyCommand + " URL", Short: "Wait until URL answers 200 (a unit's ExecStartPost)", Args: cobra.ExactArgs(1), Hidden: true,
		RunE: func(c *cobra.Command, a []string) error {
			pid := 0
			if waitPID != "" { // systemd leaves $MAINPID empty when it knows none
				p, err := strconv.Atoi(waitPID)
				if err != nil {
					return fmt.Errorf("--pid %q: want the unit's $MAINPID (a number)", waitPID)
				}
				pid = p
			}
			return steps.WaitReady(ctx, a[0], waitTimeout, pid)
		}}
	wait.Flags().DurationVar(&waitTimeout, "timeout", 80*time.Second, "give up after this long")
	wait.Flags().StringVar(&waitPID, "pid", "", "count an answer only once this process listens on the port ($MAINPID)")
	ver := &cobra.Command{Use: "version", Short: "Print the agent version", Args: cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) { fmt.Fprintln(stdout, "agentkeys-hostagent", version) }}
	flags(apply, true)
	flags(plan, true)
	flags(renew, false)
	flags(status, false)
	root.AddCommand(apply, plan, renew, status, wait, ver)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "error:", err)
	if agent.IsBadInput(err) || isUsage(err) {
		return 2
	}
	return 1
}

// isUsage recognises cobra's flag and argument errors.
func isUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument", "accepts ", "required flag"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// setup loads the spec and builds the env and the runner.
func setup(o *opts, dryRun, renew bool, progress io.Writer) (*agent.Env, *agent.Runner, error) {
	rootFromEnv(o)
	cargoOnPath()
	sp, err := spec.Load(o.spec)
	if err != nil {
		return nil, nil, agent.BadInput(err)
	}
	env := &agent.Env{Spec: sp, DryRun: dryRun, Log: progress, Counters: &agent.Counters{}, Report: &agent.Report{}}
	listen := ""
	if o.root != "" {
		abs, err := filepath.Abs(o.root)
		if err != nil {
			return nil, nil, agent.BadInput(err)
		}
		if abs == "/" {
			return nil, nil, agent.BadInput(errors.New("--root /: omit --root to converge the real host"))
		}
		env.Root = abs
		env.Sys = agent.NewSandbox(abs)
		listen = "127.0.0.1"
	} else {
		env.Sys = agent.NewHost()
	}
	ng := &nginx.Step{ListenAddr: listen}
	certs := &acme.Step{Nginx: ng, RenewOnly: renew}
	r := &agent.Runner{Out: progress}
	if renew {
		r.Guard, r.Steps = steps.Identity{}, []agent.Step{certs}
		return env, r, nil
	}
	specAbs, _ := filepath.Abs(o.spec)
	units := steps.Units{Extra: func(env *agent.Env) map[string]string {
		return acme.RenewUnits(specAbs, env.Spec.StateDir, env.Spec.Nginx.Webroot)
	}}
	r.Guard = steps.Identity{}
	r.Steps = []agent.Step{steps.Packages{}, steps.Users{}, steps.Source{}, steps.Build{}, steps.Secrets{}, units, ng, certs, steps.Health{}}
	if len(o.skip) > 0 {
		known := map[string]bool{}
		for _, n := range r.Names() {
			known[n] = true
		}
		skip := map[string]bool{}
		for _, n := range o.skip {
			if !known[n] || n == "identity" {
				return nil, nil, agent.BadInput(fmt.Errorf("--skip %s: not a skippable step; steps are: %s", n, strings.Join(r.Names()[1:], ", ")))
			}
			skip[n] = true
		}
		for i, s := range r.Steps {
			if skip[s.Name()] {
				r.Steps[i] = agent.Skip(s.Name(), "--skip")
			}
		}
	}
	return env, r, nil
}

func converge(ctx context.Context, o *opts, dryRun, renew bool, stdout, stderr io.Writer) error {
	progress := stdout
	if o.json {
		progress = stderr
	}
	env, r, err := setup(o, dryRun, renew, progress)
	if err != nil {
		return err
	}
	if !dryRun {
		r.Lock = func(ctx context.Context) (func(), error) { return agent.LockRun(ctx, env.Root, progress) }
	}
	sum, err := r.Run(ctx, env, o.only...)
	if o.json {
		if jerr := sum.WriteJSON(stdout); jerr != nil && err == nil {
			err = jerr
		}
	} else if err == nil {
		c := sum.Counters
		fmt.Fprintf(stdout, "done: %d files written, %d restarts, %d reloads, %d ACME orders\n", c.FilesWritten, c.Restarts, c.Reloads, c.ACMEOrders)
	}
	return err
}

func showStatus(ctx context.Context, o *opts, stdout, stderr io.Writer) error {
	rootFromEnv(o)
	root := o.root
	if root != "" {
		root, _ = filepath.Abs(root)
	}
	iss, src, err := steps.DeployedIssuer(root)
	if err != nil {
		return err
	}
	if !o.json {
		if iss == "" {
			fmt.Fprintln(stdout, "deployed: none (no broker unit)")
		} else {
			sp, _ := spec.Load(o.spec)
			zone := ""
			if sp != nil {
				zone = sp.Zone
			}
			fmt.Fprintf(stdout, "deployed: %s (stack %s, from %s)\n", iss, steps.StackOfIssuer(iss, zone), src)
		}
	}
	if _, err := os.Stat(o.spec); err != nil && iss != "" && !o.json {
		return nil // identity only: no spec to compare steps against
	}
	return converge(ctx, o, true, false, stdout, stderr)
}
