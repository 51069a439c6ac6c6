package realhost

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallHint is how a machine gets what Available asks for.
const InstallHint = "run .ci/install.d/realhost.sh as root (apt-get install systemd-container debootstrap nftables)"

// Available says why no container can boot here, or nil.
func Available() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (netns, cgroups, mounts)")
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "chroot", "dpkg-query", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/usr/share/keyrings/debian-archive-keyring.gpg"); err != nil {
		missing = append(missing, "/usr/share/keyrings/debian-archive-keyring.gpg (debian-archive-keyring)")
	}
	if _, err := cgroupParents(); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := Mirror(); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := nameservers(); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("realhost needs %s; %s", strings.Join(missing, ", "), InstallHint)
}

// Require skips t when no container can boot here, or fails it when
// AGENTKEYS_E2E=1: in CI a missing tool is a failure, never a skip.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatalf("%v (AGENTKEYS_E2E=1)", err)
			return
		}
		t.Skipf("%v; set AGENTKEYS_E2E=1 to make this a failure", err)
	}
}

// live are this process's containers, torn down on SIGINT/SIGTERM.
var live struct {
	sync.Mutex
	hosts   map[*Host]bool
	handler sync.Once
}

func register(h *Host) {
	live.handler.Do(installHandler)
	live.Lock()
	defer live.Unlock()
	if live.hosts == nil {
		live.hosts = map[*Host]bool{}
	}
	live.hosts[h] = true
}

func unregister(h *Host) {
	live.Lock()
	defer live.Unlock()
	delete(live.hosts, h)
}

// installHandler tears every container down on the first SIGINT or
// SIGTERM, then dies of that signal as it would have.
func installHandler() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		live.Lock()
		var hs []*Host
		for h := range live.hosts {
			hs = append(hs, h)
		}
		live.Unlock()
		fmt.Fprintf(os.Stderr, "realhost: %v: tearing down %d container(s)\n", sig, len(hs))
		var wg sync.WaitGroup
		for _, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "realhost: teardown of %s: %v\n", h.Name, err)
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			fmt.Fprintln(os.Stderr, "realhost: teardown timed out; the next Boot sweeps the rest")
		}
		signal.Reset(syscall.SIGINT, syscall.SIGTERM)
		_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		time.Sleep(2 * time.Second)
		os.Exit(1)
	}()
}
