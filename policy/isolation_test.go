package policy_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

// expectation of one matrix cell.
type expect int

const (
	allowed expect = iota
	denied         // implicitly or explicitly
	xdenied        // an explicit Deny statement must decide
)

func (e expect) String() string { return [...]string{"Allowed", "denied", "ExplicitlyDenied"}[e] }

func (e expect) ok(decision string) bool {
	switch e {
	case allowed:
		return decision == iamsim.Allowed
	case denied:
		return decision == iamsim.ImplicitlyDenied || decision == iamsim.ExplicitlyDenied
	default:
		return decision == iamsim.ExplicitlyDenied
	}
}

type cell struct {
	req  iamsim.Request
	want expect
}

type matrix struct{ cells []cell }

func (m *matrix) add(want expect, r iamsim.Request) {
	if r.ResourceAccount == "" {
		r.ResourceAccount = acct
	}
	m.cells = append(m.cells, cell{r, want})
}

var actors = []string{"alice", "bob"}

func classSession(n naming.Names, c naming.DataClass, session string) string {
	return "arn:aws:sts::" + acct + ":assumed-role/" + n.DataClassRoles[c.Name] + "/" + session
}

func objectARN(bucket, key string) string { return naming.BucketARN(bucket) + "/" + key }

// tagCtx is the context of a class-role session carrying actor tag v
// (nil: no tag at all).
func tagCtx(v *string, tls bool, extra map[string]any) map[string]any {
	ctx := map[string]any{"aws:SecureTransport": fmt.Sprint(tls)}
	if v != nil {
		ctx[policy.PrincipalTagKey] = *v
	}
	for k, x := range extra {
		ctx[k] = x
	}
	return ctx
}

func str(s string) *string { return &s }

