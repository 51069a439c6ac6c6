package steps

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func writeHostFile(t *testing.T, root, p string, b []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, p), b, 0o600))
}

func secretsEnv(t *testing.T) *agent.Env {
	t.Helper()
	env, _ := newEnv(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	_, err := Users{}.Run(context.Background(), env)
	require.NoError(t, err)
	return env
}

var (
	masterRe = regexp.MustCompile(`(?m)^DEV_KEY_SERVICE_MASTER_SECRET=([0-9a-f]{64})$`)
	kekRe    = regexp.MustCompile(`(?m)^AGENTKEYS_WORKER_KEK_HEX=([0-9a-f]{64})$`)
)

// A fresh host: every secret minted once, in the formats its readers load;
// a second run changes nothing.
func TestSecretsMintedOnceInTheBinariesFormats(t *testing.T) {
	env := secretsEnv(t)
	ctx := context.Background()
	res, err := Secrets{}.Run(ctx, env)
	require.NoError(t, err)
	joined := strings.Join(res.Changes, "\n")
	for _, want := range []string{
		"minted DEV_KEY_SERVICE_MASTER_SECRET in " + contract.MasterSecretFile,
		"minted AGENTKEYS_WORKER_KEK_HEX in /etc/agentkeys/worker-creds.env",
		"minted AGENTKEYS_MEMORY_KEK_HEX in /etc/agentkeys/worker-memory.env",
		"minted AGENTKEYS_CONFIG_KEK_HEX in /etc/agentkeys/worker-config.env",
		"minted the oidc keypair " + contract.OIDCKeypairPath,
		"minted the session keypair " + contract.SessionKeypairPath,
	} {
		assert.Contains(t, joined, want)
	}
	assert.NotContains(t, joined, "AGENTKEYS_CHANNEL_STS_TOKEN", "a carried-over secret is never minted")
	m := masterRe.FindStringSubmatch(read(t, env, contract.MasterSecretFile))
	require.NotNil(t, m)
	assert.NoError(t, contract.CheckMasterSecret(m[1]))
	k := kekRe.FindStringSubmatch(read(t, env, "/etc/agentkeys/worker-creds.env"))
	require.NotNil(t, k)
	assert.NoError(t, contract.CheckKEK(k[1]))
	for _, purpose := range []string{"oidc", "session"} {
		kp, _ := env.Spec.Keypair(purpose)
		p, err := contract.ParseKeypair(purpose, []byte(read(t, env, kp.Path)))
		require.NoError(t, err, "the broker's own loader format")
		assert.True(t, strings.HasPrefix(p.Kid, map[string]string{"oidc": "v1-", "session": "ak-session-"}[purpose]))
	}
	pub := read(t, env, contract.SessionPubPEMPath)
	assert.NoError(t, contract.CheckSPKIP256(pub))

	before := snapshot(t, env)
	res, err = Secrets{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Empty(t, res.Changes)
	assert.Equal(t, before, snapshot(t, env))
}

// snapshot reads every secret-bearing file of the spec.
func snapshot(t *testing.T, env *agent.Env) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sec := range env.Spec.Secrets {
		if b, err := os.ReadFile(env.Path(sec.File)); err == nil {
			out[sec.File] = string(b)
		}
	}
	for _, k := range env.Spec.Keypairs {
		out[k.Path] = read(t, env, k.Path)
	}
	return out
}

// The master secret and the KEK files are root's alone (systemd reads them
// before dropping privileges); the broker's keypairs are the service
// user's, and the exported public key is readable.
func TestSecretOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership needs root")
	}
	env := secretsEnv(t)
	svcUID, _, err := env.Sys.LookupUser(env.Spec.ServiceUser)
	require.NoError(t, err)
	require.NotZero(t, svcUID)
	owner := func(p string) (uint32, os.FileMode) {
		st, err := os.Stat(env.Path(p))
		require.NoError(t, err)
		return st.Sys().(*syscall.Stat_t).Uid, st.Mode().Perm()
	}
	// A host set up by the old scripts: the master secret is the service user's.
	writeHostFile(t, env.Root, contract.MasterSecretFile, []byte("DEV_KEY_SERVICE_MASTER_SECRET="+strings.Repeat("ab", 31)+"cd\n"))
	require.NoError(t, os.Chown(env.Path(contract.MasterSecretFile), svcUID, svcUID))
	res, err := Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "fixed mode/owner of "+contract.MasterSecretFile)
	uid, mode := owner(contract.MasterSecretFile)
	assert.Equal(t, uint32(0), uid)
	assert.Equal(t, os.FileMode(0o600), mode)
	uid, mode = owner("/etc/agentkeys/worker-memory.env")
	assert.Equal(t, uint32(0), uid)
	assert.Equal(t, os.FileMode(0o600), mode)
	for _, p := range []string{contract.OIDCKeypairPath, contract.SessionKeypairPath} {
		uid, mode := owner(p)
		assert.Equal(t, uint32(svcUID), uid, "%s is the broker's", p)
		assert.Equal(t, os.FileMode(0o600), mode)
	}
	uid, mode = owner(contract.SessionPubPEMPath)
	assert.Equal(t, uint32(svcUID), uid)
	assert.Equal(t, os.FileMode(0o644), mode)
	uid, mode = owner(contract.KeyDir)
	assert.Equal(t, uint32(svcUID), uid)
	assert.Equal(t, os.FileMode(0o700), mode)
	uid, mode = owner(SecretsRecord(env.Spec))
	assert.Equal(t, uint32(0), uid)
	assert.Equal(t, os.FileMode(0o600), mode)
}

