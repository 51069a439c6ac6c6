package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

var agentBin string

// TestMain builds the agent once; the tests run it as a separate process so
// that a fault can kill it like a real crash.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hostagent-bin")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "agentkeys-hostagent")
	out, err := exec.Command("go", "build", "-o", agentBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	code           int
	killed         bool
	stdout, stderr string
}

func runAgent(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(agentBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := runResult{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		r.killed = ws.Signaled()
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBadInputExits2AndChangesNothing(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	good := sandboxtest.Spec(t, repo)
	enc := func(mut func(m map[string]any)) string {
		b, _ := good.Encode()
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		mut(m)
		b, _ = json.Marshal(m)
		p := filepath.Join(t.TempDir(), "spec.json")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	svc := func(m map[string]any, i int) map[string]any { return m["services"].([]any)[i].(map[string]any) }
	malformed := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(malformed, []byte(`{"version": 1,`), 0o644))
	cases := []struct {
		name, spec, want string
		extra            []string
	}{
		{"missing spec", "/nonexistent/host-spec.json", "host spec /nonexistent/host-spec.json: open", nil},
		{"malformed spec", malformed, "host spec: unexpected EOF", nil},
		{"unknown field", enc(func(m map[string]any) { m["brokerHostname"] = "x" }), `unknown field "brokerHostname"`, nil},
		{"issuer of another stack", enc(func(m map[string]any) { m["issuer"] = "https://broker-test-3.example.org" }),
			"host spec field issuer: https://broker-test-3.example.org is the issuer of stack test-3, not of stack test-2", nil},
		{"port clash", enc(func(m map[string]any) { svc(m, 1)["port"] = svc(m, 0)["port"] }), "clashes with services[0].port (broker)", nil},
		{"hostname outside zone", enc(func(m map[string]any) { svc(m, 1)["hostname"] = "signer.example.com" }),
			`host spec field services[1].hostname: "signer.example.com" is outside zone example.org`, nil},
		{"unknown step", sandboxtest.WriteSpec(t, good), `unknown step "nginxx"`, []string{"--only", "nginxx"}},
		{"unknown flag", sandboxtest.WriteSpec(t, good), "unknown flag: --sepc", []string{"--sepc", "x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			r := runAgent(t, nil, append([]string{"apply", "--spec", c.spec, "--root", root}, c.extra...)...)
			assert.Equal(t, 2, r.code, "stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, c.want)
			ents, _ := os.ReadDir(root)
			assert.Empty(t, ents, "nothing changed under the root")
		})
	}
}

// snapshot maps every converged file under root to its mode and content
// hash, leaving out what legitimately differs between two hosts: random
// secrets (compared separately), the checkout, and the sandbox's runtime.
var secretLine = regexp.MustCompile(`(?m)^(DEV_KEY_SERVICE_MASTER_SECRET|AGENTKEYS_\w+_KEK_HEX)=.*$`)

func snapshot(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	// nginx's applied record hashes configs that name the sandbox root.
	// The record of secrets, the keypairs, the public key and the units'
	// record (it hashes their env files) hold or follow random secrets,
	// compared on their own; secret lines are redacted below.
	skip := []string{"run/", "var/log/", "home/", "var/lib/agentkeys/.agentkeys/", "etc/agentkeys/broker-cap-pubkey.env",
		"var/lib/agentkeys/hostagent/nginx-applied.json", "var/lib/agentkeys/hostagent/secrets.json", "var/lib/agentkeys/hostagent/units.json"}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if strings.HasPrefix(rel+"/", s) || strings.HasPrefix(rel, s) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, _ := d.Info()
		if d.IsDir() {
			out[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		// Sandbox nginx configs name paths under their root.
		b = bytes.ReplaceAll(b, []byte(root), []byte("<root>"))
		b = secretLine.ReplaceAll(b, []byte("$1=<secret>"))
		h := sha256.Sum256(b)
		out[rel] = info.Mode().String() + " " + hex.EncodeToString(h[:8])
		return nil
	}))
	return out
}

// secrets reads every secret of s under root, keyed as the agent's record
// keys them: a keypair by its path (its bytes), a value by file#VAR.
func secrets(s *spec.HostSpec, root string) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keypairs {
		if b, err := os.ReadFile(fsx.HostPath(root, k.Path)); err == nil {
			out[k.Path] = string(b)
		}
	}
	for _, sec := range s.Secrets {
		b, err := os.ReadFile(fsx.HostPath(root, sec.File))
		if err != nil {
			continue
		}
		if m, err := agent.EnvMap(b); err == nil && m[sec.Var] != "" {
			out[sec.File+"#"+sec.Var] = m[sec.Var]
		}
	}
	return out
}

func apply(t *testing.T, specPath, root string, env ...string) (runResult, *agent.Summary) {
	t.Helper()
	r := runAgent(t, env, "apply", "--spec", specPath, "--root", root, "--json", "--skip", "certificates")
	var sum agent.Summary
	if !r.killed && r.code == 0 {
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	}
	return r, &sum
}

func assertNoop(t *testing.T, sum *agent.Summary) {
	t.Helper()
	for _, s := range sum.Steps {
		if s.Step == "certificates" {
			continue // --skip: covered by the e2e tests with a real CA
		}
		assert.Equal(t, agent.OK, s.Status, "%s: %v", s.Step, s.Changes)
	}
	assert.Equal(t, agent.Counters{}, sum.Counters, "second apply writes, restarts, reloads and orders nothing")
}

// calls returns the sandbox's recorded calls from the n-th on, as
// "op arg..." lines.
func calls(t *testing.T, root string, from int) []string {
	t.Helper()
	cs, err := agent.NewSandbox(root).Calls()
	require.NoError(t, err)
	var out []string
	for _, c := range cs[from:] {
		out = append(out, strings.TrimSpace(c.Op+" "+strings.Join(c.Args, " ")))
	}
	return out
}

func ncalls(t *testing.T, root string) int {
	t.Helper()
	cs, err := agent.NewSandbox(root).Calls()
	require.NoError(t, err)
	return len(cs)
}

// TestCrashSafety converges one root without interruption and another while
// killing the agent at several points, then requires the same converged
// state, secrets that never changed once written, and a no-op second apply.
// A kill between writing files and the reload or restart they call for
// must leave it owed to the next run, which writes nothing, yet carries it
// out: sshd and nginx reloaded, systemd reloaded before the units restart
// on their new definition and environment.
func TestCrashSafety(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	specPath := sandboxtest.WriteSpec(t, s)

	rootA := t.TempDir()
	t.Cleanup(agent.NewSandbox(rootA).StopAll)
	r, sum := apply(t, specPath, rootA)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"identity", "packages", "users", "source", "build", "secrets", "units", "nginx", "certificates", "health"}, stepNames(sum))
	assert.Greater(t, sum.Counters.FilesWritten, 10)
	for _, h := range sum.Health {
		assert.True(t, h.OK, h.URL)
	}
	start := time.Now()
	r, sum = apply(t, specPath, rootA)
	noop := time.Since(start)
	require.Equal(t, 0, r.code, r.stderr)
	assertNoop(t, sum)
	t.Logf("no-op apply (process wall time, %d services): %v; counters %+v", len(s.Services), noop, sum.Counters)
	want := snapshot(t, rootA)
	agent.NewSandbox(rootA).StopAll() // free the ports for root B

	rootB := t.TempDir()
	t.Cleanup(agent.NewSandbox(rootB).StopAll)
	kept := map[string]string{}
	// owes names the call the run after a kill at a fault point must make.
	owes := map[string]string{"users:before-sshd-reload": "systemctl reload ssh", "nginx:before-reload": "nginx reload"}
	crash := func(specPath string, faults ...string) {
		t.Helper()
		var owed string
		for _, f := range faults {
			before := ncalls(t, rootB)
			r, _ := apply(t, specPath, rootB, fsx.FaultEnv+"="+f)
			require.True(t, r.killed, "fault %s not reached (exit %d): %s", f, r.code, r.stderr)
			if owed != "" {
				assert.Contains(t, calls(t, rootB, before), owed, "the run after the kill owes %q", owed)
			}
			owed = owes[f]
			for p, b := range secrets(s, rootB) {
				if old, ok := kept[p]; ok {
					require.Equal(t, old, b, "%s changed after the crash at %s", p, f)
				}
				kept[p] = b
			}
		}
		if owed != "" {
			before := ncalls(t, rootB)
			r, sum := apply(t, specPath, rootB)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, calls(t, rootB, before), owed, "the run after the last kill owes %q", owed)
			for _, st := range sum.Steps {
				for _, c := range st.Changes {
					assert.False(t, strings.HasPrefix(c, "wrote /etc/"), "the recovery rewrote a converged file: %s", c)
				}
			}
		}
	}
	crash(specPath, "before-rename:1", "users:before-sshd-reload", "source:after-clone", "build:after-build", "secrets:after-values",
		"before-rename:2", "units:before-restart", "units:before-restart:2", "nginx:before-reload")
	assert.Len(t, kept, 6, "all secrets were written during the crashing runs: master secret, three KEKs, two keypairs")
	r, sum = apply(t, specPath, rootB)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, kept, secrets(s, rootB), "secrets unchanged byte for byte by the recovery")
	assert.Equal(t, want, snapshot(t, rootB), "converged state after crashes equals an uninterrupted run")
	var rec map[string]string
	require.NoError(t, json.Unmarshal([]byte(readRoot(t, rootB, "/var/lib/agentkeys/hostagent/secrets.json")), &rec))
	for p, b := range kept {
		h := sha256.Sum256([]byte(b))
		assert.Equal(t, hex.EncodeToString(h[:]), rec[p], "%s recorded", p)
	}
	r, sum = apply(t, specPath, rootB)
	require.Equal(t, 0, r.code, r.stderr)
	assertNoop(t, sum)

	// A change of unit definitions, env files and vhosts, killed after the
	// files are written and before systemd (then nginx) is reloaded.
	s.Service("audit").Args = []string{"--flush-interval-secs", "60"} // audit's unit changes
	s.Broker().Env["BROKER_OIDC_JWT_TTL_SECONDS"] = "600"             // broker's env file changes
	s.Nginx.HTTPPort++                                                // every vhost changes
	spec2 := sandboxtest.WriteSpec(t, s)
	crash(spec2, "units:before-daemon-reload", "nginx:before-reload")
	sb := agent.NewSandbox(rootB)
	for _, svc := range s.Services {
		unit := svc.Unit
		loaded, err := sb.Loaded(unit)
		require.NoError(t, err)
		assert.Equal(t, readRoot(t, rootB, "/etc/systemd/system/"+unit), string(loaded), "systemd runs %s's unit file", unit)
	}
	cmdline, err := sb.Cmdline(s.Service("audit").Unit)
	require.NoError(t, err)
	assert.True(t, slices.Contains(cmdline, "--flush-interval-secs"), "audit runs its new definition")
	environ, err := sb.Environ(s.Broker().Unit)
	require.NoError(t, err)
	assert.Contains(t, environ, "BROKER_OIDC_JWT_TTL_SECONDS=600", "broker runs its new env file")
	assert.NoFileExists(t, fsx.HostPath(rootB, agent.JournalPath("/var/lib/agentkeys")), "nothing owed")
	r, sum = apply(t, spec2, rootB)
	require.Equal(t, 0, r.code, r.stderr)
	assertNoop(t, sum)
}

