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

// The two CI deploy roles, two trust boundaries: pull-request jobs assume the
// test role (test slots only); only main behind a protected environment
// assumes the prod role (prod, chain stacks and the account stack).
const (
	CITestRole = naming.CIDeployRole // the existing name; SendCommand covers the test fleet
	CIProdRole = naming.CIDeployRole + "-prod"
)

// CISessionSeconds is a CI role's maximum session: one deploy, not a day.
const CISessionSeconds = 3600

// Pulumi secrets keys (scripts/bootstrap-state.sh creates both): test stacks
// encrypt with the test key, prod-side stacks with the prod key, which the
// test role can never use.
const (
	TestSecretsKeyAlias = "alias/agentkeys-pulumi-test"
	ProdSecretsKeyAlias = "alias/agentkeys-pulumi-prod"
	// LegacySecretsKeyAlias is the single key of earlier versions.
	LegacySecretsKeyAlias = "alias/agentkeys-pulumi"
)

// PulumiProject is the project name of Pulumi.yaml; the DIY state backend
// stores stacks under .pulumi/stacks/<project>/<stack>.json.
const PulumiProject = "agentkeys"

// TestBoundaryName is the permissions boundary every test stack's role and
// user must carry: CI may create principals, so without it CI could create a
// test user with an admin inline policy and mint itself a key.
const TestBoundaryName = "agentkeys-test-boundary"

// StateBucket is the S3 bucket of the self-managed Pulumi state backend.
func StateBucket(acct string) string { return "agentkeys-pulumi-state-" + acct }

// StateBackendURL is what `pulumi login` takes. The region is part of it: an
// admin profile defaulting to another region cannot reach the bucket (§6).
func StateBackendURL(acct, region string) string {
	return "s3://" + StateBucket(acct) + "?region=" + region
}

// ProdSide reports whether a stack is inside the prod trust boundary: prod,
// every chain stack, and the account stack. Test slots are not.
func ProdSide(stack string) (bool, error) {
	if stack == naming.AccountStack {
		return true, nil
	}
	s, err := naming.ParseStack(stack)
	if err != nil {
		return false, err
	}
	return s.ProdPosture(), nil
}

// ProdSideStacks lists the prod-side stacks: prod, the chain stacks, account.
func ProdSideStacks() []string {
	out := []string{"prod"}
	for c := range naming.Chains {
		out = append(out, c)
	}
	sort.Strings(out)
	return append(out, naming.AccountStack)
}

// SecretsKeyAlias is the KMS alias that must encrypt stack's secrets.
func SecretsKeyAlias(stack string) (string, error) {
	prod, err := ProdSide(stack)
	if err != nil {
		return "", err
	}
	if prod {
		return ProdSecretsKeyAlias, nil
	}
	return TestSecretsKeyAlias, nil
}

// SecretsProvider is the secrets provider URL stack must use.
func SecretsProvider(stack, region string) (string, error) {
	a, err := SecretsKeyAlias(stack)
	if err != nil {
		return "", err
	}
	return "awskms://" + a + "?region=" + region, nil
}

// CheckSecretsProvider refuses a stack whose secrets provider is not its
// side's key: a prod stack on the test key would be readable by PR jobs.
func CheckSecretsProvider(stack, provider, region string) error {
	want, err := SecretsProvider(stack, region)
	if err != nil {
		return err
	}
	if provider != want {
		got := provider
		if got == "" {
			got = "(none: the passphrase provider)"
		}
		return fmt.Errorf("stack %s: secretsprovider is %s, want %s; fix it with `pulumi stack change-secrets-provider --stack %s %q` and commit Pulumi.%s.yaml", stack, got, want, stack, want, stack)
	}
	return nil
}

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
	envRe    = regexp.MustCompile(`^[A-Za-z0-9._ -]+$`)
)

