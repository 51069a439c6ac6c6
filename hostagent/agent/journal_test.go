package agent

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func TestJournalIntendDone(t *testing.T) {
	root := t.TempDir()
	env := &Env{Spec: &spec.HostSpec{StateDir: "/var/lib/agentkeys"}, Root: root, Sys: NewSandbox(root)}
	p := env.Path(JournalPath("/var/lib/agentkeys"))

	require.NoError(t, env.Intend(ActionDaemonReload, ActionRestart("a.service")))
	require.NoError(t, env.Intend(ActionRestart("a.service"), ActionReloadNginx))
	got, err := env.Pending()
	require.NoError(t, err)
	assert.Equal(t, []string{ActionDaemonReload, "restart:a.service", ActionReloadNginx}, got, "in order, once each")
	st, err := os.Stat(env.Path(AgentDir("/var/lib/agentkeys")))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	st, err = os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	unit, ok := RestartOf(got[1])
	assert.True(t, ok)
	assert.Equal(t, "a.service", unit)

	require.NoError(t, env.Done(ActionDaemonReload, "restart:a.service"))
	owed, err := env.IsPending(ActionReloadNginx)
	require.NoError(t, err)
	assert.True(t, owed)
	require.NoError(t, env.Done(ActionReloadNginx))
	assert.NoFileExists(t, p, "an empty journal is removed")

	// A dry run records nothing.
	env.DryRun = true
	require.NoError(t, env.Intend(ActionReloadSSHD))
	assert.NoFileExists(t, p)
	env.DryRun = false

	// A journal that does not parse is an error, never "nothing owed".
	require.NoError(t, os.WriteFile(p, []byte("{"), 0o600))
	_, err = env.Pending()
	assert.ErrorContains(t, err, "intent journal /var/lib/agentkeys/hostagent/pending.json does not parse")
}
