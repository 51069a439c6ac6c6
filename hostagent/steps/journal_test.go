package steps

import (
	"context"
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
	audit, broker := UnitName("audit"), UnitName("broker")

	s.Services[2].MasterSecret = true        // audit's unit file changes
	s.Services[0].Env["EXTRA_SETTING"] = "1" // broker's env file changes
	killAt(t, "units:before-daemon-reload", func() { Units{}.Run(ctx, env) })
	disk := read(t, env, UnitDir+"/"+audit)
	require.Contains(t, disk, "LoadCredential=master-secret:")
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
	assert.True(t, slices.ContainsFunc(environ, func(e string) bool { return strings.HasPrefix(e, "AGENTKEYS_MASTER_SECRET_FILE=") }),
		"audit runs its new definition")
	environ, err = sb.Environ(broker)
	require.NoError(t, err)
	assert.Contains(t, environ, "EXTRA_SETTING=1", "broker runs its new env file")
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
// never installed (and sshd not reloaded); the validator sees the new
// content staged under a name sshd's *.conf include does not match,
// included ahead of the live configuration.
func TestSSHDDropInValidatedBeforeItGoesLive(t *testing.T) {
	ctx := context.Background()
	for _, prior := range []string{"", "# an older drop-in\n"} {
		env, sb := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
		if prior != "" {
			require.NoError(t, os.MkdirAll(filepath.Dir(env.Path(SSHDDropIn)), 0o755))
			require.NoError(t, os.WriteFile(env.Path(SSHDDropIn), []byte(prior), 0o644))
		}
		var seen string
		reject := func(_ context.Context, env *agent.Env, main string) error {
			b, err := os.ReadFile(env.Path(main))
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			require.Len(t, lines, 3, "%s", b)
			staged := strings.TrimPrefix(lines[1], "Include ")
			assert.Equal(t, "Include "+env.Path(SSHDMainConfig), lines[2], "the live configuration after the staged drop-in")
			ok, _ := filepath.Match("*.conf", filepath.Base(staged))
			assert.False(t, ok, "staged name %s matches sshd's include", staged)
			c, err := os.ReadFile(staged)
			require.NoError(t, err)
			seen = string(c)
			return assert.AnError
		}
		before := ncalls(t, sb)
		_, err := Users{SSHDTest: reject}.Run(ctx, env)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sshd rejects the new "+SSHDDropIn+", which is not installed")
		assert.Equal(t, SSHDConfig, seen)
		if prior == "" {
			assert.NoFileExists(t, env.Path(SSHDDropIn))
		} else {
			assert.Equal(t, prior, read(t, env, SSHDDropIn), "the live drop-in is unchanged")
		}
		ents, _ := os.ReadDir(filepath.Dir(env.Path(SSHDDropIn)))
		assert.LessOrEqual(t, len(ents), 1, "staged files left behind: %v", ents)
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

// The real validator: sshd -t on the staged main config accepts the
// agent's drop-in and rejects a bad one.
func TestSSHDTestCommandWithRealSSHD(t *testing.T) {
	if _, err := exec.LookPath("sshd"); err != nil {
		t.Skip("sshd not installed")
	}
	if out, err := exec.Command("sshd", "-t").CombinedOutput(); err != nil {
		t.Skipf("sshd -t fails on this machine's own configuration: %v %s", err, out)
	}
	env, _ := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	if b, err := os.ReadFile(SSHDMainConfig); err == nil {
		require.NoError(t, os.MkdirAll(filepath.Dir(env.Path(SSHDMainConfig)), 0o755))
		require.NoError(t, os.WriteFile(env.Path(SSHDMainConfig), b, 0o644))
	}
	u := Users{SSHDTest: SSHDTestCommand}
	require.NoError(t, u.validate(context.Background(), env, []byte(SSHDConfig)))
	err := u.validate(context.Background(), env, []byte("BogusKeyword yes\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BogusKeyword")
	assert.NoFileExists(t, env.Path(SSHDDropIn))
}