// CITrust says which GitHub workflow runs of one repository may assume the
// CI roles. GitHub's token `sub` is repo:<repo>:pull_request for a PR job,
// repo:<repo>:ref:refs/heads/<b> for a push or dispatch on branch b, and
// repo:<repo>:environment:<e> for any job bound to environment e (whatever
// its branch: the environment's own branch rule then decides).
type CITrust struct {
	Repo            string
	PullRequests    bool     // test role: pull_request jobs of Repo
	Branches        []string // test role: pushes/dispatches on these branches
	Environments    []string // test role: jobs bound to these environments
	ProdEnvironment string   // prod role: only jobs bound to this protected environment
}

// Validate reports the first bad field with its config key and an example.
func (c CITrust) Validate() error {
	if !repoRe.MatchString(c.Repo) {
		return fmt.Errorf("agentkeys:githubRepo %q is not owner/name (example: litentry/agentKeys)", c.Repo)
	}
	if !c.PullRequests && len(c.Branches)+len(c.Environments) == 0 {
		return fmt.Errorf("agentkeys:ciPullRequests is false and agentkeys:ciBranches and agentkeys:ciEnvironments are empty: the test role would trust no workflow (example: agentkeys:ciBranches: [main])")
	}
	for _, b := range c.Branches {
		if !branchRe.MatchString(b) || strings.HasPrefix(b, "refs/") || b == "*" {
			return fmt.Errorf("agentkeys:ciBranches entry %q is not a branch name or pattern without refs/heads/ (examples: main, release/*); a lone * would trust every branch", b)
		}
	}
	for _, e := range c.Environments {
		if !envRe.MatchString(e) {
			return fmt.Errorf("agentkeys:ciEnvironments entry %q is not a GitHub environment name (example: agentkeys-test)", e)
		}
		if e == c.ProdEnvironment {
			return fmt.Errorf("agentkeys:ciEnvironments lists %q, the prod environment (agentkeys:ciProdEnvironment): jobs there would get the test role too; use another name (example: agentkeys-test)", e)
		}
	}
	if !envRe.MatchString(c.ProdEnvironment) {
		return fmt.Errorf("agentkeys:ciProdEnvironment %q is not a GitHub environment name (example: agentkeys-prod)", c.ProdEnvironment)
	}
	return nil
}

// TestSubjects are the token subjects the test role accepts.
func (c CITrust) TestSubjects() []string {
	var subs []string
	if c.PullRequests {
		subs = append(subs, "repo:"+c.Repo+":pull_request")
	}
	for _, b := range c.Branches {
		subs = append(subs, "repo:"+c.Repo+":ref:refs/heads/"+b)
	}
	for _, e := range c.Environments {
		subs = append(subs, "repo:"+c.Repo+":environment:"+e)
	}
	return subs
}

// ProdSubject is the one token subject the prod role accepts.
func (c CITrust) ProdSubject() string { return "repo:" + c.Repo + ":environment:" + c.ProdEnvironment }

func githubTrust(acct, sid, op string, subs any) Document {
	cond := map[string]map[string]any{"StringEquals": {GitHubOIDCHost + ":aud": naming.OIDCAudience}}
	if cond[op] == nil {
		cond[op] = map[string]any{}
	}
	cond[op][GitHubOIDCHost+":sub"] = subs
	return Document{Version: Version, Statement: []Statement{{
		Sid: sid, Effect: allow,
		Principal: map[string]any{"Federated": GitHubProviderARN(acct)},
		Action:    "sts:AssumeRoleWithWebIdentity",
		Condition: cond,
	}}}
}

// TestTrust is the test role's trust policy: GitHub's provider, the STS
// audience, and this repository's PR jobs, branches and test environments.
// No sts:TagSession: a workflow must not choose session tags.
func (c CITrust) TestTrust(acct string) (Document, error) {
	if err := c.Validate(); err != nil {
		return Document{}, err
	}
	return githubTrust(acct, "GitHubActionsTestJobs", "StringLike", c.TestSubjects()), nil
}

// ProdTrust is the prod role's trust policy: jobs bound to the prod
// environment only (exact match). GitHub lets a job into that environment
// only from the branches its deployment-branch rule allows (main) and after
// its required reviewers approve; IAM sees the environment in `sub`.
func (c CITrust) ProdTrust(acct string) (Document, error) {
	if err := c.Validate(); err != nil {
		return Document{}, err
	}
	return githubTrust(acct, "GitHubActionsProdEnvironment", "StringEquals", c.ProdSubject()), nil
}

