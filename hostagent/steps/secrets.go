package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Secrets makes sure every secret of the spec exists once and is never
// rotated: the dev_key_service master secret (its own file), the workers'
// KEKs (a line of their env files), the broker's oidc and session keypairs
// (in the broker's own file format) and the session public key its
// consumers load. What a host already has is adopted byte for byte,
// including a host set up by the old scripts (same paths) and keypairs the
// old default placed under /home/ubuntu; what is missing is minted. A
// secret present but malformed is an error naming its file, never replaced.
// Every secret is recorded with its sha256 in the root-only SecretsRecord:
// a recorded secret that disappears or changes is an error (restore it from
// a backup), never a silent rotation.
type Secrets struct{}

func (Secrets) Name() string { return "secrets" }

// SecretsRecord is the host path of the record of secrets: key -> sha256.
// Keys are a keypair's path, or "<file>#<VAR>" for a secret value.
func SecretsRecord(s *spec.HostSpec) string {
	return path.Join(agent.AgentDir(s.StateDir), "secrets.json")
}

// LegacyKeyDir is where the old default placed the broker keypairs (the
// broker run from the ubuntu user's HOME).
const LegacyKeyDir = "/home/ubuntu/.agentkeys/broker"

func secretKey(sec spec.Secret) string { return sec.File + "#" + sec.Var }

type secretsRecord map[string]string

func readSecretsRecord(env *agent.Env) (secretsRecord, error) {
	rec := secretsRecord{}
	p := SecretsRecord(env.Spec)
	found, err := fsx.ReadJSON(env.Root, p, &rec)
	if err != nil && !found {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s does not parse (%v): it records which secrets this host has; restore it from a backup", p, err)
	}
	return rec, nil
}

func (rec secretsRecord) save(env *agent.Env, res *agent.Result, key, sum string) error {
	if rec[key] == sum || env.DryRun {
		return nil
	}
	rec[key] = sum
	if _, err := env.EnsureDir(nil, agent.AgentDir(env.Spec.StateDir), 0o700, mustRoot(env)); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := env.WriteFile(nil, SecretsRecord(env.Spec), append(b, '\n'), 0o600, mustRoot(env)); err != nil {
		return err
	}
	res.Changes = append(res.Changes, "recorded "+key+" in "+SecretsRecord(env.Spec))
	return nil
}

func (rec secretsRecord) missing(env *agent.Env, key, what string) error {
	if sum, ok := rec[key]; ok {
		return fmt.Errorf("%s is missing, but this host had it (sha256 %s, recorded in %s); it is never created again, as a new one would be a silent rotation: restore it from a backup and re-run (only on a host with no wallets, stored credentials or sessions to keep, delete its entry from %s)",
			what, sum, SecretsRecord(env.Spec), SecretsRecord(env.Spec))
	}
	return nil
}

func (rec secretsRecord) changed(env *agent.Env, key, what, sum string) error {
	if old, ok := rec[key]; ok && old != sum {
		return fmt.Errorf("%s was replaced: its sha256 is %s, but this host's is %s (recorded in %s); the agent does not use or record the new one: restore the recorded one from a backup and re-run (only if the new one is wanted and nothing depends on the old, delete its entry from %s)",
			what, sum, old, SecretsRecord(env.Spec), SecretsRecord(env.Spec))
	}
	return nil
}

// readVar returns the value of name in the env file at p ("", false when
// the file or the line is absent).
func readVar(env *agent.Env, p, name string) (string, bool, error) {
	b, err := os.ReadFile(env.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	m, err := agent.EnvMap(b)
	if err != nil {
		return "", false, fmt.Errorf("%s does not parse as an environment file (%v); it holds a secret, so the agent will not rewrite it: fix it by hand", p, err)
	}
	v, ok := m[name]
	return v, ok, nil
}

// SecretValues reads every secret's current value from its home, checked
// against its format and the record. A minted secret that is missing is an
// error (run the secrets step); a carried-over one is simply absent.
func SecretValues(env *agent.Env) (map[string]string, error) {
	rec, err := readSecretsRecord(env)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, sec := range env.Spec.Secrets {
		v, ok, err := readVar(env, sec.File, sec.Var)
		if err != nil {
			return nil, err
		}
		what := sec.Var + " in " + sec.File
		if !ok {
			if err := rec.missing(env, secretKey(sec), what); err != nil {
				return nil, err
			}
			if sec.Kind == string(contract.Minted) && !env.DryRun {
				return nil, fmt.Errorf("%s is not on the host; run the secrets step first", what)
			}
			continue
		}
		if err := contract.SecretFormat(sec.Format).Check(v); err != nil {
			return nil, fmt.Errorf("%s %v; it is never replaced automatically: restore it from a backup", what, err)
		}
		if err := rec.changed(env, secretKey(sec), what, sha([]byte(v))); err != nil {
			return nil, err
		}
		out[sec.ID] = v
	}
	return out, nil
}

func (Secrets) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "secrets"}
	s := env.Spec
	svcUser, err := serviceOwner(env, false)
	if err != nil {
		return res, err
	}
	rec, err := readSecretsRecord(env)
	if err != nil {
		return res, err
	}
	for _, d := range s.Dirs {
		if _, err := env.EnsureDir(&res, d.Path, fs.FileMode(d.Mode), svcUser); err != nil {
			return res, err
		}
	}
	for _, sec := range s.Secrets {
		if err := ensureSecret(env, &res, rec, sec); err != nil {
			return res, err
		}
	}
	fsx.Fault("secrets:after-values")
	for _, k := range s.Keypairs {
		if err := ensureKeypair(env, &res, rec, k, svcUser); err != nil {
			return res, err
		}
	}
	return res, ensurePublicKey(env, &res, svcUser)
}

