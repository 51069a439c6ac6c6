package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
	m.fail = map[string]string{apt + " install -y -q -o DPkg::Lock::Timeout=600 pkg-config": "E: Sub-process /usr/bin/dpkg returned an error code (1)"}
	m.out["apt-cache policy pkg-config"] = "pkg-config:\n  Installed: (none)\n  Candidate: 1.8.1-1\n"
	_, _, err = h.InstallPackage(ctx, "pkg-config")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrPackageUnavailable, "the package exists: the install failed")
	assert.Equal(t, "apt-get install -y -q -o DPkg::Lock::Timeout=600 pkg-config: exit status 1: E: Sub-process /usr/bin/dpkg returned an error code (1)", err.Error())

	// A package the sources do not have (ec2-instance-connect on Debian):
	// apt-cache knows no candidate, and the error says so.
	for name, policy := range map[string]string{
		"ec2-instance-connect": "",                                                          // apt has never heard of it
		"virtual-only":         "virtual-only:\n  Installed: (none)\n  Candidate: (none)\n", // known, nothing installable
	} {
		m.fail[apt+" install -y -q -o DPkg::Lock::Timeout=600 "+name] = "E: Unable to locate package " + name
		m.out["apt-cache policy "+name] = policy
		_, _, err = h.InstallPackage(ctx, name)
		require.ErrorIs(t, err, ErrPackageUnavailable, name)
		assert.Contains(t, err.Error(), "E: Unable to locate package "+name)
	}
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
	assert.NotContains(t, RustupCommand, "| sh", "piped into sh, a failed download exits 0 and its error is lost")

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

	// The installer exits 0 yet leaves no cargo: an error with its output.
	m = &fakeMachine{tools: map[string]bool{}, out: map[string]string{rustup: "info: nothing done"}}
	_, _, err = m.host().InstallRustToolchain(ctx)
	assert.ErrorContains(t, err, "sh -c "+RustupCommand+": exited 0 but installed no /root/.cargo/bin/cargo: info: nothing done")

	// rustup fails: the error names the command.
	m = &fakeMachine{tools: map[string]bool{}, fail: map[string]string{rustup: "curl: (6) Could not resolve host: sh.rustup.rs"}}
	_, _, err = m.host().InstallRustToolchain(ctx)
	assert.EqualError(t, err, "sh -c "+RustupCommand+": exit status 1: curl: (6) Could not resolve host: sh.rustup.rs")
}

// The real RustupCommand under a real sh, with a curl that cannot resolve
// the host: the error is curl's, not a silent exit 0.
func TestRustupCommandKeepsCurlsError(t *testing.T) {
	bin := t.TempDir()
	curl := "#!/bin/sh\necho 'curl: (6) Could not resolve host: sh.rustup.rs' >&2\nexit 6\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "curl"), []byte(curl), 0o755))
	for _, tool := range []string{"sh", "mktemp", "rm"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	home := t.TempDir()
	h := &Host{lookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
	t.Setenv("PATH", bin)
	_, err := h.cmd(context.Background(), []string{"HOME=" + home}, "sh", "-c", RustupCommand)
	require.Error(t, err, "a failed download must fail the install")
	assert.Contains(t, err.Error(), "exit status 6")
	assert.Contains(t, err.Error(), "curl: (6) Could not resolve host: sh.rustup.rs")
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
