// Package audit is the spec's §7 security audit as code. It lists one
// stack's principals, buckets and instance with the AWS SDK, follows EIP →
// instance → instance profile → the role actually attached (§7's discovery,
// which may find a legacy role), and reports everything that differs from
// what the program declares (package policy) or that the services' runtime
// contract needs (contract.Service.AWS). Every finding names its fix; the
// safe ones (§7: detach AmazonS3FullAccess from the broker's runtime role)
// are applied by Fix.
package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// S3FullAccessARN is the managed policy early deploys attached to the broker role (§7).
const S3FullAccessARN = "arn:aws:iam::aws:policy/AmazonS3FullAccess"

// Finding kinds.
const (
	KindMissing         = "missing"
	KindBroader         = "broader-than-declared"
	KindWildcard        = "wildcard-action"
	KindS3FullAccess    = "s3-full-access"
	KindHostRoleS3      = "host-role-s3"
	KindUndeclared      = "undeclared-policy"
	KindForeignProvider = "foreign-oidc-provider"
	KindStaticTrust     = "static-trust-after-federation"
	KindInlineAfterFed  = "inline-grant-after-federation"
	KindMissingGrant    = "missing-grant"
	KindPublicAccess    = "no-public-access-block"
	KindTLSOnly         = "no-tls-only-policy"
	KindPublicPolicy    = "public-bucket-policy"
	KindBucketDrift     = "bucket-policy-drift"
	KindAccessKey       = "undeclared-access-key"
	KindIMDSv2          = "imdsv2-not-required"
	KindProfile         = "instance-profile"
	KindRuntimeRole     = "runtime-role"
	KindEIP             = "eip"
	KindError           = "error"
)

// Finding is one problem and its fix. Safe findings are the ones Fix applies.
type Finding struct {
	Resource string `json:"resource"`
	Kind     string `json:"kind"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix"`
	Safe     bool   `json:"safe,omitempty"`

	role, policyARN string // what a safe fix detaches
}

// Report is the audit result.
type Report struct {
	Stack string `json:"stack"`
	// Federated: the stack's OIDC provider exists, so the roles must trust
	// it alone and the data role must have no inline grant left.
	Federated bool `json:"federated"`
	// RuntimeRole is the role the broker instance actually runs with
	// (EIP → instance → instance profile → role), "" when none is attached.
	RuntimeRole string    `json:"runtime_role"`
	Checked     []string  `json:"checked"`
	Findings    []Finding `json:"findings"`
}

// Clients are the AWS APIs audit reads (and, for Fix, writes).
type Clients struct {
	IAM *iam.Client
	S3  *s3.Client
	EC2 *ec2.Client
}

// Input is what the audit knows about the stack besides its names.
type Input struct {
	Names      naming.Names
	InstanceID string // agentkeys:instanceId
	// EIP is the stack's Elastic IP (stack output, tag or config); "" when
	// unknown, then the instance is taken from the config alone.
	EIP string
	// AccessKeys are the key ids the program declared (stack outputs
	// daemonAccessKeyId, sshAccessKeyId) by user; nil when the outputs are
	// not readable: then any user with more than one key is reported.
	AccessKeys map[string]string
}

type auditor struct {
	ctx context.Context
	in  Input
	n   naming.Names
	c   Clients
	r   *Report
	up  string // `pulumi up --stack X`
}

func (a *auditor) add(res, kind, fix, format string, args ...any) *Finding {
	a.r.Findings = append(a.r.Findings, Finding{Resource: res, Kind: kind, Fix: fix, Detail: fmt.Sprintf(format, args...)})
	return &a.r.Findings[len(a.r.Findings)-1]
}

func (a *auditor) errf(res string, err error) {
	a.add(res, KindError, "check the caller's permissions (e.g. AWS_PROFILE=agentkeys-admin) and re-run", "%v", err)
}

