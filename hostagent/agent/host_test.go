package agent

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeMachine stands in for the host's commands: it records each one and
// answers from its tables, so these tests never run apt, dnf or rustup.
type fakeMachine struct {
	tools map[string]bool   // what lookPath finds (names and paths)
	out   map[string]string // command line -> output (exit 0)
	fail  map[string]string // command line -> output (exit 1)
	calls []string
	// after runs after a command succeeds (a package now installed...).
	after func(line string)
}

func (m *fakeMachine) host() *Host {
	return &Host{
		exec: func(_ context.Context, env []string, name string, args ...string) ([]byte, error) {
			line := strings.Join(append([]string{name}, args...), " ")
			if len(env) > 0 {
				line = strings.Join(env, " ") + " " + line
			}
			m.calls = append(m.calls, line)
			if o, ok := m.fail[line]; ok {
				return []byte(o), errors.New("exit status 1")
			}
			if m.after != nil {
				m.after(line)
			}
			if o, ok := m.out[line]; ok {
				return []byte(o), nil
			}
			// A query about anything not listed: not installed.
			if name == "dpkg-query" || name == "rpm" {
				return nil, errors.New("exit status 1")
			}
			return nil, nil
		},
		lookPath: func(file string) (string, error) {
			if m.tools[file] {
				return file, nil
			}
			return "", exec.ErrNotFound
		},
	}
}

const apt = "DEBIAN_FRONTEND=noninteractive apt-get"

func TestHostAptInstallsMissingPackagesAfterOneUpdate(t *testing.T) {
	m := &fakeMachine{tools: map[string]bool{"apt-get": true}, out: map[string]string{
		"dpkg-query -W -f=${Status} git": "install ok installed",
	}}
	h := m.host()
	ctx := context.Background()

	installed, skipped, err := h.InstallPackage(ctx, "git")
	require.NoError(t, err)
	assert.False(t, installed)
	assert.Empty(t, skipped)
	assert.Equal(t, []string{"dpkg-query -W -f=${Status} git"}, m.calls, "present: only the presence check")

	m.calls = nil
	for _, p := range []string{"nginx", "libssl-dev"} {
		installed, _, err := h.InstallPackage(ctx, p)
		require.NoError(t, err)
		assert.True(t, installed, p)
	}
	assert.Equal(t, []string{
		"dpkg-query -W -f=${Status} nginx",
		apt + " update -q -o DPkg::Lock::Timeout=600",
		apt + " install -y -q -o DPkg::Lock::Timeout=600 nginx",
		"dpkg-query -W -f=${Status} libssl-dev",
		apt + " install -y -q -o DPkg::Lock::Timeout=600 libssl-dev",
	}, m.calls, "lists refreshed once, before the first install")

	// HasPackage only queries.
	m.calls = nil
	present, _, err := h.HasPackage(ctx, "pkg-config")
	require.NoError(t, err)
	assert.False(t, present)
	assert.Equal(t, []string{"dpkg-query -W -f=${Status} pkg-config"}, m.calls)

	// A failed install names the command and keeps apt's output.
	m.fail = map[string]string{apt + " install -y -q -o DPkg::Lock::Timeout=600 pkg-config": "E: Unable to locate package pkg-config"}
	_, _, err = h.InstallPackage(ctx, "pkg-config")
	require.Error(t, err)
	assert.Equal(t, "apt-get install -y -q -o DPkg::Lock::Timeout=600 pkg-config: exit status 1: E: Unable to locate package pkg-config", err.Error())
}

func TestHostDnfMapsDebianNames(t *testing.T) {
	m := &fakeMachine{tools: map[string]bool{"dnf": true}, out: map[string]string{
		"rpm -q --whatprovides gcc":  "gcc-11.4",
		"rpm -q --whatprovides curl": "curl-minimal-8.5",
	}}
	h := m.host()
	ctx := context.Background()
	for p, want := range map[string][]string{
		"build-essential": {"rpm -q --whatprovides gcc", "rpm -q --whatprovides make", "dnf install -y -q make"},
		"pkg-config":      {"rpm -q --whatprovides pkgconf-pkg-config", "dnf install -y -q pkgconf-pkg-config"},
		"libssl-dev":      {"rpm -q --whatprovides openssl-devel", "dnf install -y -q openssl-devel"},
		"nginx":           {"rpm -q --whatprovides nginx", "dnf install -y -q nginx"},
		"curl":            {"rpm -q --whatprovides curl"},
	} {
		m.calls = nil
		installed, _, err := h.InstallPackage(ctx, p)
		require.NoError(t, err, p)
		assert.Equal(t, len(want) > 1, installed, p)
		assert.Equal(t, want, m.calls, p)
	}
	assert.Equal(t, []string{"nginx", "git", "curl", "ca-certificates", "gcc", "make", "pkgconf-pkg-config", "openssl-devel"},
		func() (out []string) {
			for _, p := range []string{"nginx", "git", "curl", "ca-certificates", "build-essential", "pkg-config", "libssl-dev"} {
				out = append(out, DNFNames(p)...)
			}
			return out
		}())

	// Neither manager: an error naming the package.
	_, _, err := (&fakeMachine{}).host().InstallPackage(ctx, "nginx")
	assert.EqualError(t, err, "cannot install nginx: neither apt-get nor dnf found")
}

