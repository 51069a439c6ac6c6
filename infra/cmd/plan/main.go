// Command plan prints what a stack declares, offline: the real program under
// the Pulumi SDK's mock engine. `make plan STACK=test-2 [FORMAT=json]`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/agentkeys/agentkeys-infra/infra/offline"
)

func main() {
	stack := flag.String("stack", "", "stack name: prod, test, test-N, base")
	asJSON := flag.Bool("json", false, "print JSON shaped like `pulumi preview --json`")
	dir := flag.String("dir", ".", "project directory holding Pulumi.<stack>.yaml")
	critical := flag.Bool("critical-path", false, "print the longest chain of dependent resources")
	flag.Parse()
	if *stack == "" {
		fmt.Fprintln(os.Stderr, "plan: --stack is required (for example --stack test-2)")
		os.Exit(2)
	}
	p, err := offline.Stack(*dir, *stack)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plan:", err)
		os.Exit(1)
	}
	// Buffer so that a failure never leaves partial output on stdout.
	var out bytes.Buffer
	if *asJSON {
		if err := p.JSON(&out); err != nil {
			fmt.Fprintln(os.Stderr, "plan:", err)
			os.Exit(1)
		}
	} else {
		p.Text(&out)
	}
	if *critical && !*asJSON {
		path := p.CriticalPath()
		fmt.Fprintf(&out, "Critical path: %d resources\n", len(path))
		for i, r := range path {
			fmt.Fprintf(&out, "  %2d. %s %s\n", i+1, r.Type, r.Name)
		}
	}
	os.Stdout.Write(out.Bytes())
}
