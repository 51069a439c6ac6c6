// Command realhost boots one throwaway Debian host with systemd as PID 1 for
// a human (`make realhost`), prints how to log in, and tears it down on
// Ctrl-C. `realhost sweep` removes what killed test runs left behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/realhost"
)

func main() {
	hostname := flag.String("hostname", "", "hostname (default ip-198-18-N-2)")
	copyMode := flag.String("copy", "overlay", "how the root is copied: overlay or copy")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: realhost [--hostname H] [--copy overlay|copy]   boot one host until Ctrl-C")
		fmt.Fprintln(os.Stderr, "       realhost sweep                               remove leftovers of dead test runs")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx := context.Background()
	if flag.Arg(0) == "sweep" {
		if err := realhost.Sweep(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "realhost sweep:", err)
			os.Exit(1)
		}
		for _, l := range realhost.Leftovers() {
			fmt.Println("still there:", l)
		}
		return
	}
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	start := time.Now()
	h, err := realhost.Start(ctx, realhost.Options{
		Hostname: *hostname, Copy: realhost.CopyMode(*copyMode),
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "realhost:", err)
		os.Exit(1)
	}
	pid, _ := h.InitPID()
	fmt.Printf(`
%s (%s) is up: %.2fs to boot, %.2fs in all.

  ssh -i %s -o UserKnownHostsFile=%s %s@%s
  sudo -n works; a root shell without SSH: nsenter -t %d -a -r -w bash (PID 1 of this boot)
  its root from here: %s

Ctrl-C tears it down.
`, h.Name, h.Hostname, h.BootTime.Seconds(), time.Since(start).Seconds(), h.KeyFile, h.KnownHosts, h.User, h.Addr, pid, h.Root())
	<-sig
	fmt.Fprintln(os.Stderr, "\ntearing down", h.Name)
	if err := h.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "realhost:", err)
		os.Exit(1)
	}
}
