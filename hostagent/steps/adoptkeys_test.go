package steps

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

func writeHostFile(t *testing.T, root, p string, b []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, p), b, 0o600))
}

// A host set up by the old scripts keeps its broker keys: the key file the
// running broker names (or the old default) is taken over byte for byte and
// left in place, so JWKS and sessions survive the move to the agent.
func TestSecretsAdoptTheOldBrokerKeys(t *testing.T) {
	env, _ := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	_, err := Users{}.Run(context.Background(), env)
	require.NoError(t, err)
	oidc, err := newKeypair()
	require.NoError(t, err)
	session, err := newKeypair()
	require.NoError(t, err)
	// The deployed broker names a custom oidc key file; the session key sits
	// at the old default.
	writeHostFile(t, env.Root, UnitDir+"/"+BrokerUnit, []byte("[Service]\nEnvironmentFile=/etc/agentkeys/broker.env\n"))
	writeHostFile(t, env.Root, "/etc/agentkeys/broker.env", []byte("BROKER_OIDC_ISSUER="+env.Spec.Issuer+"\nBROKER_OIDC_KEYPAIR_PATH=/srv/keys/oidc.json\n"))
	writeHostFile(t, env.Root, "/srv/keys/oidc.json", oidc)
	writeHostFile(t, env.Root, LegacyKeyDir+"/session-keypair.json", session)

	env.DryRun = true
	res, err := Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "would adopt "+OIDCKeyPath(env.Spec)+" from /srv/keys/oidc.json")
	assert.NoFileExists(t, env.Path(OIDCKeyPath(env.Spec)), "plan changes nothing")
	env.DryRun = false

	res, err = Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "adopted "+OIDCKeyPath(env.Spec)+" from /srv/keys/oidc.json")
	assert.Contains(t, res.Changes, "adopted "+SessionKeyPath(env.Spec)+" from "+LegacyKeyDir+"/session-keypair.json")
	assert.Equal(t, string(oidc), read(t, env, OIDCKeyPath(env.Spec)))
	assert.Equal(t, string(session), read(t, env, SessionKeyPath(env.Spec)))
	assert.FileExists(t, env.Path("/srv/keys/oidc.json"), "the old key stays where it was")

	// A broken old key is an error, never a reason to mint a fresh one.
	env2, _ := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	_, err = Users{}.Run(context.Background(), env2)
	require.NoError(t, err)
	writeHostFile(t, env2.Root, LegacyKeyDir+"/oidc-keypair.json", []byte("{not json"))
	_, err = Secrets{}.Run(context.Background(), env2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), LegacyKeyDir+"/oidc-keypair.json would be adopted as "+OIDCKeyPath(env2.Spec))
	assert.NoFileExists(t, env2.Path(OIDCKeyPath(env2.Spec)))
}
