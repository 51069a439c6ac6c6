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

// trustCells: who may assume and tag the data and class roles of stack s.
func trustCells(m *matrix, stacks map[string]naming.Names, s string) {
	n := stacks[s]
	fed, static := policy.FederatedTrust(n), policy.StaticTrust(n)
	roles := []string{n.DataRoleARN}
	for _, c := range naming.DataClasses {
		roles = append(roles, n.ClassRoleARNs[c.Name])
	}
	webCtx := func(host, aud string, tag *string, keys []string) map[string]any {
		ctx := map[string]any{host + ":aud": aud}
		if tag != nil {
			ctx[policy.RequestTagKey] = *tag
		}
		if keys != nil {
			ctx["aws:TagKeys"] = keys
		}
		return ctx
	}
	tagKeys := []string{naming.ActorTag}
	for _, role := range roles {
		rn := role[strings.LastIndex(role, "/")+1:]
		web := func(want expect, name, provider, host string, ctx map[string]any) {
			for _, act := range []string{"sts:AssumeRoleWithWebIdentity", "sts:TagSession"} {
				m.add(want, iamsim.Request{Name: fmt.Sprintf("%s/%s: %s %s", s, rn, name, act), Principal: provider, Action: act,
					Resource: role, Context: ctx, ResourcePolicy: fed, UnlistedKeys: []string{host + ":aud"}})
			}
		}
		for _, a := range actors {
			web(allowed, "own provider actor "+a, n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, str(a), tagKeys))
		}
		for t, nt := range stacks {
			if t != s {
				web(denied, "stack "+t+" provider", nt.OIDCProviderARN, nt.BrokerHost, webCtx(nt.BrokerHost, naming.OIDCAudience, str("alice"), tagKeys))
			}
		}
		web(denied, "wrong aud", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, "some-other-client", str("alice"), tagKeys))
		web(denied, "no aud", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, str("alice"), tagKeys))
		// "no aud": drop the key after building the context.
		last := m.cells[len(m.cells)-2:]
		for i := range last {
			delete(last[i].req.Context, n.BrokerHost+":aud")
		}
		web(denied, "slash tag", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, str("bob/credentials/x"), tagKeys))
		web(denied, "empty tag", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, str(""), tagKeys))
		web(denied, "missing tag", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, nil, nil))
		web(denied, "extra tag key", n.OIDCProviderARN, n.BrokerHost, webCtx(n.BrokerHost, naming.OIDCAudience, str("alice"),
			[]string{naming.ActorTag, "admin"}))

		// The runtime principals, each with its own identity policy: the
		// daemon user (static key) and the host role's EC2 session (§6).
		// Under the static trust both may assume every role of their stack,
		// neither may tag; the federated trust names neither; no other
		// stack's runtime principal may assume under either trust. Every cell
		// carries the role's trust, so a trust that does not name the caller
		// fails the allowed cells.
		tagged := map[string]any{policy.RequestTagKey: "bob", "aws:TagKeys": tagKeys}
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
					if t == s && tr.name == "static" {
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
	mutations := map[string]func(policy.Document) policy.Document{
		"no DenyMalformedActorTag": drop("DenyMalformedActorTag"),
		"no DenyMissingActorTag":   drop("DenyMissingActorTag"),
		"no DenyInsecureTransport": drop("DenyInsecureTransport"),
		"trust without aud":        dropCond("BrokerFederationWithActorTag", "StringEquals"),
		"trust without non-empty":  dropCond("BrokerFederationWithActorTag", "StringLike"),
		"trust without no-slash":   dropCond("BrokerFederationWithActorTag", "StringNotLike"),
		"trust without tag keys":   dropCond("BrokerFederationWithActorTag", "ForAllValues:StringEquals"),
		"trust without tag needed": func(d policy.Document) policy.Document {
			return dropCond("BrokerFederationWithActorTag", "StringLike")(dropCond("BrokerFederationWithActorTag", "Null")(d))
		},
		"objects on all of bots/": func(d policy.Document) policy.Document {
			return editStatements(d, func(s *policy.Statement) bool {
				if s.Sid == "ActorObjects" {
					r := s.Resource.(string)
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
