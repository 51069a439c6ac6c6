package policy_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

// ciKinds are the matrix's stack columns: two test slots, the two
// prod-posture stacks and the account stack.
var ciKinds = []string{"test", "test-7", "prod", "base", "account"}

// ciRole is one CI role as the evaluator sees it.
type ciRole struct {
	name     string // policy.CITestRole or policy.CIProdRole
	side     string // "test" or "prod"
	policies []iamsim.NamedPolicy
}

func (r ciRole) session() string {
	return "arn:aws:sts::" + acct + ":assumed-role/" + r.name + "/gha-run-1"
}

func named(ps []policy.CIPolicy) []iamsim.NamedPolicy {
	var out []iamsim.NamedPolicy
	for _, c := range ps {
		out = append(out, iamsim.NamedPolicy{Name: c.Name, Policy: c.Document})
	}
	return out
}

// ciCall is one API call of the matrix against one stack kind.
type ciCall struct {
	action, resource string
	ctx              map[string]any
	resourcePolicy   any
}

// ciRow is one action of the matrix: call builds it for a stack kind (false:
// not applicable), want overrides the default "allowed iff the role's side
// owns the stack" rule.
type ciRow struct {
	label string
	call  func(k string) (ciCall, bool)
	want  func(role, kind string) expect
}

func kindSide(k string) string {
	if ok, _ := policy.ProdSide(k); ok {
		return "prod"
	}
	return "test"
}

func ciNames(t *testing.T, k string) naming.Names { return naming.Derive(mustStack(t, k), ciFork) }

func keyARNOf(k string) string {
	if kindSide(k) == "prod" {
		return prodKeyARN
	}
	return testKeyARN
}

