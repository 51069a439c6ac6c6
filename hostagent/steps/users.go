package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Users ensures the agentkeys system user and its state dir, the agentkey
// login user, and EC2 Instance Connect wired into sshd for that user where
// the host's package sources have it (not on Debian: then the step says so
// and leaves sshd alone). A new
// sshd drop-in is validated before it goes live (sshd -t on a staged copy of
// sshd's configuration with the new drop-in in place of the live one); the
// reload it calls for is recorded in the intent journal first, so a run
// killed before the reload leaves it owed to the next run. sshd's unit is
// ssh or sshd (tried in that order). A reload owed by an earlier run that
// fails again is a warning in the step's reason and stays owed; a run that
// changed the drop-in and cannot reload fails.
type Users struct {
	// SSHDTest validates sshd's configuration read from mainConfig (a host
	// path). nil: SSHDTestCommand on a real host, nothing in the sandbox.
	SSHDTest func(ctx context.Context, env *agent.Env, mainConfig string) error
}

// SSHDMainConfig is sshd's main configuration file.
const SSHDMainConfig = "/etc/ssh/sshd_config"

// SSHDTestCommand runs sshd -t -f mainConfig.
func SSHDTestCommand(ctx context.Context, env *agent.Env, mainConfig string) error {
	_, err := env.Sys.Run(ctx, "", nil, "sshd", "-t", "-f", env.Path(mainConfig))
	return err
}

func (Users) Name() string { return "users" }

// SSHDConfig is the drop-in naming EC2 Instance Connect's key command. The
// ec2-instance-connect package adds its own only when none is set, so this
// one is authoritative.
const SSHDConfig = `# Managed by agentkeys-hostagent: EC2 Instance Connect keys for SSH logins.
AuthorizedKeysCommand ` + EICCommand + ` %u %f
AuthorizedKeysCommandUser ` + EICUser + `
`

func (step Users) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "users", Detail: map[string]any{}}
	s := env.Spec
	users := []agent.UserSpec{
		{Name: s.ServiceUser, System: true, Home: s.StateDir, Shell: "/usr/sbin/nologin"},
		{Name: s.LoginUser, Home: path.Join("/home", s.LoginUser), Shell: "/bin/bash", CreateHome: true},
	}
	for _, u := range users {
		_, _, err := env.Sys.LookupUser(u.Name)
		switch {
		case err == nil:
			continue
		case !errors.Is(err, agent.ErrNoUser):
			return res, err
		case env.DryRun:
			res.Changes = append(res.Changes, "would create user "+u.Name)
			continue
		}
		if _, err := env.Sys.EnsureUser(ctx, u); err != nil {
			return res, fmt.Errorf("create user %s: %w", u.Name, err)
		}
		res.Changes = append(res.Changes, "created user "+u.Name)
	}
	o, err := serviceOwner(env, false)
	if err != nil {
		return res, err
	}
	if _, err := env.EnsureDir(&res, s.StateDir, 0o700, o); err != nil {
		return res, err
	}

	wire := true
	if !env.DryRun {
		installed, skipped, err := env.Sys.InstallPackage(ctx, EICPackage)
		switch {
		case errors.Is(err, agent.ErrPackageUnavailable):
			// Debian has no such package: Instance Connect cannot work here,
			// and its sshd drop-in would name a command that does not exist.
			wire = false
			res.Reason = fmt.Sprintf("EC2 Instance Connect not wired: this host's package sources have no %s package "+
				"(Ubuntu and Amazon Linux have it, Debian does not); users %s and %s are in place, "+
				"and SSH logins keep their authorized keys and sudo", EICPackage, s.ServiceUser, s.LoginUser)
			res.Detail[EICPackage] = "skipped: " + err.Error()
		case err != nil:
			return res, err
		}
		if installed {
			res.Changes = append(res.Changes, "installed "+EICPackage)
		}
		if skipped != "" {
			res.Detail[EICPackage] = "skipped: " + skipped
		}
	}
	if wire {
		if err := step.sshdDropIn(ctx, env, &res); err != nil {
			return res, err
		}
	}
	if len(res.Detail) == 0 {
		res.Detail = nil
	}
	return res, nil
}

// EICPackage provides EC2 Instance Connect's AuthorizedKeysCommand.
const EICPackage = "ec2-instance-connect"

func mustRoot(env *agent.Env) ownerT {
	o, _ := env.Owner("", "")
	return o
}

