package aws_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	awsstandin "github.com/agentkeys/agentkeys-infra/test/providers/aws"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin/standintest"
)

type props = standin.Props

var m = standin.M

// env is one moto_server and its clients, shared by a test's subtests.
type env struct {
	h   standintest.Harness
	cfg aws.Config
	iam *iam.Client
	s3  *s3.Client
	ec2 *ec2.Client
	r53 *route53.Client
	ses *ses.Client
	v2  *sesv2.Client
	kms *kms.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mototest.StartWith(t, mototest.Options{ManagedPolicies: true, Python: awsstandin.MotoFills})
	p := awsstandin.New()
	if _, err := p.Configure(context.Background(), plugin.ConfigureRequest{Inputs: m(map[string]any{"region": "us-east-1"})}); err != nil {
		t.Fatal(err)
	}
	cfg := mototest.Config(t)
	return &env{h: standintest.Harness{T: t, P: p}, cfg: cfg, iam: iam.NewFromConfig(cfg),
		s3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), ec2: ec2.NewFromConfig(cfg),
		r53: route53.NewFromConfig(cfg), ses: ses.NewFromConfig(cfg), v2: sesv2.NewFromConfig(cfg), kms: kms.NewFromConfig(cfg)}
}

// sub runs a subtest with the harness bound to it.
func (e *env) sub(t *testing.T, name string, f func(t *testing.T, h standintest.Harness)) {
	t.Run(name, func(t *testing.T) { f(t, standintest.Harness{T: t, P: e.h.P}) })
}

var ctx = context.Background()

const trust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// trustReordered means the same as trust, spelled differently.
const trustReordered = `{"Statement":[{"Action":["sts:AssumeRole"],"Principal":{"Service":["ec2.amazonaws.com"]},"Effect":"Allow"}],"Version":"2012-10-17"}`