func stmts(d policy.Document) []stmt {
	s, err := parseDoc(d.JSON())
	if err != nil {
		panic("declared policy does not parse: " + err.Error())
	}
	return s
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Run audits the stack.
func Run(ctx context.Context, in Input, c Clients) Report {
	n := in.Names
	r := Report{Stack: n.Stack.Name}
	a := &auditor{ctx: ctx, in: in, n: n, c: c, r: &r, up: "`pulumi up --stack " + n.Stack.Name + "`"}
	a.federation()
	a.user(n.DaemonUser, stmts(policy.DaemonUser(n)))
	a.user(n.SSHUser, stmts(policy.SSHUser(n, in.InstanceID)))
	trust := stmts(policy.StaticTrust(n))
	if r.Federated {
		trust = stmts(policy.FederatedTrust(n))
	}
	var dataInline []stmt
	if !r.Federated {
		dataInline = stmts(policy.DataRoleInline(n))
	}
	a.role(n.DataRole, roleSpec{declared: dataInline, trust: trust, dataRole: true})
	for _, cl := range naming.DataClasses {
		a.role(n.DataClassRoles[cl.Name], roleSpec{trust: trust})
	}
	a.role(n.HostRole, roleSpec{declared: stmts(policy.HostRoleInline(n)), trust: stmts(policy.HostRoleTrust()), managed: []string{policy.SSMCorePolicyARN}, hostRole: true})
	a.profile()
	a.bucket(n.MailBucket, policy.MailBucketPolicy(n))
	for _, cl := range naming.DataClasses {
		a.bucket(n.DataBuckets[cl.Name], policy.DataClassBucketPolicy(n, cl))
	}
	a.runtime()
	return r
}

func (a *auditor) federation() {
	_, err := a.c.IAM.GetOpenIDConnectProvider(a.ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(a.n.OIDCProviderARN)})
	switch {
	case err == nil:
		a.r.Federated = true
	case code(err) != "NoSuchEntity":
		a.errf("oidc-provider/"+a.n.BrokerHost, err)
	}
}

func isS3(action string) bool {
	return action == "*" || strings.HasPrefix(strings.ToLower(action), "s3:")
}

// identityDoc checks one live identity policy against the declared statements.
func (a *auditor) identityDoc(res, name, raw string, declared []stmt, hostRole bool, fix string) {
	live, err := parseDoc(raw)
	if err != nil {
		a.add(res, KindError, fix, "policy %s: %v", name, err)
		return
	}
	wild := wildcardActions(live)
	if len(wild) > 0 {
		if hostRole && slices.ContainsFunc(wild, isS3) {
			a.add(res, KindHostRoleS3, fix, "policy %s grants %s: the broker's runtime role never uses S3 with its own credentials (§7)", name, strings.Join(wild, ", "))
		} else {
			a.add(res, KindWildcard, fix, "policy %s allows %s", name, strings.Join(wild, ", "))
		}
	}
	if hostRole && len(wild) == 0 {
		for _, s := range live {
			// The declared policy's own S3 grant (the email worker's inbox
			// listing, from the services' contract) is expected.
			if s.Effect == "Allow" && slices.ContainsFunc(s.Actions, isS3) && !stmtCovered(s, declared) {
				a.add(res, KindHostRoleS3, fix, "policy %s grants %s: the host role needs no S3 access beyond the declared inbox listing (§7)", name, strings.Join(s.Actions, ", "))
				break
			}
		}
	}
	for _, s := range live {
		if !stmtCovered(s, declared) {
			a.add(res, KindBroader, fix, "policy %s statement %q (%s on %s) is broader than the declared policy", name, s.Sid, strings.Join(s.Actions, ","), strings.Join(s.Resources, ","))
		}
	}
}

// managedDoc is a managed policy's default version, parsed.
func (a *auditor) managedDoc(arn string) ([]stmt, error) {
	p, err := a.c.IAM.GetPolicy(a.ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return nil, err
	}
	v, err := a.c.IAM.GetPolicyVersion(a.ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: p.Policy.DefaultVersionId})
	if err != nil {
		return nil, err
	}
	return parseDoc(aws.ToString(v.PolicyVersion.Document))
}

