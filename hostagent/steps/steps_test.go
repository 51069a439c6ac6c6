package steps

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func newEnv(t *testing.T, s *spec.HostSpec) (*agent.Env, *agent.Sandbox) {
	root := t.TempDir()
	sb := agent.NewSandbox(root)
	t.Cleanup(sb.StopAll)
	return &agent.Env{Spec: s, Root: root, Sys: sb, Counters: &agent.Counters{}, Report: &agent.Report{}}, sb
}

func runAll(t *testing.T, env *agent.Env) *agent.Summary {
	t.Helper()
	guard, list := Core()
	r := &agent.Runner{Guard: guard, Steps: list}
	env.Counters, env.Report = &agent.Counters{}, &agent.Report{}
	sum, err := r.Run(context.Background(), env)
	require.NoError(t, err)
	return sum
}

func stepNames(sum *agent.Summary) []string {
	var out []string
	for _, r := range sum.Steps {
		out = append(out, r.Step)
	}
	return out
}

func stepResult(t *testing.T, sum *agent.Summary, name string) agent.Result {
	t.Helper()
	for _, r := range sum.Steps {
		if r.Step == name {
			return r
		}
	}
	t.Fatalf("no step %s in %v", name, stepNames(sum))
	return agent.Result{}
}

func read(t *testing.T, env *agent.Env, p string) string {
	t.Helper()
	b, err := os.ReadFile(env.Path(p))
	require.NoError(t, err)
	return string(b)
}

