// Package scripts holds tests of the operator shell scripts beside them.
package scripts

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

const motoAccount = "123456789012"

// startMoto runs moto_server on a free loopback port until the test ends.
func startMoto(t *testing.T) string {
	t.Helper()
	return mototest.StartPlain(t)
}

type env struct {
	endpoint string
	vars     []string
}

func newEnv(t *testing.T) env {
	endpoint := startMoto(t)
	dir := t.TempDir()
	return env{endpoint, []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AWS_ENDPOINT_URL=" + endpoint, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
	}}
}

func (e env) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.vars
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e env) bootstrap(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run(t, "bash", append([]string{"bootstrap-state.sh"}, args...)...)
	if err != nil {
		t.Fatalf("bootstrap-state.sh %v: %v\n%s", args, err, out)
	}
	return out
}

func TestBootstrapStateAgainstMoto(t *testing.T) {
	mototest.Require(t, "aws", "apt-get install awscli (or pip install awscli)")
	e := newEnv(t)
	bucket := "agentkeys-pulumi-state-" + motoAccount

	first := e.bootstrap(t)
	for _, want := range []string{
		"created bucket " + bucket, "(alias/agentkeys-pulumi-prod)", "(alias/agentkeys-pulumi-test)",
		`pulumi login "s3://` + bucket + `?region=us-east-1"`,
		`pulumi stack init account --secrets-provider "awskms://alias/agentkeys-pulumi-prod?region=us-east-1"`,
		`pulumi stack init test-2 --secrets-provider "awskms://alias/agentkeys-pulumi-test?region=us-east-1"`,
		"commit it afterwards",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run output lacks %q:\n%s", want, first)
		}
	}
	second := e.bootstrap(t, "--account", motoAccount)
	if strings.Contains(second, "created") || !strings.Contains(second, "ok      bucket") || strings.Count(second, "ok      KMS key") != 2 || strings.Contains(second, "note") {
		t.Errorf("second run is not a no-op:\n%s", second)
	}

	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")))
	if err != nil {
		t.Fatal(err)
	}
	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(e.endpoint); o.UsePathStyle = true })
	ctx := context.Background()
	v, err := sc.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)})
	if err != nil || v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning %v, %v", v, err)
	}
	enc, err := sc.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(bucket)})
	if err != nil || len(enc.ServerSideEncryptionConfiguration.Rules) != 1 ||
		enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != s3types.ServerSideEncryptionAes256 {
		t.Errorf("default encryption %+v, %v", enc, err)
	}
	pab, err := sc.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if c := pab.PublicAccessBlockConfiguration; !aws.ToBool(c.BlockPublicAcls) || !aws.ToBool(c.IgnorePublicAcls) ||
		!aws.ToBool(c.BlockPublicPolicy) || !aws.ToBool(c.RestrictPublicBuckets) {
		t.Errorf("public access block %+v", c)
	}
	pol, err := sc.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	// The script's documents are the ones policy builds (and the IAM
	// evaluator judges below and in policy's matrix).
	bucketPolicy := sameDoc(t, "state bucket policy", aws.ToString(pol.Policy), policy.StateBucketPolicy(motoAccount, bucket))

	// Two keys, one per alias, rotation on, each with its key policy, after two runs.
	keys, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "list-keys", "--query", "Keys[].KeyId", "--output", "text")
	if err != nil {
		t.Fatal(keys)
	}
	if f := strings.Fields(keys); len(f) != 2 {
		t.Fatalf("want exactly two KMS keys after two runs, got %q", keys)
	}
	keyPolicies := map[string]policy.Document{}
	keyARNs := map[string]string{}
	for alias, prod := range map[string]bool{policy.ProdSecretsKeyAlias: true, policy.TestSecretsKeyAlias: false} {
		id, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "list-aliases", "--query", "Aliases[?AliasName=='"+alias+"'].TargetKeyId", "--output", "text")
		f := strings.Fields(id)
		if err != nil || len(f) != 1 {
			t.Fatalf("%s: %s", alias, id)
		}
		keyARNs[alias] = "arn:aws:kms:us-east-1:" + motoAccount + ":key/" + f[0]
		rot, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "get-key-rotation-status", "--key-id", f[0], "--query", "KeyRotationEnabled", "--output", "text")
		if err != nil || strings.TrimSpace(rot) != "True" {
			t.Errorf("%s rotation %q (%v)", alias, rot, err)
		}
		kp, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "get-key-policy", "--key-id", f[0], "--policy-name", "default", "--query", "Policy", "--output", "text")
		if err != nil {
			t.Fatal(kp)
		}
		keyPolicies[alias] = sameDoc(t, alias+" key policy", kp, policy.KeyPolicy(motoAccount, prod))
	}
	if keyARNs[policy.ProdSecretsKeyAlias] == keyARNs[policy.TestSecretsKeyAlias] {
		t.Error("both aliases name one key")
	}

	// What the script wrote, judged by the evaluator: an over-granted test
	// role still reaches no prod-side state and not the prod key.
	if iamsim.Available() != nil {
		t.Skipf("IAM evaluator unavailable: %v", iamsim.Available())
	}
	admin := []iamsim.NamedPolicy{{Name: "everything", Policy: policy.Document{Version: policy.Version,
		Statement: []policy.Statement{{Effect: "Allow", Action: "*", Resource: "*"}}}}}
	testRole := "arn:aws:iam::" + motoAccount + ":role/" + policy.CITestRole
	req := func(name, action, res string, rp policy.Document) iamsim.Request {
		return iamsim.Request{Name: name, Principal: "arn:aws:sts::" + motoAccount + ":assumed-role/" + policy.CITestRole + "/run",
			Action: action, Resource: res, ResourceAccount: motoAccount, IdentityPolicies: admin, ResourcePolicy: rp,
			Context: map[string]any{"aws:PrincipalArn": testRole, "aws:SecureTransport": "true"}}
	}
	st := "arn:aws:s3:::" + bucket + "/.pulumi/"
	cases := []struct {
		r    iamsim.Request
		want string
	}{
		{req("prod checkpoint", "s3:GetObject", st+"stacks/agentkeys/prod.json", bucketPolicy), iamsim.ExplicitlyDenied},
		{req("account history", "s3:GetObject", st+"history/agentkeys/account/account-1.history.json", bucketPolicy), iamsim.ExplicitlyDenied},
		{req("base lock", "s3:PutObject", st+"locks/organization/agentkeys/base/x.json", bucketPolicy), iamsim.ExplicitlyDenied},
		{req("test-4 checkpoint", "s3:PutObject", st+"stacks/agentkeys/test-4.json", bucketPolicy), iamsim.Allowed},
		{req("meta", "s3:GetObject", st+"meta.yaml", bucketPolicy), iamsim.Allowed},
		{req("prod key", "kms:Decrypt", keyARNs[policy.ProdSecretsKeyAlias], keyPolicies[policy.ProdSecretsKeyAlias]), iamsim.ExplicitlyDenied},
		{req("test key", "kms:Decrypt", keyARNs[policy.TestSecretsKeyAlias], keyPolicies[policy.TestSecretsKeyAlias]), iamsim.Allowed},
	}
	var reqs []iamsim.Request
	for _, c := range cases {
		reqs = append(reqs, c.r)
	}
	got, err := iamsim.Evaluate(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		if d.Decision != cases[i].want {
			t.Errorf("test role, %s: %s %s, want %s", d.Name, d.Decision, d.Error, cases[i].want)
		}
	}
}

