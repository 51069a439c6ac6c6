package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

// brokerClaims is the JWT the broker mints for STS (handlers/oidc.rs
// build_oidc_jwt_claims; research broker.md §7).
type brokerClaims struct {
	Iss  string  `json:"iss"`
	Sub  string  `json:"sub"`
	Aud  string  `json:"aud"`
	Iat  int64   `json:"iat"`
	Exp  int64   `json:"exp"`
	Tags awsTags `json:"https://aws.amazon.com/tags"`
}

type awsTags struct {
	PrincipalTags     map[string][]string `json:"principal_tags"`
	TransitiveTagKeys []string            `json:"transitive_tag_keys"`
}

var (
	actorFormat  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	walletFormat = regexp.MustCompile(`^(0x[0-9a-f]{40}|[0-9a-f]{64})$`)
)

// mintClaims builds the claim set as oidc.rs does: the actor is the session's
// omni trimmed, without 0x, lowercased; the wallet tag is the session's
// wallet lowercased, or that omni when the session has no wallet (email,
// OAuth, agent sessions, and every /v1/cap/*-sts mint).
func mintClaims(t *testing.T, issuer, aud, wallet, omni string) brokerClaims {
	t.Helper()
	o := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(omni), "0x"))
	w := strings.ToLower(wallet)
	if w == "" {
		w = o
	}
	if !actorFormat.MatchString(o) || !walletFormat.MatchString(w) {
		t.Fatalf("fixture: actor %q or wallet %q is not in the broker's format", o, w)
	}
	c := brokerClaims{
		Iss: issuer, Sub: "agentkeys:agent:" + w, Aud: aud, Iat: 1767225600, Exp: 1767225900,
		Tags: awsTags{
			PrincipalTags:     map[string][]string{policy.WalletTag: {w}, naming.ActorTag: {o}},
			TransitiveTagKeys: []string{policy.WalletTag, naming.ActorTag},
		},
	}
	// The tag claim in the exact shape oidc.rs writes.
	b, _ := json.Marshal(c.Tags)
	want := fmt.Sprintf(`{"principal_tags":{"agentkeys_actor_omni":[%q],"agentkeys_user_wallet":[%q]},"transitive_tag_keys":["agentkeys_user_wallet","agentkeys_actor_omni"]}`, o, w)
	if string(b) != want {
		t.Fatalf("fixture: tag claim %s, want %s", b, want)
	}
	return c
}

// stsRequest is what STS evaluates for AssumeRoleWithWebIdentity (and the
// TagSession it implies) with claims c on role: the provider named by the
// issuer, its aud and sub keys, the principal tags as request tags, their
// keys, the transitive keys and (AssumeRoleWithWebIdentity) the session name.
func stsRequest(name, action, account, role, session string, c brokerClaims) iamsim.Request {
	host := strings.TrimPrefix(c.Iss, "https://")
	ctx := map[string]any{
		host + ":aud":           c.Aud,
		host + ":sub":           c.Sub,
		"sts:TransitiveTagKeys": c.Tags.TransitiveTagKeys,
	}
	if action == "sts:AssumeRoleWithWebIdentity" {
		ctx["sts:RoleSessionName"] = session // not a TagSession key
	}
	var keys []string
	for k, v := range c.Tags.PrincipalTags {
		keys = append(keys, k)
		ctx["aws:RequestTag/"+k] = v[0]
	}
	sort.Strings(keys)
	ctx["aws:TagKeys"] = keys
	return iamsim.Request{
		Name: name, Principal: "arn:aws:iam::" + account + ":oidc-provider/" + host, Action: action,
		Resource: role, ResourceAccount: account, Context: ctx,
		UnlistedKeys: []string{host + ":aud", host + ":sub"},
	}
}

// sessionName is the broker's RoleSessionName: agentkeys-<first 40 of the
// omni>-<secs>-<micros>, at most 64 characters.
func sessionName(omni string) string {
	s := "agentkeys-" + omni[:40] + "-1767225600-123456"
	return s[:min(len(s), 64)]
}

type claimCase struct {
	name   string
	roles  []string // role names of test-2
	claims brokerClaims
	want   expect
}

