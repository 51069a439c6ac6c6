package audit

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// seed is what the test writes into moto; the broken case flips fields.
type seed struct {
	daemonInline    string
	sshInline       string
	hostAttach      []string
	dataTrust       string
	classInline     string // on the vault role
	noPAB           string // bucket without public-access block
	noPolicy        string // bucket without policy
	noTLS           string // bucket whose policy lacks the TLS-only deny
	httpTokens      ec2types.HttpTokensState
	hostInlineExtra string
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

func setup(t *testing.T, n naming.Names, sd seed) (Clients, string) {
	ctx := context.Background()
	mototest.Start(t)
	cfg := mototest.Config(t)
	c := Clients{IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg)}

	role := func(name, trust, inline string) {
		must(c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}))
		if inline != "" {
			must(c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("inline"), PolicyDocument: aws.String(inline)}))
		}
	}
	role(n.DataRole, or(sd.dataTrust, policy.FederatedTrust(n).JSON()), policy.DataRoleInline(n).JSON())
	for _, cl := range naming.DataClasses {
		inline := ""
		if cl.Name == "vault" {
			inline = sd.classInline
		}
		role(n.DataClassRoles[cl.Name], policy.FederatedTrust(n).JSON(), inline)
	}
	role(n.HostRole, policy.HostRoleTrust().JSON(), policy.HostRoleInline(n).JSON())
	if sd.hostInlineExtra != "" {
		must(c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyName: aws.String("legacy"), PolicyDocument: aws.String(sd.hostInlineExtra)}))
	}
	for _, arn := range append([]string{policy.SSMCorePolicyARN}, sd.hostAttach...) {
		must(c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyArn: aws.String(arn)}))
	}
	must(c.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile)}))
	must(c.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile), RoleName: aws.String(n.HostRole)}))

	run := must(c.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Small,
		MetadataOptions:    &ec2types.InstanceMetadataOptionsRequest{HttpTokens: sd.httpTokens},
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String(n.InstanceProfile)},
	}))
	id := aws.ToString(run.Instances[0].InstanceId)

	user := func(name, doc string) {
		must(c.IAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}))
		must(c.IAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("p"), PolicyDocument: aws.String(doc)}))
	}
	user(n.DaemonUser, or(sd.daemonInline, policy.DaemonUser(n).JSON()))
	user(n.SSHUser, or(sd.sshInline, policy.SSHUser(n, id).JSON()))

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
		must(c.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(doc.JSON())}))
	}
	bucket(n.MailBucket, policy.MailBucketPolicy(n))
	for _, cl := range naming.DataClasses {
		bucket(n.DataBuckets[cl.Name], policy.DataClassBucketPolicy(n, cl))
	}
	return c, id
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestCleanAccountHasNoFindings(t *testing.T) {
	n := names(t)
	c, id := setup(t, n, seed{httpTokens: ec2types.HttpTokensStateRequired})
	r := Run(context.Background(), n, id, c)
	for _, f := range r.Findings {
		t.Errorf("finding on a clean account: %+v", f)
	}
	// 2 users, data + 3 class + host roles, profile, 4 buckets, instance
	if len(r.Checked) != 2+5+1+4+1 {
		t.Errorf("checked %d resources: %v", len(r.Checked), r.Checked)
	}
}

func TestBrokenAccountReportsEachFinding(t *testing.T) {
	n := names(t)
	other := naming.Derive(naming.Stack{Name: "test-3", Kind: naming.KindTest, Slot: 3, Chain: "heima", Suffix: "-test-3"}, n.Fork)
	foreignTrust := strings.ReplaceAll(policy.FederatedTrust(n).JSON(), n.OIDCProviderARN, other.OIDCProviderARN)
	sshNoCond := `{"Version":"2012-10-17","Statement":[{"Sid":"AnyHost","Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*"}]}`
	c, id := setup(t, n, seed{
		daemonInline:    `{"Version":"2012-10-17","Statement":[{"Sid":"Legacy","Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
		sshInline:       sshNoCond,
		hostAttach:      []string{S3FullAccessARN},
		hostInlineExtra: `{"Version":"2012-10-17","Statement":[{"Sid":"MailRead","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + n.MailBucket + `/*"}]}`,
		dataTrust:       foreignTrust,
		classInline:     `{"Version":"2012-10-17","Statement":[{"Sid":"Extra","Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`,
		noPAB:           n.DataBuckets["vault"],
		noPolicy:        n.DataBuckets["memory"],
		noTLS:           n.DataBuckets["config"],
		httpTokens:      ec2types.HttpTokensStateOptional,
	})
	r := Run(context.Background(), n, id, c)
	type want struct{ res, kind, sub string }
	wants := []want{
		{"user/" + n.DaemonUser, KindWildcard, "s3:*"},
		{"user/" + n.DaemonUser, KindBroader, "Legacy"},
		{"user/" + n.SSHUser, KindBroader, "AnyHost"},
		{"role/" + n.HostRole, KindS3FullAccess, "AmazonS3FullAccess"},
		{"role/" + n.HostRole, KindHostRoleS3, "s3:GetObject"},
		{"role/" + n.HostRole, KindBroader, "MailRead"},
		{"role/" + n.DataRole, KindForeignProvider, "stack test-3"},
		{"role/" + n.DataClassRoles["vault"], KindUndeclared, "inline policy inline"},
		{"role/" + n.DataClassRoles["vault"], KindBroader, "Extra"},
		{"bucket/" + n.DataBuckets["vault"], KindPublicAccess, "no public-access block"},
		{"bucket/" + n.DataBuckets["memory"], KindTLSOnly, "no bucket policy"},
		{"bucket/" + n.DataBuckets["config"], KindTLSOnly, "lacks the TLS-only statement"},
		{"instance/" + id, KindIMDSv2, `"optional"`},
	}
	found := make([]bool, len(r.Findings))
	for _, w := range wants {
		ok := false
		for i, f := range r.Findings {
			if f.Resource == w.res && f.Kind == w.kind && strings.Contains(f.Detail, w.sub) {
				ok, found[i] = true, true
			}
		}
		if !ok {
			t.Errorf("no %s finding on %s mentioning %q", w.kind, w.res, w.sub)
		}
	}
	for i, f := range r.Findings {
		if !found[i] {
			t.Errorf("unexpected finding: %+v", f)
		}
	}
}

func TestMissingStack(t *testing.T) {
	n := names(t)
	mototest.Start(t)
	cfg := mototest.Config(t)
	r := Run(context.Background(), n, "i-0123456789abcdef0", Clients{IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg)})
	missing := 0
	for _, f := range r.Findings {
		if f.Kind == KindMissing {
			missing++
		} else {
			t.Errorf("non-missing finding in an empty account: %+v", f)
		}
	}
	if missing != len(r.Checked) {
		t.Errorf("%d missing of %d checked", missing, len(r.Checked))
	}
}