// ciRows are the actions a deploy performs (or an attacker would try), each
// against the resources of one stack kind.
func ciRows(t *testing.T) []ciRow {
	a := acct
	state := naming.BucketARN(policy.StateBucket(a))
	statePolicy := policy.StateBucketPolicy(a, policy.StateBucket(a))
	tls := map[string]any{"aws:SecureTransport": "true"}
	broker := func(k string) (naming.Names, bool) {
		if k == naming.AccountStack {
			return naming.Names{}, false
		}
		return ciNames(t, k), true
	}
	boundaryCtx := func(k string) map[string]any {
		if kindSide(k) == "test" {
			return map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a)}
		}
		return map[string]any{}
	}
	onBroker := func(f func(n naming.Names, k string) ciCall) func(string) (ciCall, bool) {
		return func(k string) (ciCall, bool) {
			n, ok := broker(k)
			if !ok {
				return ciCall{}, false
			}
			return f(n, k), true
		}
	}
	onAccount := func(c ciCall) func(string) (ciCall, bool) {
		return func(k string) (ciCall, bool) { return c, k == naming.AccountStack }
	}
	stateCall := func(action, key string) func(string) (ciCall, bool) {
		return func(k string) (ciCall, bool) {
			return ciCall{action, state + "/.pulumi/" + strings.ReplaceAll(key, "STACK", k), tls, statePolicy}, true
		}
	}
	never := func(string, string) expect { return denied }
	eip := "arn:aws:ec2:us-east-1:" + a + ":elastic-ip/eipalloc-0123456789abcdef0"
	inst := "arn:aws:ec2:us-east-1:" + a + ":instance/i-0123456789abcdef0"
	ciTestRoleARN := naming.RoleARN(a, policy.CITestRole)
	return []ciRow{
		{label: "iam:UpdateAssumeRolePolicy (data role; account: test CI role)", call: func(k string) (ciCall, bool) {
			if k == naming.AccountStack {
				return ciCall{action: "iam:UpdateAssumeRolePolicy", resource: ciTestRoleARN}, true
			}
			return ciCall{action: "iam:UpdateAssumeRolePolicy", resource: ciNames(t, k).ClassRoleARNs["vault"]}, true
		}},
		{label: "iam:PutRolePolicy (data role)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "iam:PutRolePolicy", resource: n.DataRoleARN, ctx: boundaryCtx(k)}
		})},
		{label: "iam:CreateUser (daemon user)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "iam:CreateUser", resource: n.DaemonUserARN, ctx: boundaryCtx(k)}
		})},
		{label: "iam:CreateAccessKey (daemon user)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "iam:CreateAccessKey", resource: n.DaemonUserARN}
		})},
		{label: "iam:DeleteOpenIDConnectProvider (broker; account: GitHub)", call: func(k string) (ciCall, bool) {
			if k == naming.AccountStack {
				return ciCall{action: "iam:DeleteOpenIDConnectProvider", resource: policy.GitHubProviderARN(a)}, true
			}
			return ciCall{action: "iam:DeleteOpenIDConnectProvider", resource: ciNames(t, k).OIDCProviderARN}, true
		}},
		{label: "s3:PutBucketPolicy (vault bucket)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "s3:PutBucketPolicy", resource: naming.BucketARN(n.DataBuckets["vault"])}
		})},
		{label: "s3:PutLifecycleConfiguration (mail bucket)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "s3:PutLifecycleConfiguration", resource: naming.BucketARN(n.MailBucket)}
		})},
		// Data: a deploy never reads user objects on the prod side.
		{label: "s3:GetObject (vault credential)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "s3:GetObject", resource: naming.BucketARN(n.DataBuckets["vault"]) + "/bots/alice/credentials/k"}
		}), want: func(role, kind string) expect {
			if role == "test" && kindSide(kind) == "test" {
				return allowed
			}
			return denied
		}},
		{label: "ses:DeleteEmailIdentity (mail domain)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "ses:DeleteEmailIdentity", resource: "arn:aws:ses:us-east-1:" + a + ":identity/" + n.MailDomain}
		})},
		{label: "route53:ChangeResourceRecordSets (broker A)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "route53:ChangeResourceRecordSets", resource: "arn:aws:route53:::hostedzone/Z0EXAMPLE",
				ctx: map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{n.BrokerHost},
					"route53:ChangeResourceRecordSetsRecordTypes": []string{"A"}}}
		})},
		{label: "ec2:AllocateAddress (EIP with the stack's tag)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "ec2:AllocateAddress", resource: eip,
				ctx: map[string]any{"aws:RequestTag/Name": n.EIPTag, "aws:TagKeys": []string{"Name"}}}
		})},
		// SendCommand: the test fleet only; prod hosts are never SSM-deployed.
		{label: "ssm:SendCommand (stack's instance)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "ssm:SendCommand", resource: inst, ctx: map[string]any{"ssm:resourceTag/Name": policy.InstanceNameTag(n)}}
		}), want: func(role, kind string) expect {
			if role == "test" && kindSide(kind) == "test" {
				return allowed
			}
			return denied
		}},
		{label: "state s3:GetObject (checkpoint)", call: stateCall("s3:GetObject", "stacks/agentkeys/STACK.json")},
		{label: "state s3:PutObject (checkpoint)", call: stateCall("s3:PutObject", "stacks/agentkeys/STACK.json")},
		{label: "state s3:GetObject (checkpoint .bak)", call: stateCall("s3:GetObject", "stacks/agentkeys/STACK.json.bak")},
		{label: "state s3:GetObject (history)", call: stateCall("s3:GetObject", "history/agentkeys/STACK/STACK-1733100000.history.json")},
		{label: "state s3:GetObject (backup)", call: stateCall("s3:GetObject", "backups/agentkeys/STACK/STACK.1733100000.json")},
		{label: "state s3:PutObject (lock)", call: stateCall("s3:PutObject", "locks/organization/agentkeys/STACK/0a1b.json")},
		{label: "kms:Decrypt (the stack's secrets key)", call: func(k string) (ciCall, bool) {
			return ciCall{action: "kms:Decrypt", resource: keyARNOf(k), resourcePolicy: policy.KeyPolicy(a, kindSide(k) == "prod")}, true
		}},
		{label: "kms:GenerateDataKey (the stack's secrets key)", call: func(k string) (ciCall, bool) {
			return ciCall{action: "kms:GenerateDataKey", resource: keyARNOf(k), resourcePolicy: policy.KeyPolicy(a, kindSide(k) == "prod")}, true
		}},
		{label: "ses:SetActiveReceiptRuleSet", call: onAccount(ciCall{action: "ses:SetActiveReceiptRuleSet", resource: "*"})},
		{label: "iam:CreatePolicyVersion (CI managed policy)", call: onAccount(ciCall{action: "iam:CreatePolicyVersion",
			resource: "arn:aws:iam::" + a + ":policy/" + policy.CITestRole + "-test-iam"})},
		{label: "iam:CreatePolicyVersion (test boundary)", call: onAccount(ciCall{action: "iam:CreatePolicyVersion", resource: policy.TestBoundaryARN(a)})},
		{label: "iam:AttachRolePolicy (CI role, its own policy)", call: onAccount(ciCall{action: "iam:AttachRolePolicy", resource: ciTestRoleARN,
			ctx: map[string]any{"iam:PolicyARN": "arn:aws:iam::" + a + ":policy/" + policy.CITestRole + "-read"}})},
		{label: "iam:AttachRolePolicy (CI role, AdministratorAccess)", call: onAccount(ciCall{action: "iam:AttachRolePolicy", resource: ciTestRoleARN,
			ctx: map[string]any{"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"}}), want: never},
		{label: "sts:AssumeRole (data role)", call: onBroker(func(n naming.Names, k string) ciCall {
			return ciCall{action: "sts:AssumeRole", resource: n.DataRoleARN}
		}), want: never},
	}
}