func (a *auditor) managed(res, owner, arn string, allowed []string, hostRole, isRole bool) {
	detach := fmt.Sprintf("aws iam detach-user-policy --user-name %s --policy-arn %s", owner, arn)
	if isRole {
		detach = fmt.Sprintf("aws iam detach-role-policy --role-name %s --policy-arn %s", owner, arn)
	}
	switch {
	case hostRole && arn == S3FullAccessARN:
		f := a.add(res, KindS3FullAccess, detach+" (agentkeys audit --fix does it)",
			"AmazonS3FullAccess is attached: a broker compromise would expose every inbound mail (§7)")
		f.Safe, f.role, f.policyARN = true, owner, arn
		return
	case slices.Contains(allowed, arn):
		return
	}
	a.add(res, KindUndeclared, detach, "managed policy %s is attached but not declared by the program", arn)
	live, err := a.managedDoc(arn)
	if err != nil {
		return
	}
	if wild := wildcardActions(live); len(wild) > 0 {
		kind := KindWildcard
		if hostRole && slices.ContainsFunc(wild, isS3) {
			kind = KindHostRoleS3
		}
		a.add(res, kind, detach, "managed policy %s allows %s", arn, strings.Join(wild, ", "))
	}
}

func (a *auditor) user(name string, declared []stmt) {
	res := "user/" + name
	a.r.Checked = append(a.r.Checked, res)
	if _, err := a.c.IAM.GetUser(a.ctx, &iam.GetUserInput{UserName: aws.String(name)}); err != nil {
		a.missingOr(res, err)
		return
	}
	inl, err := a.c.IAM.ListUserPolicies(a.ctx, &iam.ListUserPoliciesInput{UserName: aws.String(name)})
	if err != nil {
		a.errf(res, err)
		return
	}
	for _, p := range inl.PolicyNames {
		g, err := a.c.IAM.GetUserPolicy(a.ctx, &iam.GetUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(p)})
		if err != nil {
			a.errf(res, err)
			continue
		}
		a.identityDoc(res, p, aws.ToString(g.PolicyDocument), declared, false, a.up+" restores the declared policy")
	}
	att, err := a.c.IAM.ListAttachedUserPolicies(a.ctx, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(name)})
	if err != nil {
		a.errf(res, err)
		return
	}
	for _, p := range att.AttachedPolicies {
		a.managed(res, name, aws.ToString(p.PolicyArn), nil, false, false)
	}
	a.accessKeys(res, name)
}

