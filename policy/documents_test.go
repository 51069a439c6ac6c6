package policy_test

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

const acct = "123456789012"

var stackNames = []string{"prod", "test", "test-2", "test-17", "base"}

func names(t testing.TB, stack string) naming.Names {
	t.Helper()
	s, err := naming.ParseStack(stack)
	if err != nil {
		t.Fatal(err)
	}
	return naming.Derive(s, naming.Fork{AccountID: acct, Zone: "example.org", Region: "us-east-1"})
}

func instanceID(stack string) string {
	return "i-0" + strings.ReplaceAll(stack, "-", "") + "0000000000"
}

// Literal expectations per stack, written out so a naming regression shows here.
var want = map[string]struct {
	host, sfx, profile string
}{
	"prod":    {"broker.example.org", "", "agentkeys-broker-host"},
	"test":    {"test-broker.example.org", "-test", "agentkeys-test-broker-ssm"},
	"test-2":  {"broker-test-2.example.org", "-test-2", "agentkeys-test-broker-ssm-2"},
	"test-17": {"broker-test-17.example.org", "-test-17", "agentkeys-test-broker-ssm-17"},
	"base":    {"broker-base.example.org", "-base", "agentkeys-broker-host-base"},
}

func one(t *testing.T, d policy.Document) policy.Statement {
	t.Helper()
	if d.Version != "2012-10-17" || len(d.Statement) != 1 {
		t.Fatalf("want one statement, version 2012-10-17; got %s", d.JSON())
	}
	return d.Statement[0]
}

func sid(t *testing.T, d policy.Document, s string) policy.Statement {
	t.Helper()
	st, ok := d.StatementBySid(s)
	if !ok {
		t.Fatalf("no statement %q in %s", s, d.JSON())
	}
	return st
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %#v, want %#v", what, got, want)
	}
}