// The CI permission matrix, judged by the real evaluator: role x action x
// stack kind. The test role changes, reads state of and decrypts for test
// slots only; the prod role the prod side only (and never user data or SSM).
func TestCIPermissionMatrix(t *testing.T) {
	iamsim.Require(t)
	// Each layer holds on its own: the identity policies alone (resource
	// policies that defer to IAM), and with the state bucket's and keys' policies.
	idOnly := evalCIMatrix(t, named(ciPolicies(t)), named(ciProdPolicies(t)), true)
	for _, e := range idOnly.mismatches {
		t.Error("identity policies alone: " + e)
	}
	res := evalCIMatrix(t, named(ciPolicies(t)), named(ciProdPolicies(t)), false)
	for _, e := range res.mismatches {
		t.Error(e)
	}
	t.Logf("CI permission matrix (%d cells; A = allowed, - = denied):\n%s", res.cells, res.table)
	// Both sides must be exercised in both directions.
	for _, k := range []string{"test role allowed on test stacks", "test role denied on prod stacks", "prod role allowed on prod stacks", "prod role denied on test stacks"} {
		if res.counts[k] == 0 {
			t.Errorf("matrix has no cell %q", k)
		}
	}
	if res.counts["test role allowed on prod stacks"] != 0 || res.counts["prod role allowed on test stacks"] != 0 {
		t.Errorf("a role crosses its boundary: %v", res.counts)
	}
}

// A deliberately weakened grant fails the matrix: the cells that catch it.
func TestCIPermissionMatrixCatchesWeakening(t *testing.T) {
	iamsim.Require(t)
	weaken := func(ps []policy.CIPolicy, f func(*policy.Statement)) []iamsim.NamedPolicy {
		var out []policy.CIPolicy
		for _, c := range ps {
			d := policy.Document{Version: c.Document.Version}
			for _, st := range c.Document.Statement {
				f(&st)
				d.Statement = append(d.Statement, st)
			}
			out = append(out, policy.CIPolicy{Name: c.Name, Document: d})
		}
		return named(out)
	}
	for _, c := range []struct {
		name       string
		test, prod []iamsim.NamedPolicy
		caughtBy   string
	}{
		{"test role state on every stack", weaken(ciPolicies(t), func(s *policy.Statement) {
			if s.Sid == "TestStacksState" {
				s.Resource = policy.StateObjects(policy.StateBucket(acct), "*")
			}
		}), nil, "github-actions-agentkeys-deploy | state s3:GetObject (history) | base"},
		{"test role on the prod key", weaken(ciPolicies(t), func(s *policy.Statement) {
			if s.Sid == "TestStacksSecretsKey" {
				s.Resource = []string{testKeyARN, prodKeyARN}
			}
		}), nil, "github-actions-agentkeys-deploy | kms:Decrypt (the stack's secrets key) | prod"},
		{"prod role reads bucket objects", nil, weaken(ciProdPolicies(t), func(s *policy.Statement) {
			if s.Sid == "ProdBuckets" {
				s.Resource = append(policy.Strings(s.Resource), "arn:aws:s3:::agentkeys-vault-123456789012/*")
			}
		}), "github-actions-agentkeys-deploy-prod | s3:GetObject (vault credential) | prod"},
	} {
		test, prod := c.test, c.prod
		if test == nil {
			test = named(ciPolicies(t))
		}
		if prod == nil {
			prod = named(ciProdPolicies(t))
		}
		res := evalCIMatrix(t, test, prod, true)
		found := false
		for _, e := range res.mismatches {
			found = found || strings.HasPrefix(e, c.caughtBy+":")
		}
		if !found {
			t.Errorf("weakening %q not caught by %q; mismatches: %v", c.name, c.caughtBy, res.mismatches)
		}
	}
}

