package policy

import (
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
)

const (
	allow = "Allow"
	deny  = "Deny"
)

// SSMCorePolicyARN is the AWS-managed policy the host role gets for Session Manager.
const SSMCorePolicyARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"

// SSHOSUser is the only login the SSH user may push keys for: the agentkey
// user the host agent creates for EC2 Instance Connect. The pre-bring-up
// fallback (ubuntu + .pem) does not go through Instance Connect, so limiting
// ec2:osuser costs nothing and keeps a leaked key away from ubuntu/root.
const SSHOSUser = "agentkey"

// ActorVar is the IAM policy variable that resolves to the caller's actor tag.
const ActorVar = "${aws:PrincipalTag/" + naming.ActorTag + "}"

// WalletTag is the broker JWT's other session tag (handlers/oidc.rs): the
// session's wallet, lowercased, or the actor omni when it has none.
const WalletTag = "agentkeys_user_wallet"

// SessionTags are the tag keys of every JWT the broker mints for STS; each is
// also a transitive tag key.
var SessionTags = []string{naming.ActorTag, WalletTag}

// Condition keys used for the session tags.
const (
	RequestTagKey       = "aws:RequestTag/" + naming.ActorTag
	PrincipalTagKey     = "aws:PrincipalTag/" + naming.ActorTag
	WalletRequestTagKey = "aws:RequestTag/" + WalletTag
)

func acct(n naming.Names) string { return n.Fork.AccountID }

// SESIdentityARNs are the mail domain identity and every address identity under it.
func SESIdentityARNs(n naming.Names) []string {
	base := "arn:aws:ses:" + n.Region + ":" + acct(n) + ":identity/"
	return []string{base + n.MailDomain, base + "*@" + n.MailDomain}
}

// ReceiptRuleSourceARN is the aws:SourceArn pattern SES writes with: any rule
// of the shared set. The exact rule ARN broke rule creation (aws-cdk #30375,
// #30143: SES's test write on CreateReceiptRule failed); aws:SourceAccount
// pins the account.
func ReceiptRuleSourceARN(n naming.Names) string {
	return "arn:aws:ses:" + n.Region + ":" + acct(n) + ":receipt-rule-set/" + n.RuleSet + ":receipt-rule/*"
}

// DaemonUser: the runtime user can do exactly one thing, assume its data role.
func DaemonUser(n naming.Names) Document {
	return Document{Version: Version, Statement: []Statement{{
		Sid: "AssumeDataRole", Effect: allow, Action: "sts:AssumeRole", Resource: n.DataRoleARN,
	}}}
}

// SSHUser: what the runbook's Instance Connect aliases call
// (`aws ec2-instance-connect ssh --instance-id X --os-user agentkey`): find
// the instance's address, then push a key to this stack's instance, as
// agentkey only. DescribeInstances has no resource-level permission, so its
// Resource is "*"; it reads metadata, never the host.
func SSHUser(n naming.Names, instanceID string) Document {
	return Document{Version: Version, Statement: []Statement{
		{
			Sid: "InstanceConnectThisHost", Effect: allow,
			Action:    "ec2-instance-connect:SendSSHPublicKey",
			Resource:  naming.InstanceARN(n.Region, acct(n), instanceID),
			Condition: map[string]map[string]any{"StringEquals": {"ec2:osuser": SSHOSUser}},
		},
		{Sid: "FindInstanceAddress", Effect: allow, Action: "ec2:DescribeInstances", Resource: "*"},
	}}
}

// StaticTrust (§4.2) is the pre-federation trust of the data and class
// roles: only the daemon user (static key, the operator's and old clients'
// data path) may assume them, and it cannot tag the session. The host role is
// not named: no service on the host calls sts:AssumeRole (the broker mints
// credentials with AssumeRoleWithWebIdentity on its own JWT, research §6),
// and a trust naming a role admits its sessions even without an identity
// grant. IAM checks that the user exists when the trust is written, so the
// role waits for it.
func StaticTrust(n naming.Names) Document {
	return Document{Version: Version, Statement: []Statement{{
		Sid: "RuntimePrincipalsAssume", Effect: allow,
		Principal: map[string]any{"AWS": n.DaemonUserARN},
		Action:    "sts:AssumeRole",
	}}}
}