// NamePatterns are IAM wildcard patterns matching the names of a set of
// stacks. They are derived from package naming, so a naming change moves them.
type NamePatterns struct {
	Users, Roles, InstanceProfiles, HostRoles []string
	Buckets                                   []string
	Issuers                                   []string // broker hosts (OIDC issuers)
	SESIdentities                             []string // mail domains and senders
	MailDomains                               []string
	RecordNames                               []string // Route 53 names of a stack
	EIPTags, InstanceNames                    []string
}

// TestPatterns are the test fleet's patterns (kept for callers).
type TestPatterns = NamePatterns

// slotSentinel is a slot number no name contains by accident; it is replaced
// by '*' to turn slot N's names into patterns.
const slotSentinel = 987654321

// recordNames are the Route 53 names a stack writes: the nine A records and
// the mail domain's MX/SPF, DMARC and DKIM CNAMEs.
func recordNames(n naming.Names) []string {
	return append(n.Hostnames(), n.MailDomain, "_dmarc."+n.MailDomain, "*._domainkey."+n.MailDomain)
}

func patternsOf(f naming.Fork, stacks []string, star func(string) string) NamePatterns {
	var p NamePatterns
	for _, name := range stacks {
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

// TestNamePatterns derives the test-fleet patterns for fork f: slot 1's
// exact names plus slot N's names with the slot number replaced by '*'.
func TestNamePatterns(f naming.Fork) NamePatterns {
	star := func(s string) string { return strings.ReplaceAll(s, strconv.Itoa(slotSentinel), "*") }
	return patternsOf(f, []string{"test", "test-" + strconv.Itoa(slotSentinel)}, star)
}

// ProdNamePatterns are the exact names of prod and every chain stack.
func ProdNamePatterns(f naming.Fork) NamePatterns {
	var stacks []string
	for _, s := range ProdSideStacks() {
		if s != naming.AccountStack {
			stacks = append(stacks, s)
		}
	}
	return patternsOf(f, stacks, func(s string) string { return s })
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

func (p NamePatterns) byClass() map[string][]string {
	return map[string][]string{
		"user": p.Users, "role": p.Roles, "instance-profile": p.InstanceProfiles, "bucket": p.Buckets,
		"issuer": p.Issuers, "ses-identity": p.SESIdentities, "record": p.RecordNames,
		"eip-tag": p.EIPTags, "instance": p.InstanceNames,
	}
}

func testStacks(maxSlot int) []string {
	out := []string{"test"}
	for slot := 2; slot <= maxSlot; slot++ {
		out = append(out, "test-"+strconv.Itoa(slot))
	}
	return out
}

func prodStacks() []string {
	var out []string
	for _, s := range ProdSideStacks() {
		if s != naming.AccountStack {
			out = append(out, s)
		}
	}
	return out
}

// cover checks that the patterns match every name of stacks `in` and no name
// of stacks `out`.
func (p NamePatterns) cover(f naming.Fork, what, other string, in, out []string) error {
	classes := p.byClass()
	for _, name := range in {
		s, err := naming.ParseStack(name)
		if err != nil {
			return err
		}
		for class, names := range mutableNames(naming.Derive(s, f)) {
			for _, v := range names {
				if !anyGlob(classes[class], v) {
					return fmt.Errorf("CI policy: %s %q of stack %s matches no %s pattern %v; the naming scheme changed, update policy.%sNamePatterns", class, v, name, what, classes[class], what)
				}
			}
		}
	}
	for _, name := range out {
		s, err := naming.ParseStack(name)
		if err != nil {
			return err
		}
		for class, names := range mutableNames(naming.Derive(s, f)) {
			for _, v := range names {
				for _, pat := range classes[class] {
					if Glob(pat, v) {
						return fmt.Errorf("CI policy: %s pattern %q also matches %s %q of %s stack %s", what, pat, class, v, other, name)
					}
				}
			}
		}
	}
	return nil
}

// CheckCoverage proves the test patterns against naming before the policy is
// used: every name of test slots 1..maxSlot matches, and no name of prod or
// of a chain stack does. A naming change that broke either fails the plan
// instead of producing a role that is too weak or too strong.
func (p NamePatterns) CheckCoverage(f naming.Fork, maxSlot int) error {
	if maxSlot < 1 {
		return fmt.Errorf("agentkeys:maxTestSlot is %d; it must be >= 1 (example: 20)", maxSlot)
	}
	return p.cover(f, "Test", "prod-side", testStacks(maxSlot), prodStacks())
}

// CheckProdCoverage is CheckCoverage for the prod patterns: every name of
// prod and the chain stacks, none of test slots 1..maxSlot.
func (p NamePatterns) CheckProdCoverage(f naming.Fork, maxSlot int) error {
	if maxSlot < 1 {
		return fmt.Errorf("agentkeys:maxTestSlot is %d; it must be >= 1 (example: 20)", maxSlot)
	}
	return p.cover(f, "Prod", "test", prodStacks(), testStacks(maxSlot))
}

// CIBackend names the Pulumi state bucket and the two secrets keys (key
// ARNs: an alias ARN cannot authorise Decrypt).
type CIBackend struct {
	StateBucket string
	TestKeyARN  string
	ProdKeyARN  string
}

func (b CIBackend) check() error {
	if b.StateBucket == "" || b.TestKeyARN == "" || b.ProdKeyARN == "" {
		return fmt.Errorf("CI policy: the state bucket and both secrets key ARNs are required (run scripts/bootstrap-state.sh first)")
	}
	if b.TestKeyARN == b.ProdKeyARN {
		return fmt.Errorf("CI policy: %s and %s name the same key %s; test and prod secrets need two keys (scripts/bootstrap-state.sh creates them)", TestSecretsKeyAlias, ProdSecretsKeyAlias, b.TestKeyARN)
	}
	return nil
}

func prefixed(prefix string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = prefix + v
	}
	return out
}

// stateMeta is the backend's version file every client reads at login.
const stateMeta = "/.pulumi/meta.yaml"

// StateObjects are the DIY backend's object patterns of the stacks matched by
// the name globs: checkpoint (+ .bak/.gz), history, backups and locks.
func StateObjects(bucket string, stackGlobs ...string) []string {
	b := naming.BucketARN(bucket) + "/.pulumi/"
	var out []string
	for _, dir := range []string{"stacks/", "history/", "backups/", "locks/organization/"} {
		for _, g := range stackGlobs {
			out = append(out, b+dir+PulumiProject+"/"+g)
		}
	}
	return out
}

// TestStateGlobs match test slots' state objects: test.json, test/…, test-N….
var TestStateGlobs = []string{"test.*", "test/*", "test-*"}

// ProdStateGlobs match the prod-side stacks' state objects.
func ProdStateGlobs() []string {
	var out []string
	for _, s := range ProdSideStacks() {
		out = append(out, s+".*", s+"/*")
	}
	return out
}

// readActions let CI preview and refresh: metadata only. Object reads and
// s3:ListBucket (object keys) are not among them.
var readActions = []string{
	"ec2:Describe*",
	"iam:Get*", "iam:List*",
	"route53:Get*", "route53:List*",
	"s3:GetAccelerateConfiguration", "s3:GetBucket*", "s3:GetEncryptionConfiguration",
	"s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:ListAllMyBuckets",
	"ses:Describe*", "ses:Get*", "ses:List*",
	"ssm:DescribeInstanceInformation", "ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands",
}

// CIReadActions are both roles' read actions (kept for callers).
var CIReadActions = readActions

// ManagedPolicyMaxChars is IAM's size limit of one managed policy
// (whitespace excluded); the CI grants are split to stay under it.
const ManagedPolicyMaxChars = 6144

// CIPolicy is one managed policy of a CI deploy role.
type CIPolicy struct {
	Name     string
	Document Document
}

// stackGrant is what a role may change on a set of stacks' names.
type stackGrant struct {
	acct, region string
	p            NamePatterns
	boundary     bool // new principals must carry the test boundary
}

func (g stackGrant) iamStatements(prefix string) []Statement {
	iamARN := func(kind string, names []string) []string {
		return prefixed("arn:aws:iam::"+g.acct+":"+kind+"/", names)
	}
	roles, users := iamARN("role", g.p.Roles), iamARN("user", g.p.Users)
	var create map[string]map[string]any
	attach := map[string]map[string]any{"StringEquals": {"iam:PolicyARN": SSMCorePolicyARN}}
	if g.boundary {
		create = map[string]map[string]any{"StringEquals": {"iam:PermissionsBoundary": TestBoundaryARN(g.acct)}}
		attach["StringEquals"]["iam:PermissionsBoundary"] = TestBoundaryARN(g.acct)
	}
	suffix := ""
	if g.boundary {
		suffix = "OnlyWithBoundary"
	}
	return []Statement{
		{Sid: "Create" + prefix + "Roles" + suffix, Effect: allow,
			Action:    []string{"iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy"},
			Resource:  roles,
			Condition: create},
		{Sid: prefix + "RolesSSMCoreOnly", Effect: allow,
			Action: "iam:AttachRolePolicy", Resource: roles, Condition: attach},
		{Sid: prefix + "Roles", Effect: allow,
			Action: []string{"iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:TagRole",
				"iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription"},
			Resource: roles},
		{Sid: "Create" + prefix + "Users" + suffix, Effect: allow,
			Action:    []string{"iam:CreateUser", "iam:PutUserPermissionsBoundary", "iam:PutUserPolicy"},
			Resource:  users,
			Condition: create},
		{Sid: prefix + "Users", Effect: allow,
			Action: []string{"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:DeleteUser", "iam:DeleteUserPolicy",
				"iam:TagUser", "iam:UntagUser", "iam:UpdateAccessKey"},
			Resource: users},
		{Sid: prefix + "InstanceProfiles", Effect: allow,
			Action: []string{"iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
				"iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile", "iam:UntagInstanceProfile"},
			Resource: iamARN("instance-profile", g.p.InstanceProfiles)},
		{Sid: "Pass" + prefix + "HostRoleToEC2", Effect: allow,
			Action:    "iam:PassRole",
			Resource:  iamARN("role", g.p.HostRoles),
			Condition: map[string]map[string]any{"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
		{Sid: prefix + "OIDCProviders", Effect: allow,
			Action:   oidcProviderActions,
			Resource: iamARN("oidc-provider", g.p.Issuers)},
	}
}

var oidcProviderActions = []string{"iam:AddClientIDToOpenIDConnectProvider", "iam:CreateOpenIDConnectProvider",
	"iam:DeleteOpenIDConnectProvider", "iam:RemoveClientIDFromOpenIDConnectProvider",
	"iam:TagOpenIDConnectProvider", "iam:UntagOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint"}

// resourceStatements: buckets (objects only when objects is true), SES
// identities, receipt rules, DNS records, EIPs and instances by Name tag.
func (g stackGrant) resourceStatements(prefix string, objects bool) []Statement {
	var buckets []string
	for _, bk := range g.p.Buckets {
		buckets = append(buckets, naming.BucketARN(bk))
		if objects {
			buckets = append(buckets, naming.BucketARN(bk)+"/*")
		}
	}
	ec2ARN := "arn:aws:ec2:" + g.region + ":" + g.acct + ":"
	return []Statement{
		{Sid: prefix + "Buckets", Effect: allow, Action: "s3:*", Resource: buckets},
		{Sid: prefix + "SESIdentities", Effect: allow,
			Action: []string{"ses:CreateEmailIdentity", "ses:DeleteEmailIdentity", "ses:PutEmailIdentityDkimAttributes",
				"ses:PutEmailIdentityDkimSigningAttributes", "ses:PutEmailIdentityFeedbackAttributes",
				"ses:PutEmailIdentityMailFromAttributes", "ses:TagResource", "ses:UntagResource"},
			Resource: prefixed("arn:aws:ses:"+g.region+":"+g.acct+":identity/", g.p.SESIdentities)},
		// The classic SES API has no resource-level permissions for receipt rules.
		{Sid: "ReceiptRulesNoResourceScope", Effect: allow,
			Action:   []string{"ses:CreateReceiptRule", "ses:DeleteReceiptRule", "ses:SetReceiptRulePosition", "ses:UpdateReceiptRule"},
			Resource: "*"},
		{Sid: prefix + "DNSRecords", Effect: allow,
			Action:   "route53:ChangeResourceRecordSets",
			Resource: "arn:aws:route53:::hostedzone/*",
			Condition: map[string]map[string]any{
				"ForAllValues:StringLike":   {"route53:ChangeResourceRecordSetsNormalizedRecordNames": g.p.RecordNames},
				"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": []string{"A", "CNAME", "MX", "TXT"}},
			}},
		// An EIP is allocated with its Name tag in the request itself
		// (TagSpecifications), which EC2 also authorises as ec2:CreateTags
		// with ec2:CreateAction; both carry the tag.
		{Sid: "Allocate" + prefix + "EIPTagged", Effect: allow,
			Action:    "ec2:AllocateAddress",
			Resource:  ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:RequestTag/Name": g.p.EIPTags}}},
		{Sid: "TagOnAllocate", Effect: allow,
			Action:   "ec2:CreateTags",
			Resource: ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{
				"StringEquals": {"ec2:CreateAction": "AllocateAddress"},
				"StringLike":   {"aws:RequestTag/Name": g.p.EIPTags},
			}},
		// An EIP of this side keeps a name of this side.
		{Sid: "NoOtherEIPName", Effect: deny,
			Action:   "ec2:CreateTags",
			Resource: ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{
				"Null":          {"aws:RequestTag/Name": "false"},
				"StringNotLike": {"aws:RequestTag/Name": g.p.EIPTags},
			}},
		{Sid: prefix + "EIPs", Effect: allow,
			Action:    []string{"ec2:AssociateAddress", "ec2:CreateTags", "ec2:DisassociateAddress", "ec2:ReleaseAddress"},
			Resource:  ec2ARN + "elastic-ip/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:ResourceTag/Name": g.p.EIPTags}}},
		{Sid: prefix + "Instances", Effect: allow,
			Action: []string{"ec2:AssociateAddress", "ec2:AssociateIamInstanceProfile", "ec2:DisassociateIamInstanceProfile",
				"ec2:ReplaceIamInstanceProfileAssociation"},
			Resource:  ec2ARN + "instance/*",
			Condition: map[string]map[string]any{"StringLike": {"aws:ResourceTag/Name": g.p.InstanceNames}}},
	}
}

func stateStatements(sid, bucket string, globs []string, keyARN string) []Statement {
	state := naming.BucketARN(bucket)
	return []Statement{
		{Sid: "PulumiStateBucket", Effect: allow,
			Action:   []string{"s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:ListBucket"},
			Resource: state},
		{Sid: "PulumiStateMeta", Effect: allow, Action: "s3:GetObject", Resource: state + stateMeta},
		{Sid: sid + "State", Effect: allow,
			Action:   []string{"s3:DeleteObject", "s3:GetObject", "s3:PutObject"},
			Resource: StateObjects(bucket, globs...)},
		{Sid: sid + "SecretsKey", Effect: allow,
			Action:   []string{"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"},
			Resource: keyARN},
	}
}

var commonDenies = []Statement{
	// A test role's trust is CI-writable; CI must not step into any role.
	{Sid: "NoRoleChaining", Effect: deny,
		Action:   []string{"sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity"},
		Resource: "*"},
	{Sid: "KeepBoundaries", Effect: deny,
		Action:   []string{"iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"},
		Resource: "*"},
}

func checkSizes(ps []CIPolicy) ([]CIPolicy, error) {
	for _, c := range ps {
		if n := len(c.Document.JSON()); n > ManagedPolicyMaxChars {
			return nil, fmt.Errorf("CI policy %s is %d characters, over IAM's %d for a managed policy; split it further", c.Name, n, ManagedPolicyMaxChars)
		}
	}
	return ps, nil
}

func regionOf(f naming.Fork) string {
	if f.Region == "" {
		return "us-east-1"
	}
	return f.Region
}

// CITestPolicies are the test role's permissions: read metadata; change only
// names matching the test-fleet patterns (checked against naming for slots
// 1..maxSlot); SSM commands to the test fleet; test stacks' state objects and
// the test secrets key only. Explicit denies apply whichever policy holds them.
func CITestPolicies(f naming.Fork, b CIBackend, maxSlot int) ([]CIPolicy, error) {
	p := TestNamePatterns(f)
	if err := p.CheckCoverage(f, maxSlot); err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	g := stackGrant{acct: f.AccountID, region: regionOf(f), p: p, boundary: true}
	ec2ARN := "arn:aws:ec2:" + g.region + ":" + g.acct + ":"
	res := append(g.resourceStatements("Test", true),
		Statement{Sid: "SendCommandToTestFleet", Effect: allow,
			Action:    "ssm:SendCommand",
			Resource:  ec2ARN + "instance/*",
			Condition: map[string]map[string]any{"StringLike": {"ssm:resourceTag/Name": p.InstanceNames}}},
		Statement{Sid: "SendCommandShellDocument", Effect: allow,
			Action:   "ssm:SendCommand",
			Resource: "arn:aws:ssm:" + g.region + "::document/AWS-RunShellScript"})
	read := []Statement{{Sid: "ReadMetadata", Effect: allow, Action: readActions, Resource: "*"}}
	read = append(read, stateStatements("TestStacks", b.StateBucket, TestStateGlobs, b.TestKeyARN)...)
	read = append(read, commonDenies...)
	read = append(read, Statement{Sid: "KeepSharedRuleSet", Effect: deny,
		Action: []string{"ses:CloneReceiptRuleSet", "ses:CreateReceiptRuleSet", "ses:DeleteReceiptRuleSet",
			"ses:ReorderReceiptRuleSet", "ses:SetActiveReceiptRuleSet"},
		Resource: "*"})
	return checkSizes([]CIPolicy{
		{Name: CITestRole + "-read", Document: Document{Version: Version, Statement: read}},
		{Name: CITestRole + "-test-iam", Document: Document{Version: Version, Statement: g.iamStatements("Test")}},
		{Name: CITestRole + "-test-resources", Document: Document{Version: Version, Statement: res}},
	})
}

// CIDeployPolicies is CITestPolicies (kept for callers).
func CIDeployPolicies(f naming.Fork, b CIBackend, maxSlot int) ([]CIPolicy, error) {
	return CITestPolicies(f, b, maxSlot)
}

// CIManagedPolicyPattern matches both CI roles' managed policies.
const CIManagedPolicyPattern = naming.CIDeployRole + "*"

// CIProdPolicies are the prod role's permissions: the prod and chain stacks'
// names exactly (no object access to their buckets), the account stack's
// shared resources (the GitHub provider, both CI roles and their managed
// policies, the test boundary, the receipt rule set), the prod-side stacks'
// state objects and the prod secrets key. No SSM: prod hosts are deployed
// over SSH, never by SendCommand (spec §0.4).
func CIProdPolicies(f naming.Fork, b CIBackend, maxSlot int) ([]CIPolicy, error) {
	p := ProdNamePatterns(f)
	if err := p.CheckProdCoverage(f, maxSlot); err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	acct := f.AccountID
	g := stackGrant{acct: acct, region: regionOf(f), p: p}
	ciRoles := []string{naming.RoleARN(acct, CITestRole), naming.RoleARN(acct, CIProdRole)}
	ciPolicies := "arn:aws:iam::" + acct + ":policy/" + CIManagedPolicyPattern
	account := []Statement{
		{Sid: "GitHubOIDCProvider", Effect: allow, Action: oidcProviderActions, Resource: GitHubProviderARN(acct)},
		{Sid: "CIRoles", Effect: allow,
			Action: []string{"iam:CreateRole", "iam:DeleteRole", "iam:DetachRolePolicy", "iam:TagRole", "iam:UntagRole",
				"iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription"},
			Resource: ciRoles},
		{Sid: "CIRolesOwnPoliciesOnly", Effect: allow,
			Action:    "iam:AttachRolePolicy",
			Resource:  ciRoles,
			Condition: map[string]map[string]any{"ArnLike": {"iam:PolicyARN": ciPolicies}}},
		{Sid: "AccountManagedPolicies", Effect: allow,
			Action: []string{"iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
				"iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"},
			Resource: []string{ciPolicies, TestBoundaryARN(acct)}},
		// The classic SES API has no resource-level permissions for rule sets.
		{Sid: "SharedRuleSet", Effect: allow,
			Action:   []string{"ses:CreateReceiptRuleSet", "ses:DeleteReceiptRuleSet", "ses:SetActiveReceiptRuleSet"},
			Resource: "*"},
	}
	read := []Statement{
		{Sid: "ReadMetadata", Effect: allow, Action: readActions, Resource: "*"},
		// The account stack resolves both keys' aliases (kms.LookupAlias).
		{Sid: "ResolveSecretsKeys", Effect: allow, Action: "kms:ListAliases", Resource: "*"},
		{Sid: "DescribeSecretsKeys", Effect: allow, Action: "kms:DescribeKey", Resource: []string{b.TestKeyARN, b.ProdKeyARN}},
	}
	read = append(read, stateStatements("ProdSide", b.StateBucket, ProdStateGlobs(), b.ProdKeyARN)...)
	read = append(read, commonDenies...)
	return checkSizes([]CIPolicy{
		{Name: CIProdRole + "-read", Document: Document{Version: Version, Statement: read}},
		{Name: CIProdRole + "-prod-iam", Document: Document{Version: Version, Statement: g.iamStatements("Prod")}},
		{Name: CIProdRole + "-prod-resources", Document: Document{Version: Version, Statement: g.resourceStatements("Prod", false)}},
		{Name: CIProdRole + "-account", Document: Document{Version: Version, Statement: account}},
	})
}

// StateBucketPolicy is the state bucket's policy (scripts/bootstrap-state.sh
// writes the same document): TLS only, and whatever its identity policies
// say, the test role reaches no object but meta.yaml and test stacks' state.
func StateBucketPolicy(acct, bucket string) Document {
	state := naming.BucketARN(bucket)
	keep := append([]string{state, state + stateMeta}, StateObjects(bucket, TestStateGlobs...)...)
	return Document{Version: Version, Statement: []Statement{
		{Sid: "DenyInsecureTransport", Effect: deny, Principal: "*", Action: "s3:*",
			Resource:  []string{state, state + "/*"},
			Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}}},
		{Sid: "TestRoleOnlyTestStacks", Effect: deny, Principal: "*", Action: "s3:*",
			NotResource: keep,
			Condition:   map[string]map[string]any{"ArnEquals": {"aws:PrincipalArn": naming.RoleARN(acct, CITestRole)}}},
	}}
}

// KeyPolicy is a secrets key's policy (scripts/bootstrap-state.sh writes the
// same document): IAM policies decide (the default key policy); the prod key
// also refuses the test role outright.
func KeyPolicy(acct string, prod bool) Document {
	d := Document{Version: Version, Statement: []Statement{
		{Sid: "EnableIAMPolicies", Effect: allow, Principal: map[string]any{"AWS": "arn:aws:iam::" + acct + ":root"},
			Action: "kms:*", Resource: "*"},
	}}
	if prod {
		d.Statement = append(d.Statement, Statement{Sid: "NeverTheTestRole", Effect: deny, Principal: "*",
			Action: "kms:*", Resource: "*",
			Condition: map[string]map[string]any{"ArnEquals": {"aws:PrincipalArn": naming.RoleARN(acct, CITestRole)}}})
	}
	return d
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
	acct, region := f.AccountID, regionOf(f)
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