type matrixResult struct {
	cells      int
	mismatches []string
	counts     map[string]int
	table      string
}

// evalCIMatrix evaluates the matrix; identityOnly replaces the state bucket's
// and the keys' own policies with ones that defer to IAM.
func evalCIMatrix(t *testing.T, testPolicies, prodPolicies []iamsim.NamedPolicy, identityOnly bool) matrixResult {
	t.Helper()
	roles := []ciRole{
		{policy.CITestRole, "test", testPolicies},
		{policy.CIProdRole, "prod", prodPolicies},
	}
	type cellRef struct {
		row, role, kind string
	}
	var m matrix
	var refs []cellRef
	rows := ciRows(t)
	for _, row := range rows {
		for _, r := range roles {
			for _, k := range ciKinds {
				c, ok := row.call(k)
				if !ok {
					continue
				}
				want := denied
				if r.side == kindSide(k) {
					want = allowed
				}
				if row.want != nil {
					want = row.want(r.side, k)
				}
				ctx := map[string]any{"aws:PrincipalArn": naming.RoleARN(acct, r.name)}
				for key, v := range c.ctx {
					ctx[key] = v
				}
				name := fmt.Sprintf("%s | %s | %s", r.name, row.label, k)
				rp := c.resourcePolicy
				if identityOnly && rp != nil {
					rp = nil
					if strings.HasPrefix(c.action, "kms:") {
						rp = policy.KeyPolicy(acct, false) // the default: IAM decides
					}
				}
				m.add(want, iamsim.Request{Name: name, Principal: r.session(), Action: c.action, Resource: c.resource,
					IdentityPolicies: r.policies, ResourcePolicy: rp, Context: ctx})
				refs = append(refs, cellRef{row.label, r.side, k})
			}
		}
	}
	got, err := iamsim.Evaluate(context.Background(), reqs(m))
	if err != nil {
		t.Fatal(err)
	}
	res := matrixResult{cells: len(got), counts: map[string]int{}}
	table := map[string]map[string]string{}
	for i, d := range got {
		c := m.cells[i]
		if d.Decision == iamsim.Error || !c.want.ok(d.Decision) {
			res.mismatches = append(res.mismatches, fmt.Sprintf("%s: got %s %s, want %s", d.Name, d.Decision, d.Error, c.want))
		}
		ref := refs[i]
		verdict := "denied"
		if d.Decision == iamsim.Allowed {
			verdict = "allowed"
		}
		res.counts[ref.role+" role "+verdict+" on "+kindSide(ref.kind)+" stacks"]++
		if table[ref.row] == nil {
			table[ref.row] = map[string]string{}
		}
		table[ref.row][ref.role+"/"+ref.kind] = map[string]string{"allowed": "A", "denied": "-"}[verdict]
	}
	var b strings.Builder
	b.WriteString("| action | " + strings.Join(prefixAll("test role ", ciKinds), " | ") + " | " + strings.Join(prefixAll("prod role ", ciKinds), " | ") + " |\n")
	for _, row := range rows {
		b.WriteString("| " + row.label + " |")
		for _, side := range []string{"test", "prod"} {
			for _, k := range ciKinds {
				v := table[row.label][side+"/"+k]
				if v == "" {
					v = "n/a"
				}
				b.WriteString(" " + v + " |")
			}
		}
		b.WriteString("\n")
	}
	keys := make([]string, 0, len(res.counts))
	for k := range res.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d\n", k, res.counts[k])
	}
	res.table = b.String()
	return res
}