func ensureSecret(env *agent.Env, res *agent.Result, rec secretsRecord, sec spec.Secret) error {
	what := sec.Var + " in " + sec.File
	key := secretKey(sec)
	v, ok, err := readVar(env, sec.File, sec.Var)
	if err != nil {
		return err
	}
	root := mustRoot(env)
	if ok {
		if err := contract.SecretFormat(sec.Format).Check(v); err != nil {
			return fmt.Errorf("%s %v; it is never replaced automatically: restore it from a backup, or (only on a host with nothing encrypted or derived from it) delete the line and its entry in %s so a new one is minted",
				what, err, SecretsRecord(env.Spec))
		}
		sum := sha([]byte(v))
		if err := rec.changed(env, key, what, sum); err != nil {
			return err
		}
		if err := rec.save(env, res, key, sum); err != nil {
			return err
		}
		if sec.Own {
			return fixMode(env, res, sec.File, 0o600, root)
		}
		return nil
	}
	if err := rec.missing(env, key, what); err != nil {
		return err
	}
	switch {
	case sec.Kind == string(contract.CarriedOver):
		// Carried over from the running broker's environment (a unit the
		// old scripts wrote), when it has one; never minted.
		v, src, err := DeployedBrokerVar(env.Root, sec.Var)
		if err != nil || v == "" || src == sec.File {
			return err
		}
		if err := contract.SecretFormat(sec.Format).Check(v); err != nil {
			return fmt.Errorf("%s (carried over from %s) %v", sec.Var, src, err)
		}
		res.Changes = append(res.Changes, "carried "+sec.Var+" over from "+src)
	default:
		if v, err = mintHex(); err != nil {
			return err
		}
		res.Changes = append(res.Changes, "minted "+what)
	}
	if env.DryRun {
		res.Changes[len(res.Changes)-1] = "would " + res.Changes[len(res.Changes)-1]
		return nil
	}
	if err := upsertVar(env, res, sec, v); err != nil {
		return err
	}
	return rec.save(env, res, key, sha([]byte(v)))
}

// upsertVar adds the secret's line to its file, keeping what is there.
func upsertVar(env *agent.Env, res *agent.Result, sec spec.Secret, v string) error {
	cur, err := os.ReadFile(env.Path(sec.File))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var b strings.Builder
	if len(cur) == 0 {
		fmt.Fprintf(&b, "# %s (stack %s). Never regenerate: what was derived or\n# encrypted with it would be lost.\n", agent.ManagedMarker, env.Spec.Stack)
	} else {
		b.Write(cur)
		if !strings.HasSuffix(string(cur), "\n") {
			b.WriteString("\n")
		}
	}
	b.WriteString(sec.Var + "=" + agent.QuoteEnv(v) + "\n")
	if _, err := env.Backup(res, sec.File, false); err != nil {
		return err
	}
	// The mode never widens: systemd reads it as root.
	_, err = env.WriteFile(res, sec.File, []byte(b.String()), 0o600, mustRoot(env))
	return err
}

