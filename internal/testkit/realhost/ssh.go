package realhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Result is one command's outcome. Code is its exit status (-1 when it was
// killed by a signal).
type Result struct {
	Code           int
	Stdout, Stderr string
}

// OK reports a zero exit status.
func (r Result) OK() bool { return r.Code == 0 }

func (r Result) String() string {
	s := "exit " + strconv.Itoa(r.Code)
	if o := strings.TrimSpace(r.Stdout); o != "" {
		s += "\nstdout:\n" + o
	}
	if e := strings.TrimSpace(r.Stderr); e != "" {
		s += "\nstderr:\n" + e
	}
	return s
}

// SSHConfig is the client configuration for the login user, with the host
// key pinned.
func (h *Host) SSHConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            h.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(h.signer)},
		HostKeyCallback: ssh.FixedHostKey(h.hostPub),
		Timeout:         5 * time.Second,
	}
}

func (h *Host) sshClient(ctx context.Context) (*ssh.Client, error) {
	h.mu.Lock()
	c := h.client
	h.mu.Unlock()
	if c != nil {
		return c, nil
	}
	addr := net.JoinHostPort(h.Addr, strconv.Itoa(h.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, h.SSHConfig())
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	c = ssh.NewClient(sc, chans, reqs)
	h.mu.Lock()
	if h.client != nil { // another goroutine won
		c.Close()
		c = h.client
	} else {
		h.client = c
	}
	h.mu.Unlock()
	return c, nil
}

func (h *Host) dropClient() {
	h.mu.Lock()
	c := h.client
	h.client = nil
	h.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// SSH runs cmd as the login user over SSH (a non-zero exit is in Result,
// err is for the transport or ctx).
func (h *Host) SSH(ctx context.Context, cmd string) (Result, error) {
	return h.SSHStdin(ctx, cmd, nil)
}

// SSHStdin is SSH with stdin.
func (h *Host) SSHStdin(ctx context.Context, cmd string, stdin io.Reader) (Result, error) {
	var sess *ssh.Session
	for try := 0; ; try++ {
		c, err := h.sshClient(ctx)
		if err != nil {
			return Result{Code: -1}, fmt.Errorf("ssh %s@%s: %w", h.User, h.Addr, err)
		}
		if sess, err = c.NewSession(); err == nil {
			break
		}
		h.dropClient() // a connection from before a reboot
		if try == 1 {
			return Result{Code: -1}, fmt.Errorf("ssh %s@%s: new session: %w", h.User, h.Addr, err)
		}
	}
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr, sess.Stdin = &out, &errb, stdin
	if err := sess.Start(cmd); err != nil {
		return Result{Code: -1}, err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		return Result{Code: -1, Stdout: out.String(), Stderr: errb.String()}, fmt.Errorf("ssh %q: %w", cmd, ctx.Err())
	}
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitStatus()
		if ee.Signal() != "" {
			r.Code = -1
		}
	default:
		r.Code = -1
		return r, fmt.Errorf("ssh %q: %w", cmd, err)
	}
	return r, nil
}

// DefaultTimeout bounds Run, MustRun and Sudo.
const DefaultTimeout = 10 * time.Minute

// Run is SSH for tests: a transport failure fails the test (or, without a
// test, comes back as exit -1 with the error as stderr).
func (h *Host) Run(cmd string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	r, err := h.SSH(ctx, cmd)
	if err != nil {
		if h.t != nil {
			h.t.Helper()
			h.t.Fatalf("%s: %v", h.Name, err)
		}
		r.Code, r.Stderr = -1, r.Stderr+err.Error()
	}
	return r
}

// MustRun is Run that fails the test on a non-zero exit, returning stdout.
func (h *Host) MustRun(cmd string) string {
	if h.t != nil {
		h.t.Helper()
	}
	r := h.Run(cmd)
	if r.Code != 0 && h.t != nil {
		h.t.Fatalf("%s: %q: %s", h.Name, cmd, r)
	}
	return r.Stdout
}

// Exec runs cmd as root inside the container through nsenter: no SSH, no
// sudo, a clean environment. For the test's own inspection, not for what
// the bring-up does.
func (h *Host) Exec(ctx context.Context, cmd string) (Result, error) {
	pid, err := h.initPID()
	if err != nil {
		return Result{Code: -1}, err
	}
	c := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-a", "-r", "-w",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
		"/bin/sh", "-c", cmd)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err = c.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		return Result{Code: -1}, fmt.Errorf("nsenter %s: %w", h.Name, err)
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("%s: %q: %w", h.Name, cmd, ctx.Err())
	}
	return r, nil
}

// Journal is the journal of unit over all boots, as root.
func (h *Host) Journal(unit string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.Exec(ctx, "journalctl --no-pager -o short-precise -u "+ShellQuote(unit))
	if err != nil {
		return "(journal of " + unit + ": " + err.Error() + ")"
	}
	return r.Stdout + r.Stderr
}

// WriteFile writes data to remote over SSH as the login user, atomically
// (a temp file beside it, then rename), creating its directory.
func (h *Host) WriteFile(ctx context.Context, remote string, data []byte, mode os.FileMode) error {
	dir := path.Dir(remote)
	tmp := remote + ".realhost-tmp"
	cmd := fmt.Sprintf("mkdir -p %s && cat > %s && chmod %o %s && mv -f %s %s",
		ShellQuote(dir), ShellQuote(tmp), mode.Perm(), ShellQuote(tmp), ShellQuote(tmp), ShellQuote(remote))
	r, err := h.SSHStdin(ctx, cmd, bytes.NewReader(data))
	if err != nil {
		return err
	}
	if r.Code != 0 {
		return fmt.Errorf("writing %s on %s: %s", remote, h.Name, r)
	}
	return nil
}

// CopyFile copies the local file to remote as the login user, keeping its
// permission bits.
func (h *Host) CopyFile(ctx context.Context, local, remote string) error {
	b, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	st, err := os.Stat(local)
	if err != nil {
		return err
	}
	return h.WriteFile(ctx, remote, b, st.Mode())
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_-+=:,./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
