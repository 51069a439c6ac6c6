package steps

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	jose "github.com/go-jose/go-jose/v4"
)

// Secrets writes the dev_key_service master secret once (never overwritten,
// never rotated: every derived wallet depends on it) and mints the broker's
// oidc and session ES256 keypairs once. The master secret is root:root 0600:
// only systemd reads it, to hand it to the signer (LoadCredential); the
// keypairs belong to the service user, for the broker. An existing file that
// does not parse is an error naming it; it is never replaced. Every secret
// minted (or found) is recorded with its sha256 in the root-only
// SecretsRecord: a recorded secret whose file is gone is an error (restore
// it from a backup), never a silent rotation, and so is one whose content no
// longer has the recorded sha256 (the service user, who owns the state
// dir, can replace the file with another well-formed secret).
type Secrets struct{}

func (Secrets) Name() string { return "secrets" }

// SecretsRecord is the host path of the record of minted secrets: secret
// path -> the sha256 of its content when it was minted or first found.
func SecretsRecord(s *spec.HostSpec) string {
	return path.Join(agent.AgentDir(s.StateDir), "secrets.json")
}

func (Secrets) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "secrets"}
	s := env.Spec
	o, err := serviceOwner(env, false)
	if err != nil {
		return res, err
	}
	rec, err := readSecretsRecord(env)
	if err != nil {
		return res, err
	}
	if _, err := env.EnsureDir(&res, KeysDir(s), 0o700, o); err != nil {
		return res, err
	}
	if err := ensureSecret(env, &res, rec, MasterSecretPath(s), mustRoot(env), newMasterSecret, checkMasterSecret); err != nil {
		return res, err
	}
	fsx.Fault("secrets:after-master-secret")
	for _, k := range []struct{ path, envVar, legacy string }{
		{OIDCKeyPath(s), "BROKER_OIDC_KEYPAIR_PATH", LegacyKeyDir + "/oidc-keypair.json"},
		{SessionKeyPath(s), "BROKER_SESSION_KEYPAIR_PATH", LegacyKeyDir + "/session-keypair.json"},
	} {
		// A host set up by the old scripts keeps its broker keys: the running
		// broker's key file is taken over, so JWKS and sessions survive.
		deployed, _, err := DeployedBrokerVar(env.Root, k.envVar)
		if err != nil {
			return res, err
		}
		if err := ensureSecret(env, &res, rec, k.path, o, newKeypair, checkKeypair, deployed, k.legacy); err != nil {
			return res, err
		}
	}
	return res, nil
}

// LegacyKeyDir is where the old scripts kept the broker keypairs (spec §0.2).
const LegacyKeyDir = "/home/ubuntu/.agentkeys/broker"

// adoptable returns the content of the first candidate that exists (and is
// not path itself); one that exists but does not parse is an error, never
// skipped for a fresh secret.
func adoptable(env *agent.Env, path string, check func([]byte) error, candidates []string) ([]byte, string, error) {
	for _, c := range candidates {
		if c == "" || c == path {
			continue
		}
		b, err := os.ReadFile(env.Path(c))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s would be adopted as %s but cannot be read: %w", c, path, err)
		}
		if err := check(b); err != nil {
			return nil, "", fmt.Errorf("%s would be adopted as %s but %v; fix or move it away and re-run", c, path, err)
		}
		return b, c, nil
	}
	return nil, "", nil
}

type secretsRecord map[string]string

func readSecretsRecord(env *agent.Env) (secretsRecord, error) {
	rec := secretsRecord{}
	p := SecretsRecord(env.Spec)
	found, err := fsx.ReadJSON(env.Root, p, &rec)
	if err != nil && !found {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s does not parse (%v): it records which secrets this host minted; restore it from a backup", p, err)
	}
	return rec, nil
}

// record adds path (with its content's hash) to the record of minted
// secrets. It is written after the secret, so a crash in between leaves a
// secret the next run records, never a record without its secret.
func record(env *agent.Env, res *agent.Result, rec secretsRecord, path string, data []byte) error {
	if _, ok := rec[path]; ok || env.DryRun {
		return nil
	}
	rec[path] = sha(data)
	if _, err := env.EnsureDir(nil, agent.AgentDir(env.Spec.StateDir), 0o700, mustRoot(env)); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := env.WriteFile(nil, SecretsRecord(env.Spec), append(b, '\n'), 0o600, mustRoot(env)); err != nil {
		return err
	}
	res.Changes = append(res.Changes, "recorded "+path+" in "+SecretsRecord(env.Spec))
	return nil
}