// accessKeys: the program declares exactly one key per user.
func (a *auditor) accessKeys(res, user string) {
	out, err := a.c.IAM.ListAccessKeys(a.ctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil {
		a.errf(res, err)
		return
	}
	del := func(id string) string {
		return fmt.Sprintf("check it is unused (`aws iam get-access-key-last-used --access-key-id %s`), then `aws iam delete-access-key --user-name %s --access-key-id %s`", id, user, id)
	}
	declared, known := a.in.AccessKeys[user]
	if known && declared != "" {
		for _, k := range out.AccessKeyMetadata {
			if id := aws.ToString(k.AccessKeyId); id != declared {
				a.add(res, KindAccessKey, del(id), "access key %s (%s, created %s) is not the one the program declared (%s)",
					id, k.Status, aws.ToTime(k.CreateDate).UTC().Format("2006-01-02"), declared)
			}
		}
		return
	}
	if len(out.AccessKeyMetadata) > 1 {
		var ids []string
		for _, k := range out.AccessKeyMetadata {
			ids = append(ids, aws.ToString(k.AccessKeyId))
		}
		a.add(res, KindAccessKey, "keep the one in `pulumi stack output daemonAccessKeyId/sshAccessKeyId --stack "+a.n.Stack.Name+"`; for each other: "+del("<id>"),
			"%d access keys (%s); the program declares one (stack outputs not readable to tell which)", len(ids), strings.Join(ids, ", "))
	}
}

func (a *auditor) missingOr(res string, err error) {
	if c := code(err); c == "NoSuchEntity" || c == "NoSuchBucket" || c == "NotFound" {
		a.add(res, KindMissing, a.up+" creates it", "does not exist (%s)", c)
		return
	}
	a.errf(res, err)
}

type roleSpec struct {
	declared []stmt // identity statements the program declares (nil: none)
	trust    []stmt
	managed  []string
	hostRole bool // the broker's runtime role: S3 is never its business
	dataRole bool
}

func (a *auditor) role(name string, spec roleSpec) {
	res := "role/" + name
	a.r.Checked = append(a.r.Checked, res)
	g, err := a.c.IAM.GetRole(a.ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		a.missingOr(res, err)
		return
	}
	a.trust(res, aws.ToString(g.Role.AssumeRolePolicyDocument), spec.trust)
	a.identity(res, name, spec)
}

func (a *auditor) trust(res, raw string, declared []stmt) {
	live, err := parseDoc(raw)
	if err != nil {
		a.add(res, KindError, a.up, "trust policy: %v", err)
		return
	}
	static := stmts(policy.StaticTrust(a.n))
	for _, s := range live {
		foreign := false
		for _, p := range s.Principals["Federated"] {
			if strings.Contains(p, ":oidc-provider/") && p != a.n.OIDCProviderARN {
				foreign = true
				host := p[strings.Index(p, ":oidc-provider/")+len(":oidc-provider/"):]
				who := "another issuer"
				if st, ok := naming.StackForBrokerHost(host, a.n.Fork.Zone); ok {
					who = "stack " + st
				}
				a.add(res, KindForeignProvider, a.up+" restores the declared trust",
					"trust policy names %s's OIDC provider %s; only %s may assume this role", who, p, a.n.OIDCProviderARN)
			}
		}
		switch {
		case foreign || stmtCovered(s, declared):
		case a.r.Federated && stmtCovered(s, static):
			a.add(res, KindStaticTrust, a.up+" switches the trust to the provider alone (§9.3)",
				"trust statement %q still lets %v assume the role although %s exists", s.Sid, s.Principals["AWS"], a.n.OIDCProviderARN)
		default:
			a.add(res, KindBroader, a.up+" restores the declared trust",
				"trust statement %q (%s for %v) is broader than the declared trust", s.Sid, strings.Join(s.Actions, ","), s.Principals)
		}
	}
}

// identity checks a role's inline and attached policies.
func (a *auditor) identity(res, name string, spec roleSpec) {
	inl, err := a.c.IAM.ListRolePolicies(a.ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		a.errf(res, err)
		return
	}
	for _, p := range inl.PolicyNames {
		gp, err := a.c.IAM.GetRolePolicy(a.ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)})
		if err != nil {
			a.errf(res, err)
			continue
		}
		del := fmt.Sprintf("aws iam delete-role-policy --role-name %s --policy-name %s", name, p)
		switch {
		case spec.dataRole && a.r.Federated:
			// §9.5: once federated, the bucket policies alone grant.
			a.add(res, KindInlineAfterFed, a.up+" removes it (the run after the provider exists), or "+del,
				"inline policy %s is left although %s exists: the bucket policies alone grant after federation (§9.5)", p, a.n.OIDCProviderARN)
			continue
		case spec.declared == nil:
			a.add(res, KindUndeclared, del, "inline policy %s: this role is declared without identity policies (its bucket policy grants access)", p)
		}
		a.identityDoc(res, p, aws.ToString(gp.PolicyDocument), spec.declared, spec.hostRole, a.up+" restores the declared policy; extra policies: "+del)
	}
	att, err := a.c.IAM.ListAttachedRolePolicies(a.ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		a.errf(res, err)
		return
	}
	for _, p := range att.AttachedPolicies {
		a.managed(res, name, aws.ToString(p.PolicyArn), spec.managed, spec.hostRole, true)
	}
}

