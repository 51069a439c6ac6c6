package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/policy"
)

func accountRaw() map[string]string {
	return map[string]string{
		"agentkeys:accountId":  "123456789012",
		"agentkeys:zone":       "example.org",
		"agentkeys:githubRepo": "litentry/agentKeys",
		"agentkeys:ciBranches": `["main"]`,
		"aws:region":           "us-east-1",
	}
}

func TestAccountConfigErrorsNameKeyAndExample(t *testing.T) {
	cases := map[string]struct {
		edit    func(m map[string]string)
		wantKey string
	}{
		"account id":        {func(m map[string]string) { m["agentkeys:accountId"] = "12345" }, "agentkeys:accountId"},
		"zone":              {func(m map[string]string) { m["agentkeys:zone"] = "Example.org." }, "agentkeys:zone"},
		"region":            {func(m map[string]string) { delete(m, "aws:region") }, "aws:region"},
		"repo missing":      {func(m map[string]string) { delete(m, "agentkeys:githubRepo") }, "agentkeys:githubRepo"},
		"repo url":          {func(m map[string]string) { m["agentkeys:githubRepo"] = "https://github.com/a/b" }, "agentkeys:githubRepo"},
		"branches not list": {func(m map[string]string) { m["agentkeys:ciBranches"] = "main" }, "agentkeys:ciBranches"},
		"wildcard branch":   {func(m map[string]string) { m["agentkeys:ciBranches"] = `["*"]` }, "agentkeys:ciBranches"},
		"trusts no job": {func(m map[string]string) {
			delete(m, "agentkeys:ciBranches")
			m["agentkeys:ciPullRequests"] = "false"
		}, "agentkeys:ciBranches"},
		"pull requests not bool": {func(m map[string]string) { m["agentkeys:ciPullRequests"] = "yes please" }, "agentkeys:ciPullRequests"},
		"prod env as test env":   {func(m map[string]string) { m["agentkeys:ciEnvironments"] = `["agentkeys-prod"]` }, "agentkeys:ciEnvironments"},
		"prod env empty":         {func(m map[string]string) { m["agentkeys:ciProdEnvironment"] = "" }, "agentkeys:ciProdEnvironment"},
		"adopt unknown":          {func(m map[string]string) { m["agentkeys:adopt"] = `["ciProdRole"]` }, "agentkeys:adopt"},
		"max slot":               {func(m map[string]string) { m["agentkeys:maxTestSlot"] = "0" }, "agentkeys:maxTestSlot"},
		"broker key":             {func(m map[string]string) { m["agentkeys:instanceId"] = "i-0123456789abcdef0" }, "agentkeys:instanceId"},
		"near-miss ns":           {func(m map[string]string) { m["agentkey:githubRepo"] = "litentry/agentKeys" }, "agentkey:githubRepo (did you mean agentkeys:githubRepo?)"},
	}
	for name, c := range cases {
		raw := accountRaw()
		c.edit(raw)
		_, err := ParseAccount(raw)
		if err == nil || !strings.Contains(err.Error(), c.wantKey) {
			t.Errorf("%s: error %v does not name %s", name, err, c.wantKey)
			continue
		}
		if !strings.Contains(err.Error(), "example") && !strings.Contains(err.Error(), "reads") {
			t.Errorf("%s: error %q gives no valid example", name, err)
		}
	}
	cfg, err := ParseAccount(accountRaw())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxTestSlot != 20 {
		t.Errorf("default maxTestSlot %d, want 20", cfg.MaxTestSlot)
	}
	if !cfg.Trust.PullRequests || cfg.Trust.ProdEnvironment != "agentkeys-prod" || len(cfg.Adopt) != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	raw := accountRaw()
	raw["agentkeys:adopt"] = `["githubOidcProvider", "ciTestRole", "ruleSet", "activeRuleSet"]`
	if cfg, err = ParseAccount(raw); err != nil || len(cfg.Adopt) != 4 || !cfg.Adopt["ciTestRole"] {
		t.Errorf("adopt: %+v %v", cfg, err)
	}
}

func TestLoadAccountFile(t *testing.T) {
	// The repository's own account stack file validates.
	if _, err := LoadAccountFile("../.."); err != nil {
		t.Fatalf("Pulumi.account.yaml: %v", err)
	}
	dir := t.TempDir()
	bad := "config:\n  agentkeys:accountId: \"123456789012\"\n  agentkeys:zone: example.org\n  aws:region: us-east-1\n"
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.account.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadAccountFile(dir)
	if err == nil || !strings.Contains(err.Error(), "Pulumi.account.yaml") || !strings.Contains(err.Error(), "agentkeys:githubRepo") {
		t.Fatalf("missing githubRepo: %v", err)
	}
}

// Every committed stack file names its side's KMS key as its secrets
// provider, in the stack's own region: prod, base and account the prod key,
// test slots the test key (a prod stack on the test key would be readable by
// pull-request jobs).
func TestStackFilesNameTheKMSSecretsProvider(t *testing.T) {
	stacks, err := StackFiles("../..")
	if err != nil || len(stacks) < 5 {
		t.Fatalf("stack files: %v %v", stacks, err)
	}
	for _, s := range stacks {
		raw, err := ReadStackFile("../..", s)
		if err != nil {
			t.Fatal(err)
		}
		if err := policy.CheckSecretsProvider(s, raw.SecretsProvider, raw.Values["aws:region"]); err != nil {
			t.Error(err)
		}
	}
}
