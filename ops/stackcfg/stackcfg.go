// Package stackcfg resolves a stack name to everything the operator commands
// need: its derived names plus the few deployed facts (instance id, EIP) the
// names cannot derive. It reads the stack's Pulumi.<stack>.yaml; the
// AGENTKEYS_* environment overrides single keys.
package stackcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// Target is one stack as the operator tools see it.
type Target struct {
	Names      naming.Names
	InstanceID string // "" when not configured
	EIP        string // configured address, "" when not configured
	File       string // the config file read, "" when none
}

// keys maps a config key (under agentkeys:) to its env override.
var envKeys = map[string]string{
	"accountId":    "AGENTKEYS_ACCOUNT_ID",
	"zone":         "AGENTKEYS_ZONE",
	"parentZoneId": "AGENTKEYS_PARENT_ZONE_ID",
	"brokerHost":   "AGENTKEYS_BROKER_HOST",
	"mailDomain":   "AGENTKEYS_MAIL_DOMAIN",
	"instanceId":   "AGENTKEYS_INSTANCE_ID",
	"eip":          "AGENTKEYS_EIP",
}

// Load resolves stack from projectDir/Pulumi.<stack>.yaml (absent file is
// fine when the environment carries the keys).
func Load(projectDir, stack string) (Target, error) {
	s, err := naming.ParseStack(stack)
	if err != nil {
		return Target{}, err
	}
	vals := map[string]string{}
	var t Target
	file := filepath.Join(projectDir, "Pulumi."+stack+".yaml")
	raw, err := os.ReadFile(file)
	switch {
	case err == nil:
		t.File = file
		var doc struct {
			Config map[string]any `yaml:"config"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return Target{}, fmt.Errorf("%s: not valid YAML: %v; fix the file (see Pulumi.test-2.yaml for the shape)", file, err)
		}
		for k, v := range doc.Config {
			if sv, ok := v.(string); ok {
				vals[k] = sv
			} else if v != nil {
				vals[k] = fmt.Sprint(v)
			}
		}
	case os.IsNotExist(err):
	default:
		return Target{}, fmt.Errorf("%s: %v", file, err)
	}
	get := func(k string) string {
		if v := os.Getenv(envKeys[k]); v != "" {
			return v
		}
		return strings.TrimSpace(vals["agentkeys:"+k])
	}
	f := naming.Fork{
		AccountID:    get("accountId"),
		Zone:         get("zone"),
		ParentZoneID: get("parentZoneId"),
		BrokerHost:   get("brokerHost"),
		MailDomain:   get("mailDomain"),
		Region:       strings.TrimSpace(vals["aws:region"]),
	}
	var missing []string
	if f.AccountID == "" {
		missing = append(missing, "agentkeys:accountId (or "+envKeys["accountId"]+")")
	}
	if f.Zone == "" {
		missing = append(missing, "agentkeys:zone (or "+envKeys["zone"]+")")
	}
	if len(missing) > 0 {
		where := file
		if t.File == "" {
			where = file + " (absent)"
		}
		return Target{}, fmt.Errorf("stack %s: missing %s in %s; set them with `pulumi config set` or the environment", stack, strings.Join(missing, ", "), where)
	}
	t.Names = naming.Derive(s, f)
	t.InstanceID = get("instanceId")
	t.EIP = get("eip")
	return t, nil
}

// Stacks lists the stack names of every Pulumi.<stack>.yaml in projectDir, sorted.
func Stacks(projectDir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(projectDir, "Pulumi.*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range m {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "Pulumi."), ".yaml")
		if _, err := naming.ParseStack(name); err == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}
