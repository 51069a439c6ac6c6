// Package e2e converges a sandbox host with real components: Debian nginx
// serving the ACME webroot, the pebble ACME CA validating HTTP-01 against it,
// and pebble-challtestsrv as the DNS that decides which hostnames point here.
// Everything listens on 127.0.0.1 high ports and lives under a temp root; the
// machine's own /etc and services are never touched.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
)

// Tools are the external programs the e2e tests need.
var Tools = []string{"nginx", "pebble", "pebble-challtestsrv"}

// LookTool finds a tool on PATH or in $(go env GOPATH)/bin, where
// .ci/install.d/e2e.sh installs pebble.
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if name == "nginx" {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx", nil
		}
	}
	gp := os.Getenv("GOPATH")
	if gp == "" {
		home, _ := os.UserHomeDir()
		gp = filepath.Join(home, "go")
	}
	p := filepath.Join(gp, "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found on PATH or in %s/bin; run .ci/install.d/e2e.sh", name, gp)
}

// MissingTools lists the tools that cannot be found.
func MissingTools() []string {
	var out []string
	for _, t := range Tools {
		if _, err := LookTool(t); err != nil {
			out = append(out, t)
		}
	}
	return out
}

// FreePort returns a free loopback TCP port for a server started later
// (outside the ephemeral range: see package ports).
func FreePort() (int, error) { return ports.Free() }

// Proc is a started child process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func start(dir, logName string, env []string, name string, args ...string) (*Proc, error) {
	return startIn("", dir, logName, env, name, args...)
}

// startIn starts the tool inside the network namespace nsPath ("" for ours)
// through nsenter, which execs it: signals reach the tool itself.
func startIn(nsPath, dir, logName string, env []string, name string, args ...string) (*Proc, error) {
	bin, err := LookTool(name)
	if err != nil {
		return nil, err
	}
	if nsPath != "" {
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			return nil, fmt.Errorf("nsenter (util-linux) is needed to start %s in %s: %w", name, nsPath, err)
		}
		args = append([]string{"--net=" + nsPath, "--", bin}, args...)
		bin = nsenter
	}
	lf, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	// Pdeathsig fires when the forking OS thread exits, and a thread that
	// InNetns used is discarded; so fork from a thread held until the child ends.
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		lf.Close()
		return nil, err
	}
	return p, nil
}

// Stop ends the process group, bounded in time.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

// Log returns the process's output so far (for failure messages).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

func waitTCP(addr string, p *Proc) error {
	return waitTCPIn("", addr, p)
}

func waitTCPIn(nsPath, addr string, p *Proc) error {
	dial := dialer(nsPath)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v): %s", p.Name, p.cmd.ProcessState, p.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := dial(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within 15s: %s", p.Name, addr, p.Log())
}

// CA is a running pebble plus pebble-challtestsrv.
type CA struct {
	Directory string // https://127.0.0.1:<port>/dir
	DNS       string // 127.0.0.1:<port>, the resolver for the A-record check
	// Client trusts pebble's own listener certificate (for the directory).
	Client *http.Client
	// Roots holds the root that signs issued certificates.
	Roots    *x509.CertPool
	mgmt     string // pebble management
	dir      string // pebble's config, listener certificate and log
	restarts int
	env      []string // extra pebble environment
	netns    string   // network namespace of both processes ("" = ours)
	dnsMgmt  string   // challtestsrv management
	pebble   *Proc
	challsrv *Proc // nil when CAOptions.DNS names another resolver
}

// CAOptions place a CA.
type CAOptions struct {
	// Netns runs pebble (and challtestsrv) in this network namespace
	// (/proc/PID/ns/net); the CA's Client dials into it.
	Netns string
	// DNS is a resolver pebble uses instead of starting challtestsrv, so
	// the CA and the host under test see one DNS.
	DNS string
	// Env adds pebble settings.
	Env []string
	// Addr is the IPv4 address pebble and challtestsrv listen on (default
	// 127.0.0.1); pebble's listener certificate names it. A host in its own
	// network namespace (a container) reaches them there.
	Addr string
	// DefaultIPv4 is challtestsrv's answer for every name (default
	// 127.0.0.1): the address pebble validates HTTP-01 against.
	DefaultIPv4 string
}

// StartCA starts challtestsrv (DNS answering 127.0.0.1 for every name, no
// AAAA) and pebble validating HTTP-01 on httpPort, under dir. env adds
// pebble settings (PEBBLE_AUTHZREUSE=100 for tests about many orders).
func StartCA(dir string, httpPort int, env ...string) (*CA, error) {
	return StartCAWith(dir, httpPort, CAOptions{Env: env})
}