// FederatedTrust (§9.3) lets only this stack's OIDC provider assume the role
// and set session tags. The broker's JWT carries exactly both session tags
// (SessionTags), so those are the only keys allowed. Whoever may
// sts:TagSession chooses the tag values, so no other principal is named, and
// each tag must be well formed: present, non-empty and without '/', which
// would splice the actor into another actor's prefix (the wallet tag is not
// used in a policy today; held to the same shape so it can be).
func FederatedTrust(n naming.Names) Document {
	return Document{Version: Version, Statement: []Statement{{
		Sid: "BrokerFederationWithSessionTags", Effect: allow,
		Principal: map[string]any{"Federated": n.OIDCProviderARN},
		Action:    []string{"sts:AssumeRoleWithWebIdentity", "sts:TagSession"},
		Condition: map[string]map[string]any{
			"StringEquals":              {n.BrokerHost + ":aud": naming.OIDCAudience},
			"Null":                      {RequestTagKey: "false", WalletRequestTagKey: "false"},
			"StringLike":                {RequestTagKey: "?*", WalletRequestTagKey: "?*"},
			"StringNotLike":             {RequestTagKey: "*/*", WalletRequestTagKey: "*/*"},
			"ForAllValues:StringEquals": {"aws:TagKeys": append([]string(nil), SessionTags...)},
		},
	}}}
}

// DataRoleInline (§4.2): read the mail bucket, send from the mail domain.
func DataRoleInline(n naming.Names) Document {
	b := naming.BucketARN(n.MailBucket)
	return Document{Version: Version, Statement: []Statement{
		{Sid: "MailBucketList", Effect: allow, Action: "s3:ListBucket", Resource: b},
		{Sid: "MailBucketRead", Effect: allow, Action: "s3:GetObject", Resource: b + "/*"},
		{Sid: "MailDomainSend", Effect: allow, Action: []string{"ses:SendEmail", "ses:GetEmailIdentity"}, Resource: SESIdentityARNs(n)},
	}}
}

// HostRoleTrust lets EC2 hand the role to the broker instance.
func HostRoleTrust() Document {
	return Document{Version: Version, Statement: []Statement{{
		Sid: "EC2Assume", Effect: allow,
		Principal: map[string]any{"Service": "ec2.amazonaws.com"},
		Action:    "sts:AssumeRole",
	}}}
}

// denyInsecureTransport is the TLS-only statement in the shape scanners
// (Prowler) recognise: Deny, s3:*, Bool aws:SecureTransport "false".
func denyInsecureTransport(bucket string) Statement {
	b := naming.BucketARN(bucket)
	return Statement{
		Sid: "DenyInsecureTransport", Effect: deny, Principal: "*", Action: "s3:*",
		Resource:  []string{b, b + "/*"},
		Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}},
	}
}

// MailBucketPolicy (§3): TLS only; SES writes inbound/ for the receipt rules
// of the shared set in this account (the exact rule ARN breaks rule creation,
// see ReceiptRuleSourceARN); the data role reads. The rule must be created
// after this policy, since SES test-writes the bucket on creation.
func MailBucketPolicy(n naming.Names) Document {
	b := naming.BucketARN(n.MailBucket)
	return Document{Version: Version, Statement: []Statement{
		denyInsecureTransport(n.MailBucket),
		{
			Sid: "AllowSESWriteInbound", Effect: allow,
			Principal: map[string]any{"Service": "ses.amazonaws.com"},
			Action:    "s3:PutObject",
			Resource:  b + "/inbound/*",
			Condition: map[string]map[string]any{
				"StringEquals": {"aws:SourceAccount": acct(n)},
				"ArnLike":      {"aws:SourceArn": ReceiptRuleSourceARN(n)},
			},
		},
		{
			Sid: "AllowDataRoleRead", Effect: allow,
			Principal: map[string]any{"AWS": n.DataRoleARN},
			Action:    []string{"s3:GetObject", "s3:ListBucket"},
			Resource:  []string{b, b + "/*"},
		},
	}}
}

// ActorPrefix is the object key prefix one actor may use in class c.
func ActorPrefix(c naming.DataClass) string { return actorPrefix(c.Prefix) }

func actorPrefix(p string) string { return "bots/" + ActorVar + "/" + p + "/" }

