package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/program"
)

// hostagentRootEnv is the agent's sandbox test hook (see the agent's
// testhook.go); sshd's SetEnv sets it and the test sudoers keeps it.
const hostagentRootEnv = "AGENTKEYS_HOSTAGENT_ROOT"

// elsewhere is what the test DNS answers for every name: not this host.
const elsewhere = "198.51.100.7"

const sshUser = "deployer"

// nsTool finds name where the host namespace and sudo's secure_path see it
// (not /usr/local/bin, which the namespace replaces), or in root's rustup dir.
func nsTool(name string) string {
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/root/.cargo/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// requireTools skips (or, under AGENTKEYS_E2E=1, fails) when a real
// component is missing.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (mount and network namespaces, sshd)")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		missing = append(missing, "/usr/sbin/sshd (openssh-server)")
	}
	// Looked up where the namespace sees them: /usr/local/bin is a test dir there.
	for _, n := range []string{"sudo", "unshare", "ip", "mount", "git", "nginx"} {
		if nsTool(n) == "" {
			missing = append(missing, n)
		}
	}
	if nsTool("cargo") == "" {
		missing = append(missing, "cargo (in a system bin directory or /root/.cargo/bin, where the agent finds it under sudo)")
	}
	if len(missing) == 0 {
		if out, err := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
			missing = append(missing, "permission to create namespaces (unshare: "+strings.TrimSpace(string(out))+")")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing for the SSH bring-up test: " + strings.Join(missing, ", ") + " (install: .ci/install.d/ssh-e2e.sh)"
	if os.Getenv("AGENTKEYS_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// fixture is one host with the loopback DNS and an AgentKeys repository.
type fixture struct {
	h    *host
	dns  *dnsServer
	bare string
}

func newFixture(t *testing.T) *fixture {
	return newFixtureAt(t, elsewhere)
}

// newFixtureAt is a fixture whose DNS answers a for every name.
func newFixtureAt(t *testing.T, a string) *fixture {
	requireTools(t)
	// The program builds the static agent itself, as `pulumi up` does.
	t.Setenv(program.AgentBinaryEnv, "")
	f := &fixture{h: startHost(t, sshUser), dns: &dnsServer{A: a}, bare: newRepo(t)}
	startDNS(t, f.h.NetNS, "127.0.0.1:53", f.dns)
	return f
}

func (f *fixture) config(t *testing.T, stack string) map[string]string {
	return stackConfig(t, stack, map[string]string{
		"sshPrivateKey": f.h.UserKey, "sshUser": f.h.User, "sshHostKey": f.h.HostKey,
		"agentkeysRepo": "file://" + f.bare, "dnsResolver": "127.0.0.1:53",
	})
}

func summaryOf(t *testing.T, r result) agent.Summary {
	t.Helper()
	var s agent.Summary
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatalf("the apply's stdout is not the agent's JSON summary: %v\nstdout: %s\nstderr: %s", err, tail(r.Stdout, 2000), tail(r.Stderr, 4000))
	}
	return s
}

func mustSucceed(t *testing.T, rs []result) result {
	t.Helper()
	for _, r := range rs {
		if r.Err != nil {
			t.Fatalf("declared step %s failed: %v\nstdout: %s\nstderr: %s", r.Name, r.Err, tail(r.Stdout, 2000), tail(r.Stderr, 6000))
		}
	}
	return rs[len(rs)-1]
}

func stepStatus(s agent.Summary) map[string]agent.Result {
	m := map[string]agent.Result{}
	for _, r := range s.Steps {
		m[r.Step] = r
	}
	return m
}

func TestDeclaredBringUpOverSSH(t *testing.T) {
	f := newFixture(t)
	vals := f.config(t, "test-2")
	cfg, err := config.Parse("test-2", vals)
	require.NoError(t, err)
	n := cfg.Names()
	_, machineHadAgentkeys := os.Stat("/etc/agentkeys")

	steps := bringUpSteps(t, declare(t, "test-2", vals, ""))
	require.Len(t, steps, 3, "stage, copy the agent, apply")
	stageDir := components.StageDir(sshUser, "test-2")
	assert.Equal(t, components.StageScript(stageDir), steps[0].Script, "the stage command comes first")
	assert.True(t, steps[1].isCopy() && steps[1].Path == stageDir+"/agentkeys-hostagent", "then the agent copy: %+v", steps[1].Path)
	apply := steps[2]
	assert.Equal(t, components.ApplyScript(stageDir), apply.Script)
	assert.Contains(t, apply.Script, "sudo -n /usr/local/bin/agentkeys-hostagent apply --spec /etc/agentkeys/hostspec.json --json")
	for _, s := range steps {
		assert.Equal(t, connection{Host: hostAddr, Port: 22, User: sshUser, PrivateKey: f.h.UserKey, HostKey: f.h.HostKey}, s.Conn,
			"%s: declared connection (EIP, port 22, user, key, pinned host key)", s.Name)
	}
	sp := declaredSpec(t, steps)
	pushWorkspace(t, f.bare, sp)

	start := time.Now()
	rs := replay(t, f.h, steps, 10*time.Minute)
	total := time.Since(start)
	first := mustSucceed(t, rs)
	t.Logf("ssh_converge_s: %.2f (apply command; copies and all: %.2f)", first.Took.Seconds(), total.Seconds())
	sum := summaryOf(t, first)

	// What the declared commands did, and as whom.
	st := stepStatus(sum)
	for _, name := range []string{"identity", "users", "source", "build", "secrets", "units", "nginx", "certificates", "health"} {
		require.Contains(t, st, name, "step %s reported", name)
		assert.NotEqual(t, agent.Failed, st[name].Status, "step %s: %s", name, st[name].Reason)
	}
	for _, name := range []string{"source", "build", "secrets", "units", "nginx"} {
		assert.Equal(t, agent.Changed, st[name].Status, "a cold host: %s changes", name)
	}
	assert.Equal(t, agent.Skipped, st["certificates"].Status)
	assert.Contains(t, st["certificates"].Reason, elsewhere, "certificates skipped because DNS points elsewhere")
	for _, hn := range n.TLSHostnames() {
		assert.Contains(t, sum.Hosts.Skipped[hn], "resolves to "+elsewhere, "%s skipped with the DNS reason", hn)
	}
	assert.Empty(t, sum.Hosts.Issued)
	assert.NotEmpty(t, f.dns.Queries(), "the agent asked the configured resolver")
	require.Len(t, sum.Health, len(sp.Services)+2, "every service, OIDC discovery and JWKS")
	for name, hc := range sum.Health {
		assert.True(t, hc.OK, "health %s (%s): %s", name, hc.URL, hc.Detail)
	}
	assert.Equal(t, n.Issuer, sum.Issuer)
	assert.Zero(t, sum.Counters.ACMEOrders)
	assert.Positive(t, sum.Counters.FilesWritten)

	agentBin := steps[1].Content
	installed, err := os.ReadFile(filepath.Join(f.h.Bin, "agentkeys-hostagent"))
	require.NoError(t, err)
	assert.Equal(t, agentBin, installed, "the declared agent binary is what sudo installed")
	assertOwnerMode(t, filepath.Join(f.h.Bin, "agentkeys-hostagent"), 0, 0o755)
	specFile := filepath.Join(f.h.Etc, "agentkeys", "hostspec.json")
	assertOwnerMode(t, specFile, 0, 0o600)
	for _, p := range []string{stageDir, stageDir + "/agentkeys-hostagent", stageDir + "/hostspec.json"} {
		assertOwnerMode(t, filepath.Join(f.h.Home, strings.TrimPrefix(p, "/home/")), testUID, -1)
	}
	assert.FileExists(t, filepath.Join(f.h.Root, "etc/systemd/system/agentkeys-broker.service"), "the agent converged the sandbox root named by sshd's SetEnv")
	checkout := filepath.Join(f.h.Root, sp.Source.Dir)
	assert.Empty(t, git(t, checkout, "-c", "safe.directory=*", "status", "--porcelain"), "the build leaves the checkout clean")
	units := agent.NewSandbox(f.h.Root).Units()
	assert.Len(t, units, len(sp.Services), "running sandbox services: %v", units)
	_, machineHasAgentkeys := os.Stat("/etc/agentkeys")
	assert.Equal(t, machineHadAgentkeys == nil, machineHasAgentkeys == nil, "the machine's /etc is untouched")

	// The summary, through the program's parsers, gives the stack outputs.
	h := components.ParseHealth(first.Stdout)
	assert.False(t, h.BrokerTLS)
	assert.Contains(t, h.Reason, "no certificate for "+n.BrokerHost+": "+n.BrokerHost+" resolves to "+elsewhere)
	states := components.HostnameStates(n)(first.Stdout)
	assert.Equal(t, "dns-only", states[n.MCPHost])
	for _, hn := range n.TLSHostnames() {
		assert.True(t, strings.HasPrefix(states[hn], "http-only: "+hn+" resolves to "+elsewhere), "%s: %s", hn, states[hn])
	}
	outs := declare(t, "test-2", vals, first.Stdout).Outputs
	assert.Equal(t, "pending: "+h.Reason, outs["hostBringUp"].Value)
	hostnames, _ := json.Marshal(outs["hostnames"].Value)
	want, _ := json.Marshal(states)
	assert.JSONEq(t, string(want), string(hostnames), "stack output hostnames")
	assert.True(t, strings.HasPrefix(outs["federation"].Value.(string), "pending:"), "federation waits for TLS: %v", outs["federation"].Value)

	// The same declared commands again: a no-op.
	rs = replay(t, f.h, steps, 5*time.Minute)
	again := mustSucceed(t, rs)
	t.Logf("ssh_noop_rerun_s: %.2f", again.Took.Seconds())
	sum2 := summaryOf(t, again)
	for _, r := range sum2.Steps {
		if r.Step == "certificates" {
			assert.Equal(t, agent.Skipped, r.Status)
			assert.Equal(t, st["certificates"].Reason, r.Reason, "same skip reason")
			continue
		}
		assert.Equal(t, agent.OK, r.Status, "re-run: step %s %s %v", r.Step, r.Reason, r.Changes)
	}
	assert.Equal(t, agent.Counters{}, sum2.Counters, "re-run writes, restarts, reloads and orders nothing")

	t.Run("sudo keeps the sandbox root only because the test sudoers says so", func(t *testing.T) {
		probe := remoteStep{Name: "probe", Conn: steps[0].Conn,
			Script: "printenv " + hostagentRootEnv + "; sudo -n printenv " + hostagentRootEnv + " || echo dropped"}
		r := replay(t, f.h, []remoteStep{probe}, time.Minute)[0]
		require.NoError(t, r.Err, r.Stderr)
		assert.Equal(t, f.h.Root+"\n"+f.h.Root+"\n", r.Stdout)
		sudoers := filepath.Join(f.h.Etc, "sudoers")
		orig, err := os.ReadFile(sudoers)
		require.NoError(t, err)
		t.Cleanup(func() { os.WriteFile(sudoers, orig, 0o440) })
		var kept []string
		for _, l := range strings.Split(string(orig), "\n") {
			if !strings.Contains(l, "env_keep") {
				kept = append(kept, l)
			}
		}
		require.NoError(t, os.WriteFile(sudoers, []byte(strings.Join(kept, "\n")), 0o440))
		r = replay(t, f.h, []remoteStep{probe}, time.Minute)[0]
		require.NoError(t, r.Err, r.Stderr)
		assert.Equal(t, f.h.Root+"\ndropped\n", r.Stdout, "env_reset drops it without env_keep")
	})

	t.Run("a copy into a missing directory fails, as the provider's sftp copy does", func(t *testing.T) {
		probe := remoteStep{Name: "probe-copy", Conn: steps[1].Conn, Path: "/home/" + sshUser + "/no-such-dir/agent", Content: []byte("x")}
		r := replay(t, f.h, []remoteStep{probe}, time.Minute)[0]
		require.Error(t, r.Err)
		assert.Contains(t, r.Err.Error(), "failed to create remote file")
	})

	t.Run("a host key that does not match is refused", func(t *testing.T) {
		other, otherPub := ed25519Key(t, "other")
		_ = other
		wrong := f.config(t, "test-2")
		wrong["agentkeys:sshHostKey"] = strings.TrimSpace(string(marshalAuthorized(otherPub)))
		ws := bringUpSteps(t, declare(t, "test-2", wrong, ""))
		rs := replay(t, f.h, ws[:1], time.Minute)
		require.Error(t, rs[0].Err)
		assert.Contains(t, rs[0].Err.Error(), "host key mismatch")
	})
}

func TestCrossWiredStackIsRefusedOverSSH(t *testing.T) {
	f := newFixture(t)
	prodVals := f.config(t, "prod")
	prod := bringUpSteps(t, declare(t, "prod", prodVals, ""))
	pushWorkspace(t, f.bare, declaredSpec(t, prod))
	first := mustSucceed(t, replay(t, f.h, prod, 10*time.Minute))
	t.Logf("ssh_converge_prod_s: %.2f", first.Took.Seconds())
	sum := summaryOf(t, first)
	for name, hc := range sum.Health {
		require.True(t, hc.OK, "prod health %s: %s", name, hc.Detail)
	}
	before := snapshot(t, f.h.Root)
	prodSpec, err := os.ReadFile(filepath.Join(f.h.Etc, "agentkeys", "hostspec.json"))
	require.NoError(t, err)

	// test-2's declared commands against the prod host.
	test2 := bringUpSteps(t, declare(t, "test-2", f.config(t, "test-2"), ""))
	rs := replay(t, f.h, test2, 5*time.Minute)
	last := rs[len(rs)-1]
	require.Len(t, rs, len(test2), "the copies succeed; the apply runs")
	require.Error(t, last.Err, "the apply must fail")
	assert.Equal(t, 2, exitStatus(last.Err), "bad input: exit 2")
	assert.Contains(t, last.Stderr, "cross-wiring: this host serves https://broker.")
	assert.Empty(t, strings.TrimSpace(last.Stdout), "the staged identity check stopped the script before the apply")

	after := snapshot(t, f.h.Root)
	assert.Equal(t, before, after, "nothing in the converged host changed")
	for _, d := range diff(before, after) {
		t.Errorf("changed: %s", d)
	}
	// The staged agent refused before the install: the prod host keeps its spec and binary.
	now, err := os.ReadFile(filepath.Join(f.h.Etc, "agentkeys", "hostspec.json"))
	require.NoError(t, err)
	assert.Equal(t, string(prodSpec), string(now), "/etc/agentkeys/hostspec.json still holds prod's spec")
}

// entry is one path of a tree snapshot.
type entry struct {
	Mode fs.FileMode
	Hash string // regular file: sha256; symlink: its target
}

func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.Hash = hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Hash, _ = os.Readlink(p)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = e
		return nil
	})
	require.NoError(t, err)
	return out
}

func diff(a, b map[string]entry) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "removed "+k)
		} else if v != w {
			out = append(out, "modified "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	sort.Strings(out)
	return out
}
