package policy_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

var ciFork = naming.Fork{AccountID: "123456789012", Zone: "example.org", Region: "us-east-1"}

func ciBackend() policy.CIBackend {
	return policy.CIBackend{
		StateBucket:   policy.StateBucket(ciFork.AccountID),
		SecretsKeyARN: "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
	}
}

func ciPolicies(t *testing.T) []policy.CIPolicy {
	t.Helper()
	ps, err := policy.CIDeployPolicies(ciFork, ciBackend(), 20)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestCITrustPinsRepoBranchesEnvironments(t *testing.T) {
	d, err := policy.CITrust(ciFork.AccountID, "litentry/agentKeys", []string{"main", "release/*"}, []string{"ci-deploy"})
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
	eq(t, "sub", s.Condition["StringLike"]["token.actions.githubusercontent.com:sub"], []string{
		"repo:litentry/agentKeys:ref:refs/heads/main",
		"repo:litentry/agentKeys:ref:refs/heads/release/*",
		"repo:litentry/agentKeys:environment:ci-deploy",
	})
}

func TestCITrustRejectsBadConfig(t *testing.T) {
	cases := []struct {
		repo           string
		branches, envs []string
		wantKey        string
	}{
		{"agentKeys", []string{"main"}, nil, "agentkeys:githubRepo"},
		{"https://github.com/litentry/agentKeys", []string{"main"}, nil, "agentkeys:githubRepo"},
		{"litentry/agentKeys", nil, nil, "agentkeys:ciBranches"},
		{"litentry/agentKeys", []string{"*"}, nil, "agentkeys:ciBranches"},
		{"litentry/agentKeys", []string{"refs/heads/main"}, nil, "agentkeys:ciBranches"},
		{"litentry/agentKeys", []string{"main"}, []string{"*"}, "agentkeys:ciEnvironments"},
		{"litentry/agentKeys", []string{"ma:in"}, nil, "agentkeys:ciBranches"},
	}
	for _, c := range cases {
		_, err := policy.CITrust(ciFork.AccountID, c.repo, c.branches, c.envs)
		if err == nil || !strings.Contains(err.Error(), c.wantKey) {
			t.Errorf("CITrust(%q, %v, %v) = %v, want an error naming %s", c.repo, c.branches, c.envs, err, c.wantKey)
		}
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
// of far slots and none of prod's or base's.
func TestTestPatternsFollowNaming(t *testing.T) {
	p := policy.TestNamePatterns(ciFork)
	if err := p.CheckCoverage(ciFork, 500); err != nil {
		t.Fatal(err)
	}
	n := naming.Derive(mustStack(t, "test-17"), ciFork)
	for _, name := range []string{n.DataRole, n.DataClassRoles["vault"], n.HostRole} {
		if !anyMatch(p.Roles, name) {
			t.Errorf("role %s of test-17 not covered by %v", name, p.Roles)
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
}

func TestCIPoliciesFitIAMLimitsAndAreDeterministic(t *testing.T) {
	a, b := ciPolicies(t), ciPolicies(t)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two builds of the CI policies differ")
	}
	names := map[string]bool{}
	for _, c := range a {
		if l := len(c.Document.JSON()); l > policy.ManagedPolicyMaxChars {
			t.Errorf("%s is %d characters, over the managed-policy limit", c.Name, l)
		}
		if names[c.Name] || len(c.Name) > 128 {
			t.Errorf("policy name %q duplicated or too long", c.Name)
		}
		names[c.Name] = true
	}
	if _, err := policy.CIDeployPolicies(ciFork, policy.CIBackend{}, 20); err == nil {
		t.Error("CI policies built without a state bucket or secrets key")
	}
}

// No statement of the CI grant names a prod-posture resource for writing.
func TestCIPoliciesNameNoProdResource(t *testing.T) {
	var prodNames []string
	for _, s := range []string{"prod", "base"} {
		n := naming.Derive(mustStack(t, s), ciFork)
		prodNames = append(prodNames, ":role/"+n.DataRole+`"`, ":user/"+n.DaemonUser+`"`, naming.BucketARN(n.MailBucket)+`"`,
			":instance-profile/"+n.InstanceProfile+`"`, ":oidc-provider/"+n.BrokerHost+`"`)
	}
	for _, c := range ciPolicies(t) {
		js := c.Document.JSON()
		for _, p := range prodNames {
			if strings.Contains(js, p) {
				t.Errorf("%s names prod resource %s", c.Name, p)
			}
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
