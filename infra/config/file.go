package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
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
			return nil, fmt.Errorf("stack %s: %s does not exist; create it with `pulumi stack init %s` and the agentkeys: keys of the README (copy Pulumi.test-2.yaml for a new test slot)", stack, path, stack)
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
	return raw, nil
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
func FromEnv(stack string) (*Config, error) {
	raw, err := EnvValues()
	if err != nil {
		return nil, err
	}
	return Parse(stack, raw)
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