// sshdDropIn converges the EC2 Instance Connect drop-in and reloads sshd
// when it changed, or when an interrupted run still owes the reload.
func (u Users) sshdDropIn(ctx context.Context, env *agent.Env, res *agent.Result) error {
	root := mustRoot(env)
	data := []byte(SSHDConfig)
	differs, err := env.Differs(SSHDDropIn, data, 0o644, root)
	if err != nil {
		return err
	}
	owed, err := env.IsPending(agent.ActionReloadSSHD)
	if err != nil {
		return err
	}
	if !differs && !owed {
		return nil
	}
	if env.DryRun {
		if differs {
			res.Changes = append(res.Changes, "would write "+SSHDDropIn)
		}
		res.Changes = append(res.Changes, "would reload sshd")
		return nil
	}
	if differs {
		if err := u.validate(ctx, env, data); err != nil {
			return err
		}
		if err := env.Intend(agent.ActionReloadSSHD); err != nil {
			return err
		}
		if _, err := env.WriteFile(res, SSHDDropIn, data, 0o644, root); err != nil {
			return err
		}
	}
	fsx.Fault("users:before-sshd-reload")
	if err := reloadSSHD(ctx, env); err != nil {
		if differs {
			// This run changed the drop-in: it must take effect.
			return err
		}
		// Only an earlier run's reload is owed, and it keeps failing: that
		// must not block every later apply. It stays owed and is reported.
		res.Reason = fmt.Sprintf("warning: the sshd reload an earlier run owes failed again and stays owed (sshd keeps its running configuration; %s takes effect at its next reload or restart): %v", SSHDDropIn, err)
		res.Detail["sshd"] = "reload owed: " + err.Error()
		return nil
	}
	if err := env.Done(agent.ActionReloadSSHD); err != nil {
		return err
	}
	if differs {
		res.Changes = append(res.Changes, "reloaded sshd")
	} else {
		res.Changes = append(res.Changes, "reloaded sshd (owed by an interrupted run)")
	}
	return nil
}

// SSHDUnits are the names of sshd's unit, tried in order: ssh.service on
// Debian and Ubuntu, sshd.service on Amazon Linux, RHEL and Fedora.
var SSHDUnits = []string{"ssh", "sshd"}