func (a *auditor) profile() {
	res := "instance-profile/" + a.n.InstanceProfile
	a.r.Checked = append(a.r.Checked, res)
	p, err := a.c.IAM.GetInstanceProfile(a.ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(a.n.InstanceProfile)})
	if err != nil {
		a.missingOr(res, err)
		return
	}
	var roles []string
	for _, r := range p.InstanceProfile.Roles {
		roles = append(roles, aws.ToString(r.RoleName))
	}
	if !slices.Equal(roles, []string{a.n.HostRole}) {
		a.add(res, KindProfile, a.up+" restores it", "holds roles %v, want exactly [%s]", roles, a.n.HostRole)
	}
}

func (a *auditor) bucket(b string, declared policy.Document) {
	res := "bucket/" + b
	a.r.Checked = append(a.r.Checked, res)
	if _, err := a.c.S3.HeadBucket(a.ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
		a.missingOr(res, err)
		return
	}
	fix := a.up + " restores the declared bucket settings"
	pab, err := a.c.S3.GetPublicAccessBlock(a.ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(b)})
	switch {
	case code(err) == "NoSuchPublicAccessBlockConfiguration":
		a.add(res, KindPublicAccess, fix, "no public-access block; all four flags must be on (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets)")
	case err != nil:
		a.errf(res, err)
	default:
		c := pab.PublicAccessBlockConfiguration
		var off []string
		for name, v := range map[string]*bool{"BlockPublicAcls": c.BlockPublicAcls, "IgnorePublicAcls": c.IgnorePublicAcls, "BlockPublicPolicy": c.BlockPublicPolicy, "RestrictPublicBuckets": c.RestrictPublicBuckets} {
			if !aws.ToBool(v) {
				off = append(off, name)
			}
		}
		if len(off) > 0 {
			slices.Sort(off)
			a.add(res, KindPublicAccess, fix, "public-access block has %s off", strings.Join(off, ", "))
		}
	}
	bp, err := a.c.S3.GetBucketPolicy(a.ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
	if code(err) == "NoSuchBucketPolicy" {
		a.add(res, KindTLSOnly, fix, "no bucket policy, so no TLS-only deny (Deny s3:* when aws:SecureTransport is false) and none of the declared grants")
		return
	}
	if err != nil {
		a.errf(res, err)
		return
	}
	raw := aws.ToString(bp.Policy)
	live, err := parseDoc(raw)
	if err != nil {
		a.add(res, KindError, fix, "bucket policy: %v", err)
		return
	}
	tlsOnly := false
	for _, s := range live {
		everyone := slices.Contains(s.Principals["*"], "*") || slices.Contains(s.Principals["AWS"], "*")
		if s.Effect == "Deny" && everyone && slices.Contains(s.Actions, "s3:*") && slices.Equal(s.Condition["Bool"]["aws:SecureTransport"], []string{"false"}) {
			tlsOnly = true
		}
		if s.Effect == "Allow" && everyone && len(s.Condition) == 0 {
			a.add(res, KindPublicPolicy, fix, "statement %q allows %s to everyone", s.Sid, strings.Join(s.Actions, ","))
		}
	}
	if !tlsOnly {
		a.add(res, KindTLSOnly, fix, "bucket policy lacks the TLS-only statement (Deny, Principal *, s3:*, Bool aws:SecureTransport false)")
	}
	if wild := wildcardActions(live); len(wild) > 0 {
		a.add(res, KindWildcard, fix, "bucket policy allows %s", strings.Join(wild, ", "))
	}
	for _, d := range diffPolicies(declared.JSON(), raw) {
		a.add(res, KindBucketDrift, fix, "%s", d)
	}
}

