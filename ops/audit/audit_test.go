package audit

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// seed is what the test writes into moto; the broken cases flip fields.
type seed struct {
	federated       bool              // the stack's OIDC provider exists
	trust           map[string]string // role -> trust document (default: the declared one)
	inline          map[string]string // role -> extra inline policy named "extra"
	dataInline      bool              // keep the data role's inline grant (default: only before federation)
	daemonInline    string
	sshInline       string
	hostAttach      []string
	hostInline      string // replaces the host role's declared inline policy
	noPAB           string // bucket without public-access block
	noPolicy        string // bucket without policy
	noTLS           string // bucket whose policy lacks the TLS-only deny
	extraStmt       string // bucket whose policy carries an undeclared statement
	extraDaemonKey  bool
	httpTokens      ec2types.HttpTokensState
	legacyProfile   bool // the instance runs with a legacy profile/role carrying AmazonS3FullAccess
	noEIP           bool
	configInstance  string // agentkeys:instanceId when it differs from the EIP's instance
	unknownKeyOwner bool   // stack outputs not readable: key ids unknown
}

func names(t *testing.T) naming.Names {
	s, _ := naming.ParseStack("test-2")
	return naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: "example.test"})
}

// must panics on a seeding error; the test fails with the AWS error text.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

const legacyRole = "agentkeys-broker-host-legacy"

func setup(t *testing.T, n naming.Names, sd seed) (Clients, Input) {
	ctx := context.Background()
	mototest.Start(t)
	cfg := mototest.Config(t)
	c := Clients{IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg)}

	if sd.federated {
		must(c.IAM.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{
			Url: aws.String(n.Issuer), ClientIDList: []string{naming.OIDCAudience}, ThumbprintList: []string{strings.Repeat("a", 40)},
		}))
	}
	declaredTrust := policy.StaticTrust(n).JSON()
	if sd.federated {
		declaredTrust = policy.FederatedTrust(n).JSON()
	}
	role := func(name, trust, inlineName, inline string) {
		if t, ok := sd.trust[name]; ok {
			trust = t
		}
		must(c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}))
		if inline != "" {
			must(c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(inlineName), PolicyDocument: aws.String(inline)}))
		}
		if extra, ok := sd.inline[name]; ok {
			must(c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("extra"), PolicyDocument: aws.String(extra)}))
		}
	}
	dataInline := ""
	if !sd.federated || sd.dataInline {
		dataInline = policy.DataRoleInline(n).JSON()
	}
	role(n.DataRole, declaredTrust, n.DataRole+"-inline", dataInline)
	for _, cl := range naming.DataClasses {
		role(n.DataClassRoles[cl.Name], declaredTrust, "", "")
	}
	role(n.HostRole, policy.HostRoleTrust().JSON(), "agentkeys-broker-host", or(sd.hostInline, policy.HostRoleInline(n).JSON()))
	for _, arn := range append([]string{policy.SSMCorePolicyARN}, sd.hostAttach...) {
		must(c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyArn: aws.String(arn)}))
	}
	must(c.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile)}))
	must(c.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile), RoleName: aws.String(n.HostRole)}))
	profile := n.InstanceProfile
	if sd.legacyProfile {
		// §7: "some early deploys landed on different names", with S3 full access.
		role(legacyRole, policy.HostRoleTrust().JSON(), "BrokerSendEmail",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendEmail","Resource":"*"}]}`)
		must(c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(legacyRole), PolicyArn: aws.String(S3FullAccessARN)}))
		must(c.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(legacyRole)}))
		must(c.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(legacyRole), RoleName: aws.String(legacyRole)}))
		profile = legacyRole
	}

	run := must(c.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Small,
		MetadataOptions:    &ec2types.InstanceMetadataOptionsRequest{HttpTokens: or(sd.httpTokens, ec2types.HttpTokensStateRequired)},
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String(profile)},
	}))
	id := aws.ToString(run.Instances[0].InstanceId)
	in := Input{Names: n, InstanceID: id, AccessKeys: map[string]string{}}
	if !sd.noEIP {
		alloc := must(c.EC2.AllocateAddress(ctx, &ec2.AllocateAddressInput{}))
		must(c.EC2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)}))
		in.EIP = aws.ToString(alloc.PublicIp)
	}
	if sd.configInstance != "" {
		in.InstanceID = sd.configInstance
	}

	user := func(name, doc string, keys int) {
		must(c.IAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}))
		must(c.IAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("p"), PolicyDocument: aws.String(doc)}))
		for i := 0; i < keys; i++ {
			k := must(c.IAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)}))
			if i == 0 {
				in.AccessKeys[name] = aws.ToString(k.AccessKey.AccessKeyId)
			}
		}
	}
	daemonKeys := 1
	if sd.extraDaemonKey {
		daemonKeys = 2
	}
	user(n.DaemonUser, or(sd.daemonInline, policy.DaemonUser(n).JSON()), daemonKeys)
	user(n.SSHUser, or(sd.sshInline, policy.SSHUser(n, id).JSON()), 1)
	if sd.unknownKeyOwner {
		in.AccessKeys = nil
	}

	bucket := func(b string, doc policy.Document) {
		must(c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}))
		if b != sd.noPAB {
			must(c.S3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(b), PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
				BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
			}}))
		}
		if b == sd.noPolicy {
			return
		}
		if b == sd.noTLS {
			doc.Statement = doc.Statement[1:] // drop DenyInsecureTransport
		}
		if b == sd.extraStmt {
			doc.Statement = append(doc.Statement, policy.Statement{Sid: "LegacyDaemonRead", Effect: "Allow",
				Principal: map[string]any{"AWS": n.DaemonUserARN}, Action: "s3:GetObject", Resource: naming.BucketARN(b) + "/*"})
		}
		must(c.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(doc.JSON())}))
	}
	bucket(n.MailBucket, policy.MailBucketPolicy(n))
	for _, cl := range naming.DataClasses {
		bucket(n.DataBuckets[cl.Name], policy.DataClassBucketPolicy(n, cl))
	}
	return c, in
}