func readRoot(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(fsx.HostPath(root, p))
	require.NoError(t, err)
	return string(b)
}

func stepNames(sum *agent.Summary) []string {
	var out []string
	for _, s := range sum.Steps {
		out = append(out, s.Step)
	}
	return out
}

func TestPlanStatusVersion(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	specPath := sandboxtest.WriteSpec(t, sandboxtest.Spec(t, repo))
	root := t.TempDir()
	r := runAgent(t, nil, "plan", "--spec", specPath, "--root", root)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "users: changed\n  would create user agentkeys\n")
	assert.Contains(t, r.stdout, "health: skipped: plan does not probe services\n")
	ents, _ := os.ReadDir(root)
	assert.Empty(t, ents, "plan changed nothing")

	r = runAgent(t, nil, "status", "--spec", specPath, "--root", root)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "deployed: none (no broker unit)\n")

	r = runAgent(t, nil, "version")
	assert.Equal(t, "agentkeys-hostagent dev\n", r.stdout)

	// --only runs identity first, then the one step.
	t.Cleanup(agent.NewSandbox(root).StopAll)
	r = runAgent(t, nil, "apply", "--spec", specPath, "--root", root, "--only", "users")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "identity: ok\nusers: changed\n", firstLines(r.stdout, 2))
	assert.NoDirExists(t, filepath.Join(root, "home/agentkey/agentKeys"), "source did not run")
}

