package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

// killAt runs f, stopping it like a SIGKILL at the named fault point: the
// code after the point never runs. It fails the test if the point is not
// reached.
func killAt(t *testing.T, point string, f func()) {
	t.Helper()
	fsx.FaultHook = func(p string) {
		if p == point {
			panic(killed{})
		}
	}
	defer func() { fsx.FaultHook = nil }()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(killed); !ok {
					panic(r)
				}
			}
		}()
		f()
		t.Fatalf("fault point %s not reached", point)
	}()
}

// systemctl lists the recorded systemctl calls from the n-th call on.
func systemctl(t *testing.T, sb *agent.Sandbox, from int) []string {
	t.Helper()
	calls, err := sb.Calls()
	require.NoError(t, err)
	var out []string
	for _, c := range calls[from:] {
		if c.Op == "systemctl" {
			out = append(out, strings.Join(c.Args, " "))
		}
	}
	return out
}

func ncalls(t *testing.T, sb *agent.Sandbox) int {
	t.Helper()
	calls, err := sb.Calls()
	require.NoError(t, err)
	return len(calls)
}

// A run killed after writing a changed unit and env file, before systemd
// was reloaded and the units restarted: the next run writes nothing, yet it
// must reload systemd and restart both units, so that they run the new
// definition and environment (systemd keeps running a unit's loaded
// definition until a daemon-reload, as the sandbox does).
func TestUnitsKilledBeforeDaemonReloadReloadAndRestartOnRerun(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, sb := newEnv(t, s)
	runAll(t, env)
	ctx := context.Background()
	audit, broker := s.Service("audit").Unit, s.Broker().Unit

	s.Service("audit").Args = []string{"--flush-interval-secs", "60"} // audit's unit file changes
	s.Broker().Env["BROKER_OIDC_JWT_TTL_SECONDS"] = "600"             // broker's env file changes
	killAt(t, "units:before-daemon-reload", func() { Units{}.Run(ctx, env) })
	disk := read(t, env, UnitDir+"/"+audit)
	require.Contains(t, disk, "agentkeys-worker-audit --flush-interval-secs 60\n")
	loaded, err := sb.Loaded(audit)
	require.NoError(t, err)
	require.NotEqual(t, disk, string(loaded), "the killed run did not reload systemd")
	pending, err := env.Pending()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{agent.ActionDaemonReload, agent.ActionRestart(audit), agent.ActionRestart(broker)}, pending)

	before := ncalls(t, sb)
	env.Counters = &agent.Counters{}
	res, err := Units{}.Run(ctx, env)
	require.NoError(t, err)
	for _, c := range res.Changes {
		assert.NotContains(t, c, "wrote /etc/", "the files were already written")
	}
	calls := systemctl(t, sb, before)
	require.NotEmpty(t, calls)
	assert.Equal(t, "daemon-reload", calls[0], "systemd reloaded before any restart: %v", calls)
	assert.Contains(t, calls, "restart "+audit)
	assert.Contains(t, calls, "restart "+broker)
	loaded, err = sb.Loaded(audit)
	require.NoError(t, err)
	assert.Equal(t, disk, string(loaded))
	environ, err := sb.Environ(audit)
	require.NoError(t, err)
	cmdline, err := sb.Cmdline(audit)
	require.NoError(t, err)
	assert.True(t, slices.Contains(cmdline, "--flush-interval-secs"), "audit runs its new definition: %v", cmdline)
	environ, err = sb.Environ(broker)
	require.NoError(t, err)
	assert.Contains(t, environ, "BROKER_OIDC_JWT_TTL_SECONDS=600", "broker runs its new env file")
	pending, err = env.Pending()
	require.NoError(t, err)
	assert.Empty(t, pending)
	assert.NoFileExists(t, env.Path(agent.JournalPath(s.StateDir)))

	// Converged: nothing owed, nothing done.
	before = ncalls(t, sb)
	env.Counters = &agent.Counters{}
	_, err = Units{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, agent.Counters{}, *env.Counters)
	assert.NotContains(t, systemctl(t, sb, before), "daemon-reload")
}