func or[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// gaps are the SES calls of the contract the declared host role does not
// allow: a deployed stack inherits them until policy.HostRoleInline does.
func gaps(n naming.Names) []string {
	declared := stmts(policy.HostRoleInline(n))
	base := "arn:aws:ses:" + n.Region + ":" + n.Fork.AccountID + ":identity/"
	var out []string
	for _, s := range contract.Catalog(n.Stack.Chain) {
		for _, c := range s.AWS {
			arn := map[string]string{"sender-identity": base + n.Sender, "mail-identities": base + n.MailDomain}[c.Resource]
			if strings.HasPrefix(c.Action, "ses:") && arn != "" && !allows(declared, c.Action, arn) && !slices.Contains(out, c.Action+" on "+arn) {
				out = append(out, c.Action+" on "+arn)
			}
		}
	}
	return out
}

type want struct{ res, kind, sub, fix string }

// expect fails unless the findings are exactly wants (plus the program's own
// contract gaps on the runtime role).
func expect(t *testing.T, r Report, runtimeRole string, wants []want) {
	t.Helper()
	for _, g := range gaps(r.n()) {
		wants = append(wants, want{"role/" + runtimeRole, KindMissingGrant, g, "does not declare it yet"})
	}
	found := make([]bool, len(r.Findings))
	for _, w := range wants {
		ok := false
		for i, f := range r.Findings {
			if f.Resource == w.res && f.Kind == w.kind && strings.Contains(f.Detail, w.sub) && strings.Contains(f.Fix, w.fix) {
				ok, found[i] = true, true
			}
		}
		if !ok {
			t.Errorf("no %s finding on %s mentioning %q with a fix mentioning %q", w.kind, w.res, w.sub, w.fix)
		}
	}
	for i, f := range r.Findings {
		if !found[i] {
			t.Errorf("unexpected finding: %+v", f)
		}
		if f.Fix == "" {
			t.Errorf("finding without a fix: %+v", f)
		}
	}
}

// n recovers the names from the report's stack, for expect.
func (r Report) n() naming.Names {
	s, _ := naming.ParseStack(r.Stack)
	return naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: "example.test"})
}

func TestCleanAccountHasNoFindings(t *testing.T) {
	n := names(t)
	for _, fed := range []bool{false, true} {
		// A subtest each: moto's own boto3 must not inherit the first
		// server's environment (AWS_PROFILE="").
		t.Run(map[bool]string{false: "static", true: "federated"}[fed], func(t *testing.T) {
			c, in := setup(t, n, seed{federated: fed})
			start := time.Now()
			r := Run(context.Background(), in, c)
			t.Logf("audit of a deployed stack on moto_server: %s", time.Since(start))
			if r.Federated != fed || r.RuntimeRole != n.HostRole {
				t.Errorf("federated=%v runtime role %q", r.Federated, r.RuntimeRole)
			}
			expect(t, r, n.HostRole, nil)
			// 2 users, data + 3 class + host roles, profile, 4 buckets, EIP, instance
			if len(r.Checked) != 2+5+1+4+1+1 {
				t.Errorf("checked %d resources: %v", len(r.Checked), r.Checked)
			}
		})
	}
}