// runtime follows §7's discovery: the EIP's instance, its instance profile
// and the role in it, then checks that role as the broker's runtime role,
// whatever its name.
func (a *auditor) runtime() {
	id := a.in.InstanceID
	if a.in.EIP != "" {
		res := "eip/" + a.in.EIP
		a.r.Checked = append(a.r.Checked, res)
		out, err := a.c.EC2.DescribeAddresses(a.ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("public-ip"), Values: []string{a.in.EIP}}}})
		switch {
		case err != nil:
			a.errf(res, err)
		case len(out.Addresses) == 0:
			a.add(res, KindEIP, a.up+" adopts or allocates the stack's EIP", "not an Elastic IP of this account in %s", a.n.Region)
		default:
			on := aws.ToString(out.Addresses[0].InstanceId)
			switch {
			case on == "":
				a.add(res, KindEIP, a.up+" associates it with agentkeys:instanceId", "not associated with any instance")
			case id != "" && on != id:
				a.add(res, KindEIP, "point agentkeys:instanceId at the broker, or "+a.up+" to move the EIP to "+id,
					"associated with %s, but agentkeys:instanceId is %s; auditing %s, the instance the EIP reaches", on, id, on)
				id = on
			default:
				id = on
			}
		}
	}
	res := "instance/" + id
	a.r.Checked = append(a.r.Checked, res)
	if id == "" {
		a.add("instance", KindMissing, "pulumi config set agentkeys:instanceId i-… --stack "+a.n.Stack.Name, "no instance id configured and no EIP to find it by")
		return
	}
	out, err := a.c.EC2.DescribeInstances(a.ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if strings.HasPrefix(code(err), "InvalidInstanceID") {
			a.add(res, KindMissing, "check agentkeys:instanceId", "does not exist (%s)", code(err))
			return
		}
		a.errf(res, err)
		return
	}
	var in *ec2types.Instance
	for _, rv := range out.Reservations {
		for i := range rv.Instances {
			in = &rv.Instances[i]
		}
	}
	if in == nil {
		a.add(res, KindMissing, "check agentkeys:instanceId", "not found")
		return
	}
	if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != ec2types.HttpTokensStateRequired {
		got := "optional"
		if in.MetadataOptions != nil {
			got = string(in.MetadataOptions.HttpTokens)
		}
		a.add(res, KindIMDSv2, fmt.Sprintf("aws ec2 modify-instance-metadata-options --region %s --instance-id %s --http-tokens required --http-endpoint enabled", a.n.Region, id),
			"HttpTokens is %q: IMDSv1 lets any SSRF read the host role's credentials", got)
	}
	attach := "`agentkeys attach-profile --stack " + a.n.Stack.Name + "`"
	if in.IamInstanceProfile == nil || aws.ToString(in.IamInstanceProfile.Arn) == "" {
		a.add(res, KindProfile, attach, "no instance profile: the broker and workers have no AWS credentials (SES, tier2/ses readiness)")
		return
	}
	arn := aws.ToString(in.IamInstanceProfile.Arn)
	name := arn[strings.LastIndex(arn, "/")+1:]
	if name != a.n.InstanceProfile {
		a.add(res, KindProfile, attach+" replaces it", "runs with instance profile %s, want %s", name, a.n.InstanceProfile)
	}
	p, err := a.c.IAM.GetInstanceProfile(a.ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if err != nil {
		a.errf("instance-profile/"+name, err)
		return
	}
	if len(p.InstanceProfile.Roles) == 0 {
		a.add("instance-profile/"+name, KindProfile, attach, "attached to %s but holds no role", id)
		return
	}
	role := aws.ToString(p.InstanceProfile.Roles[0].RoleName)
	a.r.RuntimeRole = role
	rres := "role/" + role
	if role != a.n.HostRole {
		// A legacy role (§7: "some early deploys landed on different
		// names"): audit it as the runtime role it is.
		a.r.Checked = append(a.r.Checked, rres)
		a.add(rres, KindRuntimeRole, attach+" moves the instance to "+a.n.InstanceProfile,
			"the broker instance %s runs with this role (profile %s), not the declared %s", id, name, a.n.HostRole)
		a.identity(rres, role, roleSpec{declared: stmts(policy.HostRoleInline(a.n)), managed: []string{policy.SSMCorePolicyARN}, hostRole: true})
	}
	a.grants(rres, role)
}