// StartCAWith is StartCA placed by o.
func StartCAWith(dir string, httpPort int, o CAOptions) (*CA, error) {
	ports := make([]int, 5)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	addr, answer := o.Addr, o.DefaultIPv4
	if addr == "" {
		addr = "127.0.0.1"
	}
	if answer == "" {
		answer = "127.0.0.1"
	}
	ca := &CA{
		Directory: fmt.Sprintf("https://%s:%d/dir", addr, ports[0]),
		mgmt:      fmt.Sprintf("%s:%d", addr, ports[1]),
		DNS:       fmt.Sprintf("%s:%d", addr, ports[2]),
		dnsMgmt:   fmt.Sprintf("%s:%d", addr, ports[3]),
		dir:       dir,
		env:       o.Env,
		netns:     o.Netns,
	}
	if o.DNS != "" {
		ca.DNS, ca.dnsMgmt = o.DNS, ""
	} else {
		var err error
		ca.challsrv, err = startIn(o.Netns, dir, "challtestsrv.log", nil, "pebble-challtestsrv",
			"-defaultIPv4", answer, "-defaultIPv6", "",
			"-dnsserver", ca.DNS, "-management", ca.dnsMgmt,
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
		if err != nil {
			return nil, err
		}
		if err := waitTCPIn(o.Netns, ca.dnsMgmt, ca.challsrv); err != nil {
			ca.Close()
			return nil, err
		}
	}
	certPEM, keyPEM, err := selfSigned(addr)
	if err != nil {
		ca.Close()
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "pebble-cert.pem"), filepath.Join(dir, "pebble-key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           strings.TrimSuffix(strings.TrimPrefix(ca.Directory, "https://"), "/dir"),
		"managementListenAddress": ca.mgmt,
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                httpPort,
		"tlsPort":                 ports[4],
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "90 days", "validityPeriod": 7776000,
		}},
	}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgFile := filepath.Join(dir, "pebble-config.json") // startPebble reads it
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		ca.Close()
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	ca.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: dialer(o.Netns),
	}}
	if err := ca.startPebble("pebble.log"); err != nil {
		ca.Close()
		return nil, err
	}
	return ca, nil
}

// startPebble starts pebble with the config under ca.dir and fetches its
// issuing root, which changes at every start.
func (ca *CA) startPebble(logName string) error {
	var err error
	ca.pebble, err = startIn(ca.netns, ca.dir, logName,
		append([]string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, ca.env...),
		"pebble", "-config", filepath.Join(ca.dir, "pebble-config.json"), "-dnsserver", ca.DNS)
	if err != nil {
		return err
	}
	if err := waitTCPIn(ca.netns, ca.mgmt, ca.pebble); err != nil {
		return err
	}
	resp, err := ca.Client.Get("https://" + ca.mgmt + "/roots/0")
	if err != nil {
		return err
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ca.Roots = x509.NewCertPool()
	if !ca.Roots.AppendCertsFromPEM(root) {
		return fmt.Errorf("pebble /roots/0 returned no PEM certificate: %q", root)
	}
	return nil
}

// RestartPebble stops pebble and starts a new process with the same config:
// pebble keeps no state, so the CA forgets every account, as a real CA that
// lost (or was reset under) an account would.
func (ca *CA) RestartPebble() error {
	ca.pebble.Stop()
	ca.restarts++
	return ca.startPebble(fmt.Sprintf("pebble-%d.log", ca.restarts))
}

// PointElsewhere makes host's A record ip (a host that is not this one).
func (ca *CA) PointElsewhere(host, ip string) error {
	if ca.challsrv == nil {
		return errors.New("PointElsewhere needs the CA's own challtestsrv (CAOptions.DNS was set)")
	}
	b, _ := json.Marshal(map[string]any{"host": host, "addresses": []string{ip}})
	resp, err := http.Post("http://"+ca.dnsMgmt+"/add-a", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv add-a: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Close stops both processes.
func (ca *CA) Close() {
	ca.pebble.Stop()
	ca.challsrv.Stop()
}

// ListenerCert is the PEM of the certificate pebble's own HTTPS listener
// (the ACME directory) presents; a client of the directory must trust it.
func (ca *CA) ListenerCert() ([]byte, error) {
	return os.ReadFile(filepath.Join(ca.dir, "pebble-cert.pem"))
}

// PebbleLog is pebble's output (for failure messages).
func (ca *CA) PebbleLog() string {
	if ca.pebble == nil {
		return ""
	}
	return ca.pebble.Log()
}

func selfSigned(addr string) ([]byte, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pebble test listener"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(addr)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

// healthyBody is the body the contract's service answers /healthz with.
func healthyBody(name string) string {
	for _, c := range contract.Catalog("heima") {
		if c.Name == name && c.Health.JSON {
			return `{"ok":true}`
		}
	}
	return "ok"
}

// StandIns are tiny HTTP services answering /healthz with the contract's
// healthy body (and, for /healthz?who, with their name); the
// broker also answers its OIDC discovery (issuer https://<its hostname>) and
// a JWKS with one ES256 key, as the agent's health step checks them.
type StandIns struct {
	Ports   map[string]int
	servers []*http.Server
}

// StartStandIns starts one loopback server per name.
func StartStandIns(names []string) (*StandIns, error) {
	s := &StandIns{Ports: map[string]int{}}
	for _, n := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, err
		}
		name := n
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if _, who := r.URL.Query()["who"]; who {
				// Tests ask which service answered (nginx's routing).
				fmt.Fprintf(w, "%s ok host=%s proto=%s\n", name, r.Host, r.Header.Get("X-Forwarded-Proto"))
				return
			}
			fmt.Fprint(w, healthyBody(name))
		})
		if name == "broker" {
			issuer := "https://" + Hostnames()["broker"]
			mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, issuer+"/.well-known/jwks.json")
			})
			mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprint(w, `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"e2e"}]}`)
			})
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		s.servers = append(s.servers, srv)
		s.Ports[n] = l.Addr().(*net.TCPAddr).Port
	}
	return s, nil
}