// s3Cells: what one class-role session of stack s may do to the data buckets.
func s3Cells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	for _, c := range naming.DataClasses {
		for _, a := range actors {
			sess := classSession(n, c, "jwt-"+a)
			req := func(name, action, bucket, resource string, ctx map[string]any, rp policy.Document) iamsim.Request {
				return iamsim.Request{Name: fmt.Sprintf("%s/%s/%s: %s", s, c.Name, a, name), Principal: sess, Action: action,
					Resource: resource, Context: ctx, ResourcePolicy: rp}
			}
			own := n.DataBuckets[c.Name]
			ownPol := policy.DataClassBucketPolicy(n, c)
			ownKey := "bots/" + a + "/" + c.Prefix + "/item"
			tag := tagCtx(str(a), true, nil)
			other := "bob"
			if a == "bob" {
				other = "alice"
			}
			otherKey := "bots/" + other + "/" + c.Prefix + "/item"

			// Own prefix.
			for _, act := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
				m.add(allowed, req("own prefix "+act, act, own, objectARN(own, ownKey), tag, ownPol))
			}
			m.add(allowed, req("own prefix list", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + a + "/" + c.Prefix + "/"}), ownPol))

			// Another actor's prefix.
			for _, act := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
				m.add(denied, req("other actor "+act, act, own, objectARN(own, otherKey), tag, ownPol))
			}
			m.add(denied, req("other actor list", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + other + "/" + c.Prefix + "/"}), ownPol))
			m.add(denied, req("list whole bucket", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/"}), ownPol))
			m.add(denied, req("own actor, other class prefix", "s3:GetObject", own,
				objectARN(own, "bots/"+a+"/"+otherPrefix(c)+"/item"), tag, ownPol))

			// The memory worker's inbox (bots/<op>/inbox/) lives in the memory
			// bucket only.
			inboxWant := denied
			if c.Name == "memory" {
				inboxWant = allowed
			}
			for _, act := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
				m.add(inboxWant, req("own inbox "+act, act, own, objectARN(own, "bots/"+a+"/inbox/"+other+"/svc/h.enc"), tag, ownPol))
				m.add(denied, req("other actor inbox "+act, act, own, objectARN(own, "bots/"+other+"/inbox/"+a+"/svc/h.enc"), tag, ownPol))
			}
			m.add(inboxWant, req("own inbox list", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + a + "/inbox/"}), ownPol))
			m.add(denied, req("other actor inbox list", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + other + "/inbox/"}), ownPol))

			// Another class's bucket in the same stack, with either prefix.
			for _, d := range naming.DataClasses {
				if d == c {
					continue
				}
				ob, op := n.DataBuckets[d.Name], policy.DataClassBucketPolicy(n, d)
				for _, p := range []string{c.Prefix, d.Prefix} {
					key := "bots/" + a + "/" + p + "/item"
					m.add(denied, req("class "+d.Name+" bucket get "+p, "s3:GetObject", ob, objectARN(ob, key), tag, op))
					m.add(denied, req("class "+d.Name+" bucket put "+p, "s3:PutObject", ob, objectARN(ob, key), tag, op))
				}
				m.add(denied, req("class "+d.Name+" bucket list", "s3:ListBucket", ob, naming.BucketARN(ob),
					tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + a + "/" + d.Prefix + "/"}), op))
			}

			// The other stack's bucket of the same class.
			for t, nt := range stacks {
				if t == s {
					continue
				}
				tb, tp := nt.DataBuckets[c.Name], policy.DataClassBucketPolicy(nt, c)
				m.add(denied, req("stack "+t+" bucket get", "s3:GetObject", tb, objectARN(tb, ownKey), tag, tp))
				m.add(denied, req("stack "+t+" bucket put", "s3:PutObject", tb, objectARN(tb, ownKey), tag, tp))
				m.add(denied, req("stack "+t+" bucket list", "s3:ListBucket", tb, naming.BucketARN(tb),
					tagCtx(str(a), true, map[string]any{"s3:prefix": "bots/" + a + "/" + c.Prefix + "/"}), tp))
			}

			// A tag with '/' would splice into the other actor's prefix: the
			// resource pattern matches, so only the explicit Deny stops it.
			splice := other + "/" + c.Prefix + "/x"
			spliceKey := "bots/" + splice + "/" + c.Prefix + "/item"
			m.add(xdenied, req("slash tag get", "s3:GetObject", own, objectARN(own, spliceKey), tagCtx(str(splice), true, nil), ownPol))
			m.add(xdenied, req("slash tag put", "s3:PutObject", own, objectARN(own, spliceKey), tagCtx(str(splice), true, nil), ownPol))
			m.add(xdenied, req("slash tag list", "s3:ListBucket", own, naming.BucketARN(own),
				tagCtx(str(splice), true, map[string]any{"s3:prefix": "bots/" + splice + "/" + c.Prefix + "/"}), ownPol))
		}

		// Missing and empty tags (no actor): nothing, explicitly.
		sess := classSession(n, c, "untagged")
		own, ownPol := n.DataBuckets[c.Name], policy.DataClassBucketPolicy(n, c)
		emptyKey := "bots//" + c.Prefix + "/item"
		for _, k := range []string{emptyKey, "bots/alice/" + c.Prefix + "/item"} {
			m.add(xdenied, iamsim.Request{Name: s + "/" + c.Name + ": missing tag get " + k, Principal: sess, Action: "s3:GetObject",
				Resource: objectARN(own, k), Context: tagCtx(nil, true, nil), ResourcePolicy: ownPol})
		}
		m.add(xdenied, iamsim.Request{Name: s + "/" + c.Name + ": empty tag get", Principal: sess, Action: "s3:GetObject",
			Resource: objectARN(own, emptyKey), Context: tagCtx(str(""), true, nil), ResourcePolicy: ownPol})
		m.add(xdenied, iamsim.Request{Name: s + "/" + c.Name + ": empty tag put", Principal: sess, Action: "s3:PutObject",
			Resource: objectARN(own, emptyKey), Context: tagCtx(str(""), true, nil), ResourcePolicy: ownPol})
		m.add(xdenied, iamsim.Request{Name: s + "/" + c.Name + ": empty tag list", Principal: sess, Action: "s3:ListBucket",
			Resource: naming.BucketARN(own), Context: tagCtx(str(""), true, map[string]any{"s3:prefix": "bots//" + c.Prefix + "/"}), ResourcePolicy: ownPol})

		// Without TLS, even the own prefix is refused.
		for _, act := range []string{"s3:GetObject", "s3:PutObject"} {
			m.add(xdenied, iamsim.Request{Name: s + "/" + c.Name + ": no TLS " + act, Principal: classSession(n, c, "jwt-alice"), Action: act,
				Resource: objectARN(own, "bots/alice/"+c.Prefix+"/item"), Context: tagCtx(str("alice"), false, nil), ResourcePolicy: ownPol})
		}
	}
}

func otherPrefix(c naming.DataClass) string {
	for _, d := range naming.DataClasses {
		if d != c {
			return d.Prefix
		}
	}
	return ""
}

