// Command check-isolation plans prod, test, base and test-2..test-N offline and
// fails, naming both stacks and the identifier, when two stacks declare the
// same physical name outside the documented shared set.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/isolation"
	"github.com/agentkeys/agentkeys-infra/infra/offline"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
)

func main() {
	dir := flag.String("dir", ".", "project directory")
	maxSlot := flag.Int("max-slot", 20, "highest test slot to plan")
	timing := flag.Bool("timing", false, "print each stack's plan time")
	flag.Parse()
	template, err := config.ReadStackFile(*dir, "test-2")
	if err != nil {
		fail(err)
	}
	stacks := []string{"prod", "test", "base"}
	for n := 2; n <= *maxSlot; n++ {
		stacks = append(stacks, fmt.Sprintf("test-%d", n))
	}
	var plans []*plan.Plan
	claims := 0
	for _, s := range stacks {
		start := time.Now()
		p, err := offline.Slot(*dir, s, template)
		if err != nil {
			fail(fmt.Errorf("stack %s: %w", s, err))
		}
		if *timing {
			fmt.Printf("plan %-8s %4d resources  %.2fs\n", s, len(p.Resources), time.Since(start).Seconds())
		}
		claims += len(isolation.Claims(p))
		plans = append(plans, p)
	}
	if err := isolation.Error(isolation.Check(plans)); err != nil {
		fail(err)
	}
	fmt.Printf("isolation ok: %d stacks, %d physical names, no name declared by two stacks (shared: rule set %q)\n", len(plans), claims, "agentkeys")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "check-isolation:", err)
	os.Exit(1)
}
