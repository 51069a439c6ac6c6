// Package sandboxtest builds host agent test fixtures: a git repository of
// the stand-in service, free loopback ports, and a valid host spec whose
// build command really builds the stand-in.
package sandboxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
)

// Git runs git in dir and fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Repo is a bare repository with the stand-in on branch main, and a work
// tree to push new commits from.
type Repo struct {
	Bare, Work string
}

// NewRepo creates the repository.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	dir := t.TempDir()
	r := &Repo{Bare: filepath.Join(dir, "agentKeys.git"), Work: filepath.Join(dir, "work")}
	Git(t, dir, "init", "-q", "--bare", "-b", "main", r.Bare)
	Git(t, dir, "clone", "-q", r.Bare, r.Work)
	_, self, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "standin", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(r.Work, "main.go"), src, 0o644))
	must(t, os.WriteFile(filepath.Join(r.Work, "go.mod"), []byte("module standin\n\ngo 1.22\n"), 0o644))
	r.Commit(t, "stand-in")
	return r
}

// Commit commits everything in the work tree and pushes main.
func (r *Repo) Commit(t testing.TB, msg string) string {
	t.Helper()
	Git(t, r.Work, "add", "-A")
	Git(t, r.Work, "commit", "-q", "--allow-empty", "-m", msg)
	Git(t, r.Work, "push", "-q", "origin", "HEAD:main")
	return Git(t, r.Work, "rev-parse", "HEAD")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// FreePorts returns n distinct free loopback TCP ports (outside the
// ephemeral range: see package ports).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ps, err := ports.FreeN(n)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// Issuer of the fixture's stack (test-2 in example.org).
const Issuer = "https://broker-test-2.example.org"

// Spec returns a valid spec for stack test-2 with the named services (the
// first must be "broker"), each the stand-in on its own port.
func Spec(t testing.TB, repo *Repo, names ...string) *spec.HostSpec {
	t.Helper()
	if len(names) == 0 {
		names = []string{"broker", "signer", "audit"}
	}
	ports := FreePorts(t, len(names))
	s := &spec.HostSpec{
		Version: spec.Version, Stack: "test-2", Issuer: Issuer, Zone: "example.org",
		PublicIP: "192.0.2.10", Account: "123456789012", Region: "us-east-1", Chain: "heima",
		Source:    spec.Source{Repo: repo.Bare, Ref: "main", Dir: "/home/agentkey/agentKeys", AdoptFrom: []string{"/home/ubuntu/agentKeys"}},
		Build:     spec.Build{Command: []string{"go", "build", "-trimpath", "-buildvcs=false", "-o", "bin/standin", "."}},
		ACME:      spec.ACME{Directory: "https://127.0.0.1:14000/dir", Resolver: "127.0.0.1:1"},
		Nginx:     spec.Nginx{HTTPPort: 18080, HTTPSPort: 18443, Webroot: "/var/www/certbot", ConfDir: "/etc/nginx/conf.d"},
		Contracts: map[string]string{"REGISTRY": "0x00000000000000000000000000000000000000aa"},
		LoginUser: "agentkey", ServiceUser: "agentkeys", StateDir: "/var/lib/agentkeys",
		HealthTimeoutSeconds: 20,
	}
	for i, n := range names {
		svc := spec.Service{Name: n, Package: "agentkeys-" + n, Binary: "bin/standin", Port: ports[i],
			EnvFile: "/etc/agentkeys/worker-" + n + ".env", Health: "/healthz",
			Env: map[string]string{"STANDIN_ADDR": "127.0.0.1:" + strconv.Itoa(ports[i]), "STANDIN_NAME": n}}
		switch n {
		case "broker":
			svc.Hostname = "broker-test-2.example.org"
			svc.EnvFile = "/etc/agentkeys/broker.env"
			svc.Env["BROKER_OIDC_ISSUER"] = Issuer
		case "signer":
			svc.MasterSecret = true
		}
		s.Services = append(s.Services, svc)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// WriteSpec writes s as JSON to a temp file and returns its path.
func WriteSpec(t testing.TB, s *spec.HostSpec) string {
	t.Helper()
	b, err := s.Encode()
	must(t, err)
	p := filepath.Join(t.TempDir(), "host-spec.json")
	must(t, os.WriteFile(p, b, 0o644))
	return p
}
