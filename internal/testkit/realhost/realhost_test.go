package realhost

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// figures are printed by `make test-realhost` as its last lines.
var figures struct {
	sync.Mutex
	m map[string]string
}

func figure(name string, v float64) {
	figures.Lock()
	defer figures.Unlock()
	if figures.m == nil {
		figures.m = map[string]string{}
	}
	figures.m[name] = strconv.FormatFloat(v, 'f', 2, 64)
}

// FiguresEnv names the file the figures are appended to.
const FiguresEnv = "AGENTKEYS_REALHOST_FIGURES"

func TestMain(m *testing.M) {
	code := m.Run()
	figures.Lock()
	if f := os.Getenv(FiguresEnv); f != "" && len(figures.m) > 0 {
		var keys []string
		for k := range figures.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %s\n", k, figures.m[k])
		}
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			fh.WriteString(b.String())
			fh.Close()
		}
	}
	figures.Unlock()
	os.Exit(code)
}

// leftoversOf filters Leftovers to one container's objects.
func leftoversOf(name string) []string {
	n, _ := slotOf(name)
	nm := slotNames(n)
	var out []string
	for _, l := range Leftovers() {
		f := strings.Fields(l)
		obj := filepath.Base(f[len(f)-1])
		if obj == nm.Machine || obj == nm.Veth || obj == nm.Table || strings.Contains(l, "/"+nm.Machine+"/") {
			out = append(out, l)
		}
	}
	return out
}

// forwardCheck returns a check that ip_forward is back to its value now;
// when other test processes have containers up, the value is theirs to
// restore and only the objects are checked.
func forwardCheck(t *testing.T) func(when string) {
	ents, _ := os.ReadDir(machinesDir)
	before, _ := readForward()
	return func(when string) {
		t.Helper()
		if len(ents) > 0 {
			t.Logf("other containers were up: ip_forward not checked")
			return
		}
		if after, _ := readForward(); after != before {
			t.Fatalf("ip_forward %s %s, was %s", after, when, before)
		}
		if _, err := os.Stat(filepath.Join(StateDir, "forward.json")); err == nil {
			t.Fatalf("forward.json left %s", when)
		}
	}
}

func TestBootSSHSudoAndSystemd(t *testing.T) {
	h := Boot(t, Options{})
	figure("realhost_boot_s", h.BootTime.Seconds())
	figure("realhost_prep_s", h.PrepTime.Seconds())
	if h.image.Built > 0 {
		figure("realhost_image_build_s", h.image.Built.Seconds())
	}
	t.Logf("realhost_boot_s: %.2f (prep %.2f, %s)", h.BootTime.Seconds(), h.PrepTime.Seconds(), h.Mode)

	if got := strings.TrimSpace(h.MustRun("id -un; hostname")); got != "ubuntu\n"+h.Hostname {
		t.Fatalf("login user and hostname = %q, want ubuntu and %s", got, h.Hostname)
	}
	if r := h.Run("sudo -n true"); !r.OK() {
		t.Fatalf("passwordless sudo as %s: %s", h.User, r)
	}
	// sudo resolves its own hostname: /etc/hosts must name it, or it hangs.
	start := time.Now()
	h.MustRun("sudo -n hostname")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("sudo took %v: the hostname does not resolve", d)
	}
	state := strings.TrimSpace(h.Run("systemctl is-system-running --wait").Stdout)
	if state != "running" && state != "degraded" {
		t.Fatalf("systemctl is-system-running = %q\n%s", state, h.Diagnostics())
	}
	if pid1 := strings.TrimSpace(h.MustRun("ps -o comm= -p 1")); pid1 != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd", pid1)
	}
	// What the agent's packages step must install itself.
	if r := h.Run("command -v nginx || test -x /usr/sbin/nginx"); r.OK() {
		t.Fatalf("nginx is preinstalled; the image must leave it to the agent")
	}
	// Real units start and stop under the container's systemd.
	h.MustRun(`sudo -n systemd-run --unit=probe --property=DynamicUser=yes --property=ProtectSystem=strict sleep 300`)
	if s := strings.TrimSpace(h.Run("systemctl is-active probe").Stdout); s != "active" {
		t.Fatalf("a hardened transient unit is %q:\n%s", s, h.Journal("probe"))
	}
	// As root without SSH.
	r, err := h.Exec(context.Background(), "id -u; cat /etc/hostname")
	if err != nil || r.Stdout != "0\n"+h.Hostname+"\n" {
		t.Fatalf("Exec: %v %s", err, r)
	}
}

