package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// Host is the real System: it execs the host's tools, as root, without sudo.
type Host struct {
	// exec and lookPath stand in for the machine in tests of the package
	// and toolchain commands; nil: the real ones.
	exec     func(ctx context.Context, env []string, name string, args ...string) ([]byte, error)
	lookPath func(file string) (string, error)
	// aptUpdated: this run refreshed apt's package lists.
	aptUpdated bool
}

// cmd runs a package or toolchain command (runCmd, or the test's exec).
func (h *Host) cmd(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	if h.exec == nil {
		return runCmd(ctx, "", env, name, args...)
	}
	out, err := h.exec(ctx, env, name, args...)
	if err != nil {
		return out, cmdError(name, args, err, out)
	}
	return out, nil
}

func (h *Host) look(file string) (string, error) {
	if h.lookPath == nil {
		return exec.LookPath(file)
	}
	return h.lookPath(file)
}

// NewHost returns the real System.
func NewHost() *Host { return &Host{} }

func (*Host) Sandbox() bool { return false }

func (*Host) Run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	return runCmd(ctx, dir, env, name, args...)
}

func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), cmdError(name, args, err, out.Bytes())
	}
	return out.Bytes(), nil
}

// cmdError names the failed command and keeps the tail of its output.
func cmdError(name string, args []string, err error, out []byte) error {
	return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(string(out), 2000))
}

// tail keeps the last n bytes of a command's output for an error message.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

func (h *Host) Systemctl(ctx context.Context, verb string, units ...string) error {
	_, err := h.cmd(ctx, nil, "systemctl", append([]string{verb}, units...)...)
	return err
}

func (h *Host) IsActive(ctx context.Context, unit string) (bool, error) {
	return h.query(ctx, "systemctl", "is-active", "--quiet", unit)
}

func (h *Host) IsEnabled(ctx context.Context, unit string) (bool, error) {
	return h.query(ctx, "systemctl", "is-enabled", "--quiet", unit)
}

// query runs a command whose exit status is the answer (0: true); with the
// test's exec, any failure is a non-zero exit.
func (h *Host) query(ctx context.Context, name string, args ...string) (bool, error) {
	if h.exec == nil {
		return exitOK(exec.CommandContext(ctx, name, args...).Run())
	}
	_, err := h.exec(ctx, nil, name, args...)
	return err == nil, nil
}

// exitOK maps a non-zero exit to false and other failures to errors.
func exitOK(err error) (bool, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee):
		return false, nil
	default:
		return false, err
	}
}

func (*Host) LookupUser(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unk user.UnknownUserError
		if errors.As(err, &unk) {
			return -1, -1, ErrNoUser
		}
		return -1, -1, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func (*Host) LookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unk user.UnknownGroupError
		if errors.As(err, &unk) {
			return -1, ErrNoUser
		}
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

func (h *Host) EnsureUser(ctx context.Context, u UserSpec) (bool, error) {
	if _, _, err := h.LookupUser(u.Name); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNoUser) {
		return false, err
	}
	args := []string{"--user-group", "--home-dir", u.Home, "--shell", u.Shell}
	if u.System {
		args = append(args, "--system")
	}
	if u.CreateHome {
		args = append(args, "--create-home")
	} else {
		args = append(args, "--no-create-home")
	}
	_, err := runCmd(ctx, "", nil, "useradd", append(args, u.Name)...)
	return err == nil, err
}

// dnfNames maps the Debian/Ubuntu package names the steps ask for to dnf's;
// a name not listed is the same on both.
var dnfNames = map[string][]string{
	"build-essential": {"gcc", "make"},
	"pkg-config":      {"pkgconf-pkg-config"},
	"libssl-dev":      {"openssl-devel"},
}

// DNFNames returns the dnf packages that stand for a Debian package name.
func DNFNames(name string) []string {
	if n, ok := dnfNames[name]; ok {
		return n
	}
	return []string{name}
}

// aptLockTimeout lets apt wait for the dpkg lock that unattended-upgrades
// holds for a while after a fresh instance boots.
const aptLockTimeout = "DPkg::Lock::Timeout=600"

// manager is the host's package manager: apt (dpkg) or dnf (rpm).
func (h *Host) manager(name string) (string, error) {
	if _, err := h.look("apt-get"); err == nil {
		return "apt", nil
	}
	if _, err := h.look("dnf"); err == nil {
		return "dnf", nil
	}
	return "", fmt.Errorf("cannot install %s: neither apt-get nor dnf found", name)
}

// missing returns the packages (the manager's names) standing for name
// that are not installed. A failing query counts as not installed.
func (h *Host) missing(ctx context.Context, mgr, name string) []string {
	if mgr == "apt" {
		out, err := h.cmd(ctx, nil, "dpkg-query", "-W", "-f=${Status}", name)
		if err == nil && strings.Contains(string(out), "install ok installed") {
			return nil
		}
		return []string{name}
	}
	var out []string
	for _, n := range DNFNames(name) {
		// --whatprovides: AL2023's curl-minimal provides curl.
		if _, err := h.cmd(ctx, nil, "rpm", "-q", "--whatprovides", n); err != nil {
			out = append(out, n)
		}
	}
	return out
}