// A present but malformed secret stops the step with an error naming the
// file; it is never replaced.
func TestMalformedSecretIsAnErrorNeverReplaced(t *testing.T) {
	cases := []struct {
		name, path, content, want string
	}{
		{"master secret not hex", contract.MasterSecretFile, "DEV_KEY_SERVICE_MASTER_SECRET=short\n", "DEV_KEY_SERVICE_MASTER_SECRET in /etc/agentkeys/dev-key-service.env is not valid hex"},
		{"master secret with 0X", contract.MasterSecretFile, "DEV_KEY_SERVICE_MASTER_SECRET=0X" + strings.Repeat("ab", 32) + "\n", "is not valid hex"},
		{"placeholder KEK", "/etc/agentkeys/worker-creds.env", "AGENTKEYS_WORKER_KEK_HEX=" + strings.Repeat("00", 32) + "\n", "AGENTKEYS_WORKER_KEK_HEX in /etc/agentkeys/worker-creds.env is one byte (0x00) repeated"},
		{"KEK with 0x", "/etc/agentkeys/worker-memory.env", "AGENTKEYS_MEMORY_KEK_HEX=0x" + strings.Repeat("ab", 31) + "cd\n", "is 66 characters"},
		{"JWK keypair", contract.OIDCKeypairPath, `{"kty":"EC","crv":"P-256","kid":"k","x":"a","y":"b","d":"c"}`, "the broker's oidc keypair " + contract.OIDCKeypairPath + ` has no "private_key_pem"`},
		{"empty keypair", contract.SessionKeypairPath, "{}", `has no "private_key_pem"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := secretsEnv(t)
			writeHostFile(t, env.Root, tc.path, []byte(tc.content))
			for _, dry := range []bool{true, false} {
				env.DryRun = dry
				_, err := Secrets{}.Run(context.Background(), env)
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				assert.Contains(t, err.Error(), "never replaced automatically")
				assert.Equal(t, tc.content, read(t, env, tc.path), "left as it is")
			}
		})
	}
	// A session keypair in the oidc format (no purpose) is refused, as the
	// broker's session loader refuses it.
	env := secretsEnv(t)
	b, err := contract.MintKeypair("oidc", time.Now())
	require.NoError(t, err)
	noPurpose := strings.Replace(string(b), ",\n  \"purpose\": \"oidc\"", "", 1)
	writeHostFile(t, env.Root, contract.SessionKeypairPath, []byte(noPurpose))
	_, err = Secrets{}.Run(context.Background(), env)
	assert.ErrorContains(t, err, `has no "purpose"`)
}

// A secret this host had is never minted again: a missing one is an error
// naming the backup to restore, in plan as in apply, and nothing is written.
func TestMissingSecretIsAnErrorNotARotation(t *testing.T) {
	for _, which := range []string{"master-secret", "kek-creds", "oidc", "session"} {
		t.Run(which, func(t *testing.T) {
			env := secretsEnv(t)
			ctx := context.Background()
			_, err := Secrets{}.Run(ctx, env)
			require.NoError(t, err)
			var p string
			if sec, ok := env.Spec.Secret(which); ok {
				p = sec.File
			} else {
				kp, _ := env.Spec.Keypair(which)
				p = kp.Path
			}
			orig := read(t, env, p)
			st, err := os.Stat(env.Path(p))
			require.NoError(t, err)
			require.NoError(t, os.Remove(env.Path(p)))
			for _, dry := range []bool{true, false} {
				env.DryRun = dry
				_, err = Secrets{}.Run(ctx, env)
				require.Error(t, err, "dry run %v", dry)
				assert.Contains(t, err.Error(), "is missing, but this host had it")
				assert.Contains(t, err.Error(), "restore it from a backup")
				assert.NoFileExists(t, env.Path(p), "not re-minted")
			}
			env.DryRun = false
			// Restored from the backup: converged, nothing else changes.
			writeHostFile(t, env.Root, p, []byte(orig))
			ids := st.Sys().(*syscall.Stat_t)
			require.NoError(t, os.Chown(env.Path(p), int(ids.Uid), int(ids.Gid)))
			require.NoError(t, os.Chmod(env.Path(p), st.Mode().Perm()))
			res, err := Secrets{}.Run(ctx, env)
			require.NoError(t, err)
			assert.Empty(t, res.Changes)
		})
	}
}

// A recorded secret replaced by another well-formed one is an error naming
// the recorded hash; the file and the record are left as they are.
func TestReplacedRecordedSecretIsAnError(t *testing.T) {
	env := secretsEnv(t)
	ctx := context.Background()
	_, err := Secrets{}.Run(ctx, env)
	require.NoError(t, err)
	rec := read(t, env, SecretsRecord(env.Spec))
	orig := read(t, env, "/etc/agentkeys/worker-config.env")
	other := kekRe.ReplaceAllString(orig, "")
	other = regexp.MustCompile(`(?m)^AGENTKEYS_CONFIG_KEK_HEX=.*$`).ReplaceAllString(other, "AGENTKEYS_CONFIG_KEK_HEX="+strings.Repeat("12", 31)+"34")
	writeHostFile(t, env.Root, "/etc/agentkeys/worker-config.env", []byte(other))
	for _, dry := range []bool{true, false} {
		env.DryRun = dry
		_, err = Secrets{}.Run(ctx, env)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "AGENTKEYS_CONFIG_KEK_HEX in /etc/agentkeys/worker-config.env was replaced")
		assert.Equal(t, rec, read(t, env, SecretsRecord(env.Spec)))
	}
	env.DryRun = false
	_, err = SecretValues(env)
	assert.ErrorContains(t, err, "was replaced", "the units step refuses to render it either")
	writeHostFile(t, env.Root, "/etc/agentkeys/worker-config.env", []byte(orig))
	res, err := Secrets{}.Run(ctx, env)
	require.NoError(t, err)
	assert.Empty(t, res.Changes)
}

// The keypairs of a broker the old default ran from the ubuntu user's HOME
// (or a path its unit names) are taken over byte for byte.
func TestSecretsAdoptTheOldBrokerKeys(t *testing.T) {
	env := secretsEnv(t)
	oidc, err := contract.MintKeypair("oidc", time.Now())
	require.NoError(t, err)
	session, err := contract.MintKeypair("session", time.Now())
	require.NoError(t, err)
	writeHostFile(t, env.Root, UnitDir+"/"+BrokerUnit, []byte("[Service]\nEnvironment=BROKER_OIDC_ISSUER="+env.Spec.Issuer+"\nEnvironment=BROKER_OIDC_KEYPAIR_PATH=/srv/keys/oidc.json\n"))
	writeHostFile(t, env.Root, "/srv/keys/oidc.json", oidc)
	writeHostFile(t, env.Root, LegacyKeyDir+"/session-keypair.json", session)

	env.DryRun = true
	res, err := Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "would adopt "+contract.OIDCKeypairPath+" from /srv/keys/oidc.json")
	assert.NoFileExists(t, env.Path(contract.OIDCKeypairPath), "plan changes nothing")
	env.DryRun = false

	res, err = Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Contains(t, res.Changes, "adopted "+contract.SessionKeypairPath+" from "+LegacyKeyDir+"/session-keypair.json")
	assert.Equal(t, string(oidc), read(t, env, contract.OIDCKeypairPath))
	assert.Equal(t, string(session), read(t, env, contract.SessionKeypairPath))
	assert.FileExists(t, env.Path("/srv/keys/oidc.json"), "the old key stays where it was")

	// A broken old key is an error, never a reason to mint a fresh one.
	env2 := secretsEnv(t)
	writeHostFile(t, env2.Root, LegacyKeyDir+"/oidc-keypair.json", []byte("{not json"))
	_, err = Secrets{}.Run(context.Background(), env2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), LegacyKeyDir+"/oidc-keypair.json would be adopted as "+contract.OIDCKeypairPath)
	assert.NoFileExists(t, env2.Path(contract.OIDCKeypairPath))
}

// The env file of a service carries its secret over whatever else changes.
func TestEnvFileCarriesSecrets(t *testing.T) {
	env := secretsEnv(t)
	_, err := Secrets{}.Run(context.Background(), env)
	require.NoError(t, err)
	vals, err := SecretValues(env)
	require.NoError(t, err)
	svc := env.Spec.Service("creds")
	b, err := EnvFile(env.Spec, svc, vals)
	require.NoError(t, err)
	m, err := agent.EnvMap(b)
	require.NoError(t, err)
	assert.Equal(t, vals["kek-creds"], m["AGENTKEYS_WORKER_KEK_HEX"])
	delete(vals, "kek-creds")
	_, err = EnvFile(env.Spec, svc, vals)
	assert.ErrorContains(t, err, "needs secret kek-creds")
	b, err = EnvFile(env.Spec, env.Spec.Broker(), vals)
	require.NoError(t, err, "no channel token on this host: nothing to carry")
	assert.NotContains(t, string(b), "CHANNEL")
	_ = spec.Version
}