// ensureSecret makes sure path holds a valid secret: kept when present,
// else taken over from the first of adoptFrom that exists (left in place),
// else minted.
func ensureSecret(env *agent.Env, res *agent.Result, rec secretsRecord, path string, o ownerT, mint func() ([]byte, error), check func([]byte) error, adoptFrom ...string) error {
	b, err := os.ReadFile(env.Path(path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if sum, minted := rec[path]; minted {
			return fmt.Errorf("%s is missing, but this host minted it (sha256 %s, recorded in %s); it is never minted again, as a new one would be a silent rotation: restore it from a backup and re-run (only on a host with no wallets, keys or sessions to keep, delete its entry from %s to mint a new one)",
				path, sum, SecretsRecord(env.Spec), SecretsRecord(env.Spec))
		}
		data, from, err := adoptable(env, path, check, adoptFrom)
		if err != nil {
			return err
		}
		if env.DryRun {
			if from != "" {
				res.Changes = append(res.Changes, "would adopt "+path+" from "+from)
			} else {
				res.Changes = append(res.Changes, "would create "+path)
			}
			return nil
		}
		if from != "" {
			res.Changes = append(res.Changes, "adopted "+path+" from "+from)
		} else if data, err = mint(); err != nil {
			return err
		}
		if _, err := env.CreateOnce(res, path, data, 0o600, o); err != nil {
			return err
		}
		// A concurrent creator may have won: record what is there.
		if data, err = os.ReadFile(env.Path(path)); err != nil {
			return err
		}
		return record(env, res, rec, path, data)
	case err != nil:
		return err
	}
	if err := check(b); err != nil {
		return fmt.Errorf("%s exists but %v; it is never replaced automatically: restore it from a backup, or (only on a host with no wallets or sessions to keep) delete it and its entry in %s so a new one is minted", path, err, SecretsRecord(env.Spec))
	}
	// The file sits in a directory the service user can write: a
	// well-formed secret there is not necessarily the one this host minted.
	if sum, ok := rec[path]; ok && sum != sha(b) {
		return fmt.Errorf("%s was replaced: its sha256 is %s, but this host minted (or first found) the one with sha256 %s, recorded in %s; the agent does not use or record the new one: restore the recorded one from a backup and re-run (only on a host with no wallets, keys or sessions to keep, delete its entry from %s to record the file as it is now)",
			path, sha(b), sum, SecretsRecord(env.Spec), SecretsRecord(env.Spec))
	}
	if err := record(env, res, rec, path, b); err != nil {
		return err
	}
	// Mode and owner only: the bytes are kept as they are.
	return fixMode(env, res, path, o)
}

func fixMode(env *agent.Env, res *agent.Result, path string, o ownerT) error {
	b, err := os.ReadFile(env.Path(path))
	if err != nil {
		return err
	}
	d, err := fsx.Differs(env.Root, path, b, 0o600, o)
	if err != nil || !d {
		return err
	}
	if env.DryRun {
		res.Changes = append(res.Changes, "would fix mode/owner of "+path)
		return nil
	}
	p := env.Path(path)
	if err := os.Chmod(p, 0o600); err != nil {
		return err
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err := os.Lchown(p, o.UID, o.GID); err != nil {
			return err
		}
	}
	res.Changes = append(res.Changes, "fixed mode/owner of "+path)
	return nil
}

func newMasterSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b) + "\n"), nil
}

func checkMasterSecret(b []byte) error {
	s := strings.TrimSpace(string(b))
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 32 {
		return errors.New("is not 32 bytes of hex")
	}
	return nil
}

func newKeypair() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: k, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := jwk.Thumbprint(cryptoSHA256)
	if err != nil {
		return nil, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	b, err := json.MarshalIndent(jwk, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseKeypair reads a keypair file: a private P-256 JWK with a kid.
func ParseKeypair(b []byte) (*jose.JSONWebKey, error) {
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(b, &jwk); err != nil {
		return nil, fmt.Errorf("is not a JWK (%v)", err)
	}
	k, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("is not a private P-256 (ES256) key")
	}
	if jwk.KeyID == "" {
		return nil, errors.New("has no kid")
	}
	return &jwk, nil
}

func checkKeypair(b []byte) error {
	_, err := ParseKeypair(b)
	return err
}