// grants checks that the runtime role allows every SES call the services
// make with the instance profile (contract.Service.AWS).
func (a *auditor) grants(res, role string) {
	live, err := a.rolePolicies(role)
	if err != nil {
		a.errf(res, err)
		return
	}
	declared := stmts(policy.HostRoleInline(a.n))
	seen := map[string]bool{}
	for _, svc := range contract.Catalog(a.n.Stack.Chain) {
		for _, call := range svc.AWS {
			if !strings.HasPrefix(call.Action, "ses:") {
				continue // S3 calls: the data roles grant them (§7: never the host role)
			}
			arn := a.resourceARN(call.Resource)
			key := call.Action + " " + arn
			if arn == "" || seen[key] {
				continue
			}
			seen[key] = true
			if allows(live, call.Action, arn) {
				continue
			}
			fix := a.up + " restores it (policy.HostRoleInline declares it)"
			if !allows(declared, call.Action, arn) {
				doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"%s","Resource":"%s"}]}`, call.Action, arn)
				fix = fmt.Sprintf("the program does not declare it yet (policy.HostRoleInline); until it does: aws iam put-role-policy --role-name %s --policy-name %s --policy-document '%s'",
					role, strings.ReplaceAll(call.Action, ":", "-"), doc)
			}
			a.add(res, KindMissingGrant, fix, "does not allow %s on %s, which %s calls with the instance profile: %s", call.Action, arn, svc.Name, call.Why)
		}
	}
}

func (a *auditor) resourceARN(symbolic string) string {
	base := "arn:aws:ses:" + a.n.Region + ":" + a.n.Fork.AccountID + ":identity/"
	switch symbolic {
	case "sender-identity":
		return base + a.n.Sender
	case "mail-identities":
		return base + a.n.MailDomain
	}
	return ""
}

// rolePolicies are a role's inline and attached statements.
func (a *auditor) rolePolicies(role string) ([]stmt, error) {
	var all []stmt
	inl, err := a.c.IAM.ListRolePolicies(a.ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
	if err != nil {
		return nil, err
	}
	for _, p := range inl.PolicyNames {
		g, err := a.c.IAM.GetRolePolicy(a.ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(p)})
		if err != nil {
			return nil, err
		}
		s, err := parseDoc(aws.ToString(g.PolicyDocument))
		if err != nil {
			return nil, err
		}
		all = append(all, s...)
	}
	att, err := a.c.IAM.ListAttachedRolePolicies(a.ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role)})
	if err != nil {
		return nil, err
	}
	for _, p := range att.AttachedPolicies {
		s, err := a.managedDoc(aws.ToString(p.PolicyArn))
		if err != nil {
			return nil, err
		}
		all = append(all, s...)
	}
	return all, nil
}

// Safe lists the findings Fix would apply.
func (r Report) Safe() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Safe {
			out = append(out, f)
		}
	}
	return out
}

// Command is the CLI form of a safe fix.
func (f Finding) Command() string {
	return fmt.Sprintf("aws iam detach-role-policy --role-name %s --policy-arn %s", f.role, f.policyARN)
}

// Fix applies the safe findings (§7: detach AmazonS3FullAccess from the
// broker's runtime role) and reports what it did.
func Fix(ctx context.Context, r Report, c Clients, done func(Finding, error)) {
	for _, f := range r.Safe() {
		_, err := c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(f.role), PolicyArn: aws.String(f.policyARN)})
		done(f, err)
	}
}