// mailCells: the mail bucket is written by SES and read only by the data role.
func mailCells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	mb, mp := n.MailBucket, policy.MailBucketPolicy(n)
	tls := map[string]any{"aws:SecureTransport": "true"}
	dataSess := "arn:aws:sts::" + acct + ":assumed-role/" + n.DataRole + "/broker"
	m.add(allowed, iamsim.Request{Name: s + "/mail: data role get", Principal: dataSess, Action: "s3:GetObject",
		Resource: objectARN(mb, "inbound/msg"), Context: tls, ResourcePolicy: mp})
	m.add(allowed, iamsim.Request{Name: s + "/mail: data role list", Principal: dataSess, Action: "s3:ListBucket",
		Resource: naming.BucketARN(mb), Context: map[string]any{"aws:SecureTransport": "true", "s3:prefix": "inbound/"}, ResourcePolicy: mp})
	m.add(xdenied, iamsim.Request{Name: s + "/mail: data role get without TLS", Principal: dataSess, Action: "s3:GetObject",
		Resource: objectARN(mb, "inbound/msg"), Context: map[string]any{"aws:SecureTransport": "false"}, ResourcePolicy: mp})
	m.add(denied, iamsim.Request{Name: s + "/mail: data role put", Principal: dataSess, Action: "s3:PutObject",
		Resource: objectARN(mb, "inbound/msg"), Context: tls, ResourcePolicy: mp})
	hostSess := "arn:aws:sts::" + acct + ":assumed-role/" + n.HostRole + "/i-0abc"
	m.add(denied, iamsim.Request{Name: s + "/mail: host role get", Principal: hostSess, Action: "s3:GetObject",
		Resource: objectARN(mb, "inbound/msg"), Context: tls, ResourcePolicy: mp,
		IdentityPolicies: []iamsim.NamedPolicy{{Name: "host", Policy: policy.HostRoleInline(n)}}})
	for _, c := range naming.DataClasses {
		m.add(denied, iamsim.Request{Name: s + "/mail: " + c.Name + " role get", Principal: classSession(n, c, "jwt-alice"), Action: "s3:GetObject",
			Resource: objectARN(mb, "inbound/msg"), Context: tagCtx(str("alice"), true, nil), ResourcePolicy: mp})
	}
	// SES writing with its own rule, and with other stacks' rules: sesRuleCells.
	m.add(denied, iamsim.Request{Name: s + "/mail: SES writes outside inbound/", Principal: "ses.amazonaws.com", Action: "s3:PutObject",
		Resource: objectARN(mb, "other/msg"), Context: sesCtx(acct, n.ReceiptRule), ResourcePolicy: mp})
	otherSet := sesCtx(acct, n.ReceiptRule)
	otherSet["aws:SourceArn"] = "arn:aws:ses:us-east-1:" + acct + ":receipt-rule-set/other-set:receipt-rule/x"
	m.add(denied, iamsim.Request{Name: s + "/mail: SES rule of another rule set", Principal: "ses.amazonaws.com", Action: "s3:PutObject",
		Resource: objectARN(mb, "inbound/msg"), Context: otherSet, ResourcePolicy: mp})
	m.add(denied, iamsim.Request{Name: s + "/mail: SES without source", Principal: "ses.amazonaws.com", Action: "s3:PutObject",
		Resource: objectARN(mb, "inbound/msg"), Context: tls, ResourcePolicy: mp})
	m.add(denied, iamsim.Request{Name: s + "/mail: SES for another account", Principal: "ses.amazonaws.com", Action: "s3:PutObject",
		Resource: objectARN(mb, "inbound/msg"), Context: sesCtx("210987654321", n.ReceiptRule), ResourcePolicy: mp})
}

// sesCtx is the context of an SES write by receipt rule `rule` of the shared
// set in account `account`, spelled out here rather than taken from naming.
func sesCtx(account, rule string) map[string]any {
	return map[string]any{"aws:SecureTransport": "true", "aws:SourceAccount": account,
		"aws:SourceArn": "arn:aws:ses:us-east-1:" + account + ":receipt-rule-set/" + naming.SharedRuleSet + ":receipt-rule/" + rule}
}

// sesRuleCells: every stack's receipt rule lives in the one shared rule set,
// and any of them may write into s's inbound/ (the exact rule ARN breaks rule
// creation); a rule targets its own stack's bucket by name, and the rule set
// itself is the account stack's.
func sesRuleCells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	for _, t := range sortedStacks(stacks) {
		want, what := allowed, "stack "+t+"'s rule"
		if t == s {
			what = "own rule"
		}
		m.add(want, iamsim.Request{Name: s + "/mail: SES writes inbound with " + what, Principal: "ses.amazonaws.com", Action: "s3:PutObject",
			Resource: objectARN(n.MailBucket, "inbound/msg"), Context: sesCtx(acct, stacks[t].ReceiptRule), ResourcePolicy: policy.MailBucketPolicy(n)})
	}
}