func TestConvergeThenNoop(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, sb := newEnv(t, s)

	sum := runAll(t, env)
	assert.Equal(t, []string{"identity", "packages", "users", "source", "build", "secrets", "units", "health"}, stepNames(sum))
	for _, r := range sum.Steps[2 : len(sum.Steps)-1] {
		assert.Equal(t, agent.Changed, r.Status, r.Step)
	}
	// The sandbox installs no OS packages: ok, saying so.
	pkgs := stepResult(t, sum, "packages")
	assert.Equal(t, agent.OK, pkgs.Status)
	assert.Equal(t, "skipped: "+agent.SandboxNoPackages, pkgs.Detail["nginx"])
	assert.Equal(t, "ok", string(sum.Steps[len(sum.Steps)-1].Status), "health")
	assert.True(t, sum.Health["broker-jwks"].OK)
	assert.True(t, sum.Health["broker-openid-configuration"].OK)
	assert.Len(t, sum.Health, len(s.Services)+2)
	var units []string
	for _, svc := range s.Services {
		units = append(units, svc.Unit)
	}
	sort.Strings(units)
	assert.Equal(t, units, sb.Units(), "every unit of the contract runs")

	// The env files are the contract's: the setup script's names and binds.
	benv := read(t, env, "/etc/agentkeys/broker.env")
	assert.Contains(t, benv, "# "+agent.ManagedMarker)
	assert.Contains(t, benv, "AGENTKEYS_CHAIN=heima\n")
	assert.Contains(t, benv, "SIDECAR_REGISTRY_ADDRESS_HEIMA=0x00000000000000000000000000000000000000a1\n")
	assert.Contains(t, benv, "AGENTKEYS_CHAIN_RPC_HTTP=https://rpc.heima-parachain.heima.network\n")
	assert.Contains(t, benv, "HOME=/var/lib/agentkeys\n")
	assert.Contains(t, benv, "BROKER_DATA_ROLE_ARN=arn:aws:iam::123456789012:role/agentkeys-data-role-test-2\n")
	assert.NotContains(t, benv, "KEYPAIR_PATH", "the broker's HOME default is the keypairs' place")
	cenv := read(t, env, "/etc/agentkeys/worker-creds.env")
	assert.Regexp(t, `(?m)^AGENTKEYS_WORKER_KEK_HEX=[0-9a-f]{64}$`, cenv)
	assert.Contains(t, cenv, "WORKER_BIND=127.0.0.1:"+strconv.Itoa(s.Service("creds").Port)+"\n")
	assert.Contains(t, cenv, "AGENTKEYS_WORKER_REQUIRE_STS=1\n")
	for _, f := range []string{"/etc/agentkeys/worker-creds.env", "/etc/agentkeys/dev-key-service.env"} {
		st, err := os.Stat(env.Path(f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	assert.Regexp(t, `(?m)^DEV_KEY_SERVICE_MASTER_SECRET=[0-9a-f]{64}$`, read(t, env, "/etc/agentkeys/dev-key-service.env"))
	signer := read(t, env, "/etc/systemd/system/agentkeys-signer.service")
	assert.Contains(t, signer, "ExecStart=/usr/local/bin/agentkeys-mock-server --signer-only --port "+strconv.Itoa(s.Service("signer").Port)+" --broker-session-pubkey-path /var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem\n")
	assert.Contains(t, signer, "EnvironmentFile=/etc/agentkeys/dev-key-service.env\n")
	assert.Contains(t, read(t, env, "/etc/systemd/system/agentkeys-broker.service"), "Restart=always\n")
	assert.Contains(t, read(t, env, "/etc/systemd/system/agentkeys-backend.service"), "IPAddressDeny=any\n")
	pub := read(t, env, "/var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem")
	penv, err := agent.EnvMap([]byte(read(t, env, "/etc/agentkeys/broker-cap-pubkey.env")))
	require.NoError(t, err)
	assert.Equal(t, pub, penv["BROKER_CAP_PUBKEY_PEM"], "the workers get the key the signer loads")

	callsBefore, _ := sb.Calls()
	sum = runAll(t, env)
	for _, r := range sum.Steps {
		assert.Equal(t, agent.OK, r.Status, "%s: %v", r.Step, r.Changes)
	}
	assert.Equal(t, agent.Counters{}, sum.Counters)
	calls, _ := sb.Calls()
	for _, c := range calls[len(callsBefore):] {
		assert.NotEqual(t, "systemctl", c.Op, "no-op apply calls systemctl: %v", c.Args)
		if c.Op == "run" {
			assert.Equal(t, "git", c.Args[0], "no-op apply runs no build: %v", c.Args)
		}
	}

	// A changed env value restarts only that unit; a new commit rebuilds
	// but restarts nothing when the binary bytes are equal.
	s.Service("audit").Env["AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS"] = "60"
	sum = runAll(t, env)
	assert.Equal(t, 1, sum.Counters.Restarts)
	assert.Contains(t, strings.Join(stepResult(t, sum, "units").Changes, "\n"), "restarted agentkeys-worker-audit.service (env changed)")
	require.NoError(t, os.WriteFile(filepath.Join(repo.Work, "README"), []byte("docs\n"), 0o644))
	repo.Commit(t, "docs only")
	sum = runAll(t, env)
	assert.Equal(t, agent.Changed, stepResult(t, sum, "source").Status, "source")
	assert.Equal(t, agent.Changed, stepResult(t, sum, "build").Status, "build")
	assert.Equal(t, 0, sum.Counters.Restarts, "same binary bytes: no restart")
}

func TestPlanChangesNothing(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	env, sb := newEnv(t, sandboxtest.Spec(t, repo))
	env.DryRun = true
	sum := runAll(t, env)
	assert.Equal(t, agent.Counters{}, sum.Counters)
	ents, err := os.ReadDir(env.Root)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Empty(t, names, "nothing written under the root")
	calls, _ := sb.Calls()
	assert.Empty(t, calls)
	assert.Contains(t, strings.Join(stepResult(t, sum, "users").Changes, "\n"), "would create user agentkeys")
	assert.Contains(t, strings.Join(stepResult(t, sum, "source").Changes, "\n"), "would clone")
}

func TestIdentityCrossWiring(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	for name, files := range map[string]map[string]string{
		"unit Environment": {"/etc/systemd/system/agentkeys-broker.service": "[Service]\nEnvironment=BROKER_OIDC_ISSUER=https://broker-test-3.example.org\n"},
		"env file": {"/etc/systemd/system/agentkeys-broker.service": "[Service]\nEnvironmentFile=/etc/agentkeys/broker.env\n",
			"/etc/agentkeys/broker.env": "BROKER_OIDC_ISSUER=https://test-broker.example.org\n"},
	} {
		t.Run(name, func(t *testing.T) {
			env, _ := newEnv(t, s)
			for p, c := range files {
				require.NoError(t, os.MkdirAll(filepath.Dir(env.Path(p)), 0o755))
				require.NoError(t, os.WriteFile(env.Path(p), []byte(c), 0o644))
			}
			guard, list := Core()
			_, err := (&agent.Runner{Guard: guard, Steps: list}).Run(context.Background(), env)
			require.Error(t, err)
			assert.True(t, agent.IsBadInput(err))
			want := "stack test-3"
			if name == "env file" {
				want = "stack test"
			}
			assert.Regexp(t, "cross-wiring: this host serves https://.* \\("+want+", from .*\\) but the spec is for stack test-2 \\(https://broker-test-2.example.org\\); refusing to change anything", err.Error())
			assert.NoDirExists(t, env.Path("/var/lib/agentkeys"), "nothing changed")
			assert.NoDirExists(t, env.Path("/home"), "nothing changed")
		})
	}
	env, _ := newEnv(t, s)
	res, err := Identity{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, "none (fresh host)", res.Detail["deployed"])
}

// An env file the deployed broker unit names but the agent cannot read is
// an error, not a fresh host: the guard cannot be bypassed that way. An
// absent one is a fresh host's (systemd would not start the unit either).
func TestIdentityUnreadableEnvFileIsAnError(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	env, _ := newEnv(t, s)
	unit := env.Path(UnitDir + "/" + BrokerUnit)
	require.NoError(t, os.MkdirAll(filepath.Dir(unit), 0o755))
	require.NoError(t, os.WriteFile(unit, []byte("[Service]\nEnvironmentFile=/etc/agentkeys/broker.env\n"), 0o644))

	res, err := Identity{}.Run(context.Background(), env)
	require.NoError(t, err, "absent env file")
	assert.Equal(t, "none (fresh host)", res.Detail["deployed"])

	// Unreadable (root reads any mode, so a directory stands in for it).
	require.NoError(t, os.MkdirAll(env.Path("/etc/agentkeys/broker.env"), 0o755))
	guard, list := Core()
	_, err = (&agent.Runner{Guard: guard, Steps: list}).Run(context.Background(), env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "identity: cannot read /etc/agentkeys/broker.env, the environment file of the deployed agentkeys-broker.service")
	assert.NoDirExists(t, env.Path("/var/lib/agentkeys"), "nothing changed")
}

// As in systemd, a variable set by the unit's EnvironmentFile overrides
// the same one set by an Environment= line, whichever comes first.
func TestDeployedBrokerVarEnvFileWins(t *testing.T) {
	root := t.TempDir()
	unit := UnitDir + "/" + BrokerUnit
	write := func(p, c string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(fsx.HostPath(root, p)), 0o755))
		require.NoError(t, os.WriteFile(fsx.HostPath(root, p), []byte(c), 0o644))
	}
	write("/etc/agentkeys/broker.env", "BROKER_OIDC_ISSUER=https://from-file.example.org\n")
	for _, u := range []string{
		"[Service]\nEnvironment=BROKER_OIDC_ISSUER=https://inline.example.org\nEnvironmentFile=/etc/agentkeys/broker.env\n",
		"[Service]\nEnvironmentFile=-/etc/agentkeys/broker.env\nEnvironment=\"BROKER_OIDC_ISSUER=https://inline.example.org\"\n",
	} {
		write(unit, u)
		v, src, err := DeployedBrokerVar(root, "BROKER_OIDC_ISSUER")
		require.NoError(t, err)
		assert.Equal(t, "https://from-file.example.org", v, u)
		assert.Equal(t, "/etc/agentkeys/broker.env", src)
	}
	// The file does not set it: the Environment= line counts.
	write("/etc/agentkeys/broker.env", "OTHER=1\n")
	v, src, err := DeployedBrokerVar(root, "BROKER_OIDC_ISSUER")
	require.NoError(t, err)
	assert.Equal(t, "https://inline.example.org", v)
	assert.Equal(t, unit, src)
}

func TestSourceAdoptsOldCheckoutAndRefusesDirtyMove(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, _ := newEnv(t, s)
	old := env.Path("/home/ubuntu/agentKeys")
	require.NoError(t, os.MkdirAll(filepath.Dir(old), 0o755))
	sandboxtest.Git(t, filepath.Dir(old), "clone", "-q", repo.Bare, old)
	require.NoError(t, os.WriteFile(filepath.Join(old, "target-cache"), []byte("kept"), 0o644))
	res, err := Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"adopted /home/ubuntu/agentKeys as /home/agentkey/agentKeys"}, res.Changes)
	assert.NoDirExists(t, old)
	assert.Equal(t, "kept", read(t, env, "/home/agentkey/agentKeys/target-cache"), "adopted, not re-cloned")

	res, err = Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Empty(t, res.Changes)

	next := repo.Commit(t, "next")
	require.NoError(t, os.WriteFile(env.Path("/home/agentkey/agentKeys/build.sh"), []byte("true\n"), 0o644))
	_, err = Source{}.Run(context.Background(), env)
	assert.ErrorContains(t, err, "/home/agentkey/agentKeys has uncommitted changes; commit or stash them")
	sandboxtest.Git(t, env.Path("/home/agentkey/agentKeys"), "checkout", "--", "build.sh")
	res, err = Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"checked out main (" + next[:12] + ")"}, res.Changes)

	s.Source.Ref = "no-such-branch"
	_, err = Source{}.Run(context.Background(), env)
	assert.ErrorContains(t, err, `source.ref "no-such-branch" is not a branch or tag`)
}