func TestHostRustToolchain(t *testing.T) {
	ctx := context.Background()
	rustup := "HOME=/root CARGO_HOME=/root/.cargo RUSTUP_HOME=/root/.rustup sh -c " + RustupCommand
	assert.Equal(t, "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path", RustupCommand)

	// Cargo found (on PATH, or in root's rustup dir): nothing runs.
	for _, where := range []string{"cargo", "/root/.cargo/bin/cargo"} {
		m := &fakeMachine{tools: map[string]bool{where: true}}
		installed, _, err := m.host().InstallRustToolchain(ctx)
		require.NoError(t, err)
		assert.False(t, installed)
		assert.Empty(t, m.calls, where)
	}

	// Absent: rustup runs as root, into root's home.
	m := &fakeMachine{tools: map[string]bool{}}
	m.after = func(line string) {
		if line == rustup {
			m.tools["/root/.cargo/bin/cargo"] = true
		}
	}
	installed, skipped, err := m.host().InstallRustToolchain(ctx)
	require.NoError(t, err)
	assert.True(t, installed)
	assert.Empty(t, skipped)
	assert.Equal(t, []string{rustup}, m.calls)

	// The pipeline exits 0 when curl fails: no cargo is an error.
	m = &fakeMachine{tools: map[string]bool{}}
	_, _, err = m.host().InstallRustToolchain(ctx)
	assert.ErrorContains(t, err, "sh -c "+RustupCommand+": exited 0 but installed no /root/.cargo/bin/cargo")

	// rustup fails: the error names the command.
	m = &fakeMachine{tools: map[string]bool{}, fail: map[string]string{rustup: "curl: (6) Could not resolve host: sh.rustup.rs"}}
	_, _, err = m.host().InstallRustToolchain(ctx)
	assert.EqualError(t, err, "sh -c "+RustupCommand+": exit status 1: curl: (6) Could not resolve host: sh.rustup.rs")
}

func TestLookCargo(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	look := func(found ...string) func(string) (string, error) {
		return func(f string) (string, error) {
			for _, x := range found {
				if f == x {
					return f, nil
				}
			}
			return "", exec.ErrNotFound
		}
	}
	p, err := lookCargo(look("cargo"))
	require.NoError(t, err)
	assert.Equal(t, "cargo", p)
	p, err = lookCargo(look(home + "/.cargo/bin/cargo"))
	require.NoError(t, err)
	assert.Equal(t, home+"/.cargo/bin/cargo", p)
	p, err = lookCargo(look("/root/.cargo/bin/cargo"))
	require.NoError(t, err)
	assert.Equal(t, "/root/.cargo/bin/cargo", p)
	_, err = lookCargo(look())
	assert.ErrorIs(t, err, exec.ErrNotFound)
}

// nginx is enabled whenever the agent (re)loads it, so that it comes back
// after a reboot where the package does not enable it: a stopped nginx is
// enabled and started, a running one enabled if it is not, then reloaded.
func TestHostNginxReloadEnablesNginx(t *testing.T) {
	ctx := context.Background()
	const active, enabled = "systemctl is-active --quiet nginx", "systemctl is-enabled --quiet nginx"
	for _, c := range []struct {
		name   string
		fail   []string // queries answering no
		starts []string // the commands that change something
	}{
		{"stopped, disabled", []string{active, enabled}, []string{"systemctl enable --now nginx"}},
		{"stopped, enabled", []string{active}, []string{"systemctl enable --now nginx"}},
		{"running, disabled", []string{enabled}, []string{"systemctl enable nginx", "systemctl reload nginx"}},
		{"running, enabled", nil, []string{"systemctl reload nginx"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &fakeMachine{fail: map[string]string{}}
			for _, q := range c.fail {
				m.fail[q] = ""
			}
			require.NoError(t, m.host().NginxReload(ctx))
			var changes []string
			for _, l := range m.calls {
				if !strings.Contains(l, " is-") {
					changes = append(changes, l)
				}
			}
			assert.Equal(t, c.starts, changes, "all calls: %v", m.calls)
		})
	}
	m := &fakeMachine{fail: map[string]string{active: "", "systemctl enable --now nginx": "Job for nginx.service failed"}}
	err := m.host().NginxReload(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "systemctl enable --now nginx")
}