func sortedStacks(stacks map[string]naming.Names) []string {
	var out []string
	for s := range stacks {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// fedSid is the federated trust's statement.
const fedSid = "BrokerFederationWithSessionTags"

// wallets are the wallet tags of the matrix's actors (0x + 40 hex, as the
// broker lowercases them).
var wallets = map[string]string{"alice": "0x" + strings.Repeat("a1", 20), "bob": "0x" + strings.Repeat("b2", 20)}

// trustCells: who may assume and tag the data and class roles of stack s.
// federation_test.go evaluates the broker's exact claim set; these cells
// vary one thing at a time.
func trustCells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	fed, static := policy.FederatedTrust(n), policy.StaticTrust(n)
	roles := []string{n.DataRoleARN}
	for _, c := range naming.DataClasses {
		roles = append(roles, n.ClassRoleARNs[c.Name])
	}
	// webCtx: the request context of a JWT with aud and the given tags (nil: absent).
	webCtx := func(host, aud string, actor, wallet *string, keys []string) map[string]any {
		ctx := map[string]any{host + ":aud": aud}
		if actor != nil {
			ctx[policy.RequestTagKey] = *actor
		}
		if wallet != nil {
			ctx[policy.WalletRequestTagKey] = *wallet
		}
		if keys != nil {
			ctx["aws:TagKeys"] = keys
		}
		return ctx
	}
	both := []string{policy.WalletTag, naming.ActorTag}
	aud := naming.OIDCAudience
	for _, role := range roles {
		rn := role[strings.LastIndex(role, "/")+1:]
		web := func(want expect, name, provider, host string, ctx map[string]any) {
			for _, act := range []string{"sts:AssumeRoleWithWebIdentity", "sts:TagSession"} {
				m.add(want, iamsim.Request{Name: fmt.Sprintf("%s/%s: %s %s", s, rn, name, act), Principal: provider, Action: act,
					Resource: role, Context: ctx, ResourcePolicy: fed, UnlistedKeys: []string{host + ":aud"}})
			}
		}
		own := func(want expect, name string, actor, wallet *string, keys []string) {
			web(want, name, n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, aud, actor, wallet, keys))
		}
		for _, a := range actors {
			own(allowed, "own provider actor "+a, str(a), str(wallets[a]), both)
			own(allowed, "own provider actor "+a+" without wallet (tag = actor)", str(a), str(a), both)
		}
		for t, nt := range stacks {
			if t != s {
				web(denied, "stack "+t+" provider", nt.OIDCProviderARN, nt.BrokerHost, webCtx(nt.BrokerHost, aud, str("alice"), str(wallets["alice"]), both))
			}
		}
		web(denied, "wrong aud", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, "some-other-client", str("alice"), str(wallets["alice"]), both))
		noAud := webCtx(n.BrokerHost, aud, str("alice"), str(wallets["alice"]), both)
		delete(noAud, n.BrokerHost+":aud")
		web(denied, "no aud", n.OIDCProviderARN, n.BrokerHost, noAud)
		own(denied, "slash tag", str("bob/credentials/x"), str(wallets["bob"]), both)
		own(denied, "empty tag", str(""), str(wallets["alice"]), both)
		own(denied, "missing tag", nil, str(wallets["alice"]), []string{policy.WalletTag})
		own(denied, "no tags at all", nil, nil, nil)
		own(denied, "slash wallet", str("alice"), str("bob/x"), both)
		own(denied, "empty wallet", str("alice"), str(""), both)
		own(denied, "missing wallet (actor key only)", str("alice"), nil, []string{naming.ActorTag})
		own(denied, "actor and an extra tag key", str("alice"), nil, []string{naming.ActorTag, "admin"})
		own(denied, "both tags and an extra key", str("alice"), str(wallets["alice"]), append(append([]string{}, both...), "admin"))

		// The runtime principals, each with its own identity policy: the
		// daemon user (static key) and the host role's EC2 session (§6).
		// Only the daemon user, under its own stack's static trust, may
		// assume; nobody may tag; the federated trust names neither. Every
		// cell carries the role's trust, so a trust that does not name the
		// caller fails the allowed cells.
		tagged := map[string]any{policy.RequestTagKey: "bob", "aws:TagKeys": []string{naming.ActorTag}}
		for _, t := range sortedStacks(stacks) {
			for _, r := range runtimes(stacks[t]) {
				who := r.what
				if t != s {
					who = "stack " + t + " " + r.what
				}
				for _, tr := range []struct {
					name string
					doc  policy.Document
				}{{"static", static}, {"federated", fed}} {
					want := denied
					if t == s && tr.name == "static" && r.what == "daemon user" {
						want = allowed
					}
					m.add(want, iamsim.Request{Name: fmt.Sprintf("%s/%s: %s AssumeRole (%s trust)", s, rn, who, tr.name), Principal: r.principal,
						Action: "sts:AssumeRole", Resource: role, Context: map[string]any{}, ResourcePolicy: tr.doc, IdentityPolicies: r.identity})
					if t == s {
						m.add(denied, iamsim.Request{Name: fmt.Sprintf("%s/%s: %s TagSession (%s trust)", s, rn, who, tr.name), Principal: r.principal,
							Action: "sts:TagSession", Resource: role, Context: tagged, ResourcePolicy: tr.doc, IdentityPolicies: r.identity})
					}
				}
			}
		}
	}
}

// boundaryOf is the permissions boundary stack n's roles and users carry:
// test stacks get the account stack's test boundary, so a grant it lacks
// does not work there.
func boundaryOf(n naming.Names) []iamsim.NamedPolicy {
	if n.Stack.Kind != naming.KindTest {
		return nil
	}
	return []iamsim.NamedPolicy{{Name: policy.TestBoundaryName, Policy: policy.TestBoundary(n.Fork)}}
}

// hostSession is an EC2 session of stack n's host role.
func hostSession(n naming.Names) string {
	return "arn:aws:sts::" + acct + ":assumed-role/" + n.HostRole + "/i-0abc"
}

