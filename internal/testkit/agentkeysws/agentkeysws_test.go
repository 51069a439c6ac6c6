package agentkeysws_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
	os.Exit(code)
}

func cargo(t *testing.T, ws, target string, args ...string) {
	t.Helper()
	bin, err := agentkeysws.Cargo()
	if err != nil {
		t.Skip(err) // the build host's toolchain is the precondition here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"build", "--release", "--locked", "--offline"}, args...)...)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "CARGO_TARGET_DIR="+target, "CARGO_TERM_COLOR=never")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cargo %v:\n%s", args, out)
}

// brokerHost is a sandbox root holding the broker's keypairs, and the
// broker's deployed environment and arguments on a free port.
func brokerHost(t *testing.T) (root string, env []string, args []string, port int) {
	d, err := contract.Deploy(contract.Stack{
		Name: "t", Chain: "heima", Issuer: "https://broker.example.org", Region: "us-east-1",
		DataRoleARN: "arn:aws:iam::123456789012:role/data", MemoryRoleARN: "arn:aws:iam::123456789012:role/memory",
		Audience: "sts.amazonaws.com", Sender: "noreply@example.org", VaultBucket: "v", MemoryBucket: "m", ConfigBucket: "c",
		Hostnames: map[string]string{"broker": "b", "signer": "s", "audit": "a", "email": "e", "cred": "c", "memory": "m", "config": "g", "classify": "k"},
	})
	require.NoError(t, err)
	root = t.TempDir()
	for _, kp := range d.Keypairs {
		b, err := contract.MintKeypair(kp.Purpose, time.Now())
		require.NoError(t, err)
		p := filepath.Join(root, kp.Path)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, b, 0o600))
	}
	port, err = ports.Free()
	require.NoError(t, err)
	env = []string{"PATH=" + os.Getenv("PATH"), standin.EnvSandboxRoot + "=" + root}
	for _, s := range d.Services {
		if s.Name != "broker" {
			continue
		}
		for k, v := range s.Env {
			env = append(env, k+"="+v)
		}
		args = append([]string(nil), s.Args...)
		for i := range args {
			if args[i] == "--port" {
				args[i+1] = strconv.Itoa(port)
			}
		}
	}
	return root, env, args, port
}

func run(t *testing.T, bin, dir string, env, args []string) (*exec.Cmd, *strings.Builder, chan struct{}) {
	var out strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, &out, done
}

// The generated workspace builds offline and locked; its broker, built
// without auth-email-link, refuses the deployment's BROKER_AUTH_METHODS as
// the real one does, and built with it, starts and answers /healthz.
func TestBrokerShimFeatures(t *testing.T) {
	t.Parallel()
	ws, target := t.TempDir(), t.TempDir()
	require.NoError(t, agentkeysws.Write(ws, agentkeysws.StandinBinary(t)))
	lock, err := os.ReadFile(filepath.Join(ws, "Cargo.lock"))
	require.NoError(t, err)
	root, env, args, port := brokerHost(t)
	shim := filepath.Join(target, "release", standin.PkgBroker)

	cargo(t, ws, target, "-p", standin.PkgBroker)
	cmd, out, done := run(t, shim, root, env, args)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the featureless broker did not exit:\n%s", out)
	}
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), out.String())
	require.Contains(t, out.String(), `BOOT_FAIL: BROKER_AUTH_METHODS="email_link": unknown or feature-gated-out auth method`)

	cargo(t, ws, target, "-p", standin.PkgBroker, "--features", "auth-email-link")
	_, out, done = run(t, shim, root, env, args)
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, "ok", string(b))
			break
		}
		select {
		case <-done:
			t.Fatalf("the broker exited:\n%s", out)
		default:
		}
		require.True(t, time.Now().Before(deadline), "no /healthz after 30s:\n%s", out)
		time.Sleep(50 * time.Millisecond)
	}
	after, err := os.ReadFile(filepath.Join(ws, "Cargo.lock"))
	require.NoError(t, err)
	require.Equal(t, string(lock), string(after), "--locked: the hand-written lock file is the one cargo wants")
}

// Every shim runs the stand-in as its own package.
func TestEveryShimIsItsPackage(t *testing.T) {
	t.Parallel()
	ws, target := t.TempDir(), t.TempDir()
	require.NoError(t, agentkeysws.Write(ws, agentkeysws.StandinBinary(t)))
	cargo(t, ws, target, "--workspace")
	for _, p := range standin.Packages {
		cmd := exec.Command(filepath.Join(target, "release", p.Name), "--bogus")
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%s: %s", p.Name, out)
		require.Contains(t, string(out), "Usage: "+p.Name)
	}
	// A shim that cannot find the stand-in says so (exit 127).
	require.NoError(t, agentkeysws.Write(ws, "/nonexistent/agentkeys-standin"))
	cargo(t, ws, target, "-p", standin.PkgCreds)
	cmd := exec.Command(filepath.Join(target, "release", standin.PkgCreds))
	out, _ := cmd.CombinedOutput()
	require.Equal(t, 127, cmd.ProcessState.ExitCode(), string(out))
	require.Error(t, agentkeysws.Write(ws, "relative/standin"))
}