// The broker's real claim sets, and forged variants that change one thing,
// evaluated against the federated trust of test-2's roles.
func claimCases(t *testing.T) (naming.Names, []claimCase) {
	n, other := names(t, "test-2"), names(t, "test")
	// A wallet_sig session: a checksummed address and a 0x-prefixed omni,
	// both mixed case; the broker normalises them.
	wallet := "0x52908400098527886E0F7030069857D2E4169EE7"
	omni := "0xDE709F2102306220921060314715629080E2FB77E9A3C1B6F2C8D4E5A7B9C0D1"
	operator := strings.Repeat("3c", 32)
	aud := naming.OIDCAudience // what the deployment writes as BROKER_STS_AUDIENCE
	all := []string{n.DataRole}
	for _, c := range naming.DataClasses {
		all = append(all, n.DataClassRoles[c.Name])
	}
	memory := []string{n.DataClassRoles["memory"]}

	real := mintClaims(t, n.Issuer, aud, wallet, omni)
	forge := func(edit func(*brokerClaims)) brokerClaims {
		c := mintClaims(t, n.Issuer, aud, wallet, omni)
		c.Tags.PrincipalTags = map[string][]string{}
		for k, v := range real.Tags.PrincipalTags {
			c.Tags.PrincipalTags[k] = append([]string(nil), v...)
		}
		edit(&c)
		return c
	}
	pt := func(c *brokerClaims) map[string][]string { return c.Tags.PrincipalTags }
	return n, []claimCase{
		{"wallet_sig session (wallet 0x+40 hex, actor 64 hex)", all, real, allowed},
		{"email session (wallet tag = actor omni)", all, mintClaims(t, n.Issuer, aud, "", omni), allowed},
		{"canonical-sts / inbox-sts on MEMORY_ROLE_ARN (both tags = operator omni)", memory, mintClaims(t, n.Issuer, aud, "", operator), allowed},
		{"actor tag plus an extra key, no wallet", all, forge(func(c *brokerClaims) {
			delete(pt(c), policy.WalletTag)
			pt(c)["admin"] = []string{"x"}
		}), denied},
		{"wallet tag plus an extra key, no actor", all, forge(func(c *brokerClaims) {
			delete(pt(c), naming.ActorTag)
			pt(c)["admin"] = []string{"x"}
		}), denied},
		{"both tags plus an extra key", all, forge(func(c *brokerClaims) { pt(c)["admin"] = []string{"x"} }), denied},
		{"actor tag only (the claim set the old trust expected)", all, forge(func(c *brokerClaims) { delete(pt(c), policy.WalletTag) }), denied},
		{"missing actor tag", all, forge(func(c *brokerClaims) { delete(pt(c), naming.ActorTag) }), denied},
		{"actor with '/'", all, forge(func(c *brokerClaims) { pt(c)[naming.ActorTag] = []string{strings.Repeat("ab", 32) + "/credentials/x"} }), denied},
		{"empty actor", all, forge(func(c *brokerClaims) { pt(c)[naming.ActorTag] = []string{""} }), denied},
		{"wallet with '/'", all, forge(func(c *brokerClaims) { pt(c)[policy.WalletTag] = []string{"0xabc/def"} }), denied},
		{"wrong aud (the session JWT's agentkeys:broker)", all, forge(func(c *brokerClaims) { c.Aud = "agentkeys:broker" }), denied},
		{"another stack's provider (test's broker)", all, mintClaims(t, other.Issuer, aud, wallet, omni), denied},
	}
}

func claimRequests(n naming.Names, cases []claimCase, trust func(naming.Names) policy.Document) ([]iamsim.Request, []expect) {
	var reqs []iamsim.Request
	var wants []expect
	for _, cc := range cases {
		actor := cc.claims.Tags.PrincipalTags[naming.ActorTag]
		session := sessionName(strings.Repeat("0", 64))
		if len(actor) == 1 && len(actor[0]) >= 40 {
			session = sessionName(actor[0])
		}
		for _, role := range cc.roles {
			for _, act := range []string{"sts:AssumeRoleWithWebIdentity", "sts:TagSession"} {
				r := stsRequest(cc.name+" | "+role+" | "+act, act, acct, naming.RoleARN(acct, role), session, cc.claims)
				r.ResourcePolicy = trust(n)
				reqs = append(reqs, r)
				wants = append(wants, cc.want)
			}
		}
	}
	return reqs, wants
}