func TestDocumentsPerStack(t *testing.T) {
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			n, w := names(t, stack), want[stack]
			dataRole := "arn:aws:iam::" + acct + ":role/agentkeys-data-role" + w.sfx
			mail := "arn:aws:s3:::agentkeys-mail" + w.sfx + "-" + acct
			ses := []string{"arn:aws:ses:us-east-1:" + acct + ":identity/bots" + w.sfx + ".example.org",
				"arn:aws:ses:us-east-1:" + acct + ":identity/*@bots" + w.sfx + ".example.org"}

			s := one(t, policy.DaemonUser(n))
			eq(t, "daemon", [3]any{s.Effect, s.Action, s.Resource}, [3]any{"Allow", "sts:AssumeRole", dataRole})
			if s.Principal != nil || s.Condition != nil {
				t.Errorf("daemon user policy has principal/condition: %s", policy.DaemonUser(n).JSON())
			}

			d := policy.SSHUser(n, instanceID(stack))
			eq(t, "ssh statements", len(d.Statement), 2)
			s = sid(t, d, "InstanceConnectThisHost")
			eq(t, "ssh", [3]any{s.Effect, s.Action, s.Resource}, [3]any{"Allow", "ec2-instance-connect:SendSSHPublicKey",
				"arn:aws:ec2:us-east-1:" + acct + ":instance/" + instanceID(stack)})
			eq(t, "ssh osuser", s.Condition, map[string]map[string]any{"StringEquals": {"ec2:osuser": "agentkey"}})
			s = sid(t, d, "FindInstanceAddress")
			eq(t, "ssh describe", [4]any{s.Effect, s.Action, s.Resource, s.Condition},
				[4]any{"Allow", "ec2:DescribeInstances", "*", map[string]map[string]any(nil)})

			// Only the daemon user: no host service calls sts:AssumeRole.
			s = one(t, policy.StaticTrust(n))
			eq(t, "static trust", [4]any{s.Effect, s.Principal, s.Action, s.Condition},
				[4]any{"Allow", map[string]any{"AWS": "arn:aws:iam::" + acct + ":user/agentkeys-daemon" + w.sfx},
					"sts:AssumeRole", map[string]map[string]any(nil)})

			s = one(t, policy.FederatedTrust(n))
			eq(t, "federated principal", s.Principal, map[string]any{"Federated": "arn:aws:iam::" + acct + ":oidc-provider/" + w.host})
			eq(t, "federated actions", s.Action, []string{"sts:AssumeRoleWithWebIdentity", "sts:TagSession"})
			eq(t, "aud", s.Condition["StringEquals"], map[string]any{w.host + ":aud": "sts.amazonaws.com"})
			actor, wallet := "aws:RequestTag/agentkeys_actor_omni", "aws:RequestTag/agentkeys_user_wallet"
			eq(t, "tags present", s.Condition["Null"], map[string]any{actor: "false", wallet: "false"})
			eq(t, "tags non-empty", s.Condition["StringLike"], map[string]any{actor: "?*", wallet: "?*"})
			eq(t, "tags without slash", s.Condition["StringNotLike"], map[string]any{actor: "*/*", wallet: "*/*"})
			eq(t, "tag keys", s.Condition["ForAllValues:StringEquals"],
				map[string]any{"aws:TagKeys": []string{"agentkeys_actor_omni", "agentkeys_user_wallet"}})
			eq(t, "federated conditions", len(s.Condition), 5)

			d = policy.DataRoleInline(n)
			eq(t, "data list", [2]any{sid(t, d, "MailBucketList").Action, sid(t, d, "MailBucketList").Resource}, [2]any{"s3:ListBucket", mail})
			eq(t, "data read", [2]any{sid(t, d, "MailBucketRead").Action, sid(t, d, "MailBucketRead").Resource}, [2]any{"s3:GetObject", mail + "/*"})
			eq(t, "data ses", [2]any{sid(t, d, "MailDomainSend").Action, sid(t, d, "MailDomainSend").Resource},
				[2]any{[]string{"ses:SendEmail", "ses:GetEmailIdentity"}, ses})
			eq(t, "data statements", len(d.Statement), 3)

			s = one(t, policy.HostRoleTrust())
			eq(t, "host trust", [2]any{s.Principal, s.Action}, [2]any{map[string]any{"Service": "ec2.amazonaws.com"}, "sts:AssumeRole"})
			// Exactly the contract's calls on this stack's resources (host_test.go).
			d = policy.HostRoleInline(n)
			sender := "arn:aws:ses:us-east-1:" + acct + ":identity/noreply" + w.sfx + "@bots" + w.sfx + ".example.org"
			vault := "arn:aws:s3:::agentkeys-vault" + w.sfx + "-" + acct
			eq(t, "host statements", len(d.Statement), 3)
			eq(t, "host probe", [3]any{sid(t, d, "SesGetEmailIdentity").Action, sid(t, d, "SesGetEmailIdentity").Resource, sid(t, d, "SesGetEmailIdentity").Condition},
				[3]any{"ses:GetEmailIdentity", sender, map[string]map[string]any(nil)})
			eq(t, "host send", [2]any{sid(t, d, "SesSendEmail").Action, sid(t, d, "SesSendEmail").Resource},
				[2]any{"ses:SendEmail", append([]string{sender}, ses...)})
			eq(t, "host inbox list", [3]any{sid(t, d, "S3ListBucket").Action, sid(t, d, "S3ListBucket").Resource, sid(t, d, "S3ListBucket").Condition},
				[3]any{"s3:ListBucket", vault, map[string]map[string]any{"StringLike": {"s3:prefix": contract.InboxPrefix}}})
			for _, bad := range []string{"sts:", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "agentkeys-memory", "agentkeys-config", "agentkeys-mail"} {
				if strings.Contains(d.JSON(), bad) {
					t.Errorf("host role inline mentions %s: %s", bad, d.JSON())
				}
			}
			eq(t, "host role name", n.HostRole, w.profile)

			d = policy.MailBucketPolicy(n)
			eq(t, "mail statements", len(d.Statement), 3)
			tlsOnly(t, d, mail)
			s = sid(t, d, "AllowSESWriteInbound")
			eq(t, "ses write", [3]any{s.Principal, s.Action, s.Resource},
				[3]any{map[string]any{"Service": "ses.amazonaws.com"}, "s3:PutObject", mail + "/inbound/*"})
			// The rules of the shared set in this account: the exact rule ARN
			// breaks CreateReceiptRule's test write (FIELD-NOTES, aws-cdk #30375).
			eq(t, "ses write conditions", s.Condition, map[string]map[string]any{
				"StringEquals": {"aws:SourceAccount": acct},
				"ArnLike":      {"aws:SourceArn": "arn:aws:ses:us-east-1:" + acct + ":receipt-rule-set/agentkeys:receipt-rule/*"},
			})
			if strings.Contains(d.JSON(), "aws:Referer") {
				t.Error("mail bucket policy uses legacy aws:Referer")
			}
			s = sid(t, d, "AllowDataRoleRead")
			eq(t, "data role read", [3]any{s.Principal, s.Action, s.Resource},
				[3]any{map[string]any{"AWS": dataRole}, []string{"s3:GetObject", "s3:ListBucket"}, []string{mail, mail + "/*"}})

			for _, c := range naming.DataClasses {
				bucket := "arn:aws:s3:::agentkeys-" + c.Name + w.sfx + "-" + acct
				role := map[string]any{"AWS": "arn:aws:iam::" + acct + ":role/agentkeys-" + c.Name + "-role" + w.sfx}
				path := "bots/${aws:PrincipalTag/agentkeys_actor_omni}/" + c.Prefix + "/*"
				var objects, lists any = bucket + "/" + path, path
				if c.Name == "memory" {
					// The memory worker's inbox lives in the memory bucket too.
					inbox := "bots/${aws:PrincipalTag/agentkeys_actor_omni}/inbox/*"
					objects, lists = []string{bucket + "/" + path, bucket + "/" + inbox}, []string{path, inbox}
				}
				d := policy.DataClassBucketPolicy(n, c)
				eq(t, c.Name+" statements", len(d.Statement), 5)
				tlsOnly(t, d, bucket)
				s := sid(t, d, "ActorObjects")
				eq(t, c.Name+" objects", [3]any{s.Principal, s.Action, s.Resource},
					[3]any{role, []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, objects})
				s = sid(t, d, "ActorList")
				eq(t, c.Name+" list", [4]any{s.Principal, s.Action, s.Resource, s.Condition},
					[4]any{role, "s3:ListBucket", bucket, map[string]map[string]any{"StringLike": {"s3:prefix": lists}}})
				s = sid(t, d, "DenyMissingActorTag")
				eq(t, c.Name+" deny missing", [4]any{s.Effect, s.Principal, s.Action, s.Condition},
					[4]any{"Deny", role, "s3:*", map[string]map[string]any{"Null": {"aws:PrincipalTag/agentkeys_actor_omni": "true"}}})
				s = sid(t, d, "DenyMalformedActorTag")
				eq(t, c.Name+" deny malformed", [4]any{s.Effect, s.Principal, s.Action, s.Condition},
					[4]any{"Deny", role, "s3:*", map[string]map[string]any{"StringLike": {"aws:PrincipalTag/agentkeys_actor_omni": []string{"", "*/*"}}}})
			}
		})
	}
}