func prefixAll(p string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = p + v
	}
	return out
}

// Even if the test role were granted everything (a mistake, or a PR that
// edits the account stack and gets it deployed), the state bucket's policy
// and the prod key's policy keep it out of prod-side state and secrets.
func TestResourcePoliciesHoldAgainstAnOverGrantedTestRole(t *testing.T) {
	iamsim.Require(t)
	a := acct
	admin := []iamsim.NamedPolicy{{Name: "mistake", Policy: policy.Document{Version: policy.Version, Statement: []policy.Statement{
		{Effect: "Allow", Action: "*", Resource: "*"}}}}}
	state := naming.BucketARN(policy.StateBucket(a))
	bucketPolicy := policy.StateBucketPolicy(a, policy.StateBucket(a))
	var m matrix
	for _, r := range []struct {
		role string
		want expect
	}{{policy.CITestRole, xdenied}, {policy.CIProdRole, allowed}} {
		ctx := func() map[string]any {
			return map[string]any{"aws:PrincipalArn": naming.RoleARN(a, r.role), "aws:SecureTransport": "true"}
		}
		sess := "arn:aws:sts::" + a + ":assumed-role/" + r.role + "/gha-run-1"
		for _, s := range policy.ProdSideStacks() {
			for _, obj := range []string{"stacks/agentkeys/" + s + ".json", "history/agentkeys/" + s + "/" + s + "-1.history.json"} {
				for _, act := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
					m.add(r.want, iamsim.Request{Name: r.role + " " + act + " " + obj, Principal: sess, Action: act,
						Resource: state + "/.pulumi/" + obj, IdentityPolicies: admin, ResourcePolicy: bucketPolicy, Context: ctx()})
				}
			}
		}
		m.add(r.want, iamsim.Request{Name: r.role + " decrypt with the prod key", Principal: sess, Action: "kms:Decrypt",
			Resource: prodKeyARN, IdentityPolicies: admin, ResourcePolicy: policy.KeyPolicy(a, true), Context: ctx()})
		// Its own side stays reachable: the resource policies deny nothing else.
		m.add(allowed, iamsim.Request{Name: r.role + " read test-3 state", Principal: sess, Action: "s3:GetObject",
			Resource: state + "/.pulumi/stacks/agentkeys/test-3.json", IdentityPolicies: admin, ResourcePolicy: bucketPolicy, Context: ctx()})
		m.add(allowed, iamsim.Request{Name: r.role + " read meta.yaml", Principal: sess, Action: "s3:GetObject",
			Resource: state + "/.pulumi/meta.yaml", IdentityPolicies: admin, ResourcePolicy: bucketPolicy, Context: ctx()})
		m.add(allowed, iamsim.Request{Name: r.role + " decrypt with the test key", Principal: sess, Action: "kms:Decrypt",
			Resource: testKeyARN, IdentityPolicies: admin, ResourcePolicy: policy.KeyPolicy(a, false), Context: ctx()})
	}
	// Plain HTTP is refused for everyone.
	m.add(xdenied, iamsim.Request{Name: "prod role over HTTP", Principal: "arn:aws:sts::" + a + ":assumed-role/" + policy.CIProdRole + "/x",
		Action: "s3:GetObject", Resource: state + "/.pulumi/stacks/agentkeys/prod.json", IdentityPolicies: admin, ResourcePolicy: bucketPolicy,
		Context: map[string]any{"aws:PrincipalArn": naming.RoleARN(a, policy.CIProdRole), "aws:SecureTransport": "false"}})
	runMatrix(t, m)
}

