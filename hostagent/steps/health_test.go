package steps

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

func selfSignedFor(t *testing.T, host string) (tls.Certificate, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serve(t *testing.T, l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// The broker counts as serving TLS only when nginx's port serves the
// discovery with the very certificate the agent holds for the broker host.
func TestHealthChecksBrokerDiscoveryOverTLS(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t), "broker")
	ports := sandboxtest.FreePorts(t, 1)
	s.Nginx.HTTPSPort = ports[0]
	s.HealthTimeoutSeconds = 2
	b := s.Broker()
	discovery := fmt.Sprintf(`{"issuer":%q}`, s.Issuer)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, discovery) })
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k1"}]}`)
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(b.Port))
	require.NoError(t, err)
	serve(t, l, mux)

	served, servedPEM := selfSignedFor(t, b.Hostname)
	tl, err := tls.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.Nginx.HTTPSPort), &tls.Config{Certificates: []tls.Certificate{served}})
	require.NoError(t, err)
	serve(t, tl, mux)

	env, _ := newEnv(t, s)
	fullchain, privkey := nginx.CertFiles(b.Hostname)
	write := func(c tls.Certificate, pemBytes []byte) {
		require.NoError(t, os.MkdirAll(filepath.Dir(env.Path(fullchain)), 0o755))
		require.NoError(t, os.WriteFile(env.Path(fullchain), pemBytes, 0o644))
		kd, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(env.Path(privkey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600))
	}
	// recorded is what this run's certificates step reported for the broker
	// host: "" when it did not run (apply --skip certificates, --only health).
	run := func(recorded string) (map[string]agent.HealthCheck, error) {
		env.Report = &agent.Report{}
		switch recorded {
		case "issued":
			env.Report.Issued(b.Hostname)
		case "skipped":
			env.Report.SkipHost(b.Hostname, "renewal failed")
		}
		_, err := Health{}.Run(context.Background(), env)
		return env.Report.HealthChecks(), err
	}

	// No certificate yet: no TLS check, and that is not a failure.
	checks, err := run("")
	require.NoError(t, err)
	assert.NotContains(t, checks, agent.HealthBrokerTLS)
	assert.Empty(t, env.Report.Hosts().Issued)

	// nginx serves the certificate the agent holds: healthy TLS.
	write(served, servedPEM)
	checks, err = run("issued")
	require.NoError(t, err)
	assert.True(t, checks[agent.HealthBrokerTLS].OK, checks[agent.HealthBrokerTLS].Detail)
	assert.Equal(t, s.Issuer+"/.well-known/openid-configuration", checks[agent.HealthBrokerTLS].URL)

	// The certificates step did not run: the certificate on disk is what
	// counts. The check runs, and the valid certificate is reported issued,
	// as the Pulumi program requires to federate, only when the
	// certificates step would keep it: its meta.json names the spec's ACME
	// directory, or certbot. One from another CA (staging, a test CA) or
	// without meta.json is reported skipped, whatever the TLS check says.
	meta := filepath.Join(filepath.Dir(env.Path(fullchain)), "meta.json")
	for _, c := range []struct{ meta, skip string }{
		{"", "the certificate on disk is from an unknown CA (no meta.json), not the spec's ACME directory " + s.ACME.Directory},
		{`{"source":"acme","directory":"https://acme-staging-v02.api.letsencrypt.org/directory"}`,
			"the certificate on disk is from https://acme-staging-v02.api.letsencrypt.org/directory, not the spec's ACME directory " + s.ACME.Directory},
		{`{"source":"acme","directory":"` + s.ACME.Directory + `"}`, ""},
		{`{"source":"certbot"}`, ""},
	} {
		os.Remove(meta)
		if c.meta != "" {
			require.NoError(t, os.WriteFile(meta, []byte(c.meta), 0o644))
		}
		checks, err = run("")
		require.NoError(t, err)
		assert.True(t, checks[agent.HealthBrokerTLS].OK, checks[agent.HealthBrokerTLS].Detail)
		if c.skip != "" {
			assert.Empty(t, env.Report.Hosts().Issued, c.meta)
			assert.Equal(t, map[string]string{b.Hostname: c.skip + "; the certificates step replaces it"}, env.Report.Hosts().Skipped)
		} else {
			assert.Equal(t, []string{b.Hostname}, env.Report.Hosts().Issued, c.meta)
		}
	}
	// A host the certificates step reported skipped stays skipped, but the
	// certificate nginx serves is still checked.
	checks, err = run("skipped")
	require.NoError(t, err)
	assert.True(t, checks[agent.HealthBrokerTLS].OK)
	assert.Empty(t, env.Report.Hosts().Issued)

	// The agent holds a newer certificate nginx does not serve yet (no
	// reload): with a certificate on disk, the check's outcome decides.
	other, otherPEM := selfSignedFor(t, b.Hostname)
	write(other, otherPEM)
	for _, rec := range []string{"issued", ""} {
		checks, err = run(rec)
		require.Error(t, err, rec)
		assert.False(t, checks[agent.HealthBrokerTLS].OK)
		assert.Contains(t, checks[agent.HealthBrokerTLS].Detail, "nginx serves a certificate other than "+fullchain)
	}
}

