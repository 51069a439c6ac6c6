// Package audit is the spec's §7 security audit as code: it lists one stack's
// principals, buckets and instance with the AWS SDK and reports everything
// broader than the program declares (package policy).
package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

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
	KindPublicAccess    = "no-public-access-block"
	KindTLSOnly         = "no-tls-only-policy"
	KindPublicPolicy    = "public-bucket-policy"
	KindIMDSv2          = "imdsv2-not-required"
	KindProfile         = "instance-profile"
	KindError           = "error"
)

// Finding is one problem.
type Finding struct {
	Resource string `json:"resource"`
	Kind     string `json:"kind"`
	Detail   string `json:"detail"`
}

// Report is the audit result.
type Report struct {
	Stack    string    `json:"stack"`
	Checked  []string  `json:"checked"`
	Findings []Finding `json:"findings"`
}

// Clients are the AWS APIs audit reads.
type Clients struct {
	IAM *iam.Client
	S3  *s3.Client
	EC2 *ec2.Client
}

type auditor struct {
	ctx context.Context
	n   naming.Names
	c   Clients
	r   *Report
}

func (a *auditor) add(res, kind, format string, args ...any) {
	a.r.Findings = append(a.r.Findings, Finding{Resource: res, Kind: kind, Detail: fmt.Sprintf(format, args...)})
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

// Run audits stack n whose broker is instanceID.
func Run(ctx context.Context, n naming.Names, instanceID string, c Clients) Report {
	r := Report{Stack: n.Stack.Name}
	a := &auditor{ctx: ctx, n: n, c: c, r: &r}
	a.user(n.DaemonUser, stmts(policy.DaemonUser(n)))
	a.user(n.SSHUser, stmts(policy.SSHUser(n, instanceID)))
	trusts := append(stmts(policy.StaticTrust(n)), stmts(policy.FederatedTrust(n))...)
	a.role(n.DataRole, stmts(policy.DataRoleInline(n)), trusts, nil)
	for _, cl := range naming.DataClasses {
		a.role(n.DataClassRoles[cl.Name], nil, trusts, nil)
	}
	a.role(n.HostRole, stmts(policy.HostRoleInline(n)), stmts(policy.HostRoleTrust()), []string{policy.SSMCorePolicyARN})
	a.profile()
	a.bucket(n.MailBucket)
	for _, cl := range naming.DataClasses {
		a.bucket(n.DataBuckets[cl.Name])
	}
	a.instance(instanceID)
	return r
}

// identityDoc checks one live identity policy against the declared statements.
func (a *auditor) identityDoc(res, name, raw string, declared []stmt, hostRole bool) {
	live, err := parseDoc(raw)
	if err != nil {
		a.add(res, KindError, "policy %s: %v", name, err)
		return
	}
	wild := wildcardActions(live)
	if len(wild) > 0 {
		if hostRole && slices.ContainsFunc(wild, func(w string) bool { return w == "*" || strings.HasPrefix(strings.ToLower(w), "s3:") }) {
			a.add(res, KindHostRoleS3, "policy %s grants %s: the broker's runtime role never uses S3 with its own credentials (§7); remove it", name, strings.Join(wild, ", "))
		} else {
			a.add(res, KindWildcard, "policy %s allows %s", name, strings.Join(wild, ", "))
		}
	}
	if hostRole && len(wild) == 0 {
		for _, s := range live {
			// The declared policy's own S3 grant (the email worker's inbox
			// listing, from the services' contract) is expected.
			if s.Effect == "Allow" && slices.ContainsFunc(s.Actions, func(x string) bool { return strings.HasPrefix(strings.ToLower(x), "s3:") }) && !stmtCovered(s, declared) {
				a.add(res, KindHostRoleS3, "policy %s grants %s: the host role needs no S3 access beyond the declared inbox listing (§7)", name, strings.Join(s.Actions, ", "))
				break
			}
		}
	}
	for _, s := range live {
		if !stmtCovered(s, declared) {
			a.add(res, KindBroader, "policy %s statement %q (%s on %s) is broader than the declared policy", name, s.Sid, strings.Join(s.Actions, ","), strings.Join(s.Resources, ","))
		}
	}
}

func (a *auditor) managed(res, arn string, allowed []string, hostRole bool) {
	switch {
	case hostRole && arn == S3FullAccessARN:
		a.add(res, KindS3FullAccess, "AmazonS3FullAccess is attached: a broker compromise would expose every inbound mail (§7); detach it")
		return
	case slices.Contains(allowed, arn):
		return
	}
	a.add(res, KindUndeclared, "managed policy %s is attached but not declared by the program", arn)
	p, err := a.c.IAM.GetPolicy(a.ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil || p.Policy.DefaultVersionId == nil {
		return
	}
	v, err := a.c.IAM.GetPolicyVersion(a.ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: p.Policy.DefaultVersionId})
	if err != nil || v.PolicyVersion.Document == nil {
		return
	}
	if live, err := parseDoc(*v.PolicyVersion.Document); err == nil {
		if wild := wildcardActions(live); len(wild) > 0 {
			kind := KindWildcard
			if hostRole && slices.ContainsFunc(wild, func(w string) bool { return w == "*" || strings.HasPrefix(strings.ToLower(w), "s3:") }) {
				kind = KindHostRoleS3
			}
			a.add(res, kind, "managed policy %s allows %s", arn, strings.Join(wild, ", "))
		}
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
		a.add(res, KindError, "%v", err)
		return
	}
	for _, p := range inl.PolicyNames {
		g, err := a.c.IAM.GetUserPolicy(a.ctx, &iam.GetUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(p)})
		if err != nil {
			a.add(res, KindError, "%v", err)
			continue
		}
		a.identityDoc(res, p, aws.ToString(g.PolicyDocument), declared, false)
	}
	att, err := a.c.IAM.ListAttachedUserPolicies(a.ctx, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(name)})
	if err != nil {
		a.add(res, KindError, "%v", err)
		return
	}
	for _, p := range att.AttachedPolicies {
		a.managed(res, aws.ToString(p.PolicyArn), nil, false)
	}
}