// ClassPrefixes are the prefixes under bots/<actor>/ the services use in class
// c's bucket: the memory worker also keeps each operator's inbox there
// (bots/<op>/inbox/, written with /v1/cap/inbox-sts credentials; research
// workers.md, agentkeys-worker-memory).
func ClassPrefixes(c naming.DataClass) []string {
	if c.Name == "memory" {
		return []string{c.Prefix, "inbox"}
	}
	return []string{c.Prefix}
}

// one is v itself when it holds a single element, so single grants keep
// rendering as plain strings.
func one(v []string) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}

// DataClassBucketPolicy (§4.3, §9.4): the class role reaches only
// bots/<its actor tag>/<prefix>/* of its own bucket (ClassPrefixes), and
// nothing at all when the tag is missing, empty or contains '/'.
func DataClassBucketPolicy(n naming.Names, c naming.DataClass) Document {
	bucket := n.DataBuckets[c.Name]
	b := naming.BucketARN(bucket)
	role := map[string]any{"AWS": n.ClassRoleARNs[c.Name]}
	var objects, lists []string
	for _, p := range ClassPrefixes(c) {
		objects = append(objects, b+"/"+actorPrefix(p)+"*")
		lists = append(lists, actorPrefix(p)+"*")
	}
	return Document{Version: Version, Statement: []Statement{
		denyInsecureTransport(bucket),
		{
			Sid: "ActorObjects", Effect: allow, Principal: role,
			Action:   []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
			Resource: one(objects),
		},
		{
			Sid: "ActorList", Effect: allow, Principal: role,
			Action:    "s3:ListBucket",
			Resource:  b,
			Condition: map[string]map[string]any{"StringLike": {"s3:prefix": one(lists)}},
		},
		{
			Sid: "DenyMissingActorTag", Effect: deny, Principal: role,
			Action: "s3:*", Resource: []string{b, b + "/*"},
			Condition: map[string]map[string]any{"Null": {PrincipalTagKey: "true"}},
		},
		{
			Sid: "DenyMalformedActorTag", Effect: deny, Principal: role,
			Action: "s3:*", Resource: []string{b, b + "/*"},
			Condition: map[string]map[string]any{"StringLike": {PrincipalTagKey: []string{"", "*/*"}}},
		},
	}}
}

// Use says where a document of AllDocuments is attached.
type Use string

const (
	UseIdentity Use = "identity" // user or role inline / managed policy
	UseTrust    Use = "trust"    // role assume-role policy
	UseBucket   Use = "bucket"   // S3 bucket policy
)

// Keys of AllDocuments.
const (
	KeyDaemonUser     = "daemon-user"
	KeySSHUser        = "ssh-user"
	KeyStaticTrust    = "static-trust"
	KeyFederatedTrust = "federated-trust"
	KeyDataRoleInline = "data-role-inline"
	KeyHostRoleTrust  = "host-role-trust"
	KeyHostRoleInline = "host-role-inline"
	KeyMailBucket     = "mail-bucket"
	KeyClassBucket    = "class-bucket:" // + data class name
)

// UseOf reports how the document under key is attached.
func UseOf(key string) Use {
	switch key {
	case KeyStaticTrust, KeyFederatedTrust, KeyHostRoleTrust:
		return UseTrust
	case KeyMailBucket:
		return UseBucket
	}
	if strings.HasPrefix(key, KeyClassBucket) {
		return UseBucket
	}
	return UseIdentity
}

// AllDocuments is every document the program can emit for a stack.
func AllDocuments(n naming.Names, instanceID string) map[string]Document {
	m := map[string]Document{
		KeyDaemonUser:     DaemonUser(n),
		KeySSHUser:        SSHUser(n, instanceID),
		KeyStaticTrust:    StaticTrust(n),
		KeyFederatedTrust: FederatedTrust(n),
		KeyDataRoleInline: DataRoleInline(n),
		KeyHostRoleTrust:  HostRoleTrust(),
		KeyHostRoleInline: HostRoleInline(n),
		KeyMailBucket:     MailBucketPolicy(n),
	}
	for _, c := range naming.DataClasses {
		m[KeyClassBucket+c.Name] = DataClassBucketPolicy(n, c)
	}
	return m
}

// SortedKeys lists the keys of m in order, for stable test output.
func SortedKeys(m map[string]Document) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
