// Command contract prints, for one stack, each service's runtime contract
// against what its host spec writes: the variables its binary requires and
// whether each is written, the variables written that the binary never
// reads (none, or the spec is refused), and where each fact was read.
//
//	go run ./infra/cmd/contract --stack test-2 [--sources]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/infra/config"
)

func main() {
	stack := flag.String("stack", "test-2", "stack whose Pulumi.<stack>.yaml is read")
	dir := flag.String("dir", ".", "project directory")
	sources := flag.Bool("sources", false, "also list every variable with its source")
	flag.Parse()
	if err := run(os.Stdout, *dir, *stack, *sources); err != nil {
		fmt.Fprintln(os.Stderr, "contract:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, dir, stack string, sources bool) error {
	cfg, err := config.LoadFile(dir, stack)
	if err != nil {
		return err
	}
	d, err := contract.Deploy(contract.StackOf(cfg.Names(), cfg.Contracts, cfg.RPCURL))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# Stack %s: the services' contract against what the host spec writes\n\n", stack)
	fmt.Fprintln(w, "| service | unit | binary, flags | binds | required: written | written, never read | secrets |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, dep := range d.Services {
		written := d.Written(dep)
		reads := map[string]contract.Var{}
		for _, v := range dep.Reads {
			reads[v.Name] = v
		}
		var req, unread []string
		for _, v := range dep.Reads {
			if v.Need == contract.Required || v.Need == contract.Feature {
				mark := "yes"
				if _, ok := written[v.Name]; !ok {
					mark = "MISSING"
				}
				req = append(req, v.Name+" "+mark)
			}
		}
		for k := range written {
			if r, ok := reads[k]; !ok || r.Need == contract.Unset {
				unread = append(unread, k)
			}
		}
		sort.Strings(unread)
		bind := fmt.Sprintf("127.0.0.1:%d", dep.Port)
		if dep.BindAll {
			bind = fmt.Sprintf("0.0.0.0:%d (loopback only: IPAddressDeny)", dep.Port)
		}
		fmt.Fprintf(w, "| %s | %s | %s %s | %s | %d/%d: %s | %d%s | %s |\n", dep.Name, dep.Unit, contract.InstallPath(dep.Binary),
			strings.Join(dep.Args, " "), bind, count(req, "yes"), len(req), strings.Join(req, ", "), len(unread), list(unread),
			strings.Join(dep.Secrets, ", "))
	}
	if !sources {
		return nil
	}
	for _, dep := range d.Services {
		fmt.Fprintf(w, "\n## %s (%s)\n\n| variable | need | default | format | on bad | source |\n|---|---|---|---|---|---|\n", dep.Name, dep.Package)
		for _, v := range dep.Reads {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", v.Name, v.Need, v.Default, v.Format, v.OnBad, v.Src)
		}
	}
	return nil
}

func count(xs []string, suffix string) int {
	n := 0
	for _, x := range xs {
		if strings.HasSuffix(x, " "+suffix) {
			n++
		}
	}
	return n
}

func list(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return ": " + strings.Join(xs, ", ")
}