// A service that never answers (a crash loop) fails its own check with its
// own error; the broker's checks, listed after it, still pass.
func TestHealthOneDeadServiceDoesNotFailTheOthers(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t), "broker", "audit")
	s.HealthTimeoutSeconds = 2
	s.Services[0], s.Services[1] = s.Services[1], s.Services[0] // the dead one is checked first
	b := s.Broker()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q}`, s.Issuer)
	})
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k1"}]}`)
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(b.Port))
	require.NoError(t, err)
	serve(t, l, mux)

	env, _ := newEnv(t, s)
	start := time.Now()
	res, err := Health{}.Run(context.Background(), env)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*2*time.Second, "checks must not queue behind each other's deadlines")
	checks := env.Report.HealthChecks()
	for _, name := range []string{"broker", agent.HealthBrokerDiscovery, agent.HealthBrokerJWKS} {
		assert.True(t, checks[name].OK, "%s: %s", name, checks[name].Detail)
	}
	audit := checks["audit"]
	assert.False(t, audit.OK)
	assert.Contains(t, audit.Detail, "connection refused", "the dead service's own error, not the deadline")
	assert.Contains(t, err.Error(), "1 of 4 checks failed")
	assert.Len(t, res.Detail, 4)
}

// A 200 is not health: the body must be the contract's (exactly "ok", or
// JSON with "ok": true for the cap workers).
func TestHealthChecksTheBody(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t), "broker", "creds")
	s.HealthTimeoutSeconds = 1
	b, creds := s.Broker(), s.Service("creds")
	require.True(t, creds.HealthJSON)
	brokerBody, credsBody := "ok", `{"ok":true,"vault_bucket":"b"}`
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, brokerBody) })
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q}`, s.Issuer)
	})
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k1"}]}`)
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(b.Port))
	require.NoError(t, err)
	serve(t, l, mux)
	cmux := http.NewServeMux()
	cmux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, credsBody) })
	cl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(creds.Port))
	require.NoError(t, err)
	serve(t, cl, cmux)

	env, _ := newEnv(t, s)
	_, err = Health{}.Run(context.Background(), env)
	require.NoError(t, err)

	brokerBody, credsBody = "<html>welcome to nginx</html>", `{"ok":false}`
	_, err = Health{}.Run(context.Background(), env)
	require.Error(t, err)
	checks := env.Report.HealthChecks()
	assert.Contains(t, checks["broker"].Detail, `body "<html>welcome to nginx</html>", want exactly "ok"`)
	assert.Contains(t, checks["creds"].Detail, `body "{\"ok\":false}" is not creds's healthy JSON`)
}

// wait-ready with the unit's $MAINPID: an answer from another process on
// the port (one holding it before the unit started) is not readiness, and
// the unit's process exiting ends the wait with both facts.
func TestWaitReadyCountsOnlyTheUnitsOwnProcess(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/healthz"

	// This test process listens: it is ready.
	if err := WaitReady(context.Background(), url, 10*time.Second, os.Getpid()); err != nil {
		t.Fatalf("own process serving: %v", err)
	}
	// The "unit" is a process that never binds and exits after a moment.
	unit := exec.Command("sleep", "1")
	if err := unit.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = unit.Wait() }()
	err = WaitReady(context.Background(), url, time.Minute, unit.Process.Pid)
	if err == nil {
		t.Fatal("ready although another process answered on the port")
	}
	for _, want := range []string{"exited", "another process holds it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