// tlsOnly checks the statement in the exact shape scanners recognise.
func tlsOnly(t *testing.T, d policy.Document, bucketARN string) {
	t.Helper()
	s := sid(t, d, "DenyInsecureTransport")
	eq(t, "tls-only", [5]any{s.Effect, s.Principal, s.Action, s.Resource, s.Condition},
		[5]any{"Deny", "*", "s3:*", []string{bucketARN, bucketARN + "/*"}, map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}}})
}

func TestAllDocumentsKeysAndUse(t *testing.T) {
	n := names(t, "test-2")
	docs := policy.AllDocuments(n, "i-0abc")
	keys := policy.SortedKeys(docs)
	eq(t, "keys", keys, []string{"class-bucket:config", "class-bucket:memory", "class-bucket:vault", "daemon-user",
		"data-role-inline", "federated-trust", "host-role-inline", "host-role-trust", "mail-bucket", "ssh-user", "static-trust"})
	uses := map[policy.Use][]string{}
	for _, k := range keys {
		uses[policy.UseOf(k)] = append(uses[policy.UseOf(k)], k)
	}
	eq(t, "trust", uses[policy.UseTrust], []string{"federated-trust", "host-role-trust", "static-trust"})
	eq(t, "bucket", uses[policy.UseBucket], []string{"class-bucket:config", "class-bucket:memory", "class-bucket:vault", "mail-bucket"})
	eq(t, "identity", uses[policy.UseIdentity], []string{"daemon-user", "data-role-inline", "host-role-inline", "ssh-user"})
	// Identity documents never name a principal; resource documents always do.
	for _, k := range keys {
		for _, s := range docs[k].Statement {
			if (policy.UseOf(k) == policy.UseIdentity) != (s.Principal == nil) {
				t.Errorf("%s: statement %q principal %v does not fit a %s policy", k, s.Sid, s.Principal, policy.UseOf(k))
			}
		}
	}
}

