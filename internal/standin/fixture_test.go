package standin_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
	os.Exit(code)
}

// Bounds: a stand-in that neither listens nor exits by then is a failure.
const (
	startTimeout = 15 * time.Second
	exitTimeout  = 15 * time.Second
)

// testStack is a stack as the Pulumi program would describe it.
func testStack() contract.Stack {
	hosts := map[string]string{}
	for _, h := range []string{"broker", "signer", "audit", "email", "cred", "memory", "config", "classify"} {
		hosts[h] = h + "-test-2.example.org"
	}
	return contract.Stack{
		Name: "test-2", Chain: "heima", Issuer: "https://broker-test-2.example.org", Region: "us-east-1",
		DataRoleARN:   "arn:aws:iam::123456789012:role/agentkeys-data-role-test-2",
		MemoryRoleARN: "arn:aws:iam::123456789012:role/agentkeys-memory-role-test-2",
		Audience:      "sts.amazonaws.com", Sender: "noreply@bots-test-2.example.org",
		VaultBucket: "agentkeys-vault-test-2-123456789012", MemoryBucket: "agentkeys-memory-test-2-123456789012",
		ConfigBucket: "agentkeys-config-test-2-123456789012",
		Contracts: map[string]string{
			contract.AddrSidecarRegistry: "0x8B50b673A479ddd084890f8D666ECAA6c9aFd172",
			contract.AddrScopeContract:   "0xbB608CDD7374D625839D2B8793422C10A4Cff99e",
			contract.AddrK3EpochCounter:  "0x1Af7af89D7d69Ce88f42e73eb34bC2E3798D9aD9",
		},
		Hostnames: hosts,
	}
}

// fixture is one host as the agent leaves it before any unit starts: the
// deployment's directories, the broker's keypairs, the minted secrets and
// the session public key, under a sandbox root.
type fixture struct {
	t          *testing.T
	bin        string
	root       string
	dep        *contract.Deployment
	sessionKey *ecdsa.PrivateKey
	sessionKid string
	oidcKid    string
	pubPEM     string
	secrets    map[string]string
	port       map[string]int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d, err := contract.Deploy(testStack())
	require.NoError(t, err)
	f := &fixture{t: t, bin: agentkeysws.StandinBinary(t), root: t.TempDir(), dep: d, secrets: map[string]string{}, port: map[string]int{}}
	for _, dir := range d.Dirs {
		require.NoError(t, os.MkdirAll(f.host(dir.Path), os.FileMode(dir.Mode)))
	}
	for _, kp := range d.Keypairs {
		b, err := contract.MintKeypair(kp.Purpose, time.Now())
		require.NoError(t, err)
		f.write(kp.Path, b, 0o600)
		k, err := contract.ParseKeypair(kp.Purpose, b)
		require.NoError(t, err)
		if kp.Purpose == "session" {
			f.sessionKey, f.sessionKid = k.Key, k.Kid
			pub, err := contract.PublicPEM(&k.Key.PublicKey)
			require.NoError(t, err)
			f.pubPEM = string(pub)
			// The signer reads it at boot; the broker rewrites it each boot.
			f.write(kp.PublicPEM, pub, 0o644)
		} else {
			f.oidcKid = k.Kid
		}
	}
	for _, s := range d.Secrets {
		if s.Kind != contract.Minted {
			continue // carried over: a fresh host has none
		}
		f.secrets[s.ID] = randHex(t)
		require.NoError(t, s.Check(f.secrets[s.ID]), s.ID)
	}
	ps, err := ports.FreeN(len(d.Services))
	require.NoError(t, err)
	for i, s := range d.Services {
		f.port[s.Name] = ps[i]
	}
	return f
}

