package nginx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func testSpec() *spec.HostSpec {
	iss := "https://broker-test-2.example.org"
	return &spec.HostSpec{
		Version: spec.Version, Stack: "test-2", Issuer: iss, Zone: "example.org",
		PublicIP: "192.0.2.10", Account: "123456789012", Chain: "heima",
		Nginx:    spec.Nginx{HTTPPort: 80, HTTPSPort: 443, Webroot: "/var/www/certbot", ConfDir: "/etc/nginx/conf.d"},
		StateDir: "/var/lib/agentkeys",
		Services: []spec.Service{
			{Name: "broker", Port: 8090, Hostname: "broker-test-2.example.org", Env: map[string]string{"BROKER_OIDC_ISSUER": iss}},
			{Name: "signer", Port: 8092, Hostname: "signer-test-2.example.org"},
			{Name: "mock-server", Port: 8091},
		},
	}
}

func newEnv(t *testing.T, root string) *agent.Env {
	return &agent.Env{Spec: testSpec(), Root: root, Sys: agent.NewSandbox(root), Counters: &agent.Counters{}, Report: &agent.Report{}}
}

func writeCert(t *testing.T, root, host string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	fc, pk := CertFiles(host)
	os.MkdirAll(filepath.Join(root, filepath.Dir(fc)), 0o700)
	os.WriteFile(filepath.Join(root, fc), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(root, pk), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPhasesStaleFilesAndNoopRuns(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "etc/nginx/conf.d")
	os.MkdirAll(confDir, 0o755)
	os.WriteFile(filepath.Join(confDir, "agentkeys-old-host.example.org.conf"), []byte("server {}\n"), 0o644)
	os.WriteFile(filepath.Join(confDir, "default.conf"), []byte("# not ours\n"), 0o644)
	ctx := context.Background()
	s := &Step{}

	env := newEnv(t, root)
	res, err := s.Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.Changed || env.Counters.Reloads != 1 {
		t.Fatalf("first run: %s reloads=%d, want changed and one reload", res.Status, env.Counters.Reloads)
	}
	broker := read(t, filepath.Join(confDir, "agentkeys-broker-test-2.example.org.conf"))
	for _, want := range []string{"listen 80;", "server_name broker-test-2.example.org;", "location ^~ /.well-known/acme-challenge/",
		"root " + filepath.Join(root, "var/www/certbot") + ";", `return 503 "TLS cert not yet issued`} {
		if !strings.Contains(broker, want) {
			t.Errorf("Phase A vhost lacks %q:\n%s", want, broker)
		}
	}
	if strings.Contains(broker, "ssl") || strings.Contains(broker, "proxy_pass") {
		t.Errorf("Phase A vhost names TLS or the service before a certificate exists:\n%s", broker)
	}
	if _, err := os.Stat(filepath.Join(confDir, "agentkeys-old-host.example.org.conf")); !os.IsNotExist(err) {
		t.Error("stale agentkeys vhost was not removed")
	}
	if read(t, filepath.Join(confDir, "default.conf")) != "# not ours\n" {
		t.Error("a file the agent does not own was touched")
	}
	if _, err := os.Stat(filepath.Join(confDir, "agentkeys-mock-server.conf")); err == nil {
		t.Error("an internal service got a vhost")
	}
	if st, err := os.Stat(filepath.Join(root, "var/www/certbot/.well-known/acme-challenge")); err != nil || !st.IsDir() {
		t.Errorf("challenge dir not created: %v", err)
	}

	env = newEnv(t, root)
	if res, err := s.Run(ctx, env); err != nil || res.Status != agent.OK || *env.Counters != (agent.Counters{}) {
		t.Fatalf("second run: %s %v %+v, want ok and zero counters", res.Status, err, *env.Counters)
	}

	// A certificate flips that host (only) to Phase B.
	writeCert(t, root, "signer-test-2.example.org")
	env = newEnv(t, root)
	res, err = s.Run(ctx, env)
	if err != nil || env.Counters.Reloads != 1 || env.Counters.FilesWritten != 2 {
		t.Fatalf("flip: %v reloads=%d written=%d (%v), want 1 reload, the vhost and the marker written", err, env.Counters.Reloads, env.Counters.FilesWritten, res.Changes)
	}
	signer := read(t, filepath.Join(confDir, "agentkeys-signer-test-2.example.org.conf"))
	for _, want := range []string{"listen 443 ssl;", "ssl_certificate     " + filepath.Join(root, "etc/agentkeys/tls/signer-test-2.example.org/fullchain.pem"),
		"proxy_pass http://127.0.0.1:8092;", "return 301 https://$host$request_uri;", "location ^~ /.well-known/acme-challenge/"} {
		if !strings.Contains(signer, want) {
			t.Errorf("Phase B vhost lacks %q:\n%s", want, signer)
		}
	}
	if res.Detail["phases"].(map[string]string)["broker-test-2.example.org"] != "A" {
		t.Error("broker left Phase A without a certificate")
	}

	// A renewed certificate (same paths, new bytes) reloads without a vhost change.
	writeCert(t, root, "signer-test-2.example.org")
	env = newEnv(t, root)
	if _, err := s.Run(ctx, env); err != nil || env.Counters.Reloads != 1 {
		t.Fatalf("renewed cert: %v reloads=%d, want one reload", err, env.Counters.Reloads)
	}
}

func TestKilledBeforeReloadReloadsOnRerun(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	s := &Step{}
	if _, err := s.Run(ctx, newEnv(t, root)); err != nil {
		t.Fatal(err)
	}
	// The files are in place but the reload never happened (the marker is
	// written only after it): the next run must reload.
	os.Remove(filepath.Join(root, AppliedMarker("/var/lib/agentkeys")))
	env := newEnv(t, root)
	if _, err := s.Run(ctx, env); err != nil || env.Counters.Reloads != 1 {
		t.Fatalf("rerun after a lost reload: %v reloads=%d, want 1", err, env.Counters.Reloads)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	root := t.TempDir()
	env := newEnv(t, root)
	env.DryRun = true
	res, err := (&Step{}).Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.Changed || !strings.Contains(strings.Join(res.Changes, "\n"), "would write /etc/nginx/conf.d/agentkeys-broker-test-2.example.org.conf") {
		t.Errorf("plan: %s %v", res.Status, res.Changes)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); !os.IsNotExist(err) {
		t.Error("dry run created files")
	}
}

func TestNonDefaultHTTPSPortInRedirect(t *testing.T) {
	root := t.TempDir()
	writeCert(t, root, "broker-test-2.example.org")
	sp := testSpec()
	sp.Nginx.HTTPSPort = 8443
	v, err := Render(sp, root, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v[0].Data), "return 301 https://$host:8443$request_uri;") || !strings.Contains(string(v[0].Data), "listen 127.0.0.1:8443 ssl;") {
		t.Errorf("redirect/listen ignore the port or address:\n%s", v[0].Data)
	}
}