// A stack's documents never name another stack's principals or buckets.
func TestNoCrossStackReference(t *testing.T) {
	for _, a := range stackNames {
		na := names(t, a)
		var all strings.Builder
		for _, d := range policy.AllDocuments(na, instanceID(a)) {
			all.WriteString(d.JSON())
		}
		text := all.String()
		for _, b := range stackNames {
			if a == b {
				continue
			}
			nb := names(t, b)
			forbidden := []string{`"` + nb.DataRoleARN + `"`, `"` + nb.DaemonUserARN + `"`, `"` + nb.HostRoleARN + `"`,
				`"` + nb.OIDCProviderARN + `"`, `"` + nb.ReceiptRuleARN + `"`,
				`"` + nb.BrokerHost + `:aud"`, ":::" + nb.MailBucket + `"`, ":::" + nb.MailBucket + "/", "identity/" + nb.MailDomain + `"`,
				instanceID(b)}
			for _, c := range naming.DataClasses {
				forbidden = append(forbidden, `"`+nb.ClassRoleARNs[c.Name]+`"`, ":::"+nb.DataBuckets[c.Name]+`"`, ":::"+nb.DataBuckets[c.Name]+"/")
			}
			for _, f := range forbidden {
				if strings.Contains(text, f) {
					t.Errorf("stack %s documents mention stack %s identifier %s", a, b, f)
				}
			}
		}
	}
}

func TestJSONCompactAndDeterministic(t *testing.T) {
	n := names(t, "test-2")
	got := policy.DaemonUser(n).JSON()
	eq(t, "daemon json", got, `{"Version":"2012-10-17","Statement":[{"Sid":"AssumeDataRole","Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::123456789012:role/agentkeys-data-role-test-2"}]}`)
	fed := policy.FederatedTrust(n).JSON()
	// Condition operators render sorted, so re-plans show no diff.
	eq(t, "federated json", fed, `{"Version":"2012-10-17","Statement":[{"Sid":"BrokerFederationWithSessionTags","Effect":"Allow",`+
		`"Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/broker-test-2.example.org"},`+
		`"Action":["sts:AssumeRoleWithWebIdentity","sts:TagSession"],"Condition":{`+
		`"ForAllValues:StringEquals":{"aws:TagKeys":["agentkeys_actor_omni","agentkeys_user_wallet"]},`+
		`"Null":{"aws:RequestTag/agentkeys_actor_omni":"false","aws:RequestTag/agentkeys_user_wallet":"false"},`+
		`"StringEquals":{"broker-test-2.example.org:aud":"sts.amazonaws.com"},`+
		`"StringLike":{"aws:RequestTag/agentkeys_actor_omni":"?*","aws:RequestTag/agentkeys_user_wallet":"?*"},`+
		`"StringNotLike":{"aws:RequestTag/agentkeys_actor_omni":"*/*","aws:RequestTag/agentkeys_user_wallet":"*/*"}}}]}`)
	for i := 0; i < 20; i++ {
		for k, d := range policy.AllDocuments(n, "i-0abc") {
			if again := policy.AllDocuments(n, "i-0abc")[k].JSON(); again != d.JSON() {
				t.Fatalf("%s renders differently on a second call", k)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(d.JSON()), &v); err != nil {
				t.Fatalf("%s: not JSON: %v", k, err)
			}
			if strings.ContainsAny(d.JSON(), "\n\t") || strings.Contains(d.JSON(), `\u0026`) {
				t.Fatalf("%s: not compact or HTML-escaped: %s", k, d.JSON())
			}
		}
	}
	sorted := sort.StringsAreSorted(policy.SortedKeys(policy.AllDocuments(n, "i")))
	eq(t, "sorted keys", sorted, true)
}
