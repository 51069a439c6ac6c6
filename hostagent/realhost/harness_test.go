// Package realhost_test runs the host agent on a real Debian host with
// systemd as PID 1 (internal/testkit/realhost), over SSH with sudo -n,
// staged and started exactly as the Pulumi bring-up does it.
package realhost_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/realhost"
)

// FiguresEnv names the file `make test-realhost` prints the figures from.
const FiguresEnv = "AGENTKEYS_REALHOST_FIGURES"

var figures struct {
	sync.Mutex
	m map[string]string
}

// figure records one of the figures make test-realhost prints.
func figure(name string, v any) {
	figures.Lock()
	defer figures.Unlock()
	if figures.m == nil {
		figures.m = map[string]string{}
	}
	switch x := v.(type) {
	case time.Duration:
		figures.m[name] = fmt.Sprintf("%.2f", x.Seconds())
	default:
		figures.m[name] = fmt.Sprint(x)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
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
		if fh, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			fh.WriteString(b.String())
			fh.Close()
		}
	}
	figures.Unlock()
	os.Exit(code)
}

// agentBinary is the agent the program ships (program.AgentBinary).
func agentBinary(t *testing.T) string {
	t.Helper()
	p, _, err := program.AgentBinary("", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// StandinPath is where the tests put the static contract stand-in in a
// container: the cargo workspace's shims exec it by this absolute path.
const StandinPath = "/opt/agentkeys-standin/agentkeys-standin"

// host is a booted container the agent is deployed to.
type host struct {
	*realhost.Host
	t *testing.T
}

func boot(t *testing.T) *host {
	t.Helper()
	h := realhost.Boot(t, realhost.Options{})
	return &host{Host: h, t: t}
}

// fixtureSpec is the host agent fixtures' spec (stack test-2, free ports,
// the fixture repository's build).
func fixtureSpec(t *testing.T, services ...string) *spec.HostSpec {
	t.Helper()
	return sandboxtest.Spec(t, sandboxtest.NewRepo(t), services...)
}

// run is one apply as the Pulumi bring-up runs it: the stage command with
// the spec on stdin, the agent copied as the SSH user, then ApplyScript
// (identity check with the staged agent, install with sudo -n, apply
// --json), here with flags to run only the steps under test.
type run struct {
	Code     int
	Summary  agent.Summary
	Stdout   string
	Stderr   string
	Duration time.Duration // the apply command alone (not the staging)
	JSON     bool          // a summary was printed
}

// apply runs the bring-up and requires a JSON summary.
func (h *host) apply(s *spec.HostSpec, flags ...string) run {
	h.t.Helper()
	r := h.bringUp(s, "", "", flags...)
	if !r.JSON {
		h.t.Fatalf("apply %v: exit %d, no JSON summary:\nstdout:\n%s\nstderr:\n%s", flags, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// applyOK is apply that fails the test unless the apply exits 0.
func (h *host) applyOK(s *spec.HostSpec, flags ...string) run {
	h.t.Helper()
	r := h.apply(s, flags...)
	if r.Code != 0 {
		h.t.Fatalf("apply %v: exit %d: %s\n%s\n%s", flags, r.Code, r.Summary.Error, r.stepLines(), r.Stderr)
	}
	return r
}

// applyKilled runs the bring-up with the agent told to SIGKILL itself at
// fault point (fsx.FaultEnv), and requires that it died there without a
// summary: sudo re-raises the signal, and sh runs the script's last command
// in its own process, so SSH reports the session killed by SIGKILL (-1; a
// shell that forks it would exit 137).
func (h *host) applyKilled(s *spec.HostSpec, point string) run {
	h.t.Helper()
	r := h.bringUp(s, point, "")
	if (r.Code != -1 && r.Code != 137) || r.JSON {
		h.t.Fatalf("apply with %s=%s: exit %d (summary printed: %v), want the agent killed (SIGKILL, no summary); the point was not reached?\n%s\n%s",
			fsx.FaultEnv, point, r.Code, r.JSON, r.stepLines(), r.Stderr)
	}
	return r
}

// applyThen is apply with a shell snippet run right after the agent, in the
// same SSH session (its output goes to stderr).
func (h *host) applyThen(s *spec.HostSpec, then string, flags ...string) run {
	h.t.Helper()
	r := h.bringUp(s, "", then, flags...)
	if !r.JSON {
		h.t.Fatalf("apply %v: exit %d, no JSON summary:\nstdout:\n%s\nstderr:\n%s", flags, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

func (h *host) bringUp(s *spec.HostSpec, fault, then string, flags ...string) run {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	stage := components.StageDir(h.User, s.Stack)
	b, err := s.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	if r, err := h.SSHStdin(ctx, components.StageScript(stage), strings.NewReader(string(b))); err != nil || r.Code != 0 {
		h.t.Fatalf("stage: %v %s", err, r)
	}
	if err := h.CopyFile(ctx, agentBinary(h.t), path.Join(stage, "agentkeys-hostagent")); err != nil {
		h.t.Fatal(err)
	}
	script := components.ApplyScript(stage)
	last := "sudo -n " + spec.AgentPath + " apply --spec " + components.HostSpecPath + " --json"
	if !strings.HasSuffix(script, "\n"+last) {
		h.t.Fatalf("ApplyScript no longer ends with %q; update this harness:\n%s", last, script)
	}
	if fault != "" {
		// The same command line, with the fault point passed through sudo.
		script = strings.TrimSuffix(script, last) + "sudo -n env " + fsx.FaultEnv + "=" + fault + " " + strings.TrimPrefix(last, "sudo -n ")
	}
	if len(flags) > 0 {
		script += " " + strings.Join(flags, " ")
	}
	if then != "" {
		script += "\n{ " + then + "\n} >&2"
	}
	start := time.Now()
	r, err := h.SSH(ctx, script)
	d := time.Since(start)
	if err != nil {
		h.t.Fatalf("apply over SSH: %v", err)
	}
	out := run{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr, Duration: d}
	if strings.TrimSpace(r.Stdout) != "" {
		if err := json.Unmarshal([]byte(r.Stdout), &out.Summary); err != nil {
			h.t.Fatalf("apply %v: stdout is not the JSON summary (%v): %s", flags, err, r)
		}
		out.JSON = true
	}
	what := strings.Join(flags, " ")
	if fault != "" {
		what += " " + fsx.FaultEnv + "=" + fault
	}
	h.t.Logf("apply %s: exit %d in %.1fs, counters %+v\n%s", what, r.Code, d.Seconds(), out.Summary.Counters, strings.TrimSpace(r.Stderr))
	return out
}

// step is the named step's result in the summary.
func (r run) step(t *testing.T, name string) agent.Result {
	t.Helper()
	for _, s := range r.Summary.Steps {
		if s.Step == name {
			return s
		}
	}
	t.Fatalf("no step %s in the summary: %+v", name, r.Summary.Steps)
	return agent.Result{}
}

// stepLines renders each step's status, reason and changes.
func (r run) stepLines() string {
	var b strings.Builder
	for _, s := range r.Summary.Steps {
		fmt.Fprintf(&b, "%s: %s %s\n", s.Step, s.Status, s.Reason)
		for _, c := range s.Changes {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	}
	return b.String()
}

// changes is the sum of a run's counters: a no-op is 0.
func (r run) changes() int {
	c := r.Summary.Counters
	return c.FilesWritten + c.Restarts + c.Reloads + c.ACMEOrders
}

// root runs cmd as root in the container and fails the test on error.
func (h *host) root(cmd string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	r, err := h.Exec(ctx, cmd)
	if err != nil || r.Code != 0 {
		h.t.Fatalf("%s: %v %s", cmd, err, r)
	}
	return r.Stdout
}

// try runs cmd as root and returns its result.
func (h *host) try(cmd string) realhost.Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := h.Exec(ctx, cmd)
	if err != nil {
		h.t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// install puts a local file into the container as root with mode.
func (h *host) install(local, remote string, mode os.FileMode) {
	h.t.Helper()
	b, err := os.ReadFile(local)
	if err != nil {
		h.t.Fatal(err)
	}
	h.writeRoot(remote, b, mode)
}

// writeRoot writes data to remote as root with mode.
func (h *host) writeRoot(remote string, data []byte, mode os.FileMode) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := "/tmp/realhost-upload-" + path.Base(remote)
	if err := h.WriteFile(ctx, tmp, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.root(fmt.Sprintf("install -D -m %o %s %s && rm -f %s", mode.Perm(), tmp, realhost.ShellQuote(remote), tmp))
}

// installStandin puts the static stand-in at StandinPath.
func (h *host) installStandin() {
	h.t.Helper()
	h.install(agentkeysws.StandinBinary(h.t), StandinPath, 0o755)
}

// unitState is systemctl's ActiveState/SubState of unit.
func (h *host) unitState(unit string) string {
	h.t.Helper()
	out := h.try("systemctl show -P ActiveState " + unit + "; systemctl show -P SubState " + unit).Stdout
	return strings.Join(strings.Fields(out), "/")
}

// requireActive fails the test, with the unit's journal, for every unit
// that is not active; it returns how many are.
func (h *host) requireActive(units ...string) int {
	h.t.Helper()
	n := 0
	for _, u := range units {
		r := h.try("systemctl is-active " + u)
		if got := strings.TrimSpace(r.Stdout); got != "active" {
			h.t.Errorf("%s is %s (%s):\n%s", u, got, h.unitState(u), h.Journal(u))
			continue
		}
		n++
	}
	if n != len(units) {
		h.t.FailNow()
	}
	return n
}

// sha256s maps each file to the sha256 of its content (as root).
func (h *host) sha256s(files ...string) map[string]string {
	h.t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(h.root("sha256sum "+strings.Join(files, " "))), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			out[f[1]] = f[0]
		}
	}
	return out
}

// sshCLI runs cmd through the ssh client, a fresh login as the bring-up
// user with the host key pinned.
func sshCLI(h *host, cmd string) (string, error) {
	out, err := exec.Command("ssh", "-i", h.KeyFile, "-o", "UserKnownHostsFile="+h.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", h.User+"@"+h.Addr, cmd).CombinedOutput()
	return string(out), err
}
