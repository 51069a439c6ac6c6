package fleet

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/verify"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// The state bucket of an s3:// backend (bootstrap-state.sh's), with a lock
// in each DIY layout: the slot is busy, another stack's lock is not its own.
func TestLocksFromS3Backend(t *testing.T) {
	mototest.StartPlain(t)
	cfg := mototest.Config(t)
	c := s3.NewFromConfig(cfg, awsx.S3Options)
	ctx := context.Background()
	bucket := policy.StateBucket(mototest.Account)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put("state/.pulumi/locks/organization/agentkeys/test-2/a.json", `{"pid":7,"username":"runner","hostname":"gh-1","timestamp":"2026-12-01T10:00:00Z"}`)
	put("state/.pulumi/locks/test-2/b.json", `{"pid":8,"username":"ops","hostname":"laptop","timestamp":"2026-12-01T11:00:00Z"}`)
	put("state/.pulumi/locks/organization/agentkeys/test-20/c.json", `{"pid":9,"username":"runner","hostname":"gh-2","timestamp":"2026-12-01T12:00:00Z"}`)
	o := Options{AWS: &cfg, Backend: "s3://" + bucket + "/state?region=us-east-1"}
	if got := o.occupancy(ctx, "test-2"); got != "busy: runner@gh-1 pid 7 since 12-01 10:00Z; ops@laptop pid 8 since 12-01 11:00Z" {
		t.Fatalf("test-2: %q", got)
	}
	if got := o.occupancy(ctx, "test-3"); got != "free" {
		t.Fatalf("test-3: %q", got)
	}
	if got := (Options{Backend: "https://api.pulumi.com"}).occupancy(ctx, "test-2"); !strings.HasPrefix(got, "? ") {
		t.Fatalf("cloud backend: %q", got)
	}
}

func TestCompactSummaries(t *testing.T) {
	dns := []verify.Check{
		{Check: "dns", Target: "broker-test-2.z", Status: verify.OK},
		{Check: "dns", Target: "audit-test-2.z", Status: verify.Fail, Detail: "A 198.51.100.9, want the stack's EIP = 203.0.113.7"},
		{Check: "dns", Target: "mcp-test-2.z", Status: verify.Fail, Detail: "doh https://dns.google/resolve: NXDOMAIN (no fallback to the local resolver: a VPN may rewrite the zone)"},
	}
	if got := summarizeDNS(dns); got != "drift 2/3: audit-test-2 198.51.100.9, mcp-test-2 NXDOMAIN" {
		t.Fatalf("dns: %q", got)
	}
	tls := []verify.Check{
		{Check: "tls", Target: "broker-test-2.z", Status: verify.OK, Detail: "59 days left (until 2027-01-30); chain a <- b"},
		{Check: "tls", Target: "signer-test-2.z", Status: verify.OK, Detail: "41 days left (until 2027-01-12); chain a <- b"},
	}
	if got := summarizeTLS(tls); got != "min 41d (signer-test-2)" {
		t.Fatalf("tls: %q", got)
	}
}
