// Package mototest starts a real moto_server (the local AWS emulator) on a
// free loopback port for one test and points the AWS SDK environment at it.
package mototest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
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

// FreePort returns a currently free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs moto_server with the AWS-managed policies loaded (what audit
// looks for), sets AWS_ENDPOINT_URL and dummy credentials for the test, and
// returns the endpoint URL. The server is killed on cleanup.
func Start(t testing.TB) string {
	t.Helper()
	return start(t, true)
}

// StartPlain is Start without the managed policies, which start much faster.
func StartPlain(t testing.TB) string {
	t.Helper()
	return start(t, false)
}

func start(t testing.TB, managed bool) string {
	t.Helper()
	bin := Require(t, "moto_server", "bash .ci/install.d/policy.sh")
	port := FreePort(t)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	logf, err := os.Create(filepath.Join(t.TempDir(), "moto.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "MOTO_IAM_LOAD_MANAGED_POLICIES="+strconv.FormatBool(managed))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not answer on %s within 30s (log %s)", url, logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Setenv("AWS_ENDPOINT_URL", url)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return url
}

// Config is an SDK config for seeding moto from the test.
func Config(t testing.TB) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