// The broker's real claim set, evaluated through the IAM evaluator against
// the federated trust of every data and class role: allowed; each forged
// variant: denied. The trust the project had before (actor key only) denies
// the real set, so this test tells the two apart.
func TestFederatedTrustAdmitsTheBrokersClaims(t *testing.T) {
	iamsim.Require(t)
	n, cases := claimCases(t)
	reqs, wants := claimRequests(n, cases, policy.FederatedTrust)
	got, err := iamsim.Evaluate(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ allowed, total int }
	table := map[string]*row{}
	for i, d := range got {
		c := strings.SplitN(d.Name, " | ", 2)[0]
		if table[c] == nil {
			table[c] = &row{}
		}
		table[c].total++
		if d.Decision == iamsim.Allowed {
			table[c].allowed++
		}
		if d.Decision == iamsim.Error {
			t.Errorf("%s: evaluator error: %s", d.Name, d.Error)
		} else if !wants[i].ok(d.Decision) {
			t.Errorf("%s: got %s, want %s", d.Name, d.Decision, wants[i])
		}
	}
	for _, cc := range cases {
		r := table[cc.name]
		t.Logf("%-72s want %-7s allowed %d/%d (AssumeRoleWithWebIdentity and TagSession on %d roles)", cc.name, cc.want, r.allowed, r.total, len(cc.roles))
	}

	// Control: the previous trust, which allowed only the actor tag key.
	old := func(n naming.Names) policy.Document {
		d := policy.FederatedTrust(n)
		st := d.Statement[0]
		st.Condition = map[string]map[string]any{
			"StringEquals":              st.Condition["StringEquals"],
			"Null":                      {policy.RequestTagKey: "false"},
			"StringLike":                {policy.RequestTagKey: "?*"},
			"StringNotLike":             {policy.RequestTagKey: "*/*"},
			"ForAllValues:StringEquals": {"aws:TagKeys": []string{naming.ActorTag}},
		}
		d.Statement = []policy.Statement{st}
		return d
	}
	reqs, _ = claimRequests(n, cases[:1], old)
	got, err = iamsim.Evaluate(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		if d.Decision == iamsim.Allowed || d.Decision == iamsim.Error {
			t.Errorf("control: the actor-only trust decided %s for %s; the test cannot tell it apart", d.Decision, d.Name)
		}
	}
}

// canonical-sts and inbox-sts assume MEMORY_ROLE_ARN (the memory class role)
// with an inline session policy; the session then reaches exactly what that
// policy names, inside the memory bucket policy's actor prefix.
func TestMemorySTSSessionsWithInlinePolicy(t *testing.T) {
	iamsim.Require(t)
	n := names(t, "test-2")
	op, delegate := strings.Repeat("3c", 32), strings.Repeat("5e", 32)
	bucket := n.DataBuckets["memory"]
	obj := func(key string) string { return naming.BucketARN(bucket) + "/" + key }
	sess := "arn:aws:sts::" + acct + ":assumed-role/" + n.DataClassRoles["memory"] + "/" + sessionName(op)
	tags := map[string]any{policy.PrincipalTagKey: op, "aws:PrincipalTag/" + policy.WalletTag: op, "aws:SecureTransport": "true"}
	inline := func(action, resource string) policy.Document {
		return policy.Document{Version: policy.Version, Statement: []policy.Statement{{Effect: "Allow", Action: action, Resource: resource}}}
	}
	canonical := inline("s3:GetObject", obj("bots/"+op+"/memory/svc.enc"))
	inbox := inline("s3:PutObject", obj("bots/"+op+"/inbox/"+delegate+"/svc/*"))
	cases := []struct {
		name, action, key string
		session           policy.Document
		want              expect
	}{
		{"canonical-sts: get the canonical object", "s3:GetObject", "bots/" + op + "/memory/svc.enc", canonical, allowed},
		{"canonical-sts: get another service's object", "s3:GetObject", "bots/" + op + "/memory/other.enc", canonical, denied},
		{"canonical-sts: put the canonical object", "s3:PutObject", "bots/" + op + "/memory/svc.enc", canonical, denied},
		{"inbox-sts: append to the delegate's inbox", "s3:PutObject", "bots/" + op + "/inbox/" + delegate + "/svc/0a1b.enc", inbox, allowed},
		{"inbox-sts: append to another delegate's inbox", "s3:PutObject", "bots/" + op + "/inbox/" + op + "/svc/0a1b.enc", inbox, denied},
		{"inbox-sts: read the inbox", "s3:GetObject", "bots/" + op + "/inbox/" + delegate + "/svc/0a1b.enc", inbox, denied},
	}
	var reqs []iamsim.Request
	for _, c := range cases {
		reqs = append(reqs, iamsim.Request{Name: c.name, Principal: sess, Action: c.action, Resource: obj(c.key), ResourceAccount: acct,
			Context: tags, ResourcePolicy: policy.DataClassBucketPolicy(n, naming.DataClasses[1]), SessionPolicy: c.session})
	}
	got, err := iamsim.Evaluate(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		switch {
		case d.Decision == iamsim.Error:
			t.Errorf("%s: evaluator error: %s", d.Name, d.Error)
		case !cases[i].want.ok(d.Decision):
			t.Errorf("%s: got %s, want %s", d.Name, d.Decision, cases[i].want)
		default:
			t.Logf("%-48s %s", d.Name, d.Decision)
		}
	}
}