func (h *Host) HasPackage(ctx context.Context, name string) (bool, string, error) {
	mgr, err := h.manager(name)
	if err != nil {
		return false, "", err
	}
	return len(h.missing(ctx, mgr, name)) == 0, "", nil
}

// InstallPackage installs name (a Debian name, mapped by DNFNames on dnf
// hosts) when it is absent. On apt hosts the package lists are refreshed
// once, before the first install (a fresh Ubuntu image ships none).
func (h *Host) InstallPackage(ctx context.Context, name string) (bool, string, error) {
	mgr, err := h.manager(name)
	if err != nil {
		return false, "", err
	}
	miss := h.missing(ctx, mgr, name)
	if len(miss) == 0 {
		return false, "", nil
	}
	if mgr == "dnf" {
		out, err := h.cmd(ctx, nil, "dnf", append([]string{"install", "-y", "-q"}, miss...)...)
		if err != nil && (strings.Contains(string(out), "No match for argument") || strings.Contains(err.Error(), "No match for argument")) {
			return false, "", fmt.Errorf("%s: %w (dnf has no match): %v", name, ErrPackageUnavailable, err)
		}
		return err == nil, "", err
	}
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	if !h.aptUpdated {
		if _, err := h.cmd(ctx, env, "apt-get", "update", "-q", "-o", aptLockTimeout); err != nil {
			return false, "", err
		}
		h.aptUpdated = true
	}
	_, err = h.cmd(ctx, env, "apt-get", append([]string{"install", "-y", "-q", "-o", aptLockTimeout}, miss...)...)
	if err != nil && !h.aptCandidate(ctx, name) {
		return false, "", fmt.Errorf("%s: %w (apt-cache policy shows no candidate): %v", name, ErrPackageUnavailable, err)
	}
	return err == nil, "", err
}

// ErrPackageUnavailable is InstallPackage's error when the host's package
// sources do not have the package at all (ec2-instance-connect on Debian),
// as opposed to an install that failed.
var ErrPackageUnavailable = errors.New("not available from this host's package sources")

// aptCandidate reports whether apt has a version of name to install; when
// it cannot tell, it says yes, so the install's own error stands.
func (h *Host) aptCandidate(ctx context.Context, name string) bool {
	out, err := h.cmd(ctx, nil, "apt-cache", "policy", name)
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			return v != "" && v != "(none)"
		}
	}
	return false // apt does not know the name
}

// InstallRustToolchain runs RustupCommand as root when cargo is not found,
// then requires cargo in root's rustup bin directory. A failure carries the
// installer's own output (curl's error, rustup's).
func (h *Host) InstallRustToolchain(ctx context.Context) (bool, string, error) {
	if _, err := lookCargo(h.look); err == nil {
		return false, "", nil
	}
	out, err := h.cmd(ctx, RustupEnv, "sh", "-c", RustupCommand)
	if err != nil {
		return false, "", err
	}
	cargo := RootCargoHome + "/bin/cargo"
	if _, err := h.look(cargo); err != nil {
		return false, "", fmt.Errorf("sh -c %s: exited 0 but installed no %s: %s", RustupCommand, cargo, tail(string(out), 2000))
	}
	return true, "", nil
}

// UnitStatus reads ActiveState, SubState, NRestarts and MainPID.
func (h *Host) UnitStatus(ctx context.Context, unit string) (UnitStatus, error) {
	out, err := h.cmd(ctx, nil, "systemctl", "show", "--property=ActiveState,SubState,NRestarts,MainPID", unit)
	if err != nil {
		return UnitStatus{}, err
	}
	var st UnitStatus
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch k {
		case "ActiveState":
			st.ActiveState = v
		case "SubState":
			st.SubState = v
		case "NRestarts":
			st.NRestarts, _ = strconv.Atoi(v)
		case "MainPID":
			st.MainPID, _ = strconv.Atoi(v)
		}
	}
	return st, nil
}

// JournalTail is journalctl's last n lines of the unit (this boot).
func (h *Host) JournalTail(ctx context.Context, unit string, n int) (string, error) {
	out, err := h.cmd(ctx, nil, "journalctl", "--no-pager", "--boot", "-o", "short-iso", "-n", strconv.Itoa(n), "-u", unit)
	return strings.TrimSpace(string(out)), err
}

func (h *Host) NginxTest(ctx context.Context) error {
	_, err := h.cmd(ctx, nil, "nginx", "-t", "-q")
	return err
}

// NginxReload reloads a running nginx, or enables and starts a stopped one;
// nginx is enabled in either case, so that it comes back after a reboot on
// distributions whose package does not enable it (Amazon Linux, RHEL).
func (h *Host) NginxReload(ctx context.Context) error {
	on, err := h.IsActive(ctx, "nginx")
	if err != nil {
		return err
	}
	if !on {
		return h.Systemctl(ctx, "enable", "--now", "nginx")
	}
	enabled, err := h.IsEnabled(ctx, "nginx")
	if err != nil {
		return err
	}
	if !enabled {
		if err := h.Systemctl(ctx, "enable", "nginx"); err != nil {
			return err
		}
	}
	return h.Systemctl(ctx, "reload", "nginx")
}
