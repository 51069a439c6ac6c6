package policy_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

var ciFork = naming.Fork{AccountID: "123456789012", Zone: "example.org", Region: "us-east-1"}

const (
	testKeyARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
	prodKeyARN = "arn:aws:kms:us-east-1:123456789012:key/22222222-2222-3333-4444-555555555555"
)

func ciBackend() policy.CIBackend {
	return policy.CIBackend{StateBucket: policy.StateBucket(ciFork.AccountID), TestKeyARN: testKeyARN, ProdKeyARN: prodKeyARN}
}

// ciTrust is the account stack's default trust: PR jobs and main pushes get
// the test role, the agentkeys-prod environment the prod role.
var ciTrust = policy.CITrust{Repo: "litentry/agentKeys", PullRequests: true, Branches: []string{"main"}, ProdEnvironment: "agentkeys-prod"}

func ciPolicies(t *testing.T) []policy.CIPolicy {
	t.Helper()
	ps, err := policy.CITestPolicies(ciFork, ciBackend(), 20)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func ciProdPolicies(t *testing.T) []policy.CIPolicy {
	t.Helper()
	ps, err := policy.CIProdPolicies(ciFork, ciBackend(), 20)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestCITrustSubjects(t *testing.T) {
	c := ciTrust
	c.Branches = []string{"main", "release/*"}
	c.Environments = []string{"agentkeys-test"}
	d, err := c.TestTrust(ciFork.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Statement) != 1 {
		t.Fatalf("want one statement, got %s", d.JSON())
	}
	s := d.Statement[0]
	eq(t, "principal", s.Principal, map[string]any{"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"})
	eq(t, "action (no sts:TagSession)", s.Action, "sts:AssumeRoleWithWebIdentity")
	eq(t, "aud", s.Condition["StringEquals"]["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com")
	eq(t, "test sub", s.Condition["StringLike"]["token.actions.githubusercontent.com:sub"], []string{
		"repo:litentry/agentKeys:pull_request",
		"repo:litentry/agentKeys:ref:refs/heads/main",
		"repo:litentry/agentKeys:ref:refs/heads/release/*",
		"repo:litentry/agentKeys:environment:agentkeys-test",
	})

	p, err := c.ProdTrust(ciFork.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	ps := p.Statement[0]
	if len(p.Statement) != 1 || ps.Action != "sts:AssumeRoleWithWebIdentity" || len(ps.Condition) != 1 {
		t.Fatalf("prod trust: %s", p.JSON())
	}
	eq(t, "prod aud", ps.Condition["StringEquals"]["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com")
	// Exact match: no pattern can widen the prod subject.
	eq(t, "prod sub", ps.Condition["StringEquals"]["token.actions.githubusercontent.com:sub"], "repo:litentry/agentKeys:environment:agentkeys-prod")
	if _, ok := ps.Condition["StringLike"]; ok {
		t.Errorf("prod trust has a StringLike: %s", p.JSON())
	}
}

func TestCITrustRejectsBadConfig(t *testing.T) {
	base := ciTrust
	cases := []struct {
		name    string
		edit    func(*policy.CITrust)
		wantKey string
	}{
		{"bare name", func(c *policy.CITrust) { c.Repo = "agentKeys" }, "agentkeys:githubRepo"},
		{"URL", func(c *policy.CITrust) { c.Repo = "https://github.com/litentry/agentKeys" }, "agentkeys:githubRepo"},
		{"trusts nothing", func(c *policy.CITrust) { c.PullRequests, c.Branches = false, nil }, "agentkeys:ciBranches"},
		{"lone star", func(c *policy.CITrust) { c.Branches = []string{"*"} }, "agentkeys:ciBranches"},
		{"refs prefix", func(c *policy.CITrust) { c.Branches = []string{"refs/heads/main"} }, "agentkeys:ciBranches"},
		{"colon", func(c *policy.CITrust) { c.Branches = []string{"ma:in"} }, "agentkeys:ciBranches"},
		{"env pattern", func(c *policy.CITrust) { c.Environments = []string{"*"} }, "agentkeys:ciEnvironments"},
		{"prod env as test env", func(c *policy.CITrust) { c.Environments = []string{"agentkeys-prod"} }, "agentkeys:ciEnvironments"},
		{"no prod env", func(c *policy.CITrust) { c.ProdEnvironment = "" }, "agentkeys:ciProdEnvironment"},
		{"prod env pattern", func(c *policy.CITrust) { c.ProdEnvironment = "agentkeys-*" }, "agentkeys:ciProdEnvironment"},
	}
	for _, c := range cases {
		tr := base
		c.edit(&tr)
		_, err1 := tr.TestTrust(ciFork.AccountID)
		_, err2 := tr.ProdTrust(ciFork.AccountID)
		for _, err := range []error{err1, err2} {
			if err == nil || !strings.Contains(err.Error(), c.wantKey) {
				t.Errorf("%s: %v, want an error naming %s", c.name, err, c.wantKey)
			}
		}
	}
}

func TestSecretsKeyPerSide(t *testing.T) {
	for stack, want := range map[string]string{
		"prod": policy.ProdSecretsKeyAlias, "base": policy.ProdSecretsKeyAlias, "account": policy.ProdSecretsKeyAlias,
		"test": policy.TestSecretsKeyAlias, "test-2": policy.TestSecretsKeyAlias, "test-17": policy.TestSecretsKeyAlias,
	} {
		got, err := policy.SecretsKeyAlias(stack)
		if err != nil || got != want {
			t.Errorf("SecretsKeyAlias(%s) = %s, %v; want %s", stack, got, err, want)
		}
		url, _ := policy.SecretsProvider(stack, "us-east-1")
		if err := policy.CheckSecretsProvider(stack, url, "us-east-1"); err != nil {
			t.Errorf("%s: its own provider refused: %v", stack, err)
		}
	}
	if _, err := policy.SecretsKeyAlias("staging"); err == nil {
		t.Error("an unknown stack got a key")
	}
	// The dangerous direction: a prod stack on the test key.
	err := policy.CheckSecretsProvider("prod", "awskms://alias/agentkeys-pulumi-test?region=us-east-1", "us-east-1")
	if err == nil || !strings.Contains(err.Error(), "change-secrets-provider") || !strings.Contains(err.Error(), "Pulumi.prod.yaml") {
		t.Errorf("prod on the test key: %v", err)
	}
	for _, bad := range []string{"", "awskms://alias/agentkeys-pulumi?region=us-east-1", "awskms://alias/agentkeys-pulumi-prod?region=us-west-2"} {
		if err := policy.CheckSecretsProvider("prod", bad, "us-east-1"); err == nil {
			t.Errorf("prod with %q accepted", bad)
		}
	}
	if got := policy.StateBackendURL("123456789012", "us-east-1"); got != "s3://agentkeys-pulumi-state-123456789012?region=us-east-1" {
		t.Errorf("backend URL %s", got)
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"agentkeys-data-role-test-*", "agentkeys-data-role-test-7", true},
		{"agentkeys-data-role-test-*", "agentkeys-data-role-test", false},
		{"agentkeys-data-role-test", "agentkeys-data-role", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*._domainkey.bots-test-*.example.org", "x1._domainkey.bots-test-3.example.org", true},
	} {
		if got := policy.Glob(c.p, c.s); got != c.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

// Slot N gets its patterns from naming: the derived patterns match the names
// of far slots and none of prod's or base's; the prod patterns the reverse.
func TestPatternsFollowNaming(t *testing.T) {
	p := policy.TestNamePatterns(ciFork)
	if err := p.CheckCoverage(ciFork, 500); err != nil {
		t.Fatal(err)
	}
	pp := policy.ProdNamePatterns(ciFork)
	if err := pp.CheckProdCoverage(ciFork, 500); err != nil {
		t.Fatal(err)
	}
	n := naming.Derive(mustStack(t, "test-17"), ciFork)
	for _, name := range []string{n.DataRole, n.DataClassRoles["vault"], n.HostRole} {
		if !anyMatch(p.Roles, name) {
			t.Errorf("role %s of test-17 not covered by %v", name, p.Roles)
		}
		if anyMatch(pp.Roles, name) {
			t.Errorf("role %s of test-17 covered by a prod pattern %v", name, pp.Roles)
		}
	}
	for _, stack := range []string{"prod", "base"} {
		n := naming.Derive(mustStack(t, stack), ciFork)
		for _, name := range []string{n.DataRole, n.DaemonUser, n.InstanceProfile, n.MailBucket, n.BrokerHost} {
			for _, l := range [][]string{p.Roles, p.Users, p.InstanceProfiles, p.Buckets, p.Issuers} {
				if anyMatch(l, name) {
					t.Errorf("%s name %s matches a test pattern %v", stack, name, l)
				}
			}
		}
	}
}

func TestCheckCoverageCatchesAPatternThatMissesOrOverreaches(t *testing.T) {
	p := policy.TestNamePatterns(ciFork)
	narrow := p
	narrow.Roles = []string{"agentkeys-data-role-test-?"} // misses slot 10 and the class roles
	if err := narrow.CheckCoverage(ciFork, 20); err == nil {
		t.Error("a pattern list missing test names passed the coverage check")
	}
	wide := p
	wide.Roles = append(append([]string{}, p.Roles...), "agentkeys-data-role*")
	err := wide.CheckCoverage(ciFork, 2)
	if err == nil || !strings.Contains(err.Error(), "prod") {
		t.Errorf("a pattern matching prod's data role passed the coverage check: %v", err)
	}
	if err := p.CheckCoverage(ciFork, 0); err == nil || !strings.Contains(err.Error(), "agentkeys:maxTestSlot") {
		t.Errorf("maxTestSlot 0 accepted: %v", err)
	}
	pp := policy.ProdNamePatterns(ciFork)
	wideProd := pp
	wideProd.Buckets = append(append([]string{}, pp.Buckets...), "agentkeys-vault-*")
	if err := wideProd.CheckProdCoverage(ciFork, 3); err == nil || !strings.Contains(err.Error(), "test") {
		t.Errorf("a prod pattern matching a test bucket passed: %v", err)
	}
}

func TestCIPoliciesFitIAMLimitsAndAreDeterministic(t *testing.T) {
	for _, build := range []func(*testing.T) []policy.CIPolicy{ciPolicies, ciProdPolicies} {
		a, b := build(t), build(t)
		if !reflect.DeepEqual(a, b) {
			t.Fatal("two builds of the CI policies differ")
		}
		names := map[string]bool{}
		for _, c := range a {
			if l := len(c.Document.JSON()); l > policy.ManagedPolicyMaxChars {
				t.Errorf("%s is %d characters, over the managed-policy limit", c.Name, l)
			}
			if names[c.Name] || len(c.Name) > 128 || !policy.Glob(policy.CIManagedPolicyPattern, c.Name) {
				t.Errorf("policy name %q duplicated, too long or outside %s", c.Name, policy.CIManagedPolicyPattern)
			}
			names[c.Name] = true
		}
	}
	for _, b := range []policy.CIBackend{{}, {StateBucket: "x", TestKeyARN: testKeyARN}, {StateBucket: "x", TestKeyARN: testKeyARN, ProdKeyARN: testKeyARN}} {
		if _, err := policy.CITestPolicies(ciFork, b, 20); err == nil {
			t.Errorf("test policies built with backend %+v", b)
		}
		if _, err := policy.CIProdPolicies(ciFork, b, 20); err == nil {
			t.Errorf("prod policies built with backend %+v", b)
		}
	}
}

// The test role's documents name no prod-side resource and not the prod
// key; the prod role's name no test resource and not the test key's use.
func TestCIPoliciesStayOnTheirSide(t *testing.T) {
	names := func(stacks ...string) []string {
		var out []string
		for _, s := range stacks {
			n := naming.Derive(mustStack(t, s), ciFork)
			out = append(out, ":role/"+n.DataRole+`"`, ":user/"+n.DaemonUser+`"`, naming.BucketARN(n.MailBucket)+`"`,
				":instance-profile/"+n.InstanceProfile+`"`, ":oidc-provider/"+n.BrokerHost+`"`,
				"agentkeys/"+s+".*", "agentkeys/"+s+"/*")
		}
		return out
	}
	for _, c := range ciPolicies(t) {
		js := c.Document.JSON()
		for _, p := range append(names("prod", "base"), prodKeyARN, "agentkeys/account") {
			if strings.Contains(js, p) {
				t.Errorf("%s names prod-side resource %s", c.Name, p)
			}
		}
	}
	for _, c := range ciProdPolicies(t) {
		js := c.Document.JSON()
		for _, p := range append(names("test", "test-2"), "agentkeys/test") {
			if strings.Contains(js, p) {
				t.Errorf("%s names test resource %s", c.Name, p)
			}
		}
		if strings.Contains(js, "ssm:SendCommand") {
			t.Errorf("%s lets the prod role send SSM commands", c.Name)
		}
	}
}

func mustStack(t *testing.T, name string) naming.Stack {
	t.Helper()
	s, err := naming.ParseStack(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func anyMatch(ps []string, s string) bool {
	for _, p := range ps {
		if policy.Glob(p, s) {
			return true
		}
	}
	return false
}
