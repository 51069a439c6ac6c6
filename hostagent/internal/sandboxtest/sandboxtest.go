// Package sandboxtest builds host agent test fixtures: a git repository
// whose build installs the contract stand-in under every AgentKeys binary
// name, free loopback ports, and the host spec the Pulumi program generates
// for stack test-2, on those ports.
package sandboxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/ports"
	"github.com/agentkeys/agentkeys-infra/naming"
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

// Standin builds the contract stand-in (internal/standin) once per test
// binary and returns its path.
func Standin(t testing.TB) string {
	t.Helper()
	return agentkeysws.StandinBinary(t)
}

// Binaries lists the binary names of the contract's services.
func Binaries() []string {
	var out []string
	for _, s := range contract.Catalog("heima") {
		if !slices.Contains(out, s.Binary) {
			out = append(out, s.Binary)
		}
	}
	sort.Strings(out)
	return out
}

// BuildScript is the fixture repository's build: it installs the stand-in
// at target/release/<binary> for every binary, as cargo would.
func BuildScript(standin string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nset -e\nmkdir -p target/release\n")
	for _, n := range Binaries() {
		fmt.Fprintf(&b, "cp %s target/release/%s\n", standin, n)
	}
	return b.String()
}

// Repo is a bare repository whose main branch builds the stand-ins, and a
// work tree to push new commits from.
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
	must(t, os.WriteFile(filepath.Join(r.Work, "build.sh"), []byte(BuildScript(Standin(t))), 0o755))
	must(t, os.WriteFile(filepath.Join(r.Work, ".gitignore"), []byte("/target\n"), 0o644))
	r.Commit(t, "stand-in services")
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

// Zone and Issuer of the fixture's stack (test-2 in example.org).
const (
	Zone   = "example.org"
	Issuer = "https://broker-test-2.example.org"
)

// Names are the derived names of the fixture's stack in zone.
func Names(zone string) naming.Names {
	st, _ := naming.ParseStack("test-2")
	return naming.Derive(st, naming.Fork{AccountID: "123456789012", Zone: zone, ParentZoneID: "Z0EXAMPLE0ZONE0ID", Region: "us-east-1"})
}

// Contracts are the fixture's chain contract addresses.
var Contracts = map[string]string{
	contract.AddrSidecarRegistry: "0x00000000000000000000000000000000000000a1",
	contract.AddrScopeContract:   "0x00000000000000000000000000000000000000a2",
	contract.AddrK3EpochCounter:  "0x00000000000000000000000000000000000000a3",
}

// Options shape a fixture spec.
type Options struct {
	Repo                string // source repo ("" = a path that does not exist)
	Zone                string // "" = Zone
	Ports               map[string]int
	HTTPPort, HTTPSPort int
	ACME                spec.ACME
	PublicIP            string
}

// Generate returns the spec the program generates for test-2 with o, the
// build replaced by the fixture's build script.
func Generate(t testing.TB, o Options) *spec.HostSpec {
	t.Helper()
	if o.Repo == "" {
		o.Repo = "/nonexistent/repo"
	}
	if o.Zone == "" {
		o.Zone = Zone
	}
	if o.PublicIP == "" {
		o.PublicIP = "192.0.2.10"
	}
	if o.ACME.Directory == "" {
		o.ACME = spec.ACME{Directory: "https://127.0.0.1:14000/dir", Resolver: "127.0.0.1:1"}
	}
	if o.HTTPPort == 0 {
		o.HTTPPort, o.HTTPSPort = 18080, 18443
	}
	s, err := spec.Generate(spec.Input{
		Names: Names(o.Zone), PublicIP: o.PublicIP,
		Source:    spec.Source{Repo: o.Repo, Ref: "main", Dir: contract.CheckoutDir, AdoptFrom: []string{"/home/ubuntu/agentKeys"}},
		Build:     spec.Build{Command: []string{"sh", "build.sh"}},
		ACME:      o.ACME,
		Contracts: Contracts, Ports: o.Ports, HTTPPort: o.HTTPPort, HTTPSPort: o.HTTPSPort,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.HealthTimeoutSeconds = 20
	return s
}

// ServicePorts returns a free port for every contract service.
func ServicePorts(t testing.TB) map[string]int {
	t.Helper()
	cat := contract.Catalog("heima")
	ps := FreePorts(t, len(cat))
	m := map[string]int{}
	for i, s := range cat {
		m[s.Name] = ps[i]
	}
	return m
}

// Spec returns the fixture spec on free ports, with only the named services
// (all when none are named; the broker is always kept).
func Spec(t testing.TB, repo *Repo, names ...string) *spec.HostSpec {
	t.Helper()
	s := Generate(t, Options{Repo: repo.Bare, Ports: ServicePorts(t)})
	Keep(s, names...)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Keep drops every service but the broker and the named ones.
func Keep(s *spec.HostSpec, names ...string) {
	if len(names) == 0 {
		return
	}
	var kept []spec.Service
	for _, svc := range s.Services {
		if svc.Name == "broker" || slices.Contains(names, svc.Name) {
			kept = append(kept, svc)
		}
	}
	s.Services = kept
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
