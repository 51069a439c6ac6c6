package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// GitHub Actions' OIDC issuer and the audience its tokens carry for AWS.
const (
	GitHubOIDCHost = "token.actions.githubusercontent.com"
	GitHubOIDCURL  = "https://" + GitHubOIDCHost
)

// CISessionSeconds is the CI role's maximum session: one deploy, not a day.
const CISessionSeconds = 3600

// SecretsKeyAlias is the KMS alias of the stacks' Pulumi secrets provider
// (scripts/bootstrap-state.sh creates it).
const SecretsKeyAlias = "alias/agentkeys-pulumi"

// PulumiProject is the project name of Pulumi.yaml; the DIY state backend
// stores stacks under .pulumi/stacks/<project>/<stack>.json.
const PulumiProject = "agentkeys"

// TestBoundaryName is the permissions boundary every test stack's role and
// user must carry: CI may create principals, so without it CI could create a
// test user with an admin inline policy and mint itself a key.
const TestBoundaryName = "agentkeys-test-boundary"

// StateBucket is the S3 bucket of the self-managed Pulumi state backend.
func StateBucket(acct string) string { return "agentkeys-pulumi-state-" + acct }

// GitHubProviderARN is the ARN of the account's GitHub Actions OIDC provider.
func GitHubProviderARN(acct string) string { return naming.OIDCProviderARN(acct, GitHubOIDCHost) }

// TestBoundaryARN is the ARN of the test principals' permissions boundary.
func TestBoundaryARN(acct string) string {
	return "arn:aws:iam::" + acct + ":policy/" + TestBoundaryName
}

// InstanceNameTag is the EC2 Name tag of a stack's broker instance (§0.3
// fleet table: agentkeys-broker-test, agentkeys-broker-test-2, ...).
func InstanceNameTag(n naming.Names) string { return "agentkeys-broker" + n.Stack.Suffix }