// A key under the earlier single alias is reported with the commands that
// move stacks off it; it is never deleted.
func TestBootstrapStateReportsTheLegacyKey(t *testing.T) {
	mototest.Require(t, "aws", "apt-get install awscli (or pip install awscli)")
	e := newEnv(t)
	id, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "create-key", "--query", "KeyMetadata.KeyId", "--output", "text")
	if err != nil {
		t.Fatal(id)
	}
	if out, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "create-alias", "--alias-name", policy.LegacySecretsKeyAlias, "--target-key-id", strings.TrimSpace(id)); err != nil {
		t.Fatal(out)
	}
	out := e.bootstrap(t)
	for _, want := range []string{
		"note    alias/agentkeys-pulumi (" + strings.TrimSpace(id) + ")",
		`pulumi stack change-secrets-provider --stack prod "awskms://alias/agentkeys-pulumi-prod?region=us-east-1"`,
		`pulumi stack change-secrets-provider --stack test-2 "awskms://alias/agentkeys-pulumi-test?region=us-east-1"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if d, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "list-aliases", "--query", "Aliases[?AliasName=='"+policy.LegacySecretsKeyAlias+"'].TargetKeyId", "--output", "text"); err != nil || strings.TrimSpace(d) != strings.TrimSpace(id) {
		t.Errorf("legacy alias moved or gone: %s", d)
	}
}

// sameDoc parses a stored policy and compares it with want by value.
func sameDoc(t *testing.T, what, got string, want policy.Document) policy.Document {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: stored document is not JSON: %v\n%s", what, err, got)
	}
	_ = json.Unmarshal([]byte(want.JSON()), &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: the script wrote\n%s\npolicy builds\n%s", what, got, want.JSON())
	}
	var d policy.Document
	_ = json.Unmarshal([]byte(got), &d)
	return d
}

func TestBootstrapStateRefusesBadInput(t *testing.T) {
	mototest.Require(t, "aws", "apt-get install awscli (or pip install awscli)")
	e := newEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--account", "999999999999"}, "not 999999999999"},
		{[]string{"--account", "12"}, "12-digit"},
		{[]string{"--region", "Mars"}, "not an AWS region"},
		{[]string{"--bogus"}, "unknown argument"},
	} {
		out, err := e.run(t, "bash", append([]string{"bootstrap-state.sh"}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: err=%v, output lacks %q:\n%s", c.args, err, c.want, out)
		}
		if strings.Contains(out, "created") {
			t.Errorf("%v: created something before refusing:\n%s", c.args, out)
		}
	}
}