func (a *auditor) missingOr(res string, err error) {
	if c := code(err); c == "NoSuchEntity" || c == "NoSuchBucket" || c == "NotFound" {
		a.add(res, KindMissing, "does not exist (%s): run `pulumi up` for the stack", c)
		return
	}
	a.add(res, KindError, "%v", err)
}

func (a *auditor) role(name string, declared, trust []stmt, allowedManaged []string) {
	res := "role/" + name
	a.r.Checked = append(a.r.Checked, res)
	hostRole := name == a.n.HostRole
	g, err := a.c.IAM.GetRole(a.ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		a.missingOr(res, err)
		return
	}
	if live, err := parseDoc(aws.ToString(g.Role.AssumeRolePolicyDocument)); err != nil {
		a.add(res, KindError, "trust policy: %v", err)
	} else {
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
					a.add(res, KindForeignProvider, "trust policy names %s's OIDC provider %s; only %s may assume this role", who, p, a.n.OIDCProviderARN)
				}
			}
			if !foreign && !stmtCovered(s, trust) {
				a.add(res, KindBroader, "trust statement %q (%s for %v) is broader than the declared trust", s.Sid, strings.Join(s.Actions, ","), s.Principals)
			}
		}
	}
	inl, err := a.c.IAM.ListRolePolicies(a.ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		a.add(res, KindError, "%v", err)
		return
	}
	for _, p := range inl.PolicyNames {
		gp, err := a.c.IAM.GetRolePolicy(a.ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)})
		if err != nil {
			a.add(res, KindError, "%v", err)
			continue
		}
		if declared == nil {
			a.add(res, KindUndeclared, "inline policy %s: this role is declared without identity policies (its bucket policy grants access)", p)
		}
		a.identityDoc(res, p, aws.ToString(gp.PolicyDocument), declared, hostRole)
	}
	att, err := a.c.IAM.ListAttachedRolePolicies(a.ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		a.add(res, KindError, "%v", err)
		return
	}
	for _, p := range att.AttachedPolicies {
		a.managed(res, aws.ToString(p.PolicyArn), allowedManaged, hostRole)
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
		a.add(res, KindProfile, "holds roles %v, want exactly [%s]", roles, a.n.HostRole)
	}
}

