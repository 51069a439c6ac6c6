package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// runWithNginx is runAll with the nginx step (its calls only recorded: the
// sandbox has no nginx.conf).
func runWithNginx(t *testing.T, env *agent.Env) *agent.Summary {
	t.Helper()
	guard, list := Core(&nginx.Step{ListenAddr: "127.0.0.1"})
	env.Counters, env.Report = &agent.Counters{}, &agent.Report{}
	sum, err := (&agent.Runner{Guard: guard, Steps: list}).Run(context.Background(), env)
	require.NoError(t, err)
	return sum
}

// treeHashes maps every file and link under root (but the sandbox's own
// bookkeeping) to a hash of its content or target.
func treeHashes(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "run" || rel == "var/log" {
			return filepath.SkipDir
		}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "-> " + l
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			out[rel] = info.Mode().String() + " " + hex.EncodeToString(h[:])
		}
		return nil
	}))
	return out
}

// A host the setup script built, its services running, is taken over: plan
// lists what it adopts and retires and changes nothing; apply keeps every
// secret byte for byte, backs up every file of the script's it replaces,
// replaces the script's units in place (the old processes are gone, no port
// is held twice) and the services answer their health paths afterwards.
func TestTakeoverOfAScriptBuiltHost(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, sb := newEnv(t, s)
	ctx := context.Background()
	host := sandboxtest.WriteScriptHost(t, env.Root, s, sandboxtest.Standin(t))
	// The hosted MCP setup-mcp-host.sh installs: left untouched, reported.
	mcp := "[Service]\nExecStart=/usr/local/bin/agentkeys-mcp-server\nEnvironmentFile=/etc/agentkeys/mcp.env\n"
	writeHostFile(t, env.Root, contract.UnitPath("agentkeys-mcp-server.service"), []byte(mcp))
	_, err := Users{}.Run(ctx, env) // the script created the same users
	require.NoError(t, err)
	// The old public key export, as the script's broker leaves it.
	b, err := os.ReadFile(env.Path(contract.SessionKeypairPath))
	require.NoError(t, err)
	kp, err := contract.ParseKeypair("session", b)
	require.NoError(t, err)
	pub, err := contract.PublicPEM(&kp.Key.PublicKey)
	require.NoError(t, err)
	writeHostFile(t, env.Root, contract.SessionPubPEMPath, pub)
	require.NoError(t, sb.Systemctl(ctx, "start", sandboxtest.ScriptUnits...))
	oldPIDs := map[string]int{}
	for _, u := range sandboxtest.ScriptUnits {
		on, err := sb.IsActive(ctx, u)
		require.NoError(t, err)
		require.True(t, on, "the script's %s runs before the takeover", u)
		oldPIDs[u] = sb.PID(u)
	}

	// Plan: what it would adopt and retire; nothing changes.
	before := treeHashes(t, env.Root)
	env.DryRun = true
	sum := runWithNginx(t, env)
	env.DryRun = false
	assert.Equal(t, before, treeHashes(t, env.Root), "plan changes nothing")
	planned := strings.Join(append(stepResult(t, sum, "units").Changes, stepResult(t, sum, "secrets").Changes...), "\n")
	for _, want := range []string{
		"would back up /etc/systemd/system/agentkeys-broker.service to /var/lib/agentkeys/hostagent/retired/etc/systemd/system/agentkeys-broker.service (not written by the agent)",
		"would back up /etc/agentkeys/worker-creds.env to",
		"would back up /etc/agentkeys/broker.env to",
		"would restart agentkeys-broker.service",
	} {
		assert.Contains(t, planned, want)
	}
	assert.NotContains(t, planned, "minted", "nothing the script left is minted anew")
	assert.NotContains(t, planned, "would mint")

	// Apply.
	sum = runWithNginx(t, env)
	health := stepResult(t, sum, "health")
	assert.Equal(t, agent.OK, health.Status, "%s %v", health.Reason, sum.Health)

	// Every secret byte for byte.
	after := map[string]string{}
	for k := range host.Secrets {
		if file, v, ok := strings.Cut(k, "#"); ok {
			m, err := agent.EnvMap([]byte(read(t, env, file)))
			require.NoError(t, err)
			require.Contains(t, m, v, "%s still holds %s", file, v)
			after[k] = sha([]byte(m[v]))
			continue
		}
		after[k] = sha([]byte(read(t, env, k)))
	}
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var table strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&table, "%-72s %s %s\n", k, host.Secrets[k][:16], after[k][:16])
	}
	t.Logf("takeover secrets (sha256 before, after):\n%s", table.String())
	assert.Equal(t, host.Secrets, after, "every secret kept byte for byte")
	assert.Len(t, after, 6, "master secret, three KEKs, two keypairs")

	// The script's files are backed up, the old broker.env's static key too.
	for _, f := range []string{"/etc/agentkeys/broker.env", "/etc/agentkeys/worker-creds.env", "/etc/systemd/system/agentkeys-worker-creds.service",
		"/etc/nginx/sites-available/agentkeys-broker"} {
		bak := filepath.Join(agent.RetiredDir(s.StateDir), f)
		assert.FileExists(t, env.Path(bak), "%s backed up", f)
	}
	assert.Contains(t, read(t, env, filepath.Join(agent.RetiredDir(s.StateDir), "/etc/agentkeys/broker.env")), "DAEMON_SECRET_ACCESS_KEY=")
	assert.Contains(t, read(t, env, "/etc/agentkeys/broker.env"), "BROKER_OIDC_ISSUER="+s.Issuer)
	assert.Contains(t, read(t, env, contract.MasterSecretFile), "# Generated by setup-broker-host.sh", "the master secret's own file is never rewritten")

	// The units are the agent's now; the script's processes are gone.
	for _, u := range sandboxtest.ScriptUnits {
		assert.Contains(t, read(t, env, contract.UnitPath(u)), agent.ManagedMarker)
		on, err := sb.IsActive(ctx, u)
		require.NoError(t, err)
		assert.True(t, on, u)
		assert.NotEqual(t, oldPIDs[u], sb.PID(u), "%s was restarted on its new definition", u)
	}
	for _, svc := range s.Services {
		on, err := sb.IsActive(ctx, svc.Unit)
		require.NoError(t, err)
		assert.True(t, on, "%s runs", svc.Unit)
	}

	assert.Equal(t, mcp, read(t, env, contract.UnitPath("agentkeys-mcp-server.service")), "the hosted MCP's unit is untouched")
	assert.Contains(t, stepResult(t, sum, "units").Detail["unmanaged"], "agentkeys-mcp-server.service (not managed by the agent; left untouched)")

	// The script's sites are the agent's, enabled by the agent's links.
	l, err := os.Readlink(env.Path("/etc/nginx/sites-enabled/agentkeys-broker"))
	require.NoError(t, err)
	assert.Equal(t, "../sites-available/agentkeys-broker", l)
	assert.Contains(t, read(t, env, "/etc/nginx/sites-available/agentkeys-broker"), agent.ManagedMarker)

	// And the next run is a no-op.
	sum = runWithNginx(t, env)
	for _, r := range sum.Steps {
		assert.Equal(t, agent.OK, r.Status, "%s: %v", r.Step, r.Changes)
	}
	assert.Equal(t, agent.Counters{}, sum.Counters)
}

// A secret the script left that is malformed stops the takeover before
// anything is written: the error names the file, and the file is kept.
func TestTakeoverRefusesAMalformedScriptSecret(t *testing.T) {
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, _ := newEnv(t, s)
	sandboxtest.WriteScriptHost(t, env.Root, s, sandboxtest.Standin(t))
	_, err := Users{}.Run(context.Background(), env)
	require.NoError(t, err)
	bad := strings.Replace(read(t, env, "/etc/agentkeys/worker-memory.env"), "AGENTKEYS_MEMORY_KEK_HEX=", "AGENTKEYS_MEMORY_KEK_HEX=0x", 1)
	writeHostFile(t, env.Root, "/etc/agentkeys/worker-memory.env", []byte(bad))
	guard, list := Core()
	_, err = (&agent.Runner{Guard: guard, Steps: list}).Run(context.Background(), env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AGENTKEYS_MEMORY_KEK_HEX in /etc/agentkeys/worker-memory.env is 66 characters")
	assert.Equal(t, bad, read(t, env, "/etc/agentkeys/worker-memory.env"))
	assert.NoFileExists(t, env.Path(agent.RetiredDir(s.StateDir)+"/etc/agentkeys/worker-memory.env"))
}