func TestHostKeyIsPinned(t *testing.T) {
	h := Boot(t, Options{})
	// The machine's key is the one handed out, and another key is refused.
	cfg := h.SSHConfig()
	c, err := ssh.Dial("tcp", net.JoinHostPort(h.Addr, "22"), cfg)
	if err != nil {
		t.Fatalf("pinned host key refused: %v", err)
	}
	c.Close()
	other := Boot(t, Options{})
	cfg.HostKeyCallback = ssh.FixedHostKey(other.hostPub)
	if c, err := ssh.Dial("tcp", net.JoinHostPort(h.Addr, "22"), cfg); err == nil {
		c.Close()
		t.Fatal("a client pinning another container's host key got in: host keys are shared")
	}
	if h.HostKey == other.HostKey || h.PublicKey == other.PublicKey {
		t.Fatal("two containers share a key")
	}
	// The ssh CLI with the files handed out, as a human would use them.
	out, err := exec.Command("ssh", "-i", h.KeyFile, "-o", "UserKnownHostsFile="+h.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", h.User+"@"+h.Addr, "sudo -n id -u").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("ssh CLI with KeyFile and KnownHosts: %v: %s", err, out)
	}
}

func TestAptThroughNAT(t *testing.T) {
	h := Boot(t, Options{})
	if r := h.Run("sudo -n apt-get update"); !r.OK() {
		t.Fatalf("apt-get update through NAT: %s\nnft ruleset:\n%s", r, nftRuleset())
	}
	// The registries resolve into 203.0.113.0/24 here: it stays on the
	// machine's own uplink, never on a container's veth.
	out, err := exec.Command("ip", "-4", "route", "get", "203.0.113.80").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get: %v %s", err, out)
	}
	if strings.Contains(string(out), "akrh") {
		t.Fatalf("203.0.113.0/24 is routed to a container: %s", out)
	}
	routes, _ := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	for _, line := range strings.Split(string(routes), "\n") {
		if strings.Contains(line, "akrh") && !strings.HasPrefix(line, "198.18.") && !strings.HasPrefix(line, "198.19.") &&
			!strings.Contains(line, "198.18.") && !strings.Contains(line, "198.19.") {
			t.Errorf("a container route outside 198.18.0.0/15: %s", line)
		}
	}
}

func nftRuleset() string {
	out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
	return string(out)
}

func TestRebootComesBack(t *testing.T) {
	h := Boot(t, Options{})
	h.MustRun(`echo kept | sudo -n tee /var/lib/realhost-marker >/dev/null &&
printf '[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' | sudo -n tee /etc/systemd/system/keeper.service >/dev/null &&
sudo -n systemctl enable --now keeper.service 2>/dev/null`)
	firstPID1, _ := h.initPID()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := h.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	figure("realhost_reboot_s", time.Since(start).Seconds())
	if h.Boots() != 2 {
		t.Fatalf("boots = %d after one reboot, want 2", h.Boots())
	}
	if pid, _ := h.initPID(); pid == firstPID1 {
		t.Fatal("same PID 1 after reboot: it did not reboot")
	}
	if got := strings.TrimSpace(h.MustRun("cat /var/lib/realhost-marker")); got != "kept" {
		t.Fatalf("a file written before the reboot reads %q", got)
	}
	if s := strings.TrimSpace(h.Run("systemctl is-active keeper.service").Stdout); s != "active" {
		t.Fatalf("an enabled unit is %q after the reboot:\n%s", s, h.Journal("keeper.service"))
	}
	if n := strings.Count(h.MustRun("journalctl --list-boots --no-pager -q"), "\n"); n < 2 {
		t.Fatalf("journal lists %d boots, want 2 (persistent journal)", n)
	}
	// A reboot from inside, as the bring-up user would do it; the session
	// may end without an exit status.
	_, _ = h.SSH(ctx, "sudo -n systemctl reboot")
	deadline := time.Now().Add(2 * time.Minute)
	for h.Boots() < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	h.dropClient()
	if err := h.waitReady(ctx); err != nil || h.Boots() != 3 {
		t.Fatalf("after sudo reboot over SSH: boots %d: %v", h.Boots(), err)
	}
}