func TestBrokenAccountReportsEachFinding(t *testing.T) {
	n := names(t)
	other := naming.Derive(naming.Stack{Name: "test-3", Kind: naming.KindTest, Slot: 3, Chain: "heima", Suffix: "-test-3"}, n.Fork)
	foreignTrust := strings.ReplaceAll(policy.FederatedTrust(n).JSON(), n.OIDCProviderARN, other.OIDCProviderARN)
	sshNoCond := `{"Version":"2012-10-17","Statement":[{"Sid":"AnyHost","Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*"}]}`
	c, in := setup(t, n, seed{
		federated:      true,
		trust:          map[string]string{n.DataRole: policy.StaticTrust(n).JSON(), n.DataClassRoles["memory"]: foreignTrust},
		dataInline:     true,
		inline:         map[string]string{n.DataClassRoles["config"]: `{"Version":"2012-10-17","Statement":[{"Sid":"Extra","Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`},
		daemonInline:   `{"Version":"2012-10-17","Statement":[{"Sid":"Legacy","Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
		sshInline:      sshNoCond,
		hostInline:     `{"Version":"2012-10-17","Statement":[{"Sid":"AssumeDataRole","Effect":"Allow","Action":"sts:AssumeRole","Resource":"` + n.DataRoleARN + `"}]}`, // no SES send
		noPAB:          n.DataBuckets["vault"],
		noPolicy:       n.DataBuckets["memory"],
		noTLS:          n.DataBuckets["config"],
		extraStmt:      n.MailBucket,
		extraDaemonKey: true,
		httpTokens:     ec2types.HttpTokensStateOptional,
	})
	r := Run(context.Background(), in, c)
	up := "pulumi up --stack test-2"
	expect(t, r, n.HostRole, []want{
		{"user/" + n.DaemonUser, KindWildcard, "s3:*", up},
		{"user/" + n.DaemonUser, KindBroader, "Legacy", up},
		{"user/" + n.DaemonUser, KindAccessKey, "is not the one the program declared (" + in.AccessKeys[n.DaemonUser] + ")", "aws iam delete-access-key --user-name " + n.DaemonUser},
		{"user/" + n.SSHUser, KindBroader, "AnyHost", up},
		{"role/" + n.DataRole, KindStaticTrust, n.DaemonUserARN, up},
		{"role/" + n.DataRole, KindInlineAfterFed, n.DataRole + "-inline", "aws iam delete-role-policy --role-name " + n.DataRole},
		{"role/" + n.DataClassRoles["memory"], KindForeignProvider, "stack test-3", up},
		{"role/" + n.DataClassRoles["config"], KindUndeclared, "inline policy extra", "delete-role-policy"},
		{"role/" + n.DataClassRoles["config"], KindBroader, "Extra", "delete-role-policy"},
		{"role/" + n.HostRole, KindBroader, `statement "AssumeDataRole" (sts:AssumeRole`, up},
		{"role/" + n.HostRole, KindMissingGrant, "ses:GetEmailIdentity on arn:aws:ses:us-east-1:123456789012:identity/" + n.Sender + ", which broker calls", up + "` restores it"},
		{"role/" + n.HostRole, KindMissingGrant, "ses:SendEmail on arn:aws:ses:us-east-1:123456789012:identity/" + n.Sender + ", which broker calls", up + "` restores it"},
		{"role/" + n.HostRole, KindMissingGrant, "ses:SendEmail on arn:aws:ses:us-east-1:123456789012:identity/" + n.MailDomain + ", which email calls", up + "` restores it"},
		{"bucket/" + n.DataBuckets["vault"], KindPublicAccess, "no public-access block", up},
		{"bucket/" + n.DataBuckets["memory"], KindTLSOnly, "no bucket policy", up},
		{"bucket/" + n.DataBuckets["config"], KindTLSOnly, "lacks the TLS-only statement", up},
		{"bucket/" + n.DataBuckets["config"], KindBucketDrift, `declared statement "DenyInsecureTransport" is missing`, up},
		{"bucket/" + n.MailBucket, KindBucketDrift, `statement "LegacyDaemonRead" is not declared`, up},
		{"instance/" + in.InstanceID, KindIMDSv2, `"optional"`, "--http-tokens required"},
	})
}

// §7: the role the instance actually runs with is found through EIP →
// instance → profile, audited as the runtime role, and --fix detaches
// AmazonS3FullAccess from it.
func TestLegacyRuntimeRoleAndFix(t *testing.T) {
	n := names(t)
	c, in := setup(t, n, seed{legacyProfile: true, federated: true})
	r := Run(context.Background(), in, c)
	if r.RuntimeRole != legacyRole {
		t.Fatalf("runtime role %q, want %s", r.RuntimeRole, legacyRole)
	}
	attach := "agentkeys attach-profile --stack test-2"
	expect(t, r, legacyRole, []want{
		{"instance/" + in.InstanceID, KindProfile, "runs with instance profile " + legacyRole, attach},
		{"role/" + legacyRole, KindRuntimeRole, "not the declared " + n.HostRole, attach},
		{"role/" + legacyRole, KindS3FullAccess, "AmazonS3FullAccess is attached", "aws iam detach-role-policy --role-name " + legacyRole + " --policy-arn " + S3FullAccessARN},
		{"role/" + legacyRole, KindBroader, "ses:SendEmail on *", "delete-role-policy"},
		{"role/" + legacyRole, KindMissingGrant, "ses:GetEmailIdentity on arn:aws:ses:us-east-1:123456789012:identity/" + n.Sender, "restores it"},
	})
	safe := r.Safe()
	if len(safe) != 1 || safe[0].Command() != "aws iam detach-role-policy --role-name "+legacyRole+" --policy-arn "+S3FullAccessARN {
		t.Fatalf("safe fixes %+v", safe)
	}
	var applied []string
	Fix(context.Background(), r, c, func(f Finding, err error) {
		if err != nil {
			t.Errorf("fix %s: %v", f.Command(), err)
		}
		applied = append(applied, f.Command())
	})
	if len(applied) != 1 {
		t.Fatalf("applied %v", applied)
	}
	att := must(c.IAM.ListAttachedRolePolicies(context.Background(), &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(legacyRole)}))
	if len(att.AttachedPolicies) != 0 {
		t.Fatalf("still attached: %+v", att.AttachedPolicies)
	}
	for _, f := range Run(context.Background(), in, c).Findings {
		if f.Kind == KindS3FullAccess || f.Safe {
			t.Errorf("after --fix: %+v", f)
		}
	}
}

