package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/registration"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
)

// AccountDir is where the ACME account lives, under the spec's stateDir.
// Losing it is how hosts hit the CA's rate limits, so it is kept, 0600.
func AccountDir(stateDir string) string { return path.Join(stateDir, "acme") }

// user is the ACME account: one key, one registration URL per directory.
type user struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *user) GetEmail() string                       { return u.email }
func (u *user) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer           { return u.key }

var _ registration.User = (*user)(nil)

// accounts maps an ACME directory URL to this key's account URL there.
type accounts map[string]string

// loadUser reads the account key (creating it once) and the registration for
// dir. A key file that exists but does not parse is an error, never replaced.
func loadUser(env *agent.Env, res *agent.Result, dir, email string) (*user, accounts, error) {
	kp := path.Join(AccountDir(env.Spec.StateDir), "account.key")
	owner, err := env.Owner("", "")
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(env.Path(kp))
	if errors.Is(err, fs.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, nil, err
		}
		if _, err := env.CreateOnce(res, kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, owner); err != nil {
			return nil, nil, err
		}
		b, err = os.ReadFile(env.Path(kp))
		if err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		return nil, nil, err
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("ACME account key %s: %w; restore it from a backup, or move it away to register a new account", env.Path(kp), err)
	}
	accs := accounts{}
	ap := path.Join(AccountDir(env.Spec.StateDir), "accounts.json")
	if b, err := os.ReadFile(env.Path(ap)); err == nil {
		if err := json.Unmarshal(b, &accs); err != nil {
			return nil, nil, fmt.Errorf("ACME account file %s: %w; move it away to re-register the same key", env.Path(ap), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	u := &user{email: email, key: key}
	if loc := accs[dir]; loc != "" {
		u.reg = &acme.ExtendedAccount{Location: loc}
	}
	return u, accs, nil
}

func saveAccounts(env *agent.Env, res *agent.Result, accs accounts) error {
	owner, err := env.Owner("", "")
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(accs, "", "  ")
	if err != nil {
		return err
	}
	_, err = env.WriteFile(res, path.Join(AccountDir(env.Spec.StateDir), "accounts.json"), append(b, '\n'), 0o600, owner)
	return err
}

// register makes sure u has an account at the client's directory.
func register(ctx context.Context, r *registration.Registrar, u *user) (string, error) {
	acc, err := r.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		return "", fmt.Errorf("ACME account registration: %w", err)
	}
	if acc.Location == "" {
		return "", errors.New("ACME account registration returned no account URL")
	}
	return acc.Location, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}
