package e2e

import (
	"crypto/sha256"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// requireTools skips when a component is missing, unless AGENTKEYS_E2E=1
// (CI), where a missing component is a failure.
func requireTools(t testing.TB) {
	t.Helper()
	if m := MissingTools(); len(m) > 0 {
		msg := "missing " + strings.Join(m, ", ") + "; install them with .ci/install.d/e2e.sh"
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// rig is one sandbox host: real nginx, pebble, challtestsrv, stand-ins.
type rig struct {
	root                string
	httpPort, httpsPort int
	nginx               *Nginx
	ca                  *CA
	standIns            *StandIns
	sys                 *System
	spec                *spec.HostSpec
}

func newRig(t testing.TB, services []string, internal ...string) *rig {
	t.Helper()
	return newRigCA(t, nil, services, internal...)
}

// newRigCA is newRig with extra pebble environment.
func newRigCA(t testing.TB, caEnv []string, services []string, internal ...string) *rig {
	t.Helper()
	requireTools(t)
	r := &rig{root: t.TempDir()}
	var err error
	if r.httpPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	if r.httpsPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	if r.nginx, err = WriteNginxConf(r.root); err != nil {
		t.Fatal(err)
	}
	if err := r.nginx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nginx.Stop)
	caDir := t.TempDir()
	if r.ca, err = StartCA(caDir, r.httpPort, caEnv...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.ca.Close)
	if r.standIns, err = StartStandIns(services); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.standIns.Close)
	r.spec = Spec(t, r.ca, r.standIns.Ports, r.httpPort, r.httpsPort, internal...)
	if err := r.spec.Validate(); err != nil {
		t.Fatalf("sandbox spec: %v", err)
	}
	r.sys = NewSystem(r.nginx)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx error log:\n%s", r.nginx.ErrorLog())
		}
	})
	return r
}

func (r *rig) env(t testing.TB) *agent.Env {
	return &agent.Env{
		Spec: r.spec, Root: r.root, Sys: r.sys,
		Counters: &agent.Counters{}, Report: &agent.Report{},
		Log: testLog{t},
	}
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// snapshot maps every file under root (but nginx's own logs and pid, and
// the sandbox's call log) to its size, mode, mtime and content hash.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "var/log" || rel == "run" || rel == "var/lib/nginx" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		b, _ := os.ReadFile(p)
		out[rel] = st.Mode().String() + " " + st.ModTime().Format(time.RFC3339Nano) + " " + string(sha256Sum(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func diffSnapshots(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "removed "+k)
		} else if v != w {
			out = append(out, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	return out
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var netDialer = net.Dialer{Timeout: 5 * time.Second}

// sites maps each agentkeys site to its content.
func sites(t testing.TB, root string) map[string]string {
	t.Helper()
	return contents(t, filepath.Join(root, "etc/nginx/sites-available"))
}

// siteOf is the site of host's service in s.
func siteOf(t testing.TB, s *spec.HostSpec, host string) string {
	t.Helper()
	for _, svc := range s.Services {
		if svc.Hostname == host {
			return svc.Site
		}
	}
	t.Fatalf("no service serves %s", host)
	return ""
}

// contents maps each file in dir to its content.
func contents(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		out[e.Name()] = string(readFile(t, filepath.Join(dir, e.Name())))
	}
	return out
}