// hostCells: the host role may make every AWS call of the services' contract
// (contract.Service.AWS) on its exact resource of stack s, and nothing near
// it. The resources are spelled out here, not taken from policy.
func hostCells(t testing.TB, m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	host := func(want expect, name, action, resource string, ctx map[string]any, rp any) {
		if ctx == nil {
			ctx = map[string]any{}
		}
		m.add(want, iamsim.Request{Name: s + "/host role: " + name, Principal: hostSession(n), Action: action, Resource: resource,
			Context: ctx, ResourcePolicy: rp, IdentityPolicies: []iamsim.NamedPolicy{{Name: "host", Policy: policy.HostRoleInline(n)}},
			Boundaries: boundaryOf(n)})
	}
	ses := func(identity string) string { return "arn:aws:ses:us-east-1:" + acct + ":identity/" + identity }
	omni := strings.Repeat("0f", 32) // the email worker's 64-hex actor
	list := func(prefix string) map[string]any {
		c := map[string]any{"aws:SecureTransport": "true"}
		if prefix != "" {
			c["s3:prefix"] = prefix
		}
		return c
	}
	tls := list("")
	vault, vaultPol := n.DataBuckets["vault"], policy.DataClassBucketPolicy(n, naming.DataClasses[0])
	type target struct {
		resource string
		ctx      map[string]any
		rp       any
	}
	// Each symbolic resource of the contract, on this stack, as the service calls it.
	targets := map[string][]target{
		"sender-identity": {{ses(n.Sender), nil, nil}},
		"mail-identities": {{ses(n.MailDomain), nil, nil}, {ses("someone@" + n.MailDomain), nil, nil}},
		"vault-bucket":    {{naming.BucketARN(vault), list("bots/" + omni + "/inbound/"), vaultPol}},
	}
	calls := 0
	for _, svc := range contract.Catalog(n.Stack.Chain) {
		for _, c := range svc.AWS {
			ts, ok := targets[c.Resource]
			if !ok {
				t.Fatalf("the contract has %s call %s on %q, which hostCells does not know: add its ARN", svc.Name, c.Action, c.Resource)
			}
			for _, tg := range ts {
				host(allowed, svc.Name+" "+c.Action+" "+tg.resource, c.Action, tg.resource, tg.ctx, tg.rp)
			}
			calls++
		}
	}
	if calls == 0 {
		t.Fatal("the contract lists no AWS call of the host's services")
	}

	// SES: the probe reads the exact FROM address only; nothing of another stack.
	host(denied, "probe the domain identity", "ses:GetEmailIdentity", ses(n.MailDomain), nil, nil)
	host(denied, "probe another address", "ses:GetEmailIdentity", ses("someone@"+n.MailDomain), nil, nil)
	for _, o := range sortedStacks(stacks) {
		if o == s {
			continue
		}
		on := stacks[o]
		host(denied, "probe stack "+o+"'s sender", "ses:GetEmailIdentity", ses(on.Sender), nil, nil)
		host(denied, "send as stack "+o+"'s sender", "ses:SendEmail", ses(on.Sender), nil, nil)
		host(denied, "send from stack "+o+"'s domain", "ses:SendEmail", ses(on.MailDomain), nil, nil)
		ob := on.DataBuckets["vault"]
		host(denied, "list stack "+o+"'s inbox", "s3:ListBucket", naming.BucketARN(ob), list("bots/"+omni+"/inbound/"),
			policy.DataClassBucketPolicy(on, naming.DataClasses[0]))
	}
	host(denied, "send from another account's domain", "ses:SendEmail", "arn:aws:ses:us-east-1:210987654321:identity/"+n.MailDomain, nil, nil)

	// Data buckets: no object access at all (creds, memory and config run
	// with AGENTKEYS_WORKER_REQUIRE_STS=1); the vault only listed under an
	// actor's inbound/.
	for _, act := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
		host(denied, "vault "+act+" in inbound/", act, objectARN(vault, "bots/"+omni+"/inbound/m"), tls, vaultPol)
		host(denied, "vault "+act+" of credentials", act, objectARN(vault, "bots/"+omni+"/credentials/svc.enc"), tls, vaultPol)
	}
	host(denied, "list the vault's credentials", "s3:ListBucket", naming.BucketARN(vault), list("bots/"+omni+"/credentials/"), vaultPol)
	host(denied, "list the whole vault", "s3:ListBucket", naming.BucketARN(vault), list(""), vaultPol)
	host(denied, "list the vault's bots/", "s3:ListBucket", naming.BucketARN(vault), list("bots/"), vaultPol)
	for _, c := range naming.DataClasses[1:] {
		b, bp := n.DataBuckets[c.Name], policy.DataClassBucketPolicy(n, c)
		host(denied, c.Name+" list inbound/", "s3:ListBucket", naming.BucketARN(b), list("bots/"+omni+"/inbound/"), bp)
		host(denied, c.Name+" list "+c.Prefix, "s3:ListBucket", naming.BucketARN(b), list("bots/"+omni+"/"+c.Prefix+"/"), bp)
		for _, act := range []string{"s3:GetObject", "s3:PutObject"} {
			host(denied, c.Name+" "+act, act, objectARN(b, "bots/"+omni+"/"+c.Prefix+"/svc.enc"), tls, bp)
		}
	}
}

