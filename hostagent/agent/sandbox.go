package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/procnet"
)

// Sandbox is the System used by tests and --root runs. Everything lives under
// Root: users in <root>/etc/passwd and <root>/etc/group, unit state and pid
// files in <root>/run/sandbox, every call appended to
// <root>/run/sandbox/calls.log. Starting a unit runs its ExecStart (mapped
// under Root) as a detached process with its EnvironmentFile, so health
// checks probe real processes; state survives across agent processes.
// As in systemd, a unit's definition is loaded once (at its first start or
// at a daemon-reload) and (re)starts use the loaded definition: a unit file
// changed on disk takes effect only after a daemon-reload. Env files are
// read at each start.
// Nginx is real when <root>/etc/nginx/nginx.conf exists and nginx is on PATH
// (run as nginx -c <that file>); otherwise nginx calls are only recorded.
type Sandbox struct {
	Root string
	mu   sync.Mutex
}

// NewSandbox returns a sandbox System rooted at root.
func NewSandbox(root string) *Sandbox { return &Sandbox{Root: root} }

// Call is one recorded System call.
type Call struct {
	Op   string   `json:"op"`
	Args []string `json:"args,omitempty"`
}

func (s *Sandbox) Sandbox() bool { return true }

func (s *Sandbox) dir(parts ...string) string {
	return filepath.Join(append([]string{s.Root, "run", "sandbox"}, parts...)...)
}

