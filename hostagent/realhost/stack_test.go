package realhost_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/e2e"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
)

// RepoPath is where the stack's source repository (a bare copy of the
// stand-in cargo workspace) lives in the container.
const RepoPath = "/srv/git/agentKeys.git"

// stack is a container with what a broker stack's bring-up needs around it:
// the source repository, Debian's cargo, and (certs) pebble with
// pebble-challtestsrv on this machine's end of the container's veth, the
// DNS answering every stack hostname with the container's address and
// pebble validating HTTP-01 against the container's nginx on :80.
type stack struct {
	*host
	spec *spec.HostSpec
	ca   *e2e.CA // nil without certs
	bare string  // the repository on this machine (copied to RepoPath)
}

type stackOptions struct {
	// certs starts pebble and points the spec's ACME directory at it;
	// without, the directory is unreachable and DNS points elsewhere.
	certs bool
	// cargo preinstalls Debian's cargo (the packages step then finds it
	// and installs no rustup: the container cannot reach sh.rustup.rs).
	cargo bool
}

// newStack boots a container and prepares the stack around it. The spec
// is the one the program generates for stack test-2 (contract ports, nginx
// on 80/443, the container's address as the EIP), built by cargo.
func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	h := boot(t)
	st := &stack{host: h}
	h.installStandin()
	st.pushRepo()
	if o.cargo {
		h.root("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cargo >/dev/null")
	}
	acmeCfg := spec.ACME{Directory: "https://" + h.HostAddr + ":1/dir", Resolver: h.HostAddr + ":1"}
	if o.certs {
		st.startCA()
		acmeCfg = spec.ACME{Directory: st.ca.Directory, Resolver: st.ca.DNS}
	}
	s := sandboxtest.Generate(t, sandboxtest.Options{
		Repo: RepoPath, Zone: e2e.Zone, HTTPPort: 80, HTTPSPort: 443, PublicIP: h.Addr, ACME: acmeCfg,
	})
	s.Build = spec.Build{} // cargo, as on a broker host
	s.HealthTimeoutSeconds = 30
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	st.spec = s
	return st
}

// pushRepo copies a bare repository of the stand-in workspace into the
// container at RepoPath.
func (st *stack) pushRepo() {
	t := st.t
	t.Helper()
	dir := t.TempDir()
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, "agentKeys.git")
	sandboxtest.Git(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	sandboxtest.Git(t, dir, "init", "-q", "-b", "main", work)
	if err := agentkeysws.Write(work, StandinPath); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Git(t, work, "add", "-A")
	sandboxtest.Git(t, work, "commit", "-q", "-m", "stand-in services")
	sandboxtest.Git(t, work, "push", "-q", bare, "HEAD:main")
	st.bare = bare
	dst := filepath.Join(st.Root(), RepoPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", bare, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying the repository into the container: %v %s", err, out)
	}
}

// startCA starts pebble and challtestsrv on this machine's end of the veth
// and makes the container trust pebble's listener (the ACME directory).
func (st *stack) startCA() {
	t := st.t
	t.Helper()
	if missing := e2e.MissingTools(); len(missing) > 0 {
		msg := fmt.Sprintf("missing %v; run .ci/install.d/e2e.sh", missing)
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal(msg + " (AGENTKEYS_E2E=1)")
		}
		t.Skip(msg)
	}
	ca, err := e2e.StartCAWith(t.TempDir(), 80, e2e.CAOptions{Addr: st.HostAddr, DefaultIPv4: st.Addr})
	if err != nil {
		t.Fatalf("pebble on %s: %v", st.HostAddr, err)
	}
	t.Cleanup(ca.Close)
	st.ca = ca
	cert, err := ca.ListenerCert()
	if err != nil {
		t.Fatal(err)
	}
	st.writeRoot("/usr/local/share/ca-certificates/pebble-listener.crt", cert, 0o644)
	st.root("update-ca-certificates >/dev/null")
}