// sshCells: the SSH user runs `aws ec2-instance-connect ssh --instance-id X
// --os-user agentkey`: DescribeInstances, then SendSSHPublicKey to its own
// stack's instance as agentkey only.
func sshCells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	ssh := func(want expect, name, action, resource string, ctx map[string]any) {
		// The simulator files ec2:osuser under ec2-instance-connect only.
		m.add(want, iamsim.Request{Name: s + "/ssh user: " + name, Principal: n.SSHUserARN, Action: action, Resource: resource,
			Context: ctx, IdentityPolicies: []iamsim.NamedPolicy{{Name: "ssh", Policy: policy.SSHUser(n, instanceID(s))}},
			Boundaries: boundaryOf(n), UnlistedKeys: []string{"ec2:osuser"}})
	}
	inst := func(id string) string { return "arn:aws:ec2:us-east-1:" + acct + ":instance/" + id }
	osuser := func(u string) map[string]any { return map[string]any{"ec2:osuser": u} }
	ssh(allowed, "describe instances", "ec2:DescribeInstances", "*", map[string]any{})
	ssh(allowed, "push a key as agentkey", "ec2-instance-connect:SendSSHPublicKey", inst(instanceID(s)), osuser(policy.SSHOSUser))
	for _, u := range []string{"ubuntu", "root", "ec2-user"} {
		ssh(denied, "push a key as "+u, "ec2-instance-connect:SendSSHPublicKey", inst(instanceID(s)), osuser(u))
	}
	for _, o := range sortedStacks(stacks) {
		if o != s {
			ssh(denied, "push a key to stack "+o+"'s instance", "ec2-instance-connect:SendSSHPublicKey", inst(instanceID(o)), osuser(policy.SSHOSUser))
		}
	}
	ssh(denied, "push a key to another instance", "ec2-instance-connect:SendSSHPublicKey", inst("i-0fffffffffffffff0"), osuser(policy.SSHOSUser))
}

// runtime is a principal the broker runs as, with its identity policy.
type runtime struct {
	what, principal string
	identity        []iamsim.NamedPolicy
}

// runtimes of stack n: the daemon user and an EC2 session of the host role.
func runtimes(n naming.Names) []runtime {
	return []runtime{
		{"daemon user", n.DaemonUserARN, []iamsim.NamedPolicy{{Name: "daemon", Policy: policy.DaemonUser(n)}}},
		{"host role", "arn:aws:sts::" + acct + ":assumed-role/" + n.HostRole + "/i-0abc", []iamsim.NamedPolicy{{Name: "host", Policy: policy.HostRoleInline(n)}}},
	}
}

func buildMatrix(t *testing.T) matrix {
	stacks := map[string]naming.Names{"test": names(t, "test"), "test-2": names(t, "test-2")}
	var m matrix
	for _, s := range []string{"test", "test-2"} {
		s3Cells(&m, stacks, s)
		mailCells(&m, stacks, s)
		trustCells(&m, stacks, s)
		hostCells(t, &m, stacks, s)
		sshCells(&m, stacks, s)
	}
	// The receipt rule set is shared by every stack of the account, prod too.
	rules := map[string]naming.Names{"prod": names(t, "prod"), "test": stacks["test"], "test-2": stacks["test-2"]}
	for _, s := range sortedStacks(rules) {
		sesRuleCells(&m, rules, s)
	}
	return m
}

