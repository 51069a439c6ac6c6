// Package mototest starts a real moto_server (the local AWS emulator) on a
// free loopback port for one test and points the AWS SDK environment at it.
package mototest

import (
	"bufio"
	"bytes"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
)

// Account is moto's default account id.
const Account = "123456789012"

// Require skips (or fails under AGENTKEYS_E2E=1) when a tool is missing, and
// returns its path.
func Require(t testing.TB, tool, install string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatalf("%s not found on PATH and AGENTKEYS_E2E=1; install it: %s", tool, install)
		}
		t.Skipf("%s not found on PATH (install: %s); set AGENTKEYS_E2E=1 to make this a failure", tool, install)
	}
	return p
}

// FreePort returns a free loopback TCP port for a server the test starts
// (outside the ephemeral range: see package ports).
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Start runs moto_server with the AWS-managed policies loaded (what audit
// looks for), sets AWS_ENDPOINT_URL and dummy credentials for the test, and
// returns the endpoint URL. The server is killed on cleanup.
func Start(t testing.TB) string {
	t.Helper()
	return StartWith(t, Options{ManagedPolicies: true})
}

// StartPlain is Start without the managed policies, which start much faster.
func StartPlain(t testing.TB) string {
	t.Helper()
	return StartWith(t, Options{})
}

// Options configure StartWith.
type Options struct {
	// ManagedPolicies loads the AWS-managed IAM policies (slower start).
	ManagedPolicies bool
	// Python runs inside moto's process before the server starts: a place
	// for fills of operations moto lacks (see test/providers/aws MotoFills).
	Python string
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) string {
	t.Helper()
	return start(t, o)
}

// serve binds port 0 inside moto's own process and prints the port it got,
// so no other test's server can take the port between choosing and binding.
// It exits when the test closes its stdin.
const serve = `import sys
from moto.server import ThreadedMotoServer
%s
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print(s.get_host_and_port()[1], flush=True)
sys.stdin.read()
`

// python returns the interpreter that has moto: the one named by the
// moto_server script's shebang (a virtualenv), else python3 on PATH (pyenv).
func python(t testing.TB, motoServer string) string {
	t.Helper()
	if b, err := os.ReadFile(motoServer); err == nil && bytes.HasPrefix(b, []byte("#!")) {
		line, _, _ := bytes.Cut(b[2:], []byte("\n"))
		if f := strings.Fields(string(line)); len(f) == 1 && strings.Contains(filepath.Base(f[0]), "python") {
			return f[0]
		}
	}
	return Require(t, "python3", "bash .ci/install.d/policy.sh")
}

func start(t testing.TB, o Options) string {
	t.Helper()
	bin := Require(t, "moto_server", "bash .ci/install.d/policy.sh")
	logPath := filepath.Join(t.TempDir(), "moto.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t, bin), "-c", fmt.Sprintf(serve, o.Python))
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "MOTO_IAM_LOAD_MANAGED_POLICIES="+strconv.FormatBool(o.ManagedPolicies))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moto: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	portc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		portc <- strings.TrimSpace(line)
		_, _ = io.Copy(logf, stdout)
	}()
	var port string
	select {
	case port = <-portc:
	case <-time.After(60 * time.Second):
	}
	if _, err := strconv.Atoi(port); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("moto did not report its port within 60s (got %q); log:\n%s", port, b)
	}
	url := "http://127.0.0.1:" + port
	resp, err := http.Get(url + "/moto-api/")
	if err != nil {
		t.Fatalf("moto on %s does not answer: %v", url, err)
	}
	resp.Body.Close()
	t.Setenv("AWS_ENDPOINT_URL", url)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return url
}

// Config is an SDK config for seeding moto from the test. Connections are
// not reused and requests not retried: a retried create whose first try
// reached moto fails as "already exists" (seen under CI load), hiding the
// first error, and a reused idle connection is what makes such tries fail.
func Config(t testing.TB) aws.Config {
	t.Helper()
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.DisableKeepAlives = true })
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithHTTPClient(hc), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