// reloadSSHD checks sshd's live configuration (on a real host) and reloads
// sshd, which keeps open sessions, under the first unit name that works.
func reloadSSHD(ctx context.Context, env *agent.Env) error {
	if !env.Sys.Sandbox() {
		if _, err := env.Sys.Run(ctx, "", nil, "sshd", "-t"); err != nil {
			return fmt.Errorf("sshd rejects its configuration, fix it before the next login (the reload is left owed to the next run): %w", err)
		}
	}
	var listen []string
	if !env.Sys.Sandbox() {
		out, err := env.Sys.Run(ctx, "", nil, "sshd", "-T")
		if err != nil {
			return fmt.Errorf("sshd -T (the reload is left owed to the next run): %w", err)
		}
		listen = SSHDListenAddrs(string(out))
	}
	before := listenInodes(listen)
	var errs []string
	for _, unit := range SSHDUnits {
		err := env.Sys.Systemctl(ctx, "reload", unit)
		if err == nil {
			return waitRelisten(ctx, listen, before, SSHDRelisten)
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("reloading sshd failed under each of its unit names (%s; the reload is left owed to the next run): %s",
		strings.Join(SSHDUnits, ", "), strings.Join(errs, "; "))
}

// sshdStagePrefix names the directories validate stages sshd's
// configuration in, in /etc/ssh (root's; no Include of sshd's matches them).
const sshdStagePrefix = ".agentkeys-hostagent-sshd-test-"

// validate runs the sshd test on sshd's configuration as it would be with
// the new drop-in, staged in a root-only directory of /etc/ssh: a copy of
// the drop-in directory (every other live drop-in, and the new one under its
// real name instead of the live one) and a copy of the main config whose
// Include of the drop-in directory names that copy, where the live one
// includes it, so the order is the live order. A live drop-in of ours that
// is broken does not fail its replacement. Nothing staged is ever live.
func (u Users) validate(ctx context.Context, env *agent.Env, data []byte) error {
	test := u.SSHDTest
	if test == nil {
		if env.Sys.Sandbox() {
			return nil
		}
		test = SSHDTestCommand
	}
	sshDir, dropDir := path.Dir(SSHDMainConfig), path.Dir(SSHDDropIn)
	// A killed run's staging directories.
	if stale, err := filepath.Glob(filepath.Join(env.Path(sshDir), sshdStagePrefix+"*")); err == nil {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	if err := os.MkdirAll(env.Path(sshDir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(env.Path(sshDir), sshdStagePrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	stage := path.Join(sshDir, filepath.Base(tmp)) // host path
	stagedDrop := path.Join(stage, path.Base(dropDir))
	if err := os.Mkdir(env.Path(stagedDrop), 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(env.Path(dropDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if e.Name() == path.Base(SSHDDropIn) {
			continue
		}
		live := env.Path(path.Join(dropDir, e.Name()))
		if st, err := os.Stat(live); err != nil || !st.Mode().IsRegular() {
			continue // not a file sshd could include
		}
		b, err := os.ReadFile(live)
		if err != nil {
			return err
		}
		if err := os.WriteFile(env.Path(path.Join(stagedDrop, e.Name())), b, 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(env.Path(path.Join(stagedDrop, path.Base(SSHDDropIn))), data, 0o600); err != nil {
		return err
	}
	main, err := os.ReadFile(env.Path(SSHDMainConfig))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cfg := StageSSHDConfig(string(main), sshDir, dropDir, env.Path(stagedDrop), env.Path)
	mainCopy := path.Join(stage, path.Base(SSHDMainConfig))
	if err := os.WriteFile(env.Path(mainCopy), []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := test(ctx, env, mainCopy); err != nil {
		return fmt.Errorf("sshd rejects the new %s, which is not installed (the live sshd configuration is unchanged): %w", SSHDDropIn, err)
	}
	return nil
}

// StageSSHDConfig rewrites sshd's main config so that every Include of a
// file or pattern in dropDir names the same in stagedDrop (a real path)
// instead; other Include paths are mapped by hostPath (relative ones are
// relative to sshDir, as sshd resolves them). When nothing includes dropDir
// (a config that does not read drop-ins), the staged drop-ins are included
// first, so that the new one is still checked.
func StageSSHDConfig(main, sshDir, dropDir, stagedDrop string, hostPath func(string) string) string {
	var b strings.Builder
	found := false
	for _, line := range strings.SplitAfter(main, "\n") {
		body := strings.TrimLeft(line, " \t")
		end := strings.IndexAny(body, " \t=\r\n")
		if end < 0 || !strings.EqualFold(body[:end], "Include") {
			b.WriteString(line)
			continue
		}
		var args []string
		for _, a := range strings.Fields(strings.TrimLeft(body[end:], " \t=")) {
			if strings.HasPrefix(a, "#") {
				break
			}
			a = strings.Trim(a, `"`)
			abs := a
			if !path.IsAbs(abs) {
				abs = path.Join(sshDir, abs)
			}
			if path.Dir(abs) == dropDir {
				a, found = filepath.Join(stagedDrop, path.Base(abs)), true
			} else {
				a = hostPath(abs)
			}
			args = append(args, sshdArg(a))
		}
		b.WriteString(line[:len(line)-len(body)] + "Include " + strings.Join(args, " ") + "\n")
	}
	if !found {
		return "Include " + sshdArg(filepath.Join(stagedDrop, "*.conf")) + "\n" + b.String()
	}
	return b.String()
}

// sshdArg quotes a path for sshd_config when it holds white space.
func sshdArg(p string) string {
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

// SSHDRelisten bounds the wait for sshd to listen again after its reload:
// on SIGHUP sshd closes its listening sockets and re-executes itself, so
// for a moment new connections are refused, and the bring-up's next SSH
// connection must not be one of them.
const SSHDRelisten = 15 * time.Second

// SSHDListenAddrs are the addresses to dial sshd at, from sshd -T's
// listenaddress lines (a wildcard is dialled on loopback).
func SSHDListenAddrs(sshdT string) []string {
	var out []string
	for _, l := range strings.Split(sshdT, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != "listenaddress" {
			continue
		}
		host, port, err := net.SplitHostPort(f[1])
		if err != nil {
			continue
		}
		switch host {
		case "0.0.0.0":
			host = "127.0.0.1"
		case "::":
			host = "::1"
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out
}

// listenInodes are the socket inodes listening on each port of addrs
// (/proc/net/tcp and tcp6 of this network namespace).
func listenInodes(addrs []string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		out[p] = map[string]bool{}
	}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(l)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fl[1], ":")
			n, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				continue
			}
			if m, ok := out[strconv.FormatUint(n, 10)]; ok {
				m[fl[9]] = true
			}
		}
	}
	return out
}

// waitRelisten waits until sshd listens on each port again with new
// sockets (the re-executed sshd's, not the ones it had before the reload,
// which it closes moments after the reload returns) that accept a
// connection. An sshd whose sockets never change (one that reloads in
// place) is accepted once the timeout passes if it accepts connections.
func waitRelisten(ctx context.Context, addrs []string, before map[string]map[string]bool, timeout time.Duration) error {
	dial := func(as []string) error {
		var last error
		for _, a := range as {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", a)
			if err == nil {
				c.Close()
				return nil
			}
			last = err
		}
		return last
	}
	byPort := map[string][]string{}
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		byPort[p] = append(byPort[p], a)
	}
	deadline := time.Now().Add(timeout)
	for port, as := range byPort {
		for {
			now := listenInodes(as)[port]
			fresh := len(now) > 0
			for ino := range now {
				fresh = fresh && !before[port][ino]
			}
			err := dial(as)
			if fresh && err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				if err == nil {
					break // sockets unchanged but serving: reloaded in place
				}
				return fmt.Errorf("sshd was reloaded but does not accept connections on port %s again within %s (%v): check journalctl -u ssh", port, timeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