func firstLines(s string, n int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "")
}

// The packages step runs first, alone with --only, and can be left out
// with --skip; the sandbox installs nothing and says so.
func TestPackagesStepOnlyAndSkip(t *testing.T) {
	specPath := sandboxtest.WriteSpec(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	root := t.TempDir()
	r := runAgent(t, nil, "plan", "--spec", specPath, "--root", root)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "identity: ok\npackages: ok\nusers: changed\n", firstLines(r.stdout, 3))
	r = runAgent(t, nil, "plan", "--spec", specPath, "--root", root, "--skip", "packages")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "identity: ok\npackages: skipped: --skip\n", firstLines(r.stdout, 2))

	r = runAgent(t, nil, "apply", "--spec", specPath, "--root", root, "--only", "packages", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var sum agent.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	assert.Equal(t, []string{"identity", "packages"}, stepNames(&sum))
	assert.Equal(t, agent.OK, sum.Steps[1].Status)
	assert.Equal(t, "skipped: "+agent.SandboxNoPackages, sum.Steps[1].Detail["nginx"])
	assert.Equal(t, []string{"install-package nginx", "install-package git", "install-package curl", "install-package ca-certificates",
		"install-package build-essential", "install-package pkg-config", "install-package libssl-dev"}, calls(t, root, 0))
}