func (a *auditor) bucket(b string) {
	res := "bucket/" + b
	a.r.Checked = append(a.r.Checked, res)
	if _, err := a.c.S3.HeadBucket(a.ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
		a.missingOr(res, err)
		return
	}
	pab, err := a.c.S3.GetPublicAccessBlock(a.ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(b)})
	switch {
	case code(err) == "NoSuchPublicAccessBlockConfiguration":
		a.add(res, KindPublicAccess, "no public-access block; set all four flags (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets)")
	case err != nil:
		a.add(res, KindError, "public-access block: %v", err)
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
			a.add(res, KindPublicAccess, "public-access block has %s off", strings.Join(off, ", "))
		}
	}
	bp, err := a.c.S3.GetBucketPolicy(a.ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
	if code(err) == "NoSuchBucketPolicy" {
		a.add(res, KindTLSOnly, "no bucket policy, so no TLS-only deny (Deny s3:* when aws:SecureTransport is false)")
		return
	}
	if err != nil {
		a.add(res, KindError, "bucket policy: %v", err)
		return
	}
	live, err := parseDoc(aws.ToString(bp.Policy))
	if err != nil {
		a.add(res, KindError, "bucket policy: %v", err)
		return
	}
	tlsOnly := false
	for _, s := range live {
		everyone := slices.Contains(s.Principals["*"], "*") || slices.Contains(s.Principals["AWS"], "*")
		if s.Effect == "Deny" && everyone && slices.Contains(s.Actions, "s3:*") && slices.Equal(s.Condition["Bool"]["aws:SecureTransport"], []string{"false"}) {
			tlsOnly = true
		}
		if s.Effect == "Allow" && everyone && len(s.Condition) == 0 {
			a.add(res, KindPublicPolicy, "statement %q allows %s to everyone", s.Sid, strings.Join(s.Actions, ","))
		}
	}
	if !tlsOnly {
		a.add(res, KindTLSOnly, "bucket policy lacks the TLS-only statement (Deny, Principal *, s3:*, Bool aws:SecureTransport false)")
	}
	if wild := wildcardActions(live); len(wild) > 0 {
		a.add(res, KindWildcard, "bucket policy allows %s", strings.Join(wild, ", "))
	}
}

func (a *auditor) instance(id string) {
	res := "instance/" + id
	a.r.Checked = append(a.r.Checked, res)
	if id == "" {
		a.add("instance", KindMissing, "no instance id configured (agentkeys:instanceId)")
		return
	}
	out, err := a.c.EC2.DescribeInstances(a.ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if strings.HasPrefix(code(err), "InvalidInstanceID") {
			a.add(res, KindMissing, "does not exist (%s): check agentkeys:instanceId", code(err))
			return
		}
		a.add(res, KindError, "%v", err)
		return
	}
	for _, rv := range out.Reservations {
		for _, in := range rv.Instances {
			if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != "required" {
				got := "optional"
				if in.MetadataOptions != nil {
					got = string(in.MetadataOptions.HttpTokens)
				}
				a.add(res, KindIMDSv2, "HttpTokens is %q: IMDSv1 lets any SSRF read the host role's credentials; set it to required", got)
			}
			prof := ""
			if in.IamInstanceProfile != nil {
				prof = aws.ToString(in.IamInstanceProfile.Arn)
			}
			if !strings.HasSuffix(prof, ":instance-profile/"+a.n.InstanceProfile) {
				a.add(res, KindProfile, "instance profile %q, want %s", prof, a.n.InstanceProfile)
			}
		}
	}
}