// Who may become which role: GitHub token subjects against both trusts.
func TestCITrustDecisions(t *testing.T) {
	iamsim.Require(t)
	a := acct
	testTrust, err := ciTrust.TestTrust(a)
	if err != nil {
		t.Fatal(err)
	}
	prodTrust, err := ciTrust.ProdTrust(a)
	if err != nil {
		t.Fatal(err)
	}
	gh := policy.GitHubProviderARN(a)
	keys := []string{policy.GitHubOIDCHost + ":aud", policy.GitHubOIDCHost + ":sub"}
	const wi = "sts:AssumeRoleWithWebIdentity"
	const repo = "repo:litentry/agentKeys:"
	var m matrix
	web := func(wantTest, wantProd expect, name, principal, action, aud, sub string) {
		for _, r := range []struct {
			role  string
			trust policy.Document
			want  expect
		}{{policy.CITestRole, testTrust, wantTest}, {policy.CIProdRole, prodTrust, wantProd}} {
			m.add(r.want, iamsim.Request{Name: r.role + " trust: " + name, Principal: principal, Action: action,
				Resource: naming.RoleARN(a, r.role), ResourcePolicy: r.trust,
				Context: map[string]any{policy.GitHubOIDCHost + ":aud": aud, policy.GitHubOIDCHost + ":sub": sub}, UnlistedKeys: keys})
		}
	}
	web(allowed, denied, "a pull request of the repo", gh, wi, "sts.amazonaws.com", repo+"pull_request")
	web(allowed, denied, "a push to main", gh, wi, "sts.amazonaws.com", repo+"ref:refs/heads/main")
	web(denied, allowed, "the protected prod environment", gh, wi, "sts.amazonaws.com", repo+"environment:agentkeys-prod")
	web(denied, denied, "another environment", gh, wi, "sts.amazonaws.com", repo+"environment:agentkeys-prod-2")
	web(denied, denied, "a prefix of the prod environment", gh, wi, "sts.amazonaws.com", repo+"environment:agentkeys-pro")
	web(denied, denied, "another branch", gh, wi, "sts.amazonaws.com", repo+"ref:refs/heads/feature")
	web(denied, denied, "a tag", gh, wi, "sts.amazonaws.com", repo+"ref:refs/tags/v1")
	web(denied, denied, "another repository's PR", gh, wi, "sts.amazonaws.com", "repo:evil/agentKeys:pull_request")
	web(denied, denied, "a fork's name prefix", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys-fork:pull_request")
	web(denied, denied, "another repository's prod environment", gh, wi, "sts.amazonaws.com", "repo:evil/agentKeys:environment:agentkeys-prod")
	web(denied, denied, "wrong audience", gh, wi, "https://github.com/litentry", repo+"environment:agentkeys-prod")
	web(denied, denied, "a broker's provider", naming.OIDCProviderARN(a, "broker.example.org"), wi, "sts.amazonaws.com", repo+"pull_request")
	web(denied, denied, "session tags", gh, "sts:TagSession", "sts.amazonaws.com", repo+"pull_request")
	runMatrix(t, m)
}

func runMatrix(t *testing.T, m matrix) {
	t.Helper()
	got, err := iamsim.Evaluate(context.Background(), reqs(m))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		c := m.cells[i]
		if d.Decision == iamsim.Error || !c.want.ok(d.Decision) {
			t.Errorf("%s: got %s %s, want %s", d.Name, d.Decision, d.Error, c.want)
		}
	}
	t.Logf("%d requests evaluated", len(got))
}