// The rendered host stays inspectable without a build: --only
// users,secrets,units,nginx writes, under a sandbox root, every env file,
// unit, site and key the agent manages; the units whose binaries are not
// installed are not started, and the run says so.
func TestRenderWithoutABuild(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	specPath := sandboxtest.WriteSpec(t, s)
	root := t.TempDir()
	t.Cleanup(agent.NewSandbox(root).StopAll)
	r := runAgent(t, nil, "apply", "--spec", specPath, "--root", root, "--only", "users,secrets,units,nginx", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var sum agent.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	assert.Equal(t, []string{"identity", "users", "secrets", "units", "nginx"}, stepNames(&sum))
	assert.Contains(t, sum.Steps[3].Reason, "9 units not started: their binaries are not installed (run the build step)")
	var want []string
	for _, svc := range s.Services {
		want = append(want, contract.UnitPath(svc.Unit))
		if svc.EnvFile != "" {
			want = append(want, svc.EnvFile)
		}
		if svc.Site != "" {
			want = append(want, "/etc/nginx/sites-available/"+svc.Site)
		}
	}
	want = append(want, contract.MasterSecretFile, contract.PubKeyEnvFile, contract.OIDCKeypairPath, contract.SessionKeypairPath, contract.SessionPubPEMPath)
	for _, p := range want {
		assert.FileExists(t, fsx.HostPath(root, p))
	}
	assert.Len(t, want, 9+7+8+5, "units, env files (the backend and signer have none), sites, secrets and keys")
}
