// Package stacktest stands up a local stand-in for a deployed stack's broker
// host: the AgentKeys services as the contract deploys them (each one the
// internal/standin binary, which serves the real /healthz bodies and the
// broker's real /readyz and OIDC documents), behind one TLS listener that
// plays nginx's Phase B (a certificate per hostname from a test CA chain,
// each site proxying its service, the signer site only /dev/ and /healthz,
// 502 when a service is down), plus a DoH JSON server for the A records.
package stacktest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Options shape the host.
type Options struct {
	// SES is the broker's SES sender probe (tier2/ses): "ok" (default) or
	// "fail" (the broker stays unready, /readyz 503).
	SES string
	// Issuer replaces BROKER_OIDC_ISSUER (e.g. with a trailing slash, which
	// the broker does not strip).
	Issuer string
	// CertFor serves host's certificate for another name.
	CertFor map[string]string
	// CertDays is how long a host's leaf has left (default 60 days).
	CertDays map[string]int
	// Misroute points a hostname's site at another service (a vhost
	// proxying to the wrong port).
	Misroute map[string]string
}

// Stack is a running host.
type Stack struct {
	Names  naming.Names
	Addr   string // host:port of the TLS front
	CAFile string // the test root, PEM
	CAPool *x509.CertPool
	Root   string // sandbox root the services write under

	t       testing.TB
	bin     string
	dep     *contract.Deployment
	port    map[string]int // service -> loopback port
	env     map[string]map[string]string
	args    map[string][]string
	rootKey *ecdsa.PrivateKey
	root    *x509.Certificate
	intKey  *ecdsa.PrivateKey
	inter   *x509.Certificate

	mu    sync.Mutex
	opts  Options
	certs map[string]*tls.Certificate
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Start deploys every service of n's stack and serves its TLS hostnames on a
// loopback port until the test ends. It returns once the broker's /readyz
// reports what o.SES implies.
func Start(t testing.TB, n naming.Names, o Options) *Stack {
	t.Helper()
	s := &Stack{Names: n, t: t, bin: agentkeysws.StandinBinary(t), Root: t.TempDir(),
		port: map[string]int{}, env: map[string]map[string]string{}, args: map[string][]string{},
		certs: map[string]*tls.Certificate{}, procs: map[string]*proc{}, opts: o}
	s.ca()
	s.deploy()
	s.serve()
	s.startAll()
	return s
}

// ca makes a root and an intermediate, so the served chain has the shape of
// a public CA's (leaf, intermediate; root in the client's pool).
func (s *Stack) ca() {
	t := s.t
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	s.root, s.rootKey = mk("agentkeys test root", nil, nil)
	s.inter, s.intKey = mk("agentkeys test R1", s.root, s.rootKey)
	s.CAPool = x509.NewCertPool()
	s.CAPool.AddCert(s.root)
	s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// deploy lays the host out as the agent does before any unit starts
// (directories, keypairs, minted secrets, the session public key) and
// computes each unit's argv and environment, on test ports.
func (s *Stack) deploy() {
	t := s.t
	st := contract.StackOf(s.Names, nil, "")
	cat := contract.Catalog(st.Chain)
	ps, err := ports.FreeN(len(cat))
	if err != nil {
		t.Fatal(err)
	}
	st.Ports = map[string]int{}
	for i, svc := range cat {
		st.Ports[svc.Name] = ps[i]
		s.port[svc.Name] = ps[i]
	}
	d, err := contract.Deploy(st)
	if err != nil {
		t.Fatalf("contract.Deploy: %v", err)
	}
	s.dep = d
	for _, dir := range d.Dirs {
		if err := os.MkdirAll(s.host(dir.Path), os.FileMode(dir.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	var pubPEM string
	for _, kp := range d.Keypairs {
		b, err := contract.MintKeypair(kp.Purpose, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s.write(kp.Path, b, 0o600)
		if kp.PublicPEM != "" {
			k, err := contract.ParseKeypair(kp.Purpose, b)
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := contract.PublicPEM(&k.Key.PublicKey)
			pubPEM = string(pub)
			s.write(kp.PublicPEM, pub, 0o644) // the signer reads it at boot
		}
	}
	secrets := map[string]string{}
	for _, sec := range d.Secrets {
		if sec.Kind == contract.Minted {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			secrets[sec.ID] = hex.EncodeToString(b)
		}
	}
	for _, dep := range d.Services {
		env := map[string]string{}
		for k, v := range dep.Env {
			env[k] = v
		}
		for _, id := range dep.Secrets {
			if sec, ok := d.Secret(id); ok && sec.Kind == contract.Minted {
				env[sec.Var] = secrets[id]
			}
		}
		for _, f := range dep.EnvFiles {
			switch f {
			case contract.MasterSecretFile:
				env[contract.VarMasterSecret] = secrets["master-secret"]
			case d.PubKeyEnv:
				env[contract.VarCapPubKey] = pubPEM
			default:
				t.Fatalf("stacktest: %s reads env file %s, which this stand-in host does not write", dep.Name, f)
			}
		}
		if dep.Name == "broker" {
			ses := s.opts.SES
			if ses == "" {
				ses = "ok"
			}
			env[standin.EnvSES] = ses
			if s.opts.Issuer != "" {
				// After Deploy, whose check refuses what the broker itself
				// accepts (a trailing slash boots, and is served as is).
				env[contract.VarIssuer] = s.opts.Issuer
			}
		}
		s.env[dep.Name] = env
		s.args[dep.Name] = append([]string{dep.Package}, dep.Args...)
	}
}

func (s *Stack) host(p string) string { return filepath.Join(s.Root, p) }

func (s *Stack) write(p string, b []byte, mode os.FileMode) {
	if err := os.MkdirAll(filepath.Dir(s.host(p)), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.host(p), b, mode); err != nil {
		s.t.Fatal(err)
	}
}

// startAll starts the broker first (it rewrites the session public key the
// signer reads), then the rest, and waits until each listens.
func (s *Stack) startAll() {
	s.Start("broker")
	for _, d := range s.dep.Services {
		if d.Name != "broker" {
			s.Start(d.Name)
		}
	}
	want := http.StatusOK
	if s.opts.SES == "fail" {
		want = http.StatusServiceUnavailable
	}
	s.waitReady(want)
}

// Start (re)starts one service and waits until it listens.
func (s *Stack) Start(name string) {
	t := s.t
	t.Helper()
	s.mu.Lock()
	if p := s.procs[name]; p != nil {
		select {
		case <-p.done:
		default:
			s.mu.Unlock()
			return // running
		}
	}
	s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args[name]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), standin.EnvSandboxRoot + "=" + s.Root}
	for k, v := range s.env[name] {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = s.Root
	p := &proc{cmd: cmd, done: make(chan struct{}), out: &syncBuf{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	addr := net.JoinHostPort(contract.Loopback, strconv.Itoa(s.port[name]))
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("stacktest: %s exited instead of listening on %s:\n%s", name, addr, p.out)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stacktest: %s not listening on %s after 15s:\n%s", name, addr, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills one service: its site then answers 502, as nginx does.
func (s *Stack) Stop(name string) {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("stacktest: %s was never started", name)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// DropSESCache removes the broker's ses-verify.json: its email_link plugin
// turns degraded while tier2/ses stays ready (verified since boot).
func (s *Stack) DropSESCache() {
	p := s.host(filepath.Join(contract.KeyDir, "ses-verify.json"))
	if err := os.Remove(p); err != nil {
		s.t.Fatalf("stacktest: %v", err)
	}
}

// Log is one service's output so far.
func (s *Stack) Log(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return p.out.String()
	}
	return ""
}

func (s *Stack) waitReady(want int) {
	url := "http://" + net.JoinHostPort(contract.Loopback, strconv.Itoa(s.port["broker"])) + "/readyz"
	deadline := time.Now().Add(15 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			got = resp.StatusCode
			resp.Body.Close()
			if got == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("stacktest: broker /readyz answered %d, want %d within 15s:\n%s", got, want, s.Log("broker"))
}

// SetCert replaces host's certificate: name on it ("" the host) and days left.
func (s *Stack) SetCert(host, name string, days int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.CertFor == nil {
		s.opts.CertFor = map[string]string{}
	}
	if s.opts.CertDays == nil {
		s.opts.CertDays = map[string]int{}
	}
	if name != "" {
		s.opts.CertFor[host] = name
	} else {
		delete(s.opts.CertFor, host)
	}
	s.opts.CertDays[host] = days
	delete(s.certs, host)
}

func (s *Stack) getCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	host := hello.ServerName
	if c, ok := s.certs[host]; ok {
		return c, nil
	}
	name := host
	if w, ok := s.opts.CertFor[host]; ok {
		name = w
	}
	days := 60
	if d, ok := s.opts.CertDays[host]; ok {
		days = d
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// A 90-day certificate like Let's Encrypt's, with days left as asked.
	notAfter := time.Now().Add(time.Duration(days)*24*time.Hour + time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notAfter.Add(-90 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter, &key.PublicKey, s.intKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, s.inter.Raw}, PrivateKey: key}
	s.certs[host] = c
	return c, nil
}

// nginx502 is the body nginx serves when its upstream refuses.
const nginx502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// serve starts the TLS front: per hostname the site the agent renders for
// the service whose Host label it carries (contract.Service.Host, Scope).
func (s *Stack) serve() {
	t := s.t
	sites := map[string]http.Handler{}
	for _, d := range s.dep.Services {
		if d.Hostname == "" {
			continue
		}
		to := d.Name
		if m, ok := s.opts.Misroute[d.Hostname]; ok {
			to = m
		}
		up, _ := url.Parse("http://" + net.JoinHostPort(contract.Loopback, strconv.Itoa(s.port[to])))
		rp := httputil.NewSingleHostReverseProxy(up)
		rp.ErrorLog = log.New(io.Discard, "", 0)
		rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, nginx502)
		}
		var h http.Handler = rp
		if d.Scope == contract.ScopeSigner {
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/dev/") || r.URL.Path == "/healthz" {
					rp.ServeHTTP(w, r)
					return
				}
				http.NotFound(w, r)
			})
		}
		sites[d.Hostname] = h
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h, ok := sites[r.TLS.ServerName]; ok {
				h.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
		}),
		TLSConfig:         &tls.Config{GetCertificate: s.getCert},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // rejected handshakes are the point of some tests
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
}

// DoH serves the dns.google JSON API (https://developers.google.com/speed/public-dns/docs/doh/json)
// from a host -> IPv4 map; unknown names are NXDOMAIN (Status 3).
func DoH(t testing.TB, records map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSuffix(r.URL.Query().Get("name"), ".")
		ip, ok := records[name]
		if !ok || r.URL.Query().Get("type") != "A" {
			_ = json.NewEncoder(w).Encode(map[string]any{"Status": 3})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Status": 0, "Answer": []map[string]any{{"name": name + ".", "type": 1, "TTL": 300, "data": ip}}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/resolve"
}

// Records maps every hostname of n to ip.
func Records(n naming.Names, ip string) map[string]string {
	m := map[string]string{}
	for _, h := range n.Hostnames() {
		m[h] = ip
	}
	return m
}

// Port is the loopback port a service listens on.
func (s *Stack) Port(name string) int { return s.port[name] }

// String names the stack for test messages.
func (s *Stack) String() string { return fmt.Sprintf("stacktest %s at %s", s.Names.Stack.Name, s.Addr) }