// Close stops the servers.
func (s *StandIns) Close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

// Nginx is a real nginx master running a sandbox config under Root.
type Nginx struct {
	Root string
	Conf string // <root>/etc/nginx/nginx.conf
	pid  string
}

// WriteNginxConf writes the sandbox's main nginx.conf (the part the distro
// package owns on a real host): every path under root, workers as root so
// they can read the 0700 temp root, and conf.d and sites-enabled included
// like Debian does.
func WriteNginxConf(root string) (*Nginx, error) {
	n := &Nginx{Root: root, Conf: filepath.Join(root, "etc/nginx/nginx.conf"), pid: filepath.Join(root, "run/nginx.pid")}
	for _, d := range []string{"etc/nginx", "etc/nginx/conf.d", "etc/nginx/sites-available", "etc/nginx/sites-enabled", "run", "var/log/nginx", "var/lib/nginx"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	r := func(p string) string { return filepath.Join(root, p) }
	conf := fmt.Sprintf(`user root;
worker_processes 1;
pid %s;
error_log %s warn;
events { worker_connections 128; }
http {
    access_log %s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    server_names_hash_bucket_size 128;
    include %s/*.conf;
    include %s/*;
}
`, n.pid, r("var/log/nginx/error.log"), r("var/log/nginx/access.log"),
		r("var/lib/nginx/body"), r("var/lib/nginx/proxy"), r("var/lib/nginx/fastcgi"),
		r("var/lib/nginx/uwsgi"), r("var/lib/nginx/scgi"), r("etc/nginx/conf.d"), r("etc/nginx/sites-enabled"))
	return n, os.WriteFile(n.Conf, []byte(conf), 0o644)
}

// Start starts the nginx master (it daemonizes and writes its pid file).
func (n *Nginx) Start() error {
	bin, err := LookTool("nginx")
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, "-c", n.Conf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -c %s: %v: %s", n.Conf, err, out)
	}
	return nil
}

// Pid returns the master's pid, 0 if none.
func (n *Nginx) Pid() int {
	b, err := os.ReadFile(n.pid)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// Workers lists the master's child pids.
func (n *Nginx) Workers() []int {
	pid := n.Pid()
	if pid == 0 {
		return nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// WaitWorkersGone waits (bounded) until none of old is still a child of the
// master: the reload has then taken effect.
func (n *Nginx) WaitWorkersGone(ctx context.Context, old []int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cur := map[int]bool{}
		for _, p := range n.Workers() {
			cur[p] = true
		}
		still := false
		for _, p := range old {
			if cur[p] {
				still = true
			}
		}
		if !still && len(cur) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("nginx did not replace its workers within 10s after a reload")
}

// Stop stops the master, bounded in time.
func (n *Nginx) Stop() {
	pid := n.Pid()
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// ErrorLog returns nginx's error log.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Root, "var/log/nginx/error.log"))
	return string(b)
}

// FetchTLS GETs https://host<path> through nginx at 127.0.0.1:port with SNI
// host, verifying the chain against roots. It retries briefly (a reload is
// asynchronous on a real host too).
func FetchTLS(ctx context.Context, roots *x509.CertPool, host string, port int, path string) (string, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var last error
	for i := 0; i < 10; i++ {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
			continue
		}
		return string(b), nil
	}
	return "", last
}

// FetchHTTP GETs http://127.0.0.1:port<path> with Host: host, no redirects.
func FetchHTTP(ctx context.Context, host string, port int, path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}
