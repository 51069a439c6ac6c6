package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/procnet"
)

type fakeStep struct {
	name string
	run  func(env *Env) (Result, error)
	ran  *[]string
}

func (f fakeStep) Name() string { return f.name }
func (f fakeStep) Run(_ context.Context, env *Env) (Result, error) {
	*f.ran = append(*f.ran, f.name)
	return f.run(env)
}

func TestRunnerOrderOutputAndStop(t *testing.T) {
	var ran []string
	root := t.TempDir()
	write := func(env *Env) (Result, error) {
		var r Result
		_, err := env.WriteFile(&r, "/etc/x", []byte("x"), 0o644, env.rootOwner())
		return r, err
	}
	r := &Runner{
		Guard: fakeStep{"identity", func(*Env) (Result, error) { return Result{}, nil }, &ran},
		Steps: []Step{
			fakeStep{"files", write, &ran},
			fakeStep{"renew", func(env *Env) (Result, error) {
				return Result{Status: OK, Reason: "renewal of c.example.org failed: x; current certificate valid until y"}, nil
			}, &ran},
			fakeStep{"acme", func(env *Env) (Result, error) {
				env.Report.Issued("a.example.org")
				env.Report.SkipHost("b.example.org", "DNS points elsewhere")
				return Result{Status: Skipped, Reason: "1 host skipped"}, nil
			}, &ran},
			fakeStep{"broken", func(*Env) (Result, error) { return Result{}, errors.New("boom") }, &ran},
			fakeStep{"after", func(*Env) (Result, error) { return Result{}, nil }, &ran},
		},
	}
	var out bytes.Buffer
	r.Out = &out
	env := &Env{Root: root, Sys: NewSandbox(root)}
	sum, err := r.Run(context.Background(), env)
	require.ErrorContains(t, err, "broken: boom")
	assert.Equal(t, []string{"identity", "files", "renew", "acme", "broken"}, ran, "stops at the first error")
	assert.Equal(t, "identity: ok\nfiles: changed\n  wrote /etc/x\nrenew: ok: renewal of c.example.org failed: x; current certificate valid until y\nacme: skipped: 1 host skipped\nbroken: failed: boom\n", out.String())
	assert.Equal(t, 1, sum.Counters.FilesWritten)
	assert.Equal(t, []string{"a.example.org"}, sum.Hosts.Issued)
	assert.Equal(t, "DNS points elsewhere", sum.Hosts.Skipped["b.example.org"])
	var js bytes.Buffer
	require.NoError(t, sum.WriteJSON(&js))
	var back map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	assert.Equal(t, "broken: boom", back["error"])

	// Plan: reports, writes and counts nothing.
	ran = nil
	out.Reset()
	env = &Env{Root: t.TempDir(), DryRun: true}
	env.Sys = NewSandbox(env.Root)
	r.Steps = r.Steps[:1]
	sum, err = r.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, "would write /etc/x", sum.Steps[1].Changes[0])
	assert.Equal(t, Counters{}, sum.Counters)
	assert.False(t, env.Exists("/etc/x"))
}

