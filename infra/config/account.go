package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// defaultMaxTestSlot bounds the CI policy's coverage check (slots 1..N).
const defaultMaxTestSlot = 20

// DefaultProdEnvironment is the GitHub environment the prod CI role trusts.
const DefaultProdEnvironment = "agentkeys-prod"

// Adoptable are the shared resources an account may already have (the
// runbook's scripts created them); agentkeys:adopt imports them.
var Adoptable = []string{"githubOidcProvider", "ciTestRole", "ruleSet", "activeRuleSet"}

// Account is the account stack's validated configuration.
type Account struct {
	Fork        naming.Fork // AccountID, Zone, Region
	GitHubRepo  string
	Trust       policy.CITrust // who may assume the test and the prod CI role
	MaxTestSlot int
	Adopt       map[string]bool // Adoptable entries to import this run
}

// accountKeys are the keys the account stack reads, with a valid example each.
var accountKeys = map[string]string{
	"agentkeys:accountId":         `"123456789012"`,
	"agentkeys:zone":              "example.org",
	"agentkeys:githubRepo":        "litentry/agentKeys",
	"agentkeys:ciPullRequests":    "true",
	"agentkeys:ciBranches":        "[main]",
	"agentkeys:ciEnvironments":    "[agentkeys-test]",
	"agentkeys:ciProdEnvironment": DefaultProdEnvironment,
	"agentkeys:maxTestSlot":       "20",
	"agentkeys:adopt":             "[githubOidcProvider, ciTestRole, ruleSet, activeRuleSet]",
	"aws:region":                  "us-east-1",
}

func accountKeyErr(key, format string, a ...any) error {
	return fmt.Errorf("stack %s: config %s: %s (example: %s: %s in Pulumi.%s.yaml)",
		naming.AccountStack, key, fmt.Sprintf(format, a...), key, accountKeys[key], naming.AccountStack)
}

// ParseAccount validates raw (PULUMI_CONFIG's map) before anything is
// declared; every error names the key and a valid example.
func ParseAccount(raw map[string]string) (*Account, error) {
	var unknown, nearMiss []string
	for k := range raw {
		if ns, key, _ := strings.Cut(k, ":"); NearMissNamespace(ns) {
			nearMiss = append(nearMiss, fmt.Sprintf("%s (did you mean %s:%s?)", k, Namespace, key))
		}
		if strings.HasPrefix(k, "agentkeys:") {
			if _, ok := accountKeys[k]; !ok {
				unknown = append(unknown, k)
			}
		}
	}
	if len(nearMiss) > 0 {
		sort.Strings(nearMiss)
		return nil, fmt.Errorf("stack %s: config keys %s are in a namespace nothing reads; the account stack reads %s:<key>",
			naming.AccountStack, strings.Join(nearMiss, ", "), Namespace)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		keys := make([]string, 0, len(accountKeys))
		for k := range accountKeys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("stack %s: unknown config keys %s (broker-stack keys do not belong here); the account stack reads %s",
			naming.AccountStack, strings.Join(unknown, ", "), strings.Join(keys, ", "))
	}
	c := &Account{MaxTestSlot: defaultMaxTestSlot}
	c.Fork.AccountID = raw["agentkeys:accountId"]
	if !naming.IsAccountID(c.Fork.AccountID) {
		return nil, accountKeyErr("agentkeys:accountId", "%q is not a 12-digit AWS account id (quote it in YAML)", c.Fork.AccountID)
	}
	c.Fork.Zone = raw["agentkeys:zone"]
	if !naming.IsZone(c.Fork.Zone) {
		return nil, accountKeyErr("agentkeys:zone", "%q is not a lowercase DNS zone without a trailing dot", c.Fork.Zone)
	}
	c.Fork.Region = raw["aws:region"]
	if !naming.IsRegion(c.Fork.Region) {
		return nil, accountKeyErr("aws:region", "%q is not an AWS region", c.Fork.Region)
	}
	c.GitHubRepo = raw["agentkeys:githubRepo"]
	if c.GitHubRepo == "" {
		return nil, accountKeyErr("agentkeys:githubRepo", "is required: the owner/name whose workflows may assume %s and %s", policy.CITestRole, policy.CIProdRole)
	}
	c.Trust = policy.CITrust{Repo: c.GitHubRepo, PullRequests: true, ProdEnvironment: DefaultProdEnvironment}
	if v, ok := raw["agentkeys:ciPullRequests"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, accountKeyErr("agentkeys:ciPullRequests", "%q is not true or false", v)
		}
		c.Trust.PullRequests = b
	}
	var err error
	if c.Trust.Branches, err = accountList(raw, "agentkeys:ciBranches"); err != nil {
		return nil, err
	}
	if c.Trust.Environments, err = accountList(raw, "agentkeys:ciEnvironments"); err != nil {
		return nil, err
	}
	if v, ok := raw["agentkeys:ciProdEnvironment"]; ok {
		c.Trust.ProdEnvironment = v
	}
	adopt, err := accountList(raw, "agentkeys:adopt")
	if err != nil {
		return nil, err
	}
	c.Adopt = map[string]bool{}
	for _, a := range adopt {
		if !slices.Contains(Adoptable, a) {
			return nil, accountKeyErr("agentkeys:adopt", "%q is not one of %s", a, strings.Join(Adoptable, ", "))
		}
		c.Adopt[a] = true
	}
	if v, ok := raw["agentkeys:maxTestSlot"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 999 {
			return nil, accountKeyErr("agentkeys:maxTestSlot", "%q is not a slot count between 1 and 999", v)
		}
		c.MaxTestSlot = n
	}
	// The trust's own checks name the key of a bad repo, branch or environment.
	if err := c.Trust.Validate(); err != nil {
		return nil, fmt.Errorf("stack %s: %v", naming.AccountStack, err)
	}
	return c, nil
}

// stringList reads a YAML list key (Pulumi passes it as a JSON array).
func accountList(raw map[string]string, key string) ([]string, error) {
	v, ok := raw[key]
	if !ok || v == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, accountKeyErr(key, "%q is not a list of strings", v)
	}
	return out, nil
}

// LoadAccountFile reads and validates Pulumi.account.yaml.
func LoadAccountFile(projectDir string) (*Account, error) {
	raw, err := ReadStackFile(projectDir, naming.AccountStack)
	if err != nil {
		return nil, err
	}
	a, err := ParseAccount(raw.Values)
	if err != nil {
		return nil, fmt.Errorf("Pulumi.%s.yaml: %w", naming.AccountStack, err)
	}
	return a, nil
}
