// Package scripts holds tests of the operator shell scripts beside them.
package scripts

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
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
		"created bucket " + bucket, "created KMS key",
		"pulumi login s3://" + bucket,
		`--secrets-provider "awskms://alias/agentkeys-pulumi?region=us-east-1"`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run output lacks %q:\n%s", want, first)
		}
	}
	second := e.bootstrap(t, "--account", motoAccount)
	if strings.Contains(second, "created") || !strings.Contains(second, "ok      bucket") || !strings.Contains(second, "ok      KMS key") {
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
	var doc struct {
		Statement []struct {
			Effect    string
			Action    string
			Resource  []string
			Condition map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(aws.ToString(pol.Policy)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 || doc.Statement[0].Effect != "Deny" || doc.Statement[0].Action != "s3:*" ||
		doc.Statement[0].Condition["Bool"]["aws:SecureTransport"] != "false" || len(doc.Statement[0].Resource) != 2 {
		t.Errorf("bucket policy is not TLS-only: %s", aws.ToString(pol.Policy))
	}

	// One key, behind the alias, with rotation on, after two runs.
	keys, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "list-keys", "--query", "Keys[].KeyId", "--output", "text")
	if err != nil {
		t.Fatal(keys)
	}
	if f := strings.Fields(keys); len(f) != 1 {
		t.Fatalf("want exactly one KMS key after two runs, got %q", keys)
	}
	target, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "list-aliases", "--query", "Aliases[?AliasName=='alias/agentkeys-pulumi'].TargetKeyId", "--output", "text")
	if err != nil || strings.TrimSpace(target) != strings.TrimSpace(keys) {
		t.Errorf("alias targets %q, the key is %q (%v)", target, keys, err)
	}
	rot, err := e.run(t, "aws", "--endpoint-url", e.endpoint, "kms", "get-key-rotation-status", "--key-id", strings.TrimSpace(keys), "--query", "KeyRotationEnabled", "--output", "text")
	if err != nil || strings.TrimSpace(rot) != "True" {
		t.Errorf("key rotation %q (%v)", rot, err)
	}
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