func reqs(m matrix) []iamsim.Request {
	out := make([]iamsim.Request, len(m.cells))
	for i, c := range m.cells {
		out[i] = c.req
	}
	return out
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Details of the test role the matrix does not show: the boundary on every
// principal it creates, SSM core as the only attachable policy, EIP names
// that cannot move to the prod side, the shared rule set out of reach.
func TestCITestRoleDetails(t *testing.T) {
	iamsim.Require(t)
	a := acct
	ids := named(ciPolicies(t))
	ci := "arn:aws:sts::" + a + ":assumed-role/" + policy.CITestRole + "/gha-run-1"
	t7, prod, base := ciNames(t, "test-7"), ciNames(t, "prod"), ciNames(t, "base")
	var m matrix
	as := func(want expect, name, action, res string, ctx map[string]any) {
		if ctx == nil {
			ctx = map[string]any{}
		}
		m.add(want, iamsim.Request{Name: name, Principal: ci, Action: action, Resource: res, IdentityPolicies: ids, Context: ctx})
	}
	as(allowed, "attach SSM core to test-7 host role", "iam:AttachRolePolicy", t7.HostRoleARN,
		map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a), "iam:PolicyARN": policy.SSMCorePolicyARN})
	as(denied, "test role without the boundary", "iam:PutRolePolicy", t7.DataRoleARN, nil)
	as(denied, "test user with another boundary", "iam:CreateUser", t7.DaemonUserARN,
		map[string]any{"iam:PermissionsBoundary": "arn:aws:iam::aws:policy/AdministratorAccess"})
	as(denied, "admin policy on a test role", "iam:AttachRolePolicy", t7.HostRoleARN,
		map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a), "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"})
	as(denied, "the CI roles themselves", "iam:PutRolePolicy", naming.RoleARN(a, policy.CITestRole),
		map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a)})
	as(denied, "the prod CI role's trust", "iam:UpdateAssumeRolePolicy", naming.RoleARN(a, policy.CIProdRole), nil)
	as(denied, "a new version of its own policy", "iam:CreatePolicyVersion", "arn:aws:iam::"+a+":policy/"+policy.CITestRole+"-read", nil)
	as(denied, "TXT record of another name", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0EXAMPLE",
		map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{"example.org"},
			"route53:ChangeResourceRecordSetsRecordTypes": []string{"TXT"}})
	as(denied, "a test and a prod name in one change", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0EXAMPLE",
		map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{t7.BrokerHost, prod.BrokerHost},
			"route53:ChangeResourceRecordSetsRecordTypes": []string{"A"}})
	as(xdenied, "drop a test role's boundary", "iam:DeleteRolePermissionsBoundary", t7.DataRoleARN, nil)
	as(xdenied, "switch the active rule set", "ses:SetActiveReceiptRuleSet", "*", nil)
	as(xdenied, "step into a test role", "sts:AssumeRole", t7.DataRoleARN, nil)
	as(denied, "list a prod data bucket's keys", "s3:ListBucket", naming.BucketARN(prod.DataBuckets["vault"]), nil)
	as(denied, "resolve key aliases (only the account stack does)", "kms:ListAliases", "*", nil)
	as(allowed, "read prod role metadata (preview of nothing, harmless)", "iam:GetRole", prod.DataRoleARN, nil)

	eip := "arn:aws:ec2:us-east-1:" + a + ":elastic-ip/eipalloc-0123456789abcdef0"
	tagReq := func(name string) map[string]any {
		return map[string]any{"aws:RequestTag/Name": name, "aws:TagKeys": []string{"Name"}}
	}
	onAllocate := func(name string) map[string]any {
		return merge(tagReq(name), map[string]any{"ec2:CreateAction": "AllocateAddress"})
	}
	as(allowed, "tag on allocate "+t7.EIPTag, "ec2:CreateTags", eip, onAllocate(t7.EIPTag))
	for _, p := range []naming.Names{prod, base} {
		as(denied, "tag on allocate "+p.EIPTag, "ec2:CreateTags", eip, onAllocate(p.EIPTag))
	}
	as(denied, "allocate an untagged EIP", "ec2:AllocateAddress", eip, nil)
	as(denied, "allocate with another tag only", "ec2:AllocateAddress", eip, map[string]any{"aws:RequestTag/Owner": t7.EIPTag, "aws:TagKeys": []string{"Owner"}})
	as(denied, "tag on allocate without a Name", "ec2:CreateTags", eip, map[string]any{"ec2:CreateAction": "AllocateAddress"})
	testEIP := map[string]any{"aws:ResourceTag/Name": t7.EIPTag}
	as(allowed, "retag a test EIP with its name", "ec2:CreateTags", eip, merge(testEIP, tagReq(t7.EIPTag)))
	as(allowed, "add the stack tag to a test EIP", "ec2:CreateTags", eip, merge(testEIP, map[string]any{"aws:RequestTag/agentkeys:stack": "test-7", "aws:TagKeys": []string{"agentkeys:stack"}}))
	for _, p := range []naming.Names{prod, base} {
		as(xdenied, "rename a test EIP to "+p.EIPTag, "ec2:CreateTags", eip, merge(testEIP, tagReq(p.EIPTag)))
	}
	as(denied, "tag on another create action", "ec2:CreateTags", eip, merge(tagReq(t7.EIPTag), map[string]any{"ec2:CreateAction": "RunInstances"}))
	runMatrix(t, m)
}