func mintHex() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func ensureKeypair(env *agent.Env, res *agent.Result, rec secretsRecord, k spec.Keypair, o ownerT) error {
	check := func(b []byte) error { _, err := contract.ParseKeypair(k.Purpose, b); return err }
	b, err := os.ReadFile(env.Path(k.Path))
	switch {
	case err == nil:
		if err := check(b); err != nil {
			return fmt.Errorf("the broker's %s keypair %s %v; the broker would not boot (BOOT_FAIL), and it is never replaced automatically: restore it from a backup, or (only on a host with no sessions or federated tokens to keep) delete it and its entry in %s so a new one is minted",
				k.Purpose, k.Path, err, SecretsRecord(env.Spec))
		}
		if err := rec.changed(env, k.Path, k.Path, sha(b)); err != nil {
			return err
		}
		if err := rec.save(env, res, k.Path, sha(b)); err != nil {
			return err
		}
		return fixMode(env, res, k.Path, 0o600, o)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := rec.missing(env, k.Path, k.Path); err != nil {
		return err
	}
	// A broker the old scripts ran keeps its keys: the running unit's
	// configured path, then the old HOME default.
	var candidates []string
	envVar := map[string]string{"oidc": contract.VarOIDCKeypairPath, "session": contract.VarSessionKeypairPath}[k.Purpose]
	if p, _, err := DeployedBrokerVar(env.Root, envVar); err != nil {
		return err
	} else if p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, path.Join(LegacyKeyDir, k.Purpose+"-keypair.json"))
	data, from, err := adoptable(env, k.Path, check, candidates)
	if err != nil {
		return err
	}
	if env.DryRun {
		if from != "" {
			res.Changes = append(res.Changes, "would adopt "+k.Path+" from "+from)
		} else {
			res.Changes = append(res.Changes, "would mint the "+k.Purpose+" keypair "+k.Path)
		}
		return nil
	}
	if from != "" {
		res.Changes = append(res.Changes, "adopted "+k.Path+" from "+from)
	} else if data, err = contract.MintKeypair(k.Purpose, time.Now()); err != nil {
		return err
	} else {
		res.Changes = append(res.Changes, "minted the "+k.Purpose+" keypair "+k.Path)
	}
	if _, err := env.CreateOnce(res, k.Path, data, 0o600, o); err != nil {
		return err
	}
	// A concurrent creator may have won: record what is there.
	if data, err = os.ReadFile(env.Path(k.Path)); err != nil {
		return err
	}
	return rec.save(env, res, k.Path, sha(data))
}

// ensurePublicKey exports the session public key where the signer loads it
// and as BROKER_CAP_PUBKEY_PEM for the workers, before any of them starts
// (the broker rewrites the same bytes at each boot).
func ensurePublicKey(env *agent.Env, res *agent.Result, o ownerT) error {
	s := env.Spec
	k, ok := s.Keypair("session")
	if !ok {
		return nil
	}
	b, err := os.ReadFile(env.Path(k.Path))
	if errors.Is(err, fs.ErrNotExist) && env.DryRun {
		res.Changes = append(res.Changes, "would export the session public key to "+k.PublicPEM+" and "+s.PubKeyEnv)
		return nil
	}
	if err != nil {
		return err
	}
	kp, err := contract.ParseKeypair("session", b)
	if err != nil {
		return fmt.Errorf("%s: %v", k.Path, err)
	}
	pub, err := contract.PublicPEM(&kp.Key.PublicKey)
	if err != nil {
		return err
	}
	if k.PublicPEM != "" {
		// Same key already there (in any encoding): leave the broker's copy.
		cur, err := os.ReadFile(env.Path(k.PublicPEM))
		same := false
		if err == nil {
			if ck, err := contract.ParseSPKIP256(cur); err == nil && ck.Equal(&kp.Key.PublicKey) {
				same = true
			}
		}
		if !same {
			if _, err := env.WriteFile(res, k.PublicPEM, pub, 0o644, o); err != nil {
				return err
			}
		} else if err := fixMode(env, res, k.PublicPEM, 0o644, o); err != nil {
			return err
		}
	}
	if s.PubKeyEnv != "" {
		eb := agent.RenderEnv(header(s)+"\nThe broker session public key (SPKI PEM): the cap-token key the workers verify.",
			map[string]string{contract.VarCapPubKey: string(pub)})
		if _, err := env.WriteManaged(res, s.PubKeyEnv, eb, 0o644, mustRoot(env)); err != nil {
			return err
		}
	}
	return nil
}

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

func fixMode(env *agent.Env, res *agent.Result, p string, mode fs.FileMode, o ownerT) error {
	b, err := os.ReadFile(env.Path(p))
	if err != nil {
		return err
	}
	d, err := fsx.Differs(env.Root, p, b, mode, o)
	if err != nil || !d {
		return err
	}
	if env.DryRun {
		res.Changes = append(res.Changes, "would fix mode/owner of "+p)
		return nil
	}
	hp := env.Path(p)
	if err := os.Chmod(hp, mode); err != nil {
		return err
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err := os.Lchown(hp, o.UID, o.GID); err != nil {
			return err
		}
	}
	res.Changes = append(res.Changes, "fixed mode/owner of "+p)
	return nil
}