// The EIP decides which instance is audited; a config that points elsewhere
// is a finding, and so are unknown key owners with several keys.
func TestEIPOnAnotherInstance(t *testing.T) {
	n := names(t)
	c, in := setup(t, n, seed{configInstance: "i-0aaaaaaaaaaaaaaaa", extraDaemonKey: true, unknownKeyOwner: true})
	r := Run(context.Background(), in, c)
	var audited string
	for _, ch := range r.Checked {
		if strings.HasPrefix(ch, "instance/") {
			audited = strings.TrimPrefix(ch, "instance/")
		}
	}
	expect(t, r, n.HostRole, []want{
		{"eip/" + in.EIP, KindEIP, "agentkeys:instanceId is i-0aaaaaaaaaaaaaaaa", "agentkeys:instanceId"},
		{"user/" + n.DaemonUser, KindAccessKey, "2 access keys", "pulumi stack output daemonAccessKeyId"},
		// the SSH user's declared policy names the configured instance
		{"user/" + n.SSHUser, KindBroader, "InstanceConnectThisHost", "pulumi up"},
	})
	if audited == "" || audited == "i-0aaaaaaaaaaaaaaaa" {
		t.Errorf("audited instance %q, want the EIP's", audited)
	}
}

func TestMissingStack(t *testing.T) {
	n := names(t)
	mototest.Start(t)
	cfg := mototest.Config(t)
	r := Run(context.Background(), Input{Names: n, InstanceID: "i-0123456789abcdef0"}, Clients{IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg)})
	missing := 0
	for _, f := range r.Findings {
		if f.Kind == KindMissing && strings.Contains(f.Fix, "pulumi up --stack test-2") || f.Fix == "check agentkeys:instanceId" {
			missing++
		} else {
			t.Errorf("non-missing finding in an empty account: %+v", f)
		}
	}
	if missing != len(r.Checked) {
		t.Errorf("%d missing of %d checked", missing, len(r.Checked))
	}
}

func TestDiffPolicies(t *testing.T) {
	n := names(t)
	d := policy.MailBucketPolicy(n)
	// Same statements, spelled differently (order, single vs list): equal.
	js := func(st policy.Statement) string { b, _ := json.Marshal(st); return string(b) }
	live := `{"Statement":[` + js(d.Statement[2]) + `,` + js(d.Statement[0]) + `,` + js(d.Statement[1]) + `]}`
	live = strings.Replace(live, `"Action":["s3:GetObject","s3:ListBucket"]`, `"Action":["s3:ListBucket","s3:GetObject"]`, 1)
	if got := diffPolicies(d.JSON(), live); len(got) != 0 {
		t.Fatalf("equal policies differ: %v", got)
	}
	changed := strings.Replace(d.JSON(), `/inbound/*`, `/*`, 1)
	if got := diffPolicies(d.JSON(), changed); len(got) != 1 || !strings.Contains(got[0], `"AllowSESWriteInbound" differs`) {
		t.Fatalf("changed statement: %v", got)
	}
}
