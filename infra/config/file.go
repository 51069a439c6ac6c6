package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentkeys/agentkeys-infra/policy"
)

// Encrypted stands in for a `secure:` value that only the Pulumi CLI can
// decrypt; offline tools see that the key is set, never its value.
const Encrypted = "[secret: encrypted in the stack file]"

// Raw is a stack file's config as Pulumi hands it to a program.
type Raw struct {
	Values     map[string]string // "agentkeys:accountId" -> value; objects as JSON
	SecretKeys []string          // keys whose value is secret
	// SecretsProvider is the file's secretsprovider ("" = the backend's default).
	SecretsProvider string
}

// ReadStackFile reads Pulumi.<stack>.yaml from projectDir.
func ReadStackFile(projectDir, stack string) (*Raw, error) {
	path := filepath.Join(projectDir, "Pulumi."+stack+".yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("stack %s: %s does not exist; %s", stack, path, NewStackAdvice(stack))
		}
		return nil, err
	}
	var doc struct {
		SecretsProvider string               `yaml:"secretsprovider"`
		Config          map[string]yaml.Node `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	raw := &Raw{Values: map[string]string{}, SecretsProvider: doc.SecretsProvider}
	for k, n := range doc.Config {
		if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "secure" {
			raw.Values[k] = Encrypted
			raw.SecretKeys = append(raw.SecretKeys, k)
			continue
		}
		if n.Kind == yaml.ScalarNode {
			raw.Values[k] = n.Value
			continue
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s: config key %s: %w", path, k, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: config key %s: %w", path, k, err)
		}
		raw.Values[k] = string(j)
	}
	sort.Strings(raw.SecretKeys)
	if problems := PlainSecrets(stack, raw.Values, raw.SecretKeys); len(problems) > 0 {
		return nil, fmt.Errorf("%s: %w", path, &Error{Problems: problems})
	}
	return raw, nil
}

// SecretOnly lists the keys whose value must be a Pulumi secret (`secure:` in
// the stack file): a plain value would sit in git and in the state unencrypted.
var SecretOnly = []string{Namespace + ":sshPrivateKey"}

// PlainSecrets reports every SecretOnly key of values that is set but not
// among secretKeys, naming the key and the command that stores it encrypted.
// The value itself is never printed.
func PlainSecrets(stack string, values map[string]string, secretKeys []string) []string {
	secret := map[string]bool{}
	for _, k := range secretKeys {
		secret[k] = true
	}
	var out []string
	for _, k := range SecretOnly {
		if v, ok := values[k]; !ok || strings.TrimSpace(v) == "" || secret[k] {
			continue
		}
		out = append(out, fmt.Sprintf("stack %s: config key %s is set in plain text but must be a secret: remove the plain value (pulumi config rm %s --stack %s) and store it encrypted with `pulumi config set --secret %s < key.pem` (add --stack %s)",
			stack, k, k, stack, k, stack))
	}
	return out
}

// Validate parses r for stack like Parse and also rejects a SecretOnly key
// that r does not mark secret. The program and the offline plan call it.
func (r *Raw) Validate(stack string) (*Config, error) {
	plain := PlainSecrets(stack, r.Values, r.SecretKeys)
	c, err := Parse(stack, r.Values)
	if len(plain) == 0 {
		return c, err
	}
	var ce *Error
	if err == nil {
		return nil, &Error{Problems: plain}
	}
	if errors.As(err, &ce) {
		return nil, &Error{Problems: append(plain, ce.Problems...)}
	}
	return nil, err // a bad stack name: nothing else applies
}

// LoadFile reads and validates Pulumi.<stack>.yaml.
func LoadFile(projectDir, stack string) (*Config, error) {
	raw, err := ReadStackFile(projectDir, stack)
	if err != nil {
		return nil, err
	}
	c, err := Parse(stack, raw.Values)
	if err != nil {
		return nil, fmt.Errorf("Pulumi.%s.yaml: %w", stack, err)
	}
	return c, nil
}

// FromEnv parses the config Pulumi passes a running program in PULUMI_CONFIG
// (the same variable the mock engine reads), so that unknown keys are seen too.
// A SecretOnly key missing from PULUMI_CONFIG_SECRET_KEYS was set in plain
// text and is rejected.
func FromEnv(stack string) (*Config, error) {
	raw, err := EnvValues()
	if err != nil {
		return nil, err
	}
	secret, err := EnvSecretKeys()
	if err != nil {
		return nil, err
	}
	return (&Raw{Values: raw, SecretKeys: secret}).Validate(stack)
}

// EnvSecretKeys lists the secret config keys of PULUMI_CONFIG_SECRET_KEYS, the
// JSON array Pulumi (and the mock engine) sets next to PULUMI_CONFIG.
func EnvSecretKeys() ([]string, error) {
	var keys []string
	if s := os.Getenv("PULUMI_CONFIG_SECRET_KEYS"); s != "" {
		if err := json.Unmarshal([]byte(s), &keys); err != nil {
			return nil, fmt.Errorf("PULUMI_CONFIG_SECRET_KEYS: %w", err)
		}
	}
	return keys, nil
}

// EnvValues is the raw config map of PULUMI_CONFIG.
func EnvValues() (map[string]string, error) {
	raw := map[string]string{}
	if s := os.Getenv("PULUMI_CONFIG"); s != "" {
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("PULUMI_CONFIG: %w", err)
		}
	}
	return raw, nil
}

// StackFiles lists the stacks that have a Pulumi.<stack>.yaml in projectDir.
func StackFiles(projectDir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(projectDir, "Pulumi.*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "Pulumi."), ".yaml"))
	}
	sort.Strings(out)
	return out, nil
}

// NewStackAdvice is how to create a stack file, in the README's words (a test
// checks both say the same): copy a committed file, init the stack with its
// side's secrets key, commit the file that init rewrote.
func NewStackAdvice(stack string) string {
	sp, err := policy.SecretsProvider(stack, "us-east-1")
	if err != nil {
		return err.Error()
	}
	from := "Pulumi.prod.yaml"
	if strings.HasPrefix(stack, "test") {
		from = "Pulumi.test-2.yaml"
	}
	return fmt.Sprintf("create it: `cp %s Pulumi.%s.yaml`, `pulumi stack init %s --secrets-provider \"%s\"` (your region), "+
		"`pulumi config set agentkeys:instanceId i-... --stack %s`, then commit Pulumi.%s.yaml (stack init and config set rewrite it)", from, stack, stack, sp, stack, stack)
}