func randHex(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func (f *fixture) host(path string) string { return filepath.Join(f.root, path) }

func (f *fixture) write(path string, b []byte, mode os.FileMode) {
	f.t.Helper()
	require.NoError(f.t, os.MkdirAll(filepath.Dir(f.host(path)), 0o755))
	require.NoError(f.t, os.WriteFile(f.host(path), b, mode))
}

func (f *fixture) svc(name string) contract.Deployed {
	for _, s := range f.dep.Services {
		if s.Name == name {
			return s
		}
	}
	f.t.Fatalf("no service %s", name)
	return contract.Deployed{}
}

// env is what the unit of name gets: its Env, its minted secrets and what
// its extra env files carry. The one test-only change: the port of a bind
// variable, so parallel tests never share one.
func (f *fixture) env(name string) map[string]string {
	s := f.svc(name)
	out := map[string]string{}
	for k, v := range s.Env {
		out[k] = v
	}
	for _, id := range s.Secrets {
		if sec, ok := f.dep.Secret(id); ok && sec.Kind == contract.Minted {
			out[sec.Var] = f.secrets[id]
		}
	}
	for _, ef := range s.EnvFiles {
		switch ef {
		case contract.MasterSecretFile:
			out[contract.VarMasterSecret] = f.secrets["master-secret"]
		case f.dep.PubKeyEnv:
			out[contract.VarCapPubKey] = f.pubPEM
		default:
			f.t.Fatalf("%s: unknown env file %s", name, ef)
		}
	}
	for _, k := range []string{"WORKER_BIND", "AGENTKEYS_WORKER_AUDIT_BIND", "AGENTKEYS_WORKER_EMAIL_BIND"} {
		if v, ok := out[k]; ok {
			h, _, err := net.SplitHostPort(v)
			require.NoError(f.t, err)
			out[k] = net.JoinHostPort(h, strconv.Itoa(f.port[name]))
		}
	}
	return out
}

// args are the unit's ExecStart arguments, --port moved to the test port.
func (f *fixture) args(name string) []string {
	a := append([]string(nil), f.svc(name).Args...)
	for i := range a {
		if a[i] == "--port" && i+1 < len(a) {
			a[i+1] = strconv.Itoa(f.port[name])
		}
	}
	return a
}

// wantBind is where the real binary listens for this deployment: the
// broker on its --bind, the backend on 0.0.0.0 (no flag narrows it), the
// signer on loopback, the workers on their bind variable.
func (f *fixture) wantBind(name string) string {
	s := f.svc(name)
	host := ""
	switch {
	case s.Name == "broker":
		for i, a := range s.Args {
			if a == "--bind" {
				host = s.Args[i+1]
			}
		}
	case s.BindAll:
		host = "0.0.0.0"
	case s.Name == "signer":
		host = "127.0.0.1"
	default:
		for _, k := range []string{"WORKER_BIND", "AGENTKEYS_WORKER_AUDIT_BIND", "AGENTKEYS_WORKER_EMAIL_BIND"} {
			if v, ok := s.Env[k]; ok {
				host, _, _ = net.SplitHostPort(v)
			}
		}
	}
	require.NotEmpty(f.t, host, "no bind for %s", name)
	return net.JoinHostPort(host, strconv.Itoa(f.port[name]))
}

// proc is a running stand-in.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
	code int
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start runs the stand-in as the sandbox runs a unit: a clean environment
// (PATH, AGENTKEYS_SANDBOX_ROOT, the unit's variables), cwd at the root.
func (f *fixture) start(pkg string, args []string, env map[string]string) *proc {
	f.t.Helper()
	return f.startWith(append([]string{pkg}, args...), env, true)
}

func (f *fixture) startWith(argv []string, env map[string]string, sandbox bool) *proc {
	f.t.Helper()
	cmd := exec.Command(f.bin, argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if sandbox {
		cmd.Env = append(cmd.Env, standin.EnvSandboxRoot+"="+f.root)
		cmd.Dir = f.root
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{t: f.t, cmd: cmd, out: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(f.t, cmd.Start())
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exit waits for the process to end and returns its exit code.
func (p *proc) exit() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(exitTimeout):
		p.t.Fatalf("still running after %v; output:\n%s", exitTimeout, p.out)
		return -1
	}
}

// listening waits until addr accepts connections; the process exiting
// first fails the test.
func (p *proc) listening(addr string) {
	p.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("exited %d instead of listening on %s; output:\n%s", p.code, addr, p.out)
		default:
		}
		dial := addr
		if strings.HasPrefix(addr, "0.0.0.0:") {
			dial = "127.0.0.1:" + strings.TrimPrefix(addr, "0.0.0.0:")
		}
		if c, err := net.DialTimeout("tcp", dial, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("not listening on %s after %v; output:\n%s", addr, startTimeout, p.out)
}

// refuses asserts the stand-in exits with code and never listened.
func (f *fixture) refuses(p *proc, name string, code int, says string) {
	f.t.Helper()
	got := p.exit()
	require.Equal(f.t, code, got, "exit code; output:\n%s", p.out)
	if says != "" {
		require.Contains(f.t, p.out.String(), says)
	}
	require.Empty(f.t, listenHost(f.port[name]), "nothing listens on the service port")
}

// listenHost is the local address of the TCP socket listening on port
// (/proc/net/tcp{,6}), "" when none.
func listenHost(port int) string {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "0A" { // LISTEN
				continue
			}
			h, p, ok := strings.Cut(fs[1], ":")
			if pn, err := strconv.ParseUint(p, 16, 16); !ok || err != nil || int(pn) != port {
				continue
			}
			fh.Close()
			return procIP(h)
		}
		fh.Close()
	}
	return ""
}

func procIP(h string) string {
	b, _ := hex.DecodeString(h)
	// Each 4-byte word is in host (little-endian) order.
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b).String()
}