// run evaluates the matrix and returns the cells whose decision is not the
// expected one (evaluator errors included).
func (m matrix) run(t *testing.T) (failures []string, counts map[string]int) {
	t.Helper()
	reqs := make([]iamsim.Request, len(m.cells))
	for i, c := range m.cells {
		reqs[i] = c.req
	}
	got, err := iamsim.Evaluate(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{}
	for i, d := range got {
		counts[d.Decision]++
		if d.Decision == iamsim.Error {
			failures = append(failures, fmt.Sprintf("%s: evaluator error: %s", d.Name, d.Error))
		} else if want := m.cells[i].want; !want.ok(d.Decision) {
			failures = append(failures, fmt.Sprintf("%s: got %s, want %s", d.Name, d.Decision, want))
		}
	}
	return failures, counts
}

// TestIsolationMatrix evaluates the §17.2 isolation invariants with
// @cloud-copilot/iam-simulate: two actors, three data classes, two stacks.
func TestIsolationMatrix(t *testing.T) {
	iamsim.Require(t)
	m := buildMatrix(t)
	failures, counts := m.run(t)
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("isolation matrix: %d requests: %d Allowed, %d ExplicitlyDenied, %d ImplicitlyDenied, %d Error",
		len(m.cells), counts[iamsim.Allowed], counts[iamsim.ExplicitlyDenied], counts[iamsim.ImplicitlyDenied], counts[iamsim.Error])
}

// mutate rewrites every policy.Document of the matrix with f.
func (m matrix) mutate(f func(policy.Document) policy.Document) matrix {
	out := matrix{cells: make([]cell, len(m.cells))}
	for i, c := range m.cells {
		r := c.req
		if d, ok := r.ResourcePolicy.(policy.Document); ok {
			r.ResourcePolicy = f(d)
		}
		ids := make([]iamsim.NamedPolicy, len(r.IdentityPolicies))
		for j, p := range r.IdentityPolicies {
			ids[j] = p
			if d, ok := p.Policy.(policy.Document); ok {
				ids[j].Policy = f(d)
			}
		}
		r.IdentityPolicies = ids
		bs := make([]iamsim.NamedPolicy, len(r.Boundaries))
		for j, p := range r.Boundaries {
			bs[j] = p
			if d, ok := p.Policy.(policy.Document); ok {
				bs[j].Policy = f(d)
			}
		}
		r.Boundaries = bs
		out.cells[i] = cell{r, c.want}
	}
	return out
}

// editStatements copies d and applies f to each statement; f returns false to drop it.
func editStatements(d policy.Document, f func(*policy.Statement) bool) policy.Document {
	out := policy.Document{Version: d.Version}
	for _, s := range d.Statement {
		s.Condition = cloneCond(s.Condition)
		if f(&s) {
			out.Statement = append(out.Statement, s)
		}
	}
	return out
}

func cloneCond(c map[string]map[string]any) map[string]map[string]any {
	if c == nil {
		return nil
	}
	out := map[string]map[string]any{}
	for op, kv := range c {
		out[op] = map[string]any{}
		for k, v := range kv {
			out[op][k] = v
		}
	}
	return out
}

// Each weakening of a document that the isolation story depends on must make
// the matrix fail: the matrix is sensitive to every line that matters.
func TestIsolationMatrixDetectsWeakenedPolicies(t *testing.T) {
	iamsim.Require(t)
	base := buildMatrix(t)
	drop := func(sid string) func(policy.Document) policy.Document {
		return func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool { return s.Sid != sid })
		}
	}
	dropCond := func(sid, op string) func(policy.Document) policy.Document {
		return func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == sid {
					delete(s.Condition, op)
				}
				return true
			})
		}
	}
	hostByDaemon := map[string]string{}
	for _, st := range []string{"test", "test-2"} {
		n := names(t, st)
		hostByDaemon[n.DaemonUserARN] = n.HostRoleARN
	}
	mutations := map[string]func(policy.Document) policy.Document{
		"no DenyMalformedActorTag": drop("DenyMalformedActorTag"),
		"no DenyMissingActorTag":   drop("DenyMissingActorTag"),
		"no DenyInsecureTransport": drop("DenyInsecureTransport"),
		"trust without aud":        dropCond(fedSid, "StringEquals"),
		"trust without non-empty":  dropCond(fedSid, "StringLike"),
		"trust without no-slash":   dropCond(fedSid, "StringNotLike"),
		"trust without tag keys":   dropCond(fedSid, "ForAllValues:StringEquals"),
		"trust without tag needed": func(d policy.Document) policy.Document {
			return dropCond(fedSid, "StringLike")(dropCond(fedSid, "Null")(d))
		},
		// The trust before this change: every real credential mint is denied.
		"trust allows only the actor tag key": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == fedSid {
					s.Condition["ForAllValues:StringEquals"] = map[string]any{"aws:TagKeys": []string{naming.ActorTag}}
				}
				return true
			})
		},
		"trust does not check the wallet tag": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == fedSid {
					for _, op := range []string{"Null", "StringLike", "StringNotLike"} {
						delete(s.Condition[op], policy.WalletRequestTagKey)
					}
				}
				return true
			})
		},
		"static trust names the host role again": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "RuntimePrincipalsAssume" {
					daemon := s.Principal.(map[string]any)["AWS"].(string)
					s.Principal = map[string]any{"AWS": []string{daemon, hostByDaemon[daemon]}}
				}
				return true
			})
		},
		"host role probes any identity": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "SesGetEmailIdentity" {
					s.Resource = "arn:aws:ses:*:*:identity/*"
				}
				return true
			})
		},
		"host role lists without a prefix": dropCond("S3ListBucket", "StringLike"),
		"host role reads inbound objects": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "S3ListBucket" {
					b := s.Resource.(string)
					s.Action, s.Resource = []string{"s3:ListBucket", "s3:GetObject"}, []string{b, b + "/" + contract.InboxPrefix}
					s.Condition = nil
				}
				return true
			})
		},
		"host role without the SES probe": drop("SesGetEmailIdentity"),
		"ssh user any osuser":             dropCond("InstanceConnectThisHost", "StringEquals"),
		"ssh user any instance": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "InstanceConnectThisHost" {
					s.Resource = "*"
				}
				return true
			})
		},
		"ssh user cannot find the instance":       drop("FindInstanceAddress"),
		"test boundary without DescribeInstances": drop("FindInstances"),
		"test boundary without SES":               drop("TestMail"),
		"memory inbox not granted": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if r, ok := s.Resource.([]string); ok && s.Sid == "ActorObjects" {
					s.Resource = r[0]
				}
				return true
			})
		},
		"objects on all of bots/": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "ActorObjects" {
					r := policy.Strings(s.Resource)[0]
					s.Resource = r[:strings.Index(r, "/bots/")] + "/bots/*"
				}
				return true
			})
		},
		"list without prefix condition": dropCond("ActorList", "StringLike"),
		"class grants to any principal": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "ActorObjects" || s.Sid == "ActorList" {
					s.Principal = "*"
				}
				return true
			})
		},
		"static trust lets the daemon tag": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "RuntimePrincipalsAssume" {
					s.Action = []string{"sts:AssumeRole", "sts:TagSession"}
				}
				return true
			})
		},
		"static trust open to any principal": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "RuntimePrincipalsAssume" {
					s.Principal = map[string]any{"AWS": "*"}
				}
				return true
			})
		},
		// Another stack's data role trusts only its own principals, so a
		// runtime principal (daemon user, host role: both carry
		// AssumeDataRole) allowed every role still needs a trust that
		// delegates to the account before it reaches one: weaken both.
		"runtime may assume any role, trust delegates to account": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				switch s.Sid {
				case "AssumeDataRole":
					s.Resource = "arn:aws:iam::" + acct + ":role/*"
				case "RuntimePrincipalsAssume":
					s.Principal = map[string]any{"AWS": "arn:aws:iam::" + acct + ":root"}
				}
				return true
			})
		},
		"SES write from any rule set": dropCond("AllowSESWriteInbound", "ArnLike"),
		"SES write unconditioned": func(d policy.Document) policy.Document {
			return dropCond("AllowSESWriteInbound", "ArnLike")(dropCond("AllowSESWriteInbound", "StringEquals")(d))
		},
	}
	// One evaluator process for all mutants: node start-up dominates.
	var all matrix
	var order []string
	for name := range mutations {
		order = append(order, name)
	}
	sort.Strings(order)
	for _, name := range order {
		all.cells = append(all.cells, base.mutate(mutations[name]).cells...)
	}
	for i := range all.cells {
		all.cells[i].req.Name = fmt.Sprintf("%d|%s", i/len(base.cells), all.cells[i].req.Name)
	}
	allFailures, _ := all.run(t)
	byMutant := map[string][]string{}
	for _, f := range allFailures {
		var i int
		if _, err := fmt.Sscanf(f, "%d|", &i); err != nil {
			t.Fatalf("unparsable failure %q", f)
		}
		byMutant[order[i]] = append(byMutant[order[i]], f[strings.Index(f, "|")+1:])
	}
	for _, name := range order {
		failures := byMutant[name]
		if len(failures) == 0 {
			t.Errorf("weakening %q went unnoticed by the matrix", name)
		} else {
			t.Logf("%-34s caught by %3d cells, e.g. %s", name, len(failures), failures[0])
		}
	}
}