func TestParallelContainers(t *testing.T) {
	var mu sync.Mutex
	hosts := map[string]*Host{}
	start := time.Now()
	t.Run("boot", func(t *testing.T) {
		for _, n := range []string{"a", "b"} {
			t.Run(n, func(t *testing.T) {
				t.Parallel()
				h, err := Start(context.Background(), Options{Hostname: "parallel-" + n, Logf: t.Logf})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				hosts[n] = h
				mu.Unlock()
			})
		}
	})
	for _, h := range hosts {
		t.Cleanup(func() {
			if err := h.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		return
	}
	figure("realhost_parallel2_boot_s", time.Since(start).Seconds())
	a, b := hosts["a"], hosts["b"]
	if a.Addr == b.Addr || a.Name == b.Name {
		t.Fatalf("both containers got %s/%s", a.Name, a.Addr)
	}
	for n, h := range hosts {
		h.t = t
		if got := strings.TrimSpace(h.MustRun("hostname && sudo -n systemctl is-system-running --wait")); got != "parallel-"+n+"\nrunning" && got != "parallel-"+n+"\ndegraded" {
			t.Fatalf("container %s: %q", n, got)
		}
	}
	// Each has its own PID 1, cgroup folder and network.
	pa, _ := a.initPID()
	pb, _ := b.initPID()
	if pa == pb {
		t.Fatal("one PID 1 for two containers")
	}
	if r := a.Run("ps -e --no-headers | wc -l"); strings.TrimSpace(r.Stdout) == "" {
		t.Fatal(r)
	}
	// One stops; the other keeps running.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if l := leftoversOf(a.Name); len(l) > 0 {
		t.Fatalf("after closing %s: %v", a.Name, l)
	}
	if s := strings.TrimSpace(b.MustRun("systemctl is-system-running")); s != "running" && s != "degraded" {
		t.Fatalf("the other container is %q after its neighbour stopped", s)
	}
}

func TestCopyModeBoots(t *testing.T) {
	start := time.Now()
	h := Boot(t, Options{Copy: Copy})
	if h.Mode != Copy {
		t.Fatalf("mode %s", h.Mode)
	}
	figure("realhost_copy_cp_prep_s", h.PrepTime.Seconds())
	figure("realhost_copy_cp_total_s", time.Since(start).Seconds())
	h.MustRun("sudo -n touch /etc/written-in-a-copy")
	if _, err := os.Stat(filepath.Join(h.image.Root, "etc/written-in-a-copy")); err == nil {
		t.Fatal("a write in the container reached the cached image")
	}
}

func TestOverlayLeavesImageUntouched(t *testing.T) {
	h := Boot(t, Options{})
	if h.Mode != Overlay {
		t.Skipf("overlay not available here (mode %s)", h.Mode)
	}
	figure("realhost_copy_overlay_prep_s", h.PrepTime.Seconds())
	h.MustRun("sudo -n sh -c 'echo x > /etc/written-in-overlay && rm /usr/bin/less'")
	if _, err := os.Stat(filepath.Join(h.image.Root, "etc/written-in-overlay")); err == nil {
		t.Fatal("a write in the container reached the cached image")
	}
	if _, err := os.Stat(filepath.Join(h.image.Root, "usr/bin/less")); err != nil {
		t.Fatal("a delete in the container reached the cached image")
	}
}

func TestTeardownRestoresEverything(t *testing.T) {
	Require(t)
	checkForward := forwardCheck(t)
	h, err := Start(context.Background(), Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := readForward(); v != "1" {
		h.Close()
		t.Fatalf("ip_forward is %s while a container runs", v)
	}
	if l := leftoversOf(h.Name); len(l) == 0 {
		h.Close()
		t.Fatal("Leftovers sees nothing of a running container: the teardown check below would pass vacuously")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if l := leftoversOf(h.Name); len(l) > 0 {
		t.Fatalf("left after Close: %v", l)
	}
	checkForward("after teardown")
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// childEnv makes TestChildBoots boot a container for a parent test and wait
// to be killed.
const childEnv = "AGENTKEYS_REALHOST_CHILD"

func TestChildBoots(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process of TestKilledProcessIsSwept and TestInterruptTearsDown")
	}
	h, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s\n", h.Name)
	time.Sleep(5 * time.Minute)
}

// startChild boots a container in a child test process and returns it with
// the container's name once the container is up.
func startChild(t *testing.T) (*exec.Cmd, string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildBoots$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = Sweep(context.Background()) })
	sc := bufio.NewScanner(out)
	ready := make(chan string, 1)
	go func() {
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- name
			}
		}
		close(ready)
	}()
	select {
	case name, ok := <-ready:
		if !ok {
			t.Fatal("the child exited before its container was up")
		}
		return cmd, name
	case <-time.After(5 * time.Minute):
		t.Fatal("the child's container did not come up")
	}
	return nil, ""
}

func TestKilledProcessIsSwept(t *testing.T) {
	Require(t)
	checkForward := forwardCheck(t)
	cmd, name := startChild(t)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	left := leftoversOf(name)
	if len(left) < 4 {
		t.Fatalf("after SIGKILL only %v remain: the sweep below would prove nothing", left)
	}
	t.Logf("left by the killed process: %v", left)
	if err := Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := leftoversOf(name); len(l) > 0 {
		t.Fatalf("after Sweep: %v", l)
	}
	if out, _ := exec.Command("pgrep", "-f", "machine="+name+" ").Output(); len(out) > 0 {
		t.Fatalf("systemd-nspawn of %s still running: %s", name, out)
	}
	checkForward("after the sweep")
}

func TestInterruptTearsDown(t *testing.T) {
	Require(t)
	checkForward := forwardCheck(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd, name := startChild(t)
		if len(leftoversOf(name)) == 0 {
			t.Fatal("no container objects seen while it runs")
		}
		_ = cmd.Process.Signal(sig)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != sig {
			t.Errorf("the child did not die of %v after its teardown: %v", sig, err)
		}
		// No Sweep here: the handler alone must have removed everything.
		if l := leftoversOf(name); len(l) > 0 {
			t.Fatalf("after %v: %v", sig, l)
		}
		checkForward("after " + sig.String())
	}
}