func TestRunnerOnlyStillRunsGuard(t *testing.T) {
	var ran []string
	ok := func(*Env) (Result, error) { return Result{}, nil }
	r := &Runner{
		Guard: fakeStep{"identity", func(*Env) (Result, error) { return Result{}, BadInput(errors.New("cross-wiring")) }, &ran},
		Steps: []Step{fakeStep{"a", ok, &ran}, fakeStep{"b", ok, &ran}},
	}
	_, err := r.Run(context.Background(), &Env{}, "b")
	assert.True(t, IsBadInput(err))
	assert.Equal(t, []string{"identity"}, ran, "guard refuses before the selected step runs")

	r.Guard = fakeStep{"identity", ok, &ran}
	ran = nil
	_, err = r.Run(context.Background(), &Env{}, "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"identity", "b"}, ran)

	_, err = r.Run(context.Background(), &Env{}, "nope")
	assert.True(t, IsBadInput(err))
	assert.ErrorContains(t, err, `unknown step "nope"; steps are: identity, a, b`)
}

func TestSandboxUsersAndServices(t *testing.T) {
	root := t.TempDir()
	s := NewSandbox(root)
	ctx := context.Background()
	c, err := s.EnsureUser(ctx, UserSpec{Name: "agentkeys", System: true, Home: "/var/lib/agentkeys", Shell: "/usr/sbin/nologin"})
	require.NoError(t, err)
	assert.True(t, c)
	c, err = s.EnsureUser(ctx, UserSpec{Name: "agentkeys", System: true})
	require.NoError(t, err)
	assert.False(t, c)
	_, err = s.EnsureUser(ctx, UserSpec{Name: "agentkey", Home: "/home/agentkey", Shell: "/bin/bash", CreateHome: true})
	require.NoError(t, err)
	uid, gid, err := s.LookupUser("agentkeys")
	require.NoError(t, err)
	g, err := s.LookupGroup("agentkeys")
	require.NoError(t, err)
	assert.Equal(t, gid, g)
	uid2, _, _ := s.LookupUser("agentkey")
	assert.NotEqual(t, uid, uid2)
	_, _, err = s.LookupUser("nobody-here")
	assert.ErrorIs(t, err, ErrNoUser)
	assert.DirExists(t, root+"/home/agentkey")
	calls, err := s.Calls()
	require.NoError(t, err)
	assert.Equal(t, []Call{{Op: "useradd", Args: []string{"agentkeys"}}, {Op: "useradd", Args: []string{"agentkey"}}}, calls)

	// A unit runs as a real process with its env file; restart replaces it.
	require.NoError(t, writeTestFile(root+"/etc/systemd/system/t.service",
		"[Service]\nEnvironmentFile=/etc/t.env\nEnvironment=\"B=two words\"\nExecStart=/usr/local/bin/svc\nStateDirectory=t\n"))
	require.NoError(t, writeTestFile(root+"/etc/t.env", "A=one\n"))
	require.NoError(t, writeTestFile(root+"/usr/local/bin/svc", "#!/bin/sh\necho \"$A $B\" > \"$STATE_DIRECTORY/out\"\nexec sleep 60\n"))
	require.NoError(t, os.Chmod(root+"/usr/local/bin/svc", 0o755))
	t.Cleanup(s.StopAll)
	on, _ := s.IsActive(ctx, "t.service")
	assert.False(t, on)
	require.NoError(t, s.Systemctl(ctx, "start", "t.service"))
	on, _ = s.IsActive(ctx, "t.service")
	assert.True(t, on)
	pid := s.pid("t.service")
	assert.Eventually(t, func() bool {
		b, _ := os.ReadFile(root + "/var/lib/t/out")
		return string(b) == "one two words\n"
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, s.Systemctl(ctx, "restart", "t.service"))
	assert.NotEqual(t, pid, s.pid("t.service"))
	assert.False(t, procnet.Alive(pid), "old process stopped")
	s.StopAll()
	on, _ = s.IsActive(ctx, "t.service")
	assert.False(t, on)
}

func writeTestFile(p, s string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(s), 0o644)
}

// Reloads count every reload a run makes: daemon-reload and sshd's reload
// go to systemctl directly, nginx's through ReloadNginx; a failed reload
// is not one.
func TestRunnerCountsDaemonAndSSHDReloads(t *testing.T) {
	var ran []string
	root := t.TempDir()
	sb := &sshOnly{NewSandbox(root)}
	env := &Env{Root: root, Sys: sb}
	step := func(env *Env) (Result, error) {
		ctx := context.Background()
		if err := env.Sys.Systemctl(ctx, "daemon-reload"); err != nil {
			return Result{}, err
		}
		if err := env.Sys.Systemctl(ctx, "reload", "ssh"); err != nil {
			return Result{}, err
		}
		if err := env.Sys.Systemctl(ctx, "reload", "sshd"); err == nil {
			return Result{}, errors.New("reload sshd should fail here")
		}
		return Result{}, env.ReloadNginx(ctx)
	}
	r := &Runner{Steps: []Step{fakeStep{"units", step, &ran}}}
	sum, err := r.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, 3, sum.Counters.Reloads, "daemon-reload, reload ssh, nginx; not the failed reload")
	assert.Same(t, sb, env.Sys.(*sshOnly), "the run's counting wrapper stays inside the run")

	// A plan (dry run) counts nothing.
	env2 := &Env{Root: root, Sys: sb, DryRun: true}
	sum, err = (&Runner{Steps: []Step{fakeStep{"units", func(env *Env) (Result, error) {
		return Result{}, env.Sys.Systemctl(context.Background(), "daemon-reload")
	}, &ran}}}).Run(context.Background(), env2)
	require.NoError(t, err)
	assert.Zero(t, sum.Counters.Reloads)
}

// sshOnly is a sandbox whose sshd is ssh.service, as on Debian: reloading
// sshd.service fails.
type sshOnly struct{ *sandboxType }

// sandboxType names the embedded field so that Sandbox() stays a method.
type sandboxType = Sandbox

func (s *sshOnly) Systemctl(ctx context.Context, verb string, units ...string) error {
	if verb == "reload" && len(units) == 1 && units[0] == "sshd" {
		return errors.New("unit sshd.service not found")
	}
	return s.sandboxType.Systemctl(ctx, verb, units...)
}