func doc(action string) string {
	return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"` + action + `","Resource":"*"}]}`
}

func wantFailure(t *testing.T, f []plugin.CheckFailure, prop, substr string) {
	t.Helper()
	for _, x := range f {
		if string(x.Property) == prop && strings.Contains(x.Reason, substr) {
			return
		}
	}
	t.Fatalf("expected a check failure on %s containing %q, got %v", prop, substr, f)
}

func wantReplace(t *testing.T, d plugin.DiffResult, key string, dbr bool) {
	t.Helper()
	for _, k := range d.ReplaceKeys {
		if string(k) == key {
			if d.DeleteBeforeReplace != dbr {
				t.Fatalf("replace on %s: deleteBeforeReplace %v, want %v", key, d.DeleteBeforeReplace, dbr)
			}
			return
		}
	}
	t.Fatalf("expected a replace on %s, got changes %v replace %v", key, d.ChangedKeys, d.ReplaceKeys)
}

func out(r *standintest.Res, k string) resource.PropertyValue {
	return r.Outputs[resource.PropertyKey(k)]
}

func TestIAM(t *testing.T) {
	e := newEnv(t)
	e.sub(t, "aws:iam/user:User", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:iam/user:User", "u", nil, m(map[string]any{"name": "bad name"}))
		wantFailure(t, f, "name", "alphanumeric")
		// IAM's 64-character limit is the API's, not the schema's: Create fails.
		if _, err := h.TryCreate("aws:iam/user:User", "u", m(map[string]any{"name": strings.Repeat("u", 65)})); err == nil || !strings.Contains(err.Error(), "64") {
			t.Fatalf("a 65-character user name: %v", err)
		}
		u := h.Create("aws:iam/user:User", "u", m(map[string]any{"name": "alice"}))
		if got := out(u, "arn").StringValue(); got != "arn:aws:iam::123456789012:user/alice" || out(u, "path").StringValue() != "/" {
			t.Fatalf("arn %s path %v", got, out(u, "path"))
		}
		h.NoDiff(u, m(map[string]any{"name": "alice"}))
		// A name change renames in place (UpdateUser), as upstream.
		h.Update(u, m(map[string]any{"name": "alice2"}))
		if _, err := e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("alice2")}); err != nil {
			t.Fatalf("renamed user: %v", err)
		}
		if _, err := e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("alice")}); err == nil {
			t.Fatal("old user name still exists")
		}
		u.ID = "alice2"
		// Autonamed when no name is given.
		auto := h.MustCheck("aws:iam/user:User", "auto", nil, props{})
		if n := auto["name"].StringValue(); !strings.HasPrefix(n, "auto-") || len(n) != len("auto-")+7 {
			t.Fatalf("autoname %q", n)
		}
		h.Delete(u)
	})
	e.sub(t, "aws:iam/userPolicy:UserPolicy", func(t *testing.T, h standintest.Harness) {
		h.Create("aws:iam/user:User", "pu", m(map[string]any{"name": "bob"}))
		_, f := h.Check("aws:iam/userPolicy:UserPolicy", "p", nil, m(map[string]any{"user": "bob", "name": "p1"}))
		wantFailure(t, f, "policy", "Missing required argument")
		_, f = h.Check("aws:iam/userPolicy:UserPolicy", "p", nil, m(map[string]any{"user": "bob", "name": "p1", "policy": "[1]"}))
		wantFailure(t, f, "policy", "invalid JSON policy")
		in := m(map[string]any{"user": "bob", "name": "p1", "policy": doc("s3:GetObject")})
		p := h.Create("aws:iam/userPolicy:UserPolicy", "p", in)
		if p.ID != "bob:p1" {
			t.Fatalf("id %s", p.ID)
		}
		h.NoDiff(p, m(map[string]any{"user": "bob", "name": "p1", "policy": `{"Statement":{"Resource":["*"],"Action":["s3:GetObject"],"Effect":"Allow"},"Version":"2012-10-17"}`}))
		h.Update(p, m(map[string]any{"user": "bob", "name": "p1", "policy": doc("s3:PutObject")}))
		got, err := e.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String("bob"), PolicyName: aws.String("p1")})
		if err != nil || !strings.Contains(aws.ToString(got.PolicyDocument), "PutObject") {
			t.Fatalf("updated policy: %v %v", err, got)
		}
		_, d := h.Diff(p, m(map[string]any{"user": "bob", "name": "p2", "policy": doc("s3:PutObject")}))
		wantReplace(t, d, "name", true)
		_, d = h.Diff(p, m(map[string]any{"user": "carol", "name": "p1", "policy": doc("s3:PutObject")}))
		wantReplace(t, d, "user", true)
		h.Delete(p)
	})
	e.sub(t, "aws:iam/accessKey:AccessKey", func(t *testing.T, h standintest.Harness) {
		h.Create("aws:iam/user:User", "ku", m(map[string]any{"name": "kim"}))
		k := h.Create("aws:iam/accessKey:AccessKey", "k", m(map[string]any{"user": "kim"}))
		for _, s := range []string{"secret", "sesSmtpPasswordV4"} {
			if v := out(k, s); !v.IsSecret() || v.SecretValue().Element.StringValue() == "" {
				t.Fatalf("%s is not a non-empty secret: secret=%v", s, v.IsSecret())
			}
		}
		if out(k, "status").StringValue() != "Active" {
			t.Fatalf("status %v", out(k, "status"))
		}
		keys, _ := e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("kim")})
		if len(keys.AccessKeyMetadata) != 1 || aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId) != k.ID {
			t.Fatalf("moto keys %+v, id %s", keys.AccessKeyMetadata, k.ID)
		}
		h.NoDiff(k, m(map[string]any{"user": "kim"}))
		h.Update(k, m(map[string]any{"user": "kim", "status": "Inactive"}))
		keys, _ = e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("kim")})
		if keys.AccessKeyMetadata[0].Status != "Inactive" {
			t.Fatalf("status in moto %s", keys.AccessKeyMetadata[0].Status)
		}
		if !out(k, "secret").IsSecret() {
			t.Fatal("secret lost its secretness on update")
		}
		_, d := h.Diff(k, m(map[string]any{"user": "other", "status": "Inactive"}))
		wantReplace(t, d, "user", false)
		_, f := h.Check("aws:iam/accessKey:AccessKey", "k", nil, m(map[string]any{"user": "kim", "status": "Off"}))
		wantFailure(t, f, "status", "one of")
		h.Delete(k)
	})
	e.sub(t, "aws:iam/role:Role", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:iam/role:Role", "r", nil, m(map[string]any{"name": strings.Repeat("r", 65), "assumeRolePolicy": trust}))
		wantFailure(t, f, "name", "range (0 - 64)")
		_, f = h.Check("aws:iam/role:Role", "r", nil, m(map[string]any{"name": "r1", "assumeRolePolicy": trust, "maxSessionDuration": 60}))
		wantFailure(t, f, "maxSessionDuration", "3600 - 43200")
		_, f = h.Check("aws:iam/role:Role", "r", nil, m(map[string]any{"name": "r1"}))
		wantFailure(t, f, "assumeRolePolicy", "Missing required argument")
		in := m(map[string]any{"name": "r1", "assumeRolePolicy": trust})
		r := h.Create("aws:iam/role:Role", "r", in)
		if out(r, "maxSessionDuration").NumberValue() != 3600 || out(r, "path").StringValue() != "/" {
			t.Fatalf("defaults: %v %v", out(r, "maxSessionDuration"), out(r, "path"))
		}
		h.NoDiff(r, m(map[string]any{"name": "r1", "assumeRolePolicy": trustReordered}))
		if !h.Read(r) {
			t.Fatal("role gone")
		}
		h.NoDiff(r, in)
		lambda := strings.ReplaceAll(trust, "ec2.amazonaws.com", "lambda.amazonaws.com")
		h.Update(r, m(map[string]any{"name": "r1", "assumeRolePolicy": lambda, "description": "d"}))
		got, _ := e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("r1")})
		if !strings.Contains(aws.ToString(got.Role.AssumeRolePolicyDocument), "lambda") || aws.ToString(got.Role.Description) != "d" {
			t.Fatalf("role in moto: %s %v", aws.ToString(got.Role.AssumeRolePolicyDocument), got.Role.Description)
		}
		_, d := h.Diff(r, m(map[string]any{"name": "r2", "assumeRolePolicy": lambda}))
		wantReplace(t, d, "name", true)
		_, d = h.Diff(r, m(map[string]any{"name": "r1", "path": "/x/", "assumeRolePolicy": lambda}))
		wantReplace(t, d, "path", true)
		// An autonamed role replaces create-before-delete.
		ar := h.Create("aws:iam/role:Role", "autorole", m(map[string]any{"assumeRolePolicy": trust}))
		_, d = h.Diff(ar, m(map[string]any{"assumeRolePolicy": trust, "path": "/y/"}))
		wantReplace(t, d, "path", false)
		h.Delete(ar)
		// Deleting a role takes it out of its instance profiles first.
		if _, err := e.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("ip-r1")}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String("ip-r1"), RoleName: aws.String("r1")}); err != nil {
			t.Fatal(err)
		}
		h.Delete(r)
	})
	e.sub(t, "aws:iam/rolePolicy:RolePolicy", func(t *testing.T, h standintest.Harness) {
		h.Create("aws:iam/role:Role", "rp-role", m(map[string]any{"name": "rp", "assumeRolePolicy": trust}))
		_, f := h.Check("aws:iam/rolePolicy:RolePolicy", "p", nil, m(map[string]any{"role": "rp", "name": "bad name", "policy": doc("s3:*")}))
		wantFailure(t, f, "name", "[\\w+=,.@-]")
		p := h.Create("aws:iam/rolePolicy:RolePolicy", "p", m(map[string]any{"role": "rp", "name": "inline", "policy": doc("s3:GetObject")}))
		h.NoDiff(p, m(map[string]any{"role": "rp", "name": "inline", "policy": doc("s3:GetObject")}))
		h.Update(p, m(map[string]any{"role": "rp", "name": "inline", "policy": doc("s3:ListBucket")}))
		_, d := h.Diff(p, m(map[string]any{"role": "rp2", "name": "inline", "policy": doc("s3:ListBucket")}))
		wantReplace(t, d, "role", true)
		// Drift: deleted behind the provider's back, a refresh drops it.
		if _, err := e.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("rp"), PolicyName: aws.String("inline")}); err != nil {
			t.Fatal(err)
		}
		if h.Read(p) {
			t.Fatal("a deleted inline policy still reads")
		}
	})
	e.sub(t, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", func(t *testing.T, h standintest.Harness) {
		h.Create("aws:iam/role:Role", "att-role", m(map[string]any{"name": "att", "assumeRolePolicy": trust}))
		const ssm = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
		_, f := h.Check("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a", nil, m(map[string]any{"role": "att", "policyArn": "not-an-arn"}))
		wantFailure(t, f, "policyArn", "invalid ARN")
		a := h.Create("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a", m(map[string]any{"role": "att", "policyArn": ssm}))
		if !strings.HasPrefix(a.ID, "att-") {
			t.Fatalf("id %s", a.ID)
		}
		att, _ := e.iam.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("att")})
		if len(att.AttachedPolicies) != 1 || aws.ToString(att.AttachedPolicies[0].PolicyArn) != ssm {
			t.Fatalf("attached %+v", att.AttachedPolicies)
		}
		h.NoDiff(a, m(map[string]any{"role": "att", "policyArn": ssm}))
		_, d := h.Diff(a, m(map[string]any{"role": "att", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}))
		wantReplace(t, d, "policyArn", false)
		if _, err := h.TryCreate("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "b", m(map[string]any{"role": "att", "policyArn": "arn:aws:iam::123456789012:policy/missing"})); err == nil {
			t.Fatal("attaching a missing policy succeeded")
		}
		h.Delete(a)
	})
	e.sub(t, "aws:iam/policy:Policy", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:iam/policy:Policy", "p", nil, m(map[string]any{"name": strings.Repeat("p", 129), "policy": doc("s3:*")}))
		wantFailure(t, f, "name", "range (0 - 128)")
		p := h.Create("aws:iam/policy:Policy", "p", m(map[string]any{"name": "boundary", "description": "d", "policy": doc("s3:GetObject")}))
		if p.ID != "arn:aws:iam::123456789012:policy/boundary" {
			t.Fatalf("id %s", p.ID)
		}
		h.NoDiff(p, m(map[string]any{"name": "boundary", "description": "d", "policy": doc("s3:GetObject")}))
		for i := 0; i < 6; i++ { // past IAM's five versions
			h.Update(p, m(map[string]any{"name": "boundary", "description": "d", "policy": doc("s3:Action" + string(rune('A'+i)))}))
		}
		vs, _ := e.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(p.ID)})
		if len(vs.Versions) != 5 {
			t.Fatalf("%d versions", len(vs.Versions))
		}
		_, d := h.Diff(p, m(map[string]any{"name": "boundary", "description": "other", "policy": doc("s3:ActionF")}))
		wantReplace(t, d, "description", true)
		h.Delete(p)
	})
	e.sub(t, "aws:iam/instanceProfile:InstanceProfile", func(t *testing.T, h standintest.Harness) {
		h.Create("aws:iam/role:Role", "ipr1", m(map[string]any{"name": "ipr1", "assumeRolePolicy": trust}))
		h.Create("aws:iam/role:Role", "ipr2", m(map[string]any{"name": "ipr2", "assumeRolePolicy": trust}))
		ip := h.Create("aws:iam/instanceProfile:InstanceProfile", "ip", m(map[string]any{"name": "prof", "role": "ipr1"}))
		h.NoDiff(ip, m(map[string]any{"name": "prof", "role": "ipr1"}))
		h.Update(ip, m(map[string]any{"name": "prof", "role": "ipr2"}))
		got, _ := e.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("prof")})
		if len(got.InstanceProfile.Roles) != 1 || aws.ToString(got.InstanceProfile.Roles[0].RoleName) != "ipr2" {
			t.Fatalf("roles %+v", got.InstanceProfile.Roles)
		}
		_, d := h.Diff(ip, m(map[string]any{"name": "prof2", "role": "ipr2"}))
		wantReplace(t, d, "name", true)
		_, f := h.Check("aws:iam/instanceProfile:InstanceProfile", "ip", nil, m(map[string]any{"name": "bad/name"}))
		wantFailure(t, f, "name", "[\\w+=,.@-]")
		h.Delete(ip)
	})
	e.sub(t, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", func(t *testing.T, h standintest.Harness) {
		const tok = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
		_, f := h.Check(tok, "o", nil, m(map[string]any{"url": "http://issuer.example.org", "clientIdLists": []string{"sts.amazonaws.com"}}))
		wantFailure(t, f, "url", "https://")
		_, f = h.Check(tok, "o", nil, m(map[string]any{"url": "https://issuer.example.org", "clientIdLists": []string{"sts.amazonaws.com"}, "thumbprintLists": []string{"abc"}}))
		wantFailure(t, f, "thumbprintLists", "40 - 40")
		in := m(map[string]any{"url": "https://issuer.example.org", "clientIdLists": []string{"sts.amazonaws.com"}})
		o := h.Create(tok, "o", in)
		if o.ID != "arn:aws:iam::123456789012:oidc-provider/issuer.example.org" {
			t.Fatalf("id %s", o.ID)
		}
		h.NoDiff(o, in) // IAM keeps the URL without https://
		if !h.Read(o) {
			t.Fatal("provider gone")
		}
		h.NoDiff(o, in)
		thumb := strings.Repeat("a", 40)
		h.Update(o, m(map[string]any{"url": "https://issuer.example.org", "clientIdLists": []string{"sts.amazonaws.com", "other"}, "thumbprintLists": []string{thumb}}))
		got, _ := e.iam.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(o.ID)})
		if len(got.ClientIDList) != 2 || len(got.ThumbprintList) != 1 || got.ThumbprintList[0] != thumb {
			t.Fatalf("in moto: %v %v", got.ClientIDList, got.ThumbprintList)
		}
		// Thumbprints left out keep what the account has (Optional+Computed).
		h.NoDiff(o, m(map[string]any{"url": "https://issuer.example.org", "clientIdLists": []string{"other", "sts.amazonaws.com"}}))
		_, d := h.Diff(o, m(map[string]any{"url": "https://issuer2.example.org", "clientIdLists": []string{"other", "sts.amazonaws.com"}}))
		wantReplace(t, d, "url", false)
		res, err := h.Invoke("aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider", m(map[string]any{"arn": o.ID}))
		if err != nil || res["url"].StringValue() != "issuer.example.org" || len(res["thumbprintLists"].ArrayValue()) != 1 {
			t.Fatalf("getOpenIdConnectProvider: %v %v", err, res)
		}
		h.Delete(o)
		// The program tells "none yet" from a failure by this message.
		if _, err := h.Invoke("aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider", m(map[string]any{"arn": o.ID})); err == nil || !strings.Contains(err.Error(), "couldn't find resource") {
			t.Fatalf("missing provider: %v", err)
		}
	})
}

func TestEC2(t *testing.T) {
	e := newEnv(t)
	run, err := e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	inst := aws.ToString(run.Instances[0].InstanceId)
	var eip *standintest.Res
	e.sub(t, "aws:ec2/eip:Eip", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:ec2/eip:Eip", "e", nil, m(map[string]any{"domain": "cloud"}))
		wantFailure(t, f, "domain", "one of")
		prev := h.Preview("aws:ec2/eip:Eip", "e", m(map[string]any{"domain": "vpc"}))
		if !prev["publicIp"].IsComputed() || !prev["allocationId"].IsComputed() {
			t.Fatalf("preview publicIp %v allocationId %v, want unknown", prev["publicIp"], prev["allocationId"])
		}
		eip = h.Create("aws:ec2/eip:Eip", "e", m(map[string]any{"domain": "vpc", "tags": map[string]string{"Name": "broker-eip"}}))
		if !strings.HasPrefix(eip.ID, "eipalloc-") || out(eip, "publicIp").StringValue() == "" {
			t.Fatalf("eip %s %v", eip.ID, out(eip, "publicIp"))
		}
		h.NoDiff(eip, m(map[string]any{"domain": "vpc", "tags": map[string]string{"Name": "broker-eip"}}))
		// ignoreChanges: tags on an adopted EIP.
		if _, d := h.Diff(eip, m(map[string]any{"domain": "vpc"}), "tags"); d.Changes != plugin.DiffNone {
			t.Fatalf("ignored tags still diff: %v", d.ChangedKeys)
		}
		h.Update(eip, m(map[string]any{"domain": "vpc", "tags": map[string]string{"Name": "broker-eip-2"}}))
		got, _ := e.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{eip.ID}})
		if len(got.Addresses[0].Tags) != 1 || aws.ToString(got.Addresses[0].Tags[0].Value) != "broker-eip-2" {
			t.Fatalf("tags %+v", got.Addresses[0].Tags)
		}
		_, d := h.Diff(eip, m(map[string]any{"domain": "standard"}))
		wantReplace(t, d, "domain", false)
	})
	var assoc *standintest.Res
	e.sub(t, "aws:ec2/eipAssociation:EipAssociation", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:ec2/eipAssociation:EipAssociation", "a", nil, props{})
		wantFailure(t, f, "allocationId", "must be set")
		assoc = h.Create("aws:ec2/eipAssociation:EipAssociation", "a", m(map[string]any{"allocationId": eip.ID, "instanceId": inst}))
		if !strings.HasPrefix(assoc.ID, "eipassoc-") {
			t.Fatalf("id %s", assoc.ID)
		}
		h.NoDiff(assoc, m(map[string]any{"allocationId": eip.ID, "instanceId": inst}))
		_, d := h.Diff(assoc, m(map[string]any{"allocationId": eip.ID, "instanceId": "i-0123456789abcdef0"}))
		wantReplace(t, d, "instanceId", false)
		// The EIP now reads as associated, and its inputs still do not diff.
		eh := standintest.Harness{T: t, P: e.h.P}
		if !eh.Read(eip) || out(eip, "instance").StringValue() != inst {
			t.Fatalf("eip instance after association: %v", out(eip, "instance"))
		}
		eh.NoDiff(eip, m(map[string]any{"domain": "vpc", "tags": map[string]string{"Name": "broker-eip-2"}}))
	})
	e.sub(t, "aws:ec2/getEips:getEips", func(t *testing.T, h standintest.Harness) {
		for _, args := range []props{
			m(map[string]any{"tags": map[string]string{"Name": "broker-eip-2"}}),
			m(map[string]any{"filters": []props{m(map[string]any{"name": "instance-id", "values": []string{inst}})}}),
			m(map[string]any{"filters": []props{m(map[string]any{"name": "public-ip", "values": []string{out(eip, "publicIp").StringValue()}})}}),
		} {
			res, err := h.Invoke("aws:ec2/getEips:getEips", args)
			if err != nil {
				t.Fatal(err)
			}
			ids := res["allocationIds"].ArrayValue()
			if len(ids) != 1 || ids[0].StringValue() != eip.ID || res["id"].StringValue() != "us-east-1" {
				t.Fatalf("getEips %v: %v", args, res)
			}
		}
		res, err := h.Invoke("aws:ec2/getEips:getEips", m(map[string]any{"tags": map[string]string{"Name": "nobody"}}))
		if err != nil || len(res["allocationIds"].ArrayValue()) != 0 {
			t.Fatalf("no match: %v %v", err, res)
		}
	})
	e.sub(t, "aws:ec2/tag:Tag", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:ec2/tag:Tag", "t", nil, m(map[string]any{"resourceId": eip.ID, "key": "k"}))
		wantFailure(t, f, "value", "Missing required argument")
		tg := h.Create("aws:ec2/tag:Tag", "t", m(map[string]any{"resourceId": eip.ID, "key": "agentkeys:stack", "value": "test-2"}))
		if tg.ID != eip.ID+",agentkeys:stack" {
			t.Fatalf("id %s", tg.ID)
		}
		h.NoDiff(tg, m(map[string]any{"resourceId": eip.ID, "key": "agentkeys:stack", "value": "test-2"}))
		h.Update(tg, m(map[string]any{"resourceId": eip.ID, "key": "agentkeys:stack", "value": "test-3"}))
		_, d := h.Diff(tg, m(map[string]any{"resourceId": eip.ID, "key": "other", "value": "test-3"}))
		wantReplace(t, d, "key", false)
		h.Delete(tg)
	})
	e.sub(t, "delete", func(t *testing.T, h standintest.Harness) {
		h.Delete(assoc)
		h.Delete(eip)
		got, _ := e.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("domain"), Values: []string{"vpc"}}}})
		if len(got.Addresses) != 0 {
			t.Fatalf("addresses left: %+v", got.Addresses)
		}
	})
}