// serviceUnits are the spec's service units.
func (st *stack) serviceUnits() []string {
	var out []string
	for _, svc := range st.spec.Services {
		out = append(out, svc.Unit)
	}
	return out
}

// expectedUnits are the units a converged host runs: every service, nginx
// and the renew timer.
func (st *stack) expectedUnits() []string {
	return append(st.serviceUnits(), "nginx.service", acme.RenewTimer)
}

// secretSums maps every secret of the spec to the sha256 of its value
// (master secret, KEKs: the variable's value; keypairs: the file).
func (st *stack) secretSums() map[string]string {
	t := st.t
	t.Helper()
	out := map[string]string{}
	for _, sec := range st.spec.Secrets {
		r := st.try("cat " + sec.File)
		if r.Code != 0 {
			continue
		}
		m, err := agent.EnvMap([]byte(r.Stdout))
		if err != nil {
			t.Fatalf("%s: %v", sec.File, err)
		}
		if v, ok := m[sec.Var]; ok {
			sum := sha256.Sum256([]byte(v))
			out[sec.File+"#"+sec.Var] = hex.EncodeToString(sum[:])
		}
	}
	var kps []string
	for _, k := range st.spec.Keypairs {
		if st.try("test -e "+k.Path).Code == 0 {
			kps = append(kps, k.Path)
		}
	}
	if len(kps) > 0 {
		for f, s := range st.sha256s(kps...) {
			out[f] = s
		}
	}
	return out
}

// diffSums lists the keys whose sums differ or are missing in after.
func diffSums(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if after[k] != v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// fetchTLS GETs https://host<p> from this machine through the container's
// nginx on :443, verifying the chain against pebble's issuing roots, and
// returns the body and the served leaf.
func (st *stack) fetchTLS(host, p string) (string, *x509.Certificate, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: st.ca.Roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(st.Addr, "443"))
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + host + p)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), nil, fmt.Errorf("https://%s%s: HTTP %d: %s", host, p, resp.StatusCode, b)
	}
	return string(b), resp.TLS.PeerCertificates[0], nil
}

// requireServed checks every public hostname's health path over TLS from
// outside the container, with the body a healthy service returns.
func (st *stack) requireServed() {
	t := st.t
	t.Helper()
	for _, svc := range st.spec.Services {
		if svc.Hostname == "" {
			continue
		}
		body, _, err := st.fetchTLS(svc.Hostname, svc.Health)
		if err != nil {
			t.Errorf("%s over TLS through nginx: %v", svc.Name, err)
			continue
		}
		if err := healthBody(svc, body); err != nil {
			t.Errorf("https://%s%s: %v", svc.Hostname, svc.Health, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// healthBody is the contract's healthy body: JSON {"ok":true,...} or "ok".
func healthBody(svc spec.Service, body string) error {
	if svc.HealthJSON {
		if !strings.HasPrefix(strings.TrimSpace(body), `{"ok":true`) {
			return fmt.Errorf("body %q, want JSON with \"ok\":true", body)
		}
		return nil
	}
	if body != "ok" {
		return fmt.Errorf("body %q, want ok", body)
	}
	return nil
}

// workerEnviron is the environment of unit's main process.
func (st *stack) environ(unit string) map[string]string {
	t := st.t
	t.Helper()
	pid := strings.TrimSpace(st.root("systemctl show -P MainPID " + unit))
	if pid == "" || pid == "0" {
		t.Fatalf("%s has no main process (%s):\n%s", unit, st.unitState(unit), st.Journal(unit))
	}
	raw := st.root("cat /proc/" + pid + "/environ")
	out := map[string]string{}
	for _, kv := range strings.Split(raw, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// certOnDisk is the leaf of host's certificate as the agent stored it.
func (st *stack) certOnDisk(host string) *x509.Certificate {
	t := st.t
	t.Helper()
	fc, _ := nginx.CertFiles(host)
	blk, _ := pem.Decode([]byte(st.root("cat " + fc)))
	if blk == nil {
		t.Fatalf("%s holds no PEM certificate", fc)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", fc, err)
	}
	return c
}