func (s *Sandbox) record(op string, args ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	os.MkdirAll(s.dir(), 0o755)
	f, err := os.OpenFile(s.dir("calls.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	b, _ := json.Marshal(Call{Op: op, Args: args})
	f.Write(append(b, '\n'))
}

// Calls returns every recorded call, oldest first.
func (s *Sandbox) Calls() ([]Call, error) {
	f, err := os.Open(s.dir("calls.log"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c Call
		if json.Unmarshal(sc.Bytes(), &c) == nil {
			out = append(out, c)
		}
	}
	return out, sc.Err()
}

// Run executes the command for real (git, the build): callers pass paths
// already mapped under Root.
func (s *Sandbox) Run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	s.record("run", append([]string{name}, args...)...)
	return runCmd(ctx, dir, env, name, args...)
}

func (s *Sandbox) Systemctl(ctx context.Context, verb string, units ...string) error {
	s.record("systemctl", append([]string{verb}, units...)...)
	// --now: enable also starts, disable also stops, as systemctl does.
	now, names := false, units[:0:0]
	for _, u := range units {
		if u == "--now" && (verb == "enable" || verb == "disable") {
			now = true
			continue
		}
		names = append(names, u)
	}
	if now {
		then := map[string]string{"enable": "start", "disable": "stop"}[verb]
		if err := s.systemctl(ctx, verb, names); err != nil {
			return err
		}
		return s.systemctl(ctx, then, names)
	}
	return s.systemctl(ctx, verb, names)
}

func (s *Sandbox) systemctl(ctx context.Context, verb string, units []string) error {
	if verb == "daemon-reload" {
		if err := s.daemonReload(); err != nil {
			return fmt.Errorf("systemctl daemon-reload: %w", err)
		}
		return nil
	}
	for _, u := range units {
		var err error
		switch verb {
		case "enable":
			err = os.MkdirAll(s.dir("enabled"), 0o755)
			if err == nil {
				err = os.WriteFile(s.dir("enabled", u), nil, 0o644)
			}
		case "disable":
			err = os.Remove(s.dir("enabled", u))
			if errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		case "start":
			if on, _ := s.IsActive(ctx, u); !on {
				err = s.spawn(u)
			}
		case "restart":
			if err = s.stop(u); err == nil {
				err = s.spawn(u)
			}
		case "stop":
			err = s.stop(u)
		case "reload":
		default:
			err = fmt.Errorf("sandbox systemctl: unsupported verb %q", verb)
		}
		if err != nil {
			return fmt.Errorf("systemctl %s %s: %w", verb, u, err)
		}
	}
	return nil
}

func (s *Sandbox) pid(unit string) int {
	b, err := os.ReadFile(s.dir("pids", unit))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

func (s *Sandbox) IsActive(_ context.Context, unit string) (bool, error) {
	if !strings.HasSuffix(unit, ".service") {
		_, err := os.Stat(s.dir("active", unit))
		return err == nil, nil
	}
	return procnet.Alive(s.pid(unit)), nil
}

func (s *Sandbox) IsEnabled(_ context.Context, unit string) (bool, error) {
	_, err := os.Stat(s.dir("enabled", unit))
	return err == nil, nil
}

func (s *Sandbox) stop(unit string) error {
	if !strings.HasSuffix(unit, ".service") {
		os.Remove(s.dir("active", unit))
		return nil
	}
	pid := s.pid(unit)
	if !procnet.Alive(pid) {
		return nil
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	for i := 0; i < 100 && procnet.Alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if procnet.Alive(pid) {
		syscall.Kill(-pid, syscall.SIGKILL)
		for i := 0; i < 40 && procnet.Alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Remove(s.dir("pids", unit))
	return nil
}

// StopAll stops every unit the sandbox started and a sandbox nginx (test cleanup).
func (s *Sandbox) StopAll() {
	ents, _ := os.ReadDir(s.dir("pids"))
	for _, e := range ents {
		s.stop(e.Name())
	}
	if conf := s.nginxConf(); conf != "" {
		exec.Command("nginx", "-c", conf, "-s", "stop").Run()
	}
}

// unitFile is the subset of a unit file the sandbox needs to start it.
type unitFile struct {
	exec      []string
	post      []string // ExecStartPost
	envFiles  []string
	env       []string
	creds     [][2]string
	stateDirs []string
}

// daemonReload loads every unit file's current definition, as systemctl
// daemon-reload does.
func (s *Sandbox) daemonReload() error {
	if err := os.RemoveAll(s.dir("loaded")); err != nil {
		return err
	}
	ents, err := os.ReadDir(fsx.HostPath(s.Root, "/etc/systemd/system"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if _, err := s.load(e.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

// load copies unit's file into the loaded definitions.
func (s *Sandbox) load(unit string) ([]byte, error) {
	b, err := os.ReadFile(fsx.HostPath(s.Root, "/etc/systemd/system/"+unit))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir("loaded"), 0o755); err != nil {
		return nil, err
	}
	return b, os.WriteFile(s.dir("loaded", unit), b, 0o644)
}

// Loaded returns the definition of unit that a start would use: the one
// loaded at the last daemon-reload or first start, else the file on disk.
func (s *Sandbox) Loaded(unit string) ([]byte, error) {
	b, err := os.ReadFile(s.dir("loaded", unit))
	if errors.Is(err, fs.ErrNotExist) {
		return os.ReadFile(fsx.HostPath(s.Root, "/etc/systemd/system/"+unit))
	}
	return b, err
}

// Environ returns the environment of unit's running process.
func (s *Sandbox) Environ(unit string) ([]string, error) {
	pid := s.pid(unit)
	if !procnet.Alive(pid) {
		return nil, fmt.Errorf("%s is not running", unit)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// PID is the pid of unit's process (0 when it has none).
func (s *Sandbox) PID(unit string) int { return s.pid(unit) }

// UnitStatus is active/running while the unit's process lives, failed/dead
// once it died, and unknown ("") for a unit the sandbox never started.
func (s *Sandbox) UnitStatus(_ context.Context, unit string) (UnitStatus, error) {
	if !strings.HasSuffix(unit, ".service") {
		if _, err := os.Stat(s.dir("active", unit)); err == nil {
			return UnitStatus{ActiveState: "active", SubState: "waiting"}, nil
		}
		return UnitStatus{}, nil
	}
	pid := s.pid(unit)
	switch {
	case pid == 0:
		return UnitStatus{}, nil
	case procnet.Alive(pid):
		return UnitStatus{ActiveState: "active", SubState: "running", MainPID: pid}, nil
	}
	return UnitStatus{ActiveState: "failed", SubState: "dead"}, nil
}

// JournalTail is the end of the unit's output log.
func (s *Sandbox) JournalTail(_ context.Context, unit string, n int) (string, error) {
	b, err := os.ReadFile(fsx.HostPath(s.Root, "/var/log/sandbox/"+unit+".log"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n"), err
}

// Cmdline returns the arguments of unit's running process.
func (s *Sandbox) Cmdline(unit string) ([]string, error) {
	pid := s.pid(unit)
	if !procnet.Alive(pid) {
		return nil, fmt.Errorf("%s is not running", unit)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

func (s *Sandbox) readUnit(unit string) (*unitFile, error) {
	b, err := os.ReadFile(s.dir("loaded", unit))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = s.load(unit) // first use: systemd loads it from disk
	}
	if err != nil {
		return nil, err
	}
	u := &unitFile{}
	credDir := s.dir("credentials", unit)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.ReplaceAll(v, "%d", credDir)
		switch k {
		case "ExecStart":
			u.exec = splitQuoted(strings.TrimLeft(v, "-@:+!"))
		case "ExecStartPost":
			u.post = splitQuoted(strings.TrimLeft(v, "-@:+!"))
		case "EnvironmentFile":
			u.envFiles = append(u.envFiles, v)
		case "Environment":
			for _, f := range splitQuoted(v) {
				u.env = append(u.env, f)
			}
		case "LoadCredential":
			id, p, _ := strings.Cut(v, ":")
			u.creds = append(u.creds, [2]string{id, p})
		case "StateDirectory":
			u.stateDirs = append(u.stateDirs, strings.Fields(v)...)
		}
	}
	if len(u.exec) == 0 {
		return nil, fmt.Errorf("unit %s has no ExecStart", unit)
	}
	return u, nil
}

func splitQuoted(v string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range v {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func (s *Sandbox) spawn(unit string) error {
	if !strings.HasSuffix(unit, ".service") {
		// Timers and other units: only their active state is kept.
		if err := os.MkdirAll(s.dir("active"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(s.dir("active", unit), nil, 0o644)
	}
	u, err := s.readUnit(unit)
	if err != nil {
		return err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "AGENTKEYS_SANDBOX_ROOT=" + s.Root}
	for _, f := range u.envFiles {
		optional := strings.HasPrefix(f, "-")
		lines, err := ReadEnvFile(fsx.HostPath(s.Root, strings.TrimPrefix(f, "-")))
		if err != nil && !optional {
			return err
		}
		env = append(env, lines...)
	}
	env = append(env, u.env...)
	if len(u.creds) > 0 {
		cd := s.dir("credentials", unit)
		if err := os.MkdirAll(cd, 0o700); err != nil {
			return err
		}
		for _, c := range u.creds {
			b, err := os.ReadFile(fsx.HostPath(s.Root, c[1]))
			if err != nil {
				return fmt.Errorf("LoadCredential %s: %w", c[0], err)
			}
			if err := os.WriteFile(filepath.Join(cd, c[0]), b, 0o600); err != nil {
				return err
			}
		}
		env = append(env, "CREDENTIALS_DIRECTORY="+cd)
	}
	var sd []string
	for _, d := range u.stateDirs {
		p := fsx.HostPath(s.Root, "/var/lib/"+d)
		os.MkdirAll(p, 0o750)
		sd = append(sd, p)
	}
	if len(sd) > 0 {
		env = append(env, "STATE_DIRECTORY="+strings.Join(sd, ":"))
	}
	logDir := fsx.HostPath(s.Root, "/var/log/sandbox")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(logDir, unit+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// ExecStart's ${VAR} come from the unit's environment, as in systemd.
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	args := make([]string, len(u.exec)-1)
	for i, a := range u.exec[1:] {
		args[i] = os.Expand(a, func(k string) string { return vars[k] })
	}
	cmd := exec.Command(fsx.HostPath(s.Root, u.exec[0]), args...)
	cmd.Env, cmd.Dir = env, s.Root
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own session: the service outlives an agent that is killed mid-run, as under systemd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap when this process is still its parent
	if err := os.MkdirAll(s.dir("pids"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.dir("pids", unit), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return s.startPost(unit, u.post)
}

// startPost runs a unit's ExecStartPost as systemd would before the start
// job completes. The agent's own wait-ready (the binary is not installed
// under the sandbox root) is done here: poll the URL, as it does, and with
// --pid=${MAINPID} count the answer only from the unit's own process.
func (s *Sandbox) startPost(unit string, post []string) error {
	if len(post) < 3 || post[1] != "wait-ready" {
		return nil
	}
	owned := func() bool { return true }
	if slices.Contains(post[3:], "--pid=${MAINPID}") {
		u, err := url.Parse(post[2])
		if err != nil {
			return err
		}
		port, err := procnet.PortOf(u.Host)
		if err != nil {
			return err
		}
		owned = func() bool {
			ok, err := procnet.Listens(s.pid(unit), port)
			return ok || errors.Is(err, procnet.ErrUnknown)
		}
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := client.Get(post[2]); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK && owned() {
				return nil
			}
		}
		if !procnet.Alive(s.pid(unit)) {
			return fmt.Errorf("%s exited before %s answered from its own process (ExecStartPost)", unit, post[2])
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within 30s (ExecStartPost)", unit, post[2])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// passwd-style account files under Root.

type account struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

func (s *Sandbox) accounts() ([]account, map[string]int, error) {
	var users []account
	groups := map[string]int{}
	pb, err := os.ReadFile(fsx.HostPath(s.Root, "/etc/passwd"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	for _, l := range strings.Split(string(pb), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 7 {
			continue
		}
		uid, _ := strconv.Atoi(f[2])
		gid, _ := strconv.Atoi(f[3])
		users = append(users, account{f[0], uid, gid, f[5], f[6]})
	}
	gb, err := os.ReadFile(fsx.HostPath(s.Root, "/etc/group"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	for _, l := range strings.Split(string(gb), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 3 {
			continue
		}
		gid, _ := strconv.Atoi(f[2])
		groups[f[0]] = gid
	}
	return users, groups, nil
}

// ids maps recorded ids to real ownership only when running as root;
// otherwise chown is impossible and ownership is left alone.
func ids(uid, gid int) (int, int) {
	if os.Geteuid() != 0 {
		return -1, -1
	}
	return uid, gid
}

func (s *Sandbox) LookupUser(name string) (int, int, error) {
	users, _, err := s.accounts()
	if err != nil {
		return -1, -1, err
	}
	for _, u := range users {
		if u.name == name {
			uid, gid := ids(u.uid, u.gid)
			return uid, gid, nil
		}
	}
	return -1, -1, ErrNoUser
}

func (s *Sandbox) LookupGroup(name string) (int, error) {
	_, groups, err := s.accounts()
	if err != nil {
		return -1, err
	}
	gid, ok := groups[name]
	if !ok {
		return -1, ErrNoUser
	}
	_, g := ids(0, gid)
	return g, nil
}

func (s *Sandbox) EnsureUser(_ context.Context, u UserSpec) (bool, error) {
	created, err := s.ensureUser(u)
	if created {
		s.record("useradd", u.Name)
	}
	return created, err
}

func (s *Sandbox) ensureUser(u UserSpec) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	users, groups, err := s.accounts()
	if err != nil {
		return false, err
	}
	for _, a := range users {
		if a.name == u.Name {
			return false, nil
		}
	}
	// Ids in the ranges useradd would use, distinct from each other.
	next, used := 1000, map[int]bool{}
	if u.System {
		next = 900
	}
	for _, a := range users {
		used[a.uid] = true
	}
	for _, g := range groups {
		used[g] = true
	}
	for used[next] {
		next++
	}
	lines := func(path string, add string) error {
		p := fsx.HostPath(s.Root, path)
		old, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		_, err = fsx.WriteFileAtomic(s.Root, path, append(old, add...), 0o644, fsx.NoOwner)
		return err
	}
	if _, ok := groups[u.Name]; !ok {
		if err := lines("/etc/group", fmt.Sprintf("%s:x:%d:\n", u.Name, next)); err != nil {
			return false, err
		}
	}
	if err := lines("/etc/passwd", fmt.Sprintf("%s:x:%d:%d::%s:%s\n", u.Name, next, next, u.Home, u.Shell)); err != nil {
		return false, err
	}
	if u.CreateHome {
		uid, gid := ids(next, next)
		if _, err := fsx.EnsureDir(s.Root, u.Home, 0o750, fsx.Owner{UID: uid, GID: gid}); err != nil {
			return false, err
		}
	}
	return true, nil
}

// Reasons the sandbox gives for not installing.
const (
	SandboxNoPackages = "sandbox: OS packages are not installed"
	SandboxNoRust     = "sandbox: the Rust toolchain is not installed"
)

func (s *Sandbox) InstallPackage(_ context.Context, name string) (bool, string, error) {
	s.record("install-package", name)
	return false, SandboxNoPackages, nil
}

// HasPackage records nothing (a query, as plan makes).
func (s *Sandbox) HasPackage(context.Context, string) (bool, string, error) {
	return false, SandboxNoPackages, nil
}

func (s *Sandbox) InstallRustToolchain(context.Context) (bool, string, error) {
	s.record("install-rust-toolchain")
	return false, SandboxNoRust, nil
}

func (s *Sandbox) nginxConf() string {
	conf := fsx.HostPath(s.Root, "/etc/nginx/nginx.conf")
	if _, err := os.Stat(conf); err != nil {
		return ""
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		return ""
	}
	return conf
}

func (s *Sandbox) NginxTest(ctx context.Context) error {
	s.record("nginx", "-t")
	if conf := s.nginxConf(); conf != "" {
		_, err := runCmd(ctx, "", nil, "nginx", "-t", "-q", "-c", conf)
		return err
	}
	return nil
}

func (s *Sandbox) NginxReload(ctx context.Context) error {
	s.record("nginx", "reload")
	conf := s.nginxConf()
	if conf == "" {
		return nil
	}
	if _, err := runCmd(ctx, "", nil, "nginx", "-c", conf, "-s", "reload"); err == nil {
		return nil
	}
	// Not running yet: start it (it daemonizes per its config).
	_, err := runCmd(ctx, "", nil, "nginx", "-c", conf)
	return err
}

// Units lists units the sandbox has started and that are still running.
func (s *Sandbox) Units() []string {
	ents, _ := os.ReadDir(s.dir("pids"))
	var out []string
	for _, e := range ents {
		if procnet.Alive(s.pid(e.Name())) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
