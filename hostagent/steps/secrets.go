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
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	jose "github.com/go-jose/go-jose/v4"
)

// Secrets writes the dev_key_service master secret once (never overwritten,
// never rotated: every derived wallet depends on it) and mints the broker's
// oidc and session ES256 keypairs once. An existing file that does not parse
// is an error naming it; it is never replaced.
type Secrets struct{}

func (Secrets) Name() string { return "secrets" }

func (Secrets) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "secrets"}
	s := env.Spec
	o, err := serviceOwner(env, false)
	if err != nil {
		return res, err
	}
	if _, err := env.EnsureDir(&res, KeysDir(s), 0o700, o); err != nil {
		return res, err
	}
	if err := ensureSecret(env, &res, MasterSecretPath(s), o, newMasterSecret, checkMasterSecret); err != nil {
		return res, err
	}
	fsx.Fault("secrets:after-master-secret")
	for _, p := range []string{OIDCKeyPath(s), SessionKeyPath(s)} {
		if err := ensureSecret(env, &res, p, o, newKeypair, checkKeypair); err != nil {
			return res, err
		}
	}
	return res, nil
}

func ensureSecret(env *agent.Env, res *agent.Result, path string, o ownerT, mint func() ([]byte, error), check func([]byte) error) error {
	b, err := os.ReadFile(env.Path(path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if env.DryRun {
			res.Changes = append(res.Changes, "would create "+path)
			return nil
		}
		data, err := mint()
		if err != nil {
			return err
		}
		_, err = env.CreateOnce(res, path, data, 0o600, o)
		return err
	case err != nil:
		return err
	}
	if err := check(b); err != nil {
		return fmt.Errorf("%s exists but %v; it is never replaced automatically: restore it from a backup, or (only on a host with no wallets or sessions to keep) delete it so a new one is minted", path, err)
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
