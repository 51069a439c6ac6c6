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
type Host struct{}

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
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return out.Bytes(), nil
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
	_, err := runCmd(ctx, "", nil, "systemctl", append([]string{verb}, units...)...)
	return err
}

func (*Host) IsActive(ctx context.Context, unit string) (bool, error) {
	return exitOK(exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", unit).Run())
}

func (*Host) IsEnabled(ctx context.Context, unit string) (bool, error) {
	return exitOK(exec.CommandContext(ctx, "systemctl", "is-enabled", "--quiet", unit).Run())
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

func (*Host) InstallPackage(ctx context.Context, name string) (bool, string, error) {
	if out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", name).Output(); err == nil && strings.Contains(string(out), "install ok installed") {
		return false, "", nil
	}
	if _, err := exec.LookPath("apt-get"); err == nil {
		_, err := runCmd(ctx, "", []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", "install", "-y", "-q", name)
		return err == nil, "", err
	}
	if _, err := exec.LookPath("rpm"); err == nil {
		if exec.CommandContext(ctx, "rpm", "-q", name).Run() == nil {
			return false, "", nil
		}
		_, err := runCmd(ctx, "", nil, "dnf", "install", "-y", name)
		return err == nil, "", err
	}
	return false, "", fmt.Errorf("cannot install %s: neither apt-get nor dnf found", name)
}

func (*Host) NginxTest(ctx context.Context) error {
	_, err := runCmd(ctx, "", nil, "nginx", "-t", "-q")
	return err
}

func (h *Host) NginxReload(ctx context.Context) error {
	if on, err := h.IsActive(ctx, "nginx"); err != nil {
		return err
	} else if on {
		return h.Systemctl(ctx, "reload", "nginx")
	}
	return h.Systemctl(ctx, "start", "nginx")
}
