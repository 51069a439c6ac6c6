// Command plan prints what a stack declares, offline: the real program under
// the Pulumi SDK's mock engine. `make plan STACK=test-2 [STATE=converged] [FORMAT=json]`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/agentkeys/agentkeys-infra/infra/offline"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stack := fs.String("stack", "", "stack name: prod, test, test-N, base")
	asJSON := fs.Bool("json", false, "print JSON shaped like `pulumi preview --json`")
	dir := fs.String("dir", ".", "project directory holding Pulumi.<stack>.yaml")
	critical := fs.Bool("critical-path", false, "print the longest chain of dependent resources")
	state := fs.String("state", string(offline.FirstUp), "the account to plan against: "+string(offline.FirstUp)+" (the first `pulumi up`) or "+string(offline.Converged)+" (after the first bring-up, every value known, policies printed)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *stack == "" {
		fmt.Fprintln(stderr, "plan: --stack is required (for example --stack test-2)")
		return 2
	}
	st, err := offline.ParseState(*state)
	if err != nil {
		fmt.Fprintln(stderr, "plan: --state:", err)
		return 2
	}
	p, err := offline.StackIn(*dir, *stack, st)
	if err != nil {
		fmt.Fprintln(stderr, "plan:", err)
		return 1
	}
	// Buffer so that a failure never leaves partial output on stdout.
	var out bytes.Buffer
	if *asJSON {
		if err := p.JSON(&out); err != nil {
			fmt.Fprintln(stderr, "plan:", err)
			return 1
		}
	} else {
		p.Text(&out)
		if *critical {
			path := p.CriticalPath()
			fmt.Fprintf(&out, "Critical path: %d resources\n", len(path))
			for i, r := range path {
				fmt.Fprintf(&out, "  %2d. %s %s\n", i+1, r.Type, r.Name)
			}
		}
	}
	stdout.Write(out.Bytes())
	return 0
}
