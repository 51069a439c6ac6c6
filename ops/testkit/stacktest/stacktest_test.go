package stacktest

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/naming"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
	os.Exit(code)
}

func client(s *Stack) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.CAPool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.Addr)
		},
	}}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The host serves what the contract says each service serves, through the
// nginx-like front, and a stopped service answers 502.
func TestHostServesTheContract(t *testing.T) {
	s0, _ := naming.ParseStack("test-2")
	n := naming.Derive(s0, naming.Fork{AccountID: "123456789012", Zone: "example.test"})
	s := Start(t, n, Options{})
	c := client(s)
	for _, d := range s.dep.Services {
		if d.Hostname == "" {
			continue
		}
		code, body := get(t, c, "https://"+d.Hostname+d.Health.Path)
		if code != 200 {
			t.Errorf("%s %s: %d %q", d.Name, d.Hostname, code, body)
		}
		if d.Health.JSON != strings.HasPrefix(body, "{") {
			t.Errorf("%s: body %q, JSON=%v", d.Name, body, d.Health.JSON)
		}
	}
	if code, body := get(t, c, "https://"+n.BrokerHost+"/readyz"); code != 200 || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("readyz %d %s", code, body)
	}
	if code, _ := get(t, c, "https://"+n.SignerHost+"/"); code != 404 {
		t.Errorf("signer / = %d, want 404", code)
	}
	s.DropSESCache()
	if code, body := get(t, c, "https://"+n.BrokerHost+"/readyz"); code != 200 || !strings.Contains(body, `"degraded"`) {
		t.Errorf("readyz after cache drop %d %s", code, body)
	}
	s.Stop("memory")
	if code, body := get(t, c, "https://"+n.WorkerHosts["memory"]+"/healthz"); code != 502 || !strings.Contains(body, "nginx") {
		t.Errorf("stopped memory: %d %q", code, body)
	}
	s.Start("memory")
	if code, _ := get(t, c, "https://"+n.WorkerHosts["memory"]+"/healthz"); code != 200 {
		t.Errorf("restarted memory: %d", code)
	}
	_ = contract.Loopback
}

func TestSESFailIsUnready(t *testing.T) {
	s0, _ := naming.ParseStack("test-2")
	n := naming.Derive(s0, naming.Fork{AccountID: "123456789012", Zone: "example.test"})
	s := Start(t, n, Options{SES: "fail"})
	code, body := get(t, client(s), "https://"+n.BrokerHost+"/readyz")
	if code != 503 || !strings.Contains(body, "tier2/ses") {
		t.Fatalf("%d %s", code, body)
	}
	t.Log(body)
}