// up starts the deployed service name and checks it listens where the real
// one binds and answers its health path with the real body.
func (f *fixture) up(name string, env map[string]string) *proc {
	f.t.Helper()
	p := f.start(f.svc(name).Package, f.args(name), env)
	want := f.wantBind(name)
	p.listening(want)
	host, _, _ := net.SplitHostPort(want)
	require.Equal(f.t, host, listenHost(f.port[name]), "%s binds where the real one binds", name)
	f.healthy(name, env)
	return p
}

// healthy checks the health path's body: "ok", or the workers' JSON.
func (f *fixture) healthy(name string, env map[string]string) {
	f.t.Helper()
	s := f.svc(name)
	code, body := f.get(name, s.Health.Path)
	require.Equal(f.t, http.StatusOK, code, body)
	if !s.Health.JSON {
		require.Equal(f.t, "ok", body)
		return
	}
	var m map[string]any
	require.NoError(f.t, json.Unmarshal([]byte(body), &m), body)
	require.Equal(f.t, true, m["ok"])
	chain := "heima"
	if c, ok := env["AGENTKEYS_CHAIN"]; ok {
		chain = c
	}
	require.Equal(f.t, chain, m["chain_profile"])
	require.Equal(f.t, "0.1.0", m["version"])
	field := map[string]string{"creds": "vault_bucket", "memory": "memory_bucket", "config": "config_bucket", "classify": "catalog_version"}[name]
	require.Contains(f.t, m, field, body)
}

func (f *fixture) url(name, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", f.port[name], path)
}

func (f *fixture) get(name, path string) (int, string) {
	f.t.Helper()
	resp, err := httpClient.Get(f.url(name, path))
	require.NoError(f.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

// post sends body (JSON unless ct says otherwise) with headers.
func (f *fixture) post(name, path, ct string, body any, hdr map[string]string) (int, string) {
	f.t.Helper()
	var rd io.Reader = http.NoBody
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(f.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(http.MethodPost, f.url(name, path), rd)
	require.NoError(f.t, err)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	require.NoError(f.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func without(env map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

func with(env map[string]string, kv ...string) map[string]string {
	out := without(env)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func reason(t *testing.T, body string) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	s, _ := m["reason"].(string)
	if s == "" {
		s, _ = m["error"].(string)
	}
	return s
}