// moto stores bucket policies unvalidated, so every document of every stack
// kind also goes through iam-policy's identity/trust/resource validators,
// with a malformed control of each kind.
func TestEvaluatorValidatesEveryDocument(t *testing.T) {
	iamsim.Require(t)
	kinds := map[policy.Use]string{policy.UseIdentity: iamsim.KindIdentity, policy.UseTrust: iamsim.KindTrust, policy.UseBucket: iamsim.KindResource}
	var in []iamsim.ValidateInput
	for _, stack := range stackNames {
		docs := policy.AllDocuments(names(t, stack), instanceID(stack))
		for _, k := range policy.SortedKeys(docs) {
			in = append(in, iamsim.ValidateInput{Name: stack + " " + k, Kind: kinds[policy.UseOf(k)], Policy: docs[k]})
		}
	}
	n := names(t, "test-2")
	bucketBadEffect := policy.MailBucketPolicy(n)
	bucketBadEffect.Statement = append([]policy.Statement(nil), bucketBadEffect.Statement...)
	bucketBadEffect.Statement[2].Effect = "Permit"
	trustWithResource := policy.FederatedTrust(n)
	trustWithResource.Statement[0].Resource = n.DataRoleARN
	identityWithPrincipal := policy.DaemonUser(n)
	identityWithPrincipal.Statement[0].Principal = "*"
	controls := []iamsim.ValidateInput{
		{Name: "control bucket effect Permit", Kind: iamsim.KindResource, Policy: bucketBadEffect},
		{Name: "control trust with resource", Kind: iamsim.KindTrust, Policy: trustWithResource},
		{Name: "control identity with principal", Kind: iamsim.KindIdentity, Policy: identityWithPrincipal},
	}
	got, err := iamsim.Validate(context.Background(), append(in, controls...))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if i < len(in) && len(r.Errors) > 0 {
			t.Errorf("%s: invalid: %v", r.Name, r.Errors)
		}
		if i >= len(in) && len(r.Errors) == 0 {
			t.Errorf("%s: validator accepted a malformed document", r.Name)
		}
	}
	t.Logf("iam-policy validated %d documents (%d stack kinds) and rejected %d malformed controls", len(in), len(stackNames), len(controls))
}
