// Package realhost_test runs the host agent on a real Debian host with
// systemd as PID 1 (internal/testkit/realhost), over SSH with sudo -n,
// staged and started exactly as the Pulumi bring-up does it.
package realhost_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/realhost"
)

var (
	binOnce             sync.Once
	binDir              string
	agentBin, standinBn string
	binErr              error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries are the agent the program ships (program.AgentBinary) and the
// services' stand-in, both static for the container.
func binaries(t *testing.T) (agentPath, standinPath string) {
	t.Helper()
	binOnce.Do(func() {
		if agentBin, _, binErr = program.AgentBinary("", runtime.GOARCH); binErr != nil {
			return
		}
		if binDir, binErr = os.MkdirTemp("", "realhost-bin-"); binErr != nil {
			return
		}
		_, self, _, _ := runtime.Caller(0)
		standinBn = filepath.Join(binDir, "standin")
		cmd := exec.Command("go", "build", "-trimpath", "-o", standinBn, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", "internal", "standin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building the stand-in: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return agentBin, standinBn
}

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

// fixtureSpec is the host agent fixtures' spec (stack test-2).
func fixtureSpec(t *testing.T, services ...string) *spec.HostSpec {
	t.Helper()
	return sandboxtest.Spec(t, sandboxtest.NewRepo(t), services...)
}

// run is one apply as the Pulumi bring-up runs it: the stage command with
// the spec on stdin, the agent copied as the SSH user, then ApplyScript
// (identity check with the staged agent, install with sudo -n, apply
// --json), here with flags to run only the steps under test.
type run struct {
	Code    int
	Summary agent.Summary
	Stderr  string
}

func (h *host) apply(s *spec.HostSpec, flags ...string) run {
	h.t.Helper()
	agentPath, _ := binaries(h.t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	stage := components.StageDir(h.User, s.Stack)
	b, err := s.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	if r, err := h.SSHStdin(ctx, components.StageScript(stage), strings.NewReader(string(b))); err != nil || r.Code != 0 {
		h.t.Fatalf("stage: %v %s", err, r)
	}
	if err := h.CopyFile(ctx, agentPath, path.Join(stage, "agentkeys-hostagent")); err != nil {
		h.t.Fatal(err)
	}
	script := components.ApplyScript(stage)
	if !strings.HasSuffix(script, " apply --spec "+components.HostSpecPath+" --json") {
		h.t.Fatalf("ApplyScript no longer ends with the apply command; update this harness:\n%s", script)
	}
	if len(flags) > 0 {
		script += " " + strings.Join(flags, " ")
	}
	r, err := h.SSH(ctx, script)
	if err != nil {
		h.t.Fatalf("apply over SSH: %v", err)
	}
	out := run{Code: r.Code, Stderr: r.Stderr}
	if err := json.Unmarshal([]byte(r.Stdout), &out.Summary); err != nil {
		h.t.Fatalf("apply %v: no JSON summary (%v): %s", flags, err, r)
	}
	h.t.Logf("apply %s: exit %d, counters %+v\n%s", strings.Join(flags, " "), r.Code, out.Summary.Counters, strings.TrimSpace(r.Stderr))
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

// root runs cmd as root in the container and fails the test on error.
func (h *host) root(cmd string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := h.Exec(ctx, cmd)
	if err != nil || r.Code != 0 {
		h.t.Fatalf("%s: %v %s", cmd, err, r)
	}
	return r.Stdout
}

// install puts a local file into the container as root with mode.
func (h *host) install(local, remote string, mode os.FileMode) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := "/tmp/realhost-upload-" + path.Base(remote)
	if err := h.CopyFile(ctx, local, tmp); err != nil {
		h.t.Fatal(err)
	}
	h.root(fmt.Sprintf("install -D -m %o %s %s && rm -f %s", mode.Perm(), tmp, realhost.ShellQuote(remote), tmp))
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

// es256JWK is a broker keypair in the form the stand-in publishes.
func es256JWK(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdh, err := k.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	pub := ecdh.PublicKey().Bytes() // 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	b, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "realhost-test",
		"x": b64(pub[1:33]), "y": b64(pub[33:]), "d": b64(ecdh.Bytes())})
	return b
}

// sshCLI runs cmd through the ssh client, a fresh login as the bring-up
// user with the host key pinned.
func sshCLI(h *host, cmd string) (string, error) {
	out, err := exec.Command("ssh", "-i", h.KeyFile, "-o", "UserKnownHostsFile="+h.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", h.User+"@"+h.Addr, cmd).CombinedOutput()
	return string(out), err
}