func TestBuildSkipsWhenFingerprintUnchanged(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, sb := newEnv(t, s)
	_, err := Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	res, err := Build{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "wrote /usr/local/bin/agentkeys-broker-server")
	assert.Contains(t, res.Changes, "wrote /usr/local/bin/agentkeys-mock-server", "one binary for backend and signer")
	builds := func() int {
		calls, _ := sb.Calls()
		n := 0
		for _, c := range calls {
			if c.Op == "run" && c.Args[0] == "sh" {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 1, builds())
	res, err = Build{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Empty(t, res.Changes)
	assert.Equal(t, 1, builds(), "unchanged: not rebuilt")
	s.Build.Env = map[string]string{"CGO_ENABLED": "0"}
	_, err = Build{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, 2, builds(), "build env is part of the fingerprint")

	// A failing build keeps the last good fingerprint and binaries.
	fp := read(t, env, "/var/lib/agentkeys/hostagent/build.fingerprint")
	s.Build.Command = []string{"false"}
	_, err = Build{}.Run(context.Background(), env)
	assert.ErrorContains(t, err, "build failed (the installed binaries are unchanged)")
	assert.Equal(t, fp, read(t, env, "/var/lib/agentkeys/hostagent/build.fingerprint"))

	// Toolchain reclaim removes only the sandbox's /root toolchain.
	require.NoError(t, os.MkdirAll(env.Path("/root/.rustup/toolchains"), 0o755))
	s.Build.Command = []string{"sh", "build.sh"}
	s.Build.ReclaimToolchain = true
	res, err = Build{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"removed /root/.rustup"}, res.Changes)
	assert.NoDirExists(t, env.Path("/root/.rustup"))
}

// The cargo calls: the featureless packages together, each package with
// features alone (cargo drops a package's features when it shares a call),
// every call --locked.
func TestDefaultCargoCommands(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	s.Build.Command = nil
	assert.Equal(t, [][]string{
		{"cargo", "build", "--release", "--locked", "-p", "agentkeys-mock-server", "-p", "agentkeys-worker-audit", "-p", "agentkeys-worker-email",
			"-p", "agentkeys-worker-creds", "-p", "agentkeys-worker-memory", "-p", "agentkeys-worker-config", "-p", "agentkeys-worker-classify"},
		{"cargo", "build", "--release", "--locked", "-p", "agentkeys-broker-server", "--features", "auth-email-link", "--message-format=json"},
	}, Commands(s))
	s.Build.Sccache = true
	e, _ := BuildEnv(s)
	assert.Contains(t, e, "CARGO_INCREMENTAL=0")
}

// The features cargo reports for the broker's binary decide whether the
// build is good; other artifacts and non-JSON lines are ignored.
func TestReportedFeatures(t *testing.T) {
	out := []byte(`Compiling serde v1
{"reason":"compiler-artifact","target":{"name":"agentkeys-core","kind":["lib"]},"features":[]}
{"reason":"compiler-artifact","target":{"name":"agentkeys-broker-server","kind":["bin"]},"features":["audit-sqlite","auth-email-link","auth-wallet-sig"]}
{"reason":"build-finished","success":true}
`)
	got, built := reportedFeatures(out, "agentkeys-broker-server")
	assert.True(t, built)
	assert.Empty(t, missingFeatures([]string{"auth-email-link"}, got))
	got, built = reportedFeatures([]byte(`{"reason":"compiler-artifact","target":{"name":"agentkeys-broker-server","kind":["bin"]},"features":["auth-wallet-sig"]}`), "agentkeys-broker-server")
	assert.True(t, built)
	assert.Equal(t, []string{"auth-email-link"}, missingFeatures([]string{"auth-email-link"}, got))
	_, built = reportedFeatures([]byte(`{"reason":"build-finished","success":true}`), "agentkeys-broker-server")
	assert.False(t, built, "nothing rebuilt: the installed binary is trusted")
}

var scoreRe = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`)

// TestUnitsPassSystemdAnalyze runs systemd-analyze verify and security on
// every rendered unit and records each unit's exposure score.
func TestUnitsPassSystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal("systemd-analyze missing (AGENTKEYS_E2E=1); install systemd")
		}
		t.Skip("systemd-analyze not installed")
	}
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	root := t.TempDir()
	for i := range s.Services {
		svc := &s.Services[i]
		u := filepath.Join(root, UnitDir, svc.Unit)
		require.NoError(t, os.MkdirAll(filepath.Dir(u), 0o755))
		require.NoError(t, os.WriteFile(u, UnitFile(s, svc), 0o644))
		// verify checks ExecStart exists; EnvironmentFile is read at start only.
		bin := filepath.Join(root, svc.Install)
		require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
		require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	}
	// ExecStartPost runs the installed agent.
	agentBin := filepath.Join(root, spec.AgentPath)
	require.NoError(t, os.MkdirAll(filepath.Dir(agentBin), 0o755))
	require.NoError(t, os.WriteFile(agentBin, []byte("#!/bin/sh\n"), 0o755))
	// verify resolves the units' dependencies (sysinit.target, ...) under the root.
	sysdir := "/usr/lib/systemd/system"
	if _, err := os.Stat(sysdir); err != nil {
		sysdir = "/lib/systemd/system"
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	out, err := exec.Command("cp", "-a", sysdir, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, svc := range s.Services {
		unit := svc.Unit
		var out bytes.Buffer
		cmd := exec.Command("systemd-analyze", "verify", "--root="+root, "--man=no", filepath.Join(root, UnitDir, unit))
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		// Lines about the host's own units (outside our root) are not ours.
		var ours []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "agentkeys-") {
				ours = append(ours, l)
			}
		}
		assert.Empty(t, ours, "systemd-analyze verify %s", unit)
		if err != nil && len(ours) > 0 {
			t.Errorf("verify %s: %v", unit, err)
		}
		out.Reset()
		cmd = exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+root, "--no-pager", unit)
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run() // exits non-zero above its threshold; the score is what we judge
		m := scoreRe.FindStringSubmatch(out.String())
		require.NotNil(t, m, "no exposure score for %s:\n%s", unit, out.String())
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s exposure %.1f", unit, score)
		assert.Less(t, score, 5.0, "%s exposure", unit)
	}
}

// sshd -T's listen addresses, wildcards dialled on loopback.
func TestSSHDListenAddrs(t *testing.T) {
	out := "port 22\naddressfamily any\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\nlistenaddress 10.0.0.5:2222\n"
	assert.Equal(t, []string{"[::1]:22", "127.0.0.1:22", "10.0.0.5:2222"}, SSHDListenAddrs(out))
}