var (
	repoRe   = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$`)
	branchRe = regexp.MustCompile(`^[A-Za-z0-9._/*-]+$`)
	envRe    = regexp.MustCompile(`^[A-Za-z0-9._ *-]+$`)
)

// CITrust is the CI deploy role's trust policy: GitHub's provider only, the
// STS audience, and a sub pinned to the repository's branches and
// environments. No sts:TagSession: a workflow must not choose session tags.
func CITrust(acct, repo string, branches, envs []string) (Document, error) {
	if !repoRe.MatchString(repo) {
		return Document{}, fmt.Errorf("agentkeys:githubRepo %q is not owner/name (example: litentry/agentKeys)", repo)
	}
	if len(branches)+len(envs) == 0 {
		return Document{}, fmt.Errorf("agentkeys:ciBranches and agentkeys:ciEnvironments are both empty: the CI role would trust no workflow (example: agentkeys:ciBranches: [main])")
	}
	var subs []string
	for _, b := range branches {
		if !branchRe.MatchString(b) || strings.HasPrefix(b, "refs/") || b == "*" {
			return Document{}, fmt.Errorf("agentkeys:ciBranches entry %q is not a branch name or pattern without refs/heads/ (examples: main, release/*); a lone * would trust every branch", b)
		}
		subs = append(subs, "repo:"+repo+":ref:refs/heads/"+b)
	}
	for _, e := range envs {
		if !envRe.MatchString(e) || e == "*" {
			return Document{}, fmt.Errorf("agentkeys:ciEnvironments entry %q is not a GitHub environment name (example: ci-deploy)", e)
		}
		subs = append(subs, "repo:"+repo+":environment:"+e)
	}
	return Document{Version: Version, Statement: []Statement{{
		Sid: "GitHubActionsOfRepo", Effect: allow,
		Principal: map[string]any{"Federated": GitHubProviderARN(acct)},
		Action:    "sts:AssumeRoleWithWebIdentity",
		Condition: map[string]map[string]any{
			"StringEquals": {GitHubOIDCHost + ":aud": naming.OIDCAudience},
			"StringLike":   {GitHubOIDCHost + ":sub": subs},
		},
	}}}, nil
}

// TestPatterns are IAM wildcard patterns matching every test slot's names:
// slot 1's exact names plus slot N's names with the slot number replaced by
// '*'. They are derived from package naming, so a naming change moves them.
type TestPatterns struct {
	Users, Roles, InstanceProfiles, HostRoles []string
	Buckets                                   []string
	Issuers                                   []string // broker hosts (OIDC issuers)
	SESIdentities                             []string // mail domains and senders
	MailDomains                               []string
	RecordNames                               []string // Route 53 names of a test stack
	EIPTags, InstanceNames                    []string
}

// slotSentinel is a slot number no name contains by accident; it is replaced
// by '*' to turn slot N's names into patterns.
const slotSentinel = 987654321

// recordNames are the Route 53 names a stack writes: the nine A records and
// the mail domain's MX/SPF, DMARC and DKIM CNAMEs.
func recordNames(n naming.Names) []string {
	return append(n.Hostnames(), n.MailDomain, "_dmarc."+n.MailDomain, "*._domainkey."+n.MailDomain)
}

// TestNamePatterns derives the test-fleet patterns for fork f.
func TestNamePatterns(f naming.Fork) TestPatterns {
	var p TestPatterns
	star := func(s string) string { return strings.ReplaceAll(s, strconv.Itoa(slotSentinel), "*") }
	for _, name := range []string{"test", "test-" + strconv.Itoa(slotSentinel)} {
		s, err := naming.ParseStack(name)
		if err != nil {
			panic("policy: naming rejects " + name + ": " + err.Error())
		}
		n := naming.Derive(s, f)
		add := func(dst *[]string, vs ...string) {
			for _, v := range vs {
				*dst = append(*dst, star(v))
			}
		}
		add(&p.Users, n.DaemonUser, n.SSHUser)
		add(&p.Roles, n.DataRole, n.HostRole)
		for _, c := range naming.DataClasses {
			add(&p.Roles, n.DataClassRoles[c.Name])
			add(&p.Buckets, n.DataBuckets[c.Name])
		}
		add(&p.Buckets, n.MailBucket)
		add(&p.InstanceProfiles, n.InstanceProfile)
		add(&p.HostRoles, n.HostRole)
		add(&p.Issuers, n.BrokerHost)
		add(&p.SESIdentities, n.MailDomain, n.Sender)
		add(&p.MailDomains, n.MailDomain)
		add(&p.RecordNames, recordNames(n)...)
		add(&p.EIPTags, n.EIPTag)
		add(&p.InstanceNames, InstanceNameTag(n))
	}
	for _, l := range []*[]string{&p.Users, &p.Roles, &p.InstanceProfiles, &p.HostRoles, &p.Buckets, &p.Issuers, &p.SESIdentities, &p.MailDomains, &p.RecordNames, &p.EIPTags, &p.InstanceNames} {
		*l = uniq(*l)
	}
	return p
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Glob reports whether s matches IAM wildcard pattern p ('*' any run, '?' one character).
func Glob(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if Glob(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			p, s = p[1:], s[1:]
		default:
			if s == "" || p[0] != s[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return s == ""
}

func anyGlob(ps []string, s string) bool {
	for _, p := range ps {
		if Glob(p, s) {
			return true
		}
	}
	return false
}

// mutableNames lists a stack's names by pattern class, for the coverage check.
func mutableNames(n naming.Names) map[string][]string {
	m := map[string][]string{
		"user":             {n.DaemonUser, n.SSHUser},
		"role":             {n.DataRole, n.HostRole},
		"instance-profile": {n.InstanceProfile},
		"bucket":           {n.MailBucket},
		"issuer":           {n.BrokerHost},
		"ses-identity":     {n.MailDomain, n.Sender},
		"record":           recordNames(n),
		"eip-tag":          {n.EIPTag},
		"instance":         {InstanceNameTag(n)},
	}
	for _, c := range naming.DataClasses {
		m["role"] = append(m["role"], n.DataClassRoles[c.Name])
		m["bucket"] = append(m["bucket"], n.DataBuckets[c.Name])
	}
	return m
}

func (p TestPatterns) byClass() map[string][]string {
	return map[string][]string{
		"user": p.Users, "role": p.Roles, "instance-profile": p.InstanceProfiles, "bucket": p.Buckets,
		"issuer": p.Issuers, "ses-identity": p.SESIdentities, "record": p.RecordNames,
		"eip-tag": p.EIPTags, "instance": p.InstanceNames,
	}
}

// CheckCoverage proves the patterns against naming before the policy is
// used: every name of test slots 1..maxSlot matches, and no name of prod or
// of a chain stack does. A naming change that broke either fails the plan
// instead of producing a role that is too weak or too strong.
func (p TestPatterns) CheckCoverage(f naming.Fork, maxSlot int) error {
	if maxSlot < 1 {
		return fmt.Errorf("agentkeys:maxTestSlot is %d; it must be >= 1 (example: 20)", maxSlot)
	}
	classes := p.byClass()
	for slot := 1; slot <= maxSlot; slot++ {
		name := "test"
		if slot > 1 {
			name = "test-" + strconv.Itoa(slot)
		}
		s, err := naming.ParseStack(name)
		if err != nil {
			return err
		}
		for class, names := range mutableNames(naming.Derive(s, f)) {
			for _, v := range names {
				if !anyGlob(classes[class], v) {
					return fmt.Errorf("CI policy: %s %q of stack %s matches no test pattern %v; the naming scheme changed, update policy.TestNamePatterns", class, v, name, classes[class])
				}
			}
		}
	}
	prodStacks := []string{"prod"}
	for c := range naming.Chains {
		prodStacks = append(prodStacks, c)
	}
	sort.Strings(prodStacks)
	for _, name := range prodStacks {
		s, err := naming.ParseStack(name)
		if err != nil {
			return err
		}
		for class, names := range mutableNames(naming.Derive(s, f)) {
			for _, v := range names {
				for _, pat := range classes[class] {
					if Glob(pat, v) {
						return fmt.Errorf("CI policy: test pattern %q also matches %s %q of prod-posture stack %s", pat, class, v, name)
					}
				}
			}
		}
	}
	return nil
}

// CIBackend names the Pulumi state bucket and the secrets key CI uses.
type CIBackend struct {
	StateBucket   string
	SecretsKeyARN string // the key behind SecretsKeyAlias (an alias ARN cannot authorise Decrypt)
}

func prefixed(prefix string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = prefix + v
	}
	return out
}

// CIReadActions let CI preview and refresh every stack. Object reads are not
// among them: prod data buckets hold credentials.
var CIReadActions = []string{
	"ec2:Describe*",
	"iam:Get*", "iam:List*",
	"route53:Get*", "route53:List*",
	"s3:GetAccelerateConfiguration", "s3:GetBucket*", "s3:GetEncryptionConfiguration",
	"s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration",
	"s3:ListAllMyBuckets", "s3:ListBucket",
	"ses:Describe*", "ses:Get*", "ses:List*",
	"ssm:DescribeInstanceInformation", "ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands",
	// The account stack resolves SecretsKeyAlias (kms.LookupAlias); ListAliases
	// has no resource-level scope and reveals only alias names and key ids.
	"kms:ListAliases",
}

// ManagedPolicyMaxChars is IAM's size limit of one managed policy
// (whitespace excluded); the CI grant is split to stay under it.
const ManagedPolicyMaxChars = 6144

// CIPolicy is one managed policy of the CI deploy role.
type CIPolicy struct {
	Name     string
	Document Document
}

// CIDeployPolicies are the CI deploy role's permissions, split into managed
// policies under IAM's size limit: read on every stack; create/update/delete
// only on names matching the test-fleet patterns (checked against naming for
// slots 1..maxSlot); SSM commands to the test fleet; the state backend and
// the secrets key. Explicit denies apply whichever policy holds them.
func CIDeployPolicies(f naming.Fork, b CIBackend, maxSlot int) ([]CIPolicy, error) {
	p := TestNamePatterns(f)
	if err := p.CheckCoverage(f, maxSlot); err != nil {
		return nil, err
	}
	if b.StateBucket == "" || b.SecretsKeyARN == "" {
		return nil, fmt.Errorf("CI policy: state bucket and secrets key ARN are required (run scripts/bootstrap-state.sh first)")
	}
	acct, region := f.AccountID, f.Region
	if region == "" {
		region = "us-east-1"
	}
	iamARN := func(kind string, names []string) []string { return prefixed("arn:aws:iam::"+acct+":"+kind+"/", names) }
	roles := iamARN("role", p.Roles)
	users := iamARN("user", p.Users)
	boundary := map[string]map[string]any{"StringEquals": {"iam:PermissionsBoundary": TestBoundaryARN(acct)}}
	var buckets []string
	for _, bk := range p.Buckets {
		buckets = append(buckets, naming.BucketARN(bk), naming.BucketARN(bk)+"/*")
	}
	ec2ARN := "arn:aws:ec2:" + region + ":" + acct + ":"
	state := naming.BucketARN(b.StateBucket)
	var stateWrite []string
	for _, dir := range []string{"stacks", "history", "backups"} {
		stateWrite = append(stateWrite, state+"/.pulumi/"+dir+"/"+PulumiProject+"/test*")
	}
	stateWrite = append(stateWrite, state+"/.pulumi/locks/*")

	iamStatements := []Statement{
		{Sid: "TestRolesOnlyWithBoundary", Effect: allow,
			Action:    []string{"iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy"},
			Resource:  roles,
			Condition: boundary},
		{Sid: "TestRolesSSMCoreOnly", Effect: allow,
			Action:   "iam:AttachRolePolicy",
			Resource: roles,
			Condition: map[string]map[string]any{"StringEquals": {
				"iam:PermissionsBoundary": TestBoundaryARN(acct), "iam:PolicyARN": SSMCorePolicyARN,
			}}},
		{Sid: "TestRoles", Effect: allow,
			Action: []string{"iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:TagRole",
				"iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription"},
			Resource: roles},
		{Sid: "TestUsersOnlyWithBoundary", Effect: allow,
			Action:    []string{"iam:CreateUser", "iam:PutUserPermissionsBoundary", "iam:PutUserPolicy"},
			Resource:  users,
			Condition: boundary},
		{Sid: "TestUsers", Effect: allow,
			Action: []string{"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:DeleteUser", "iam:DeleteUserPolicy",
				"iam:TagUser", "iam:UntagUser", "iam:UpdateAccessKey"},
			Resource: users},
		{Sid: "TestInstanceProfiles", Effect: allow,
			Action: []string{"iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
				"iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile", "iam:UntagInstanceProfile"},
			Resource: iamARN("instance-profile", p.InstanceProfiles)},
		{Sid: "PassTestHostRoleToEC2", Effect: allow,
			Action:    "iam:PassRole",
			Resource:  iamARN("role", p.HostRoles),
			Condition: map[string]map[string]any{"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
		{Sid: "TestOIDCProviders", Effect: allow,
			Action: []string{"iam:AddClientIDToOpenIDConnectProvider", "iam:CreateOpenIDConnectProvider",
				"iam:DeleteOpenIDConnectProvider", "iam:RemoveClientIDFromOpenIDConnectProvider",
				"iam:TagOpenIDConnectProvider", "iam:UntagOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint"},
			Resource: iamARN("oidc-provider", p.Issuers)},
	}
	resourceStatements := []Statement{
		{Sid: "TestBuckets", Effect: allow, Action: "s3:*", Resource: buckets},
		{Sid: "TestSESIdentities", Effect: allow,
			Action: []string{"ses:CreateEmailIdentity", "ses:DeleteEmailIdentity", "ses:PutEmailIdentityDkimAttributes",
				"ses:PutEmailIdentityDkimSigningAttributes", "ses:PutEmailIdentityFeedbackAttributes",
				"ses:PutEmailIdentityMailFromAttributes", "ses:TagResource", "ses:UntagResource"},
			Resource: prefixed("arn:aws:ses:"+region+":"+acct+":identity/", p.SESIdentities)},
		// The classic SES API has no resource-level permissions for receipt
		// rules; the rule set itself and its activation stay out of reach.
		{Sid: "ReceiptRulesNoResourceScope", Effect: allow,
			Action:   []string{"ses:CreateReceiptRule", "ses:DeleteReceiptRule", "ses:SetReceiptRulePosition", "ses:UpdateReceiptRule"},
			Resource: "*"},
		{Sid: "TestDNSRecords", Effect: allow,
			Action:   "route53:ChangeResourceRecordSets",
			Resource: "arn:aws:route53:::hostedzone/*",
			Condition: map[string]map[string]any{
				"ForAllValues:StringLike":   {"route53:ChangeResourceRecordSetsNormalizedRecordNames": p.RecordNames},
				"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": []string{"A", "CNAME", "MX", "TXT"}},
			}},
		// An EIP is allocated with its test Name tag in the request itself
		// (TagSpecifications), which EC2 also authorises as ec2:CreateTags
		// with ec2:CreateAction; both carry the tag, so no untagged or
		// prod-named EIP can be made.
		{Sid: "AllocateTestEIPTagged", Effect: allow,
			Action:    "ec2:AllocateAddress",
			Resource:  ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:RequestTag/Name": p.EIPTags}}},
		{Sid: "TagOnAllocate", Effect: allow,
			Action:   "ec2:CreateTags",
			Resource: ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{
				"StringEquals": {"ec2:CreateAction": "AllocateAddress"},
				"StringLike":   {"aws:RequestTag/Name": p.EIPTags},
			}},
		// A test EIP keeps a test name: CI may not retag it as prod's or base's.
		{Sid: "NoOtherEIPName", Effect: "Deny",
			Action:   "ec2:CreateTags",
			Resource: ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{
				"Null":          {"aws:RequestTag/Name": "false"},
				"StringNotLike": {"aws:RequestTag/Name": p.EIPTags},
			}},
		{Sid: "TestEIPs", Effect: allow,
			Action:    []string{"ec2:AssociateAddress", "ec2:CreateTags", "ec2:DisassociateAddress", "ec2:ReleaseAddress"},
			Resource:  ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:ResourceTag/Name": p.EIPTags}}},
		{Sid: "TestInstances", Effect: allow,
			Action: []string{"ec2:AssociateAddress", "ec2:AssociateIamInstanceProfile", "ec2:DisassociateIamInstanceProfile",
				"ec2:ReplaceIamInstanceProfileAssociation"},
			Resource:  ec2ARN + "instance/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:ResourceTag/Name": p.InstanceNames}}},
		{Sid: "SendCommandToTestFleet", Effect: allow,
			Action:    "ssm:SendCommand",
			Resource:  ec2ARN + "instance/*",
			Condition: map[string]map[string]any{"StringLike": {"ssm:resourceTag/Name": p.InstanceNames}}},
		{Sid: "SendCommandShellDocument", Effect: allow,
			Action:   "ssm:SendCommand",
			Resource: "arn:aws:ssm:" + region + "::document/AWS-RunShellScript"},
	}
	readStatements := []Statement{
		{Sid: "ReadEveryStack", Effect: allow, Action: CIReadActions, Resource: "*"},
		{Sid: "PulumiStateRead", Effect: allow,
			Action:   []string{"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"},
			Resource: []string{state, state + "/*"}},
		{Sid: "PulumiStateWriteTestStacks", Effect: allow,
			Action:   []string{"s3:DeleteObject", "s3:PutObject"},
			Resource: stateWrite},
		{Sid: "PulumiSecretsKey", Effect: allow,
			Action:   []string{"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"},
			Resource: b.SecretsKeyARN},
		// A test role's trust is CI-writable; CI must not step into one.
		{Sid: "NoRoleChaining", Effect: deny,
			Action:   []string{"sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity"},
			Resource: "*"},
		{Sid: "KeepBoundaries", Effect: deny,
			Action:   []string{"iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"},
			Resource: "*"},
		{Sid: "KeepSharedRuleSet", Effect: deny,
			Action: []string{"ses:CloneReceiptRuleSet", "ses:CreateReceiptRuleSet", "ses:DeleteReceiptRuleSet",
				"ses:ReorderReceiptRuleSet", "ses:SetActiveReceiptRuleSet"},
			Resource: "*"},
	}
	out := []CIPolicy{
		{Name: naming.CIDeployRole + "-read", Document: Document{Version: Version, Statement: readStatements}},
		{Name: naming.CIDeployRole + "-test-iam", Document: Document{Version: Version, Statement: iamStatements}},
		{Name: naming.CIDeployRole + "-test-resources", Document: Document{Version: Version, Statement: resourceStatements}},
	}
	for _, c := range out {
		if n := len(c.Document.JSON()); n > ManagedPolicyMaxChars {
			return nil, fmt.Errorf("CI policy %s is %d characters, over IAM's %d for a managed policy; split it further", c.Name, n, ManagedPolicyMaxChars)
		}
	}
	return out, nil
}

// SSMCoreActions are the actions of AmazonSSMManagedInstanceCore except
// parameter reads, which no broker needs.
var SSMCoreActions = []string{
	"ec2messages:*", "ssmmessages:*",
	"ssm:DescribeAssociation", "ssm:DescribeDocument", "ssm:GetDeployablePatchSnapshotForInstance",
	"ssm:GetDocument", "ssm:GetManifest", "ssm:ListAssociations", "ssm:ListInstanceAssociations",
	"ssm:PutComplianceItems", "ssm:PutConfigurePackageResult", "ssm:PutInventory",
	"ssm:UpdateAssociationStatus", "ssm:UpdateInstanceAssociationStatus", "ssm:UpdateInstanceInformation",
}

// TestBoundary is the permissions boundary of every test principal: whatever
// its own policy says, it reaches only test-fleet resources. It is what makes
// CI's right to create test principals safe.
func TestBoundary(f naming.Fork) Document {
	p := TestNamePatterns(f)
	acct, region := f.AccountID, f.Region
	if region == "" {
		region = "us-east-1"
	}
	var buckets []string
	for _, bk := range p.Buckets {
		buckets = append(buckets, naming.BucketARN(bk), naming.BucketARN(bk)+"/*")
	}
	return Document{Version: Version, Statement: []Statement{
		{Sid: "TestBuckets", Effect: allow, Action: "s3:*", Resource: buckets},
		{Sid: "TestMail", Effect: allow,
			Action:   []string{"ses:GetEmailIdentity", "ses:SendEmail", "ses:SendRawEmail"},
			Resource: prefixed("arn:aws:ses:"+region+":"+acct+":identity/", append(p.MailDomains, prefixed("*@", p.MailDomains)...))},
		{Sid: "TestRoles", Effect: allow,
			Action:   []string{"sts:AssumeRole", "sts:TagSession"},
			Resource: prefixed("arn:aws:iam::"+acct+":role/", p.Roles)},
		{Sid: "InstanceConnect", Effect: allow,
			Action: "ec2-instance-connect:SendSSHPublicKey", Resource: "arn:aws:ec2:" + region + ":" + acct + ":instance/*"},
		// `aws ec2-instance-connect ssh` looks the instance up first; the
		// action has no resource-level permission.
		{Sid: "FindInstances", Effect: allow, Action: "ec2:DescribeInstances", Resource: "*"},
		{Sid: "SSMCore", Effect: allow, Action: SSMCoreActions, Resource: "*"},
	}}
}
