// Command agentkeys is the operator CLI around a deployed AgentKeys stack:
// verify, audit, deploy (Pulumi Automation API), ssh (EC2 Instance Connect)
// and fleet status. Every AWS call honours the standard SDK environment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitRefused = 3
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func fail(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

// app holds what commands share, and the seams tests replace.
type app struct {
	out, errOut io.Writer
	projectDir  string
	deps        deps
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, defaultDeps())
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, d deps) int {
	a := &app{out: stdout, errOut: stderr, deps: d}
	root := &cobra.Command{
		Use:           "agentkeys",
		Short:         "Operator CLI for AgentKeys stacks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("AGENTKEYS_PROJECT_DIR")
	if def == "" {
		def = "."
	}
	root.PersistentFlags().StringVar(&a.projectDir, "project-dir", def, "directory holding Pulumi.yaml and Pulumi.<stack>.yaml (env AGENTKEYS_PROJECT_DIR)")
	root.AddCommand(a.verifyCmd(), a.auditCmd(), a.deployCmd(), a.sshCmd(), a.fleetCmd(), a.attachProfileCmd())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "agentkeys:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "agentkeys:", err)
	return exitUsage
}