// A restart owed for a unit that left the spec is dropped, not attempted.
func TestUnitsDropOwedRestartOfUnmanagedUnit(t *testing.T) {
	env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	runAll(t, env)
	require.NoError(t, env.Intend(agent.ActionRestart("agentkeys-gone.service")))
	before := ncalls(t, sb)
	_, err := Units{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Empty(t, systemctl(t, sb, before))
	pending, err := env.Pending()
	require.NoError(t, err)
	assert.Empty(t, pending)
}

// The sshd drop-in is validated before it goes live: a rejected one is
// never installed (and sshd not reloaded). The validator sees a staged copy
// of sshd's configuration as it would be: the main config with its Include
// of the drop-in directory (where it is, in its order) naming a staged copy
// of that directory, which holds the other live drop-ins and the new one
// under its real name, never the live one; nothing staged is live or left.
func TestSSHDDropInValidatedBeforeItGoesLive(t *testing.T) {
	ctx := context.Background()
	dropDir := filepath.Dir(SSHDDropIn)
	const mainConfig = "Port 22\n  include   sshd_config.d/*.conf\nPasswordAuthentication no\n"
	for _, prior := range []string{"", "BrokenByHand yes\n"} {
		env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
		require.NoError(t, os.MkdirAll(env.Path(dropDir), 0o755))
		require.NoError(t, os.WriteFile(env.Path(SSHDMainConfig), []byte(mainConfig), 0o644))
		require.NoError(t, os.WriteFile(env.Path(dropDir+"/10-other.conf"), []byte("X11Forwarding no\n"), 0o644))
		require.NoError(t, os.WriteFile(env.Path(dropDir+"/90-later.conf"), []byte("MaxAuthTries 3\n"), 0o644))
		if prior != "" {
			require.NoError(t, os.WriteFile(env.Path(SSHDDropIn), []byte(prior), 0o644))
		}
		var seen map[string]string
		reject := func(_ context.Context, env *agent.Env, main string) error {
			assert.NotEqual(t, SSHDMainConfig, main)
			assert.Equal(t, filepath.Dir(SSHDMainConfig), filepath.Dir(filepath.Dir(main)), "staged in a directory of /etc/ssh")
			b, err := os.ReadFile(env.Path(main))
			require.NoError(t, err)
			lines := strings.Split(string(b), "\n")
			require.Len(t, lines, 4, "%s", b)
			assert.Equal(t, "Port 22", lines[0])
			assert.Equal(t, "PasswordAuthentication no", lines[2])
			inc, ok := strings.CutPrefix(lines[1], "  Include ")
			require.True(t, ok, "the Include stays where it is: %q", lines[1])
			stagedDir := filepath.Dir(inc)
			assert.Equal(t, "*.conf", filepath.Base(inc))
			assert.NotEqual(t, env.Path(dropDir), stagedDir)
			files, err := filepath.Glob(inc)
			require.NoError(t, err)
			seen = map[string]string{}
			for _, f := range files {
				seen[filepath.Base(f)] = string(must(os.ReadFile(f)))
			}
			return assert.AnError
		}
		before := ncalls(t, sb)
		_, err := Users{SSHDTest: reject}.Run(ctx, env)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sshd rejects the new "+SSHDDropIn+", which is not installed")
		assert.Equal(t, map[string]string{"10-other.conf": "X11Forwarding no\n", filepath.Base(SSHDDropIn): SSHDConfig, "90-later.conf": "MaxAuthTries 3\n"}, seen)
		if prior == "" {
			assert.NoFileExists(t, env.Path(SSHDDropIn))
		} else {
			assert.Equal(t, prior, read(t, env, SSHDDropIn), "the live drop-in is unchanged")
		}
		ents, _ := os.ReadDir(env.Path(dropDir))
		assert.Len(t, ents, map[bool]int{true: 2, false: 3}[prior == ""], "files left in the drop-in dir: %v", ents)
		staged, _ := filepath.Glob(env.Path(filepath.Dir(SSHDMainConfig) + "/" + sshdStagePrefix + "*"))
		assert.Empty(t, staged, "staged files left behind")
		assert.Equal(t, mainConfig, read(t, env, SSHDMainConfig))
		assert.NotContains(t, systemctl(t, sb, before), "reload ssh")
		owed, _ := env.IsPending(agent.ActionReloadSSHD)
		assert.False(t, owed)

		// Accepted: installed and sshd reloaded.
		before = ncalls(t, sb)
		_, err = Users{SSHDTest: func(context.Context, *agent.Env, string) error { return nil }}.Run(ctx, env)
		require.NoError(t, err)
		assert.Equal(t, SSHDConfig, read(t, env, SSHDDropIn))
		assert.Equal(t, []string{"reload ssh"}, systemctl(t, sb, before))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// StageSSHDConfig: every Include of the drop-in directory (relative or
// absolute, any case, one of several arguments) names the staged copy;
// other includes are mapped; a config reading no drop-ins gets the staged
// ones first.
func TestStageSSHDConfig(t *testing.T) {
	mapped := func(p string) string { return "/root" + p }
	got := StageSSHDConfig("# Include /etc/ssh/sshd_config.d/*.conf\nInclude /etc/ssh/sshd_config.d/*.conf\nMatch User x\n\tINCLUDE=other.conf sshd_config.d/60-agentkeys-eic.conf # why\nPort 22",
		"/etc/ssh", "/etc/ssh/sshd_config.d", "/root/stage dir/sshd_config.d", mapped)
	assert.Equal(t, "# Include /etc/ssh/sshd_config.d/*.conf\n"+
		"Include \"/root/stage dir/sshd_config.d/*.conf\"\n"+
		"Match User x\n"+
		"\tInclude /root/etc/ssh/other.conf \"/root/stage dir/sshd_config.d/60-agentkeys-eic.conf\"\n"+
		"Port 22", got)
	assert.Equal(t, "Include /s/sshd_config.d/*.conf\nPort 22\n", StageSSHDConfig("Port 22\n", "/etc/ssh", "/etc/ssh/sshd_config.d", "/s/sshd_config.d", mapped))
}

// sshdUnits is the sandbox with sshd's unit under one name only: a reload
// of any other is refused as systemctl refuses an unknown unit; broken
// makes every reload fail.
type sshdUnits struct {
	*sandboxSys
	unit   string
	broken bool
}

func (s *sshdUnits) Systemctl(ctx context.Context, verb string, units ...string) error {
	if verb == "reload" && len(units) == 1 && (units[0] == "ssh" || units[0] == "sshd") {
		if s.broken {
			s.sandboxSys.Systemctl(ctx, verb, units...) // recorded
			return fmt.Errorf("systemctl reload %s: exit status 1: Job for %s.service failed", units[0], units[0])
		}
		if units[0] != s.unit {
			return fmt.Errorf("systemctl reload %s: exit status 5: Failed to reload %s.service: Unit %s.service not found.", units[0], units[0], units[0])
		}
	}
	return s.sandboxSys.Systemctl(ctx, verb, units...)
}

// Amazon Linux and RHEL name sshd's unit sshd.service, Debian and Ubuntu
// ssh.service: the reload tries ssh, then sshd.
func TestSSHDReloadFallsBackToTheSSHDUnit(t *testing.T) {
	ctx := context.Background()
	for _, unit := range []string{"ssh", "sshd"} {
		env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
		env.Sys = &sshdUnits{sandboxSys: sb, unit: unit}
		res, err := Users{}.Run(ctx, env)
		require.NoError(t, err, unit)
		assert.Equal(t, []string{"reload " + unit}, systemctl(t, sb, 0), unit)
		assert.Contains(t, res.Changes, "reloaded sshd")
		owed, _ := env.IsPending(agent.ActionReloadSSHD)
		assert.False(t, owed)
	}
}

// An sshd reload that keeps failing fails the run that changed the drop-in
// (it must take effect), but once it is only owed by an earlier run it is
// a warning in the step's reason and stays owed: later applies go on.
func TestOwedSSHDReloadThatKeepsFailingIsAWarning(t *testing.T) {
	ctx := context.Background()
	env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	sys := &sshdUnits{sandboxSys: sb, unit: "ssh", broken: true}
	env.Sys = sys
	_, err := Users{}.Run(ctx, env)
	require.Error(t, err, "the run that wrote the drop-in")
	assert.Contains(t, err.Error(), "reloading sshd failed under each of its unit names (ssh, sshd; the reload is left owed to the next run)")
	assert.Contains(t, err.Error(), "Job for ssh.service failed")
	assert.Equal(t, SSHDConfig, read(t, env, SSHDDropIn))
	owed, _ := env.IsPending(agent.ActionReloadSSHD)
	require.True(t, owed)

	before := ncalls(t, sb)
	res, err := Users{}.Run(ctx, env)
	require.NoError(t, err, "a reload owed by an earlier run")
	assert.Equal(t, []string{"reload ssh", "reload sshd"}, systemctl(t, sb, before), "it is still tried")
	assert.Contains(t, res.Reason, "warning: the sshd reload an earlier run owes failed again and stays owed")
	assert.Contains(t, res.Detail["sshd"], "reload owed: reloading sshd failed")
	assert.Empty(t, res.Changes)
	owed, _ = env.IsPending(agent.ActionReloadSSHD)
	assert.True(t, owed)
	// Through the runner the step is ok, with the warning as its reason.
	_, err = (&agent.Runner{Steps: []agent.Step{Users{}}}).Run(ctx, env)
	require.NoError(t, err)

	sys.broken = false
	res, err = Users{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Empty(t, res.Reason)
	assert.Contains(t, res.Changes, "reloaded sshd (owed by an interrupted run)")
	owed, _ = env.IsPending(agent.ActionReloadSSHD)
	assert.False(t, owed)
}

// A run killed after installing the drop-in and before reloading sshd
// leaves the reload owed: the next run, which writes nothing, reloads.
func TestSSHDReloadOwedAfterAKill(t *testing.T) {
	ctx := context.Background()
	env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	killAt(t, "users:before-sshd-reload", func() { Users{}.Run(ctx, env) })
	assert.Equal(t, SSHDConfig, read(t, env, SSHDDropIn))
	assert.NotContains(t, systemctl(t, sb, 0), "reload ssh")

	before := ncalls(t, sb)
	res, err := Users{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, []string{"reload ssh"}, systemctl(t, sb, before))
	assert.Contains(t, res.Changes, "reloaded sshd (owed by an interrupted run)")

	before = ncalls(t, sb)
	res, err = Users{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Empty(t, systemctl(t, sb, before))
	assert.Empty(t, res.Changes)
}

// The real validator: sshd -t on the staged configuration accepts the
// agent's drop-in and rejects a bad one; a hand-broken live drop-in of ours
// does not fail its replacement, while another broken live drop-in does
// (the staged configuration is what sshd would read).
func TestSSHDTestCommandWithRealSSHD(t *testing.T) {
	if _, err := exec.LookPath("sshd"); err != nil {
		t.Skip("sshd not installed")
	}
	if out, err := exec.Command("sshd", "-t").CombinedOutput(); err != nil {
		t.Skipf("sshd -t fails on this machine's own configuration: %v %s", err, out)
	}
	env, _ := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	// This machine's main config, reading the sandbox's drop-ins (as host
	// paths: the validator maps them) whether or not it includes any.
	b, _ := os.ReadFile(SSHDMainConfig)
	main := "Include " + filepath.Dir(SSHDDropIn) + "/*.conf\n" + string(b)
	require.NoError(t, os.MkdirAll(env.Path(filepath.Dir(SSHDDropIn)), 0o755))
	require.NoError(t, os.WriteFile(env.Path(SSHDMainConfig), []byte(main), 0o644))
	u := Users{SSHDTest: SSHDTestCommand}
	ctx := context.Background()
	require.NoError(t, u.validate(ctx, env, []byte(SSHDConfig)))
	err := u.validate(ctx, env, []byte("BogusKeyword yes\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BogusKeyword")
	assert.NoFileExists(t, env.Path(SSHDDropIn))

	require.NoError(t, os.WriteFile(env.Path(SSHDDropIn), []byte("BrokenByHand yes\n"), 0o644))
	require.NoError(t, u.validate(ctx, env, []byte(SSHDConfig)), "the live drop-in being replaced is not read")
	other := filepath.Dir(SSHDDropIn) + "/10-other.conf"
	require.NoError(t, os.WriteFile(env.Path(other), []byte("OtherBroken yes\n"), 0o644))
	err = u.validate(ctx, env, []byte(SSHDConfig))
	require.Error(t, err, "another live drop-in is read")
	assert.Contains(t, err.Error(), "OtherBroken")
	staged, _ := filepath.Glob(env.Path(filepath.Dir(SSHDMainConfig) + "/" + sshdStagePrefix + "*"))
	assert.Empty(t, staged)
}
