package aws_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	awsstandin "github.com/agentkeys/agentkeys-infra/test/providers/aws"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin/standintest"
)

func TestRoute53(t *testing.T) {
	e := newEnv(t)
	hz, err := e.r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("example.org"), CallerReference: aws.String("t")})
	if err != nil {
		t.Fatal(err)
	}
	zone := strings.TrimPrefix(aws.ToString(hz.HostedZone.Id), "/hostedzone/")
	if !strings.HasPrefix(zone, "Z") {
		t.Fatalf("zone id %s does not look like Route 53's", zone)
	}
	const tok = "aws:route53/record:Record"
	rrs := func(name string, typ r53types.RRType) []string {
		out, err := e.r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone)})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range out.ResourceRecordSets {
			if aws.ToString(rs.Name) == name+"." && rs.Type == typ {
				var v []string
				for _, r := range rs.ResourceRecords {
					v = append(v, aws.ToString(r.Value))
				}
				return v
			}
		}
		return nil
	}
	e.sub(t, tok, func(t *testing.T, h standintest.Harness) {
		_, f := h.Check(tok, "r", nil, m(map[string]any{"zoneId": zone, "name": "a.example.org", "type": "BOGUS", "records": []string{"1.2.3.4"}, "ttl": 300}))
		wantFailure(t, f, "type", "one of")
		_, f = h.Check(tok, "r", nil, m(map[string]any{"zoneId": zone, "name": "a.example.org", "type": "A"}))
		wantFailure(t, f, "records", "exactly one of")
		in := m(map[string]any{"zoneId": zone, "name": "Broker.Example.org.", "type": "A", "records": []string{"192.0.2.1", "192.0.2.2"}, "ttl": 300})
		a := h.Create(tok, "a", in)
		if a.ID != zone+"_broker.example.org_A" {
			t.Fatalf("id %s", a.ID)
		}
		if got := rrs("broker.example.org", "A"); len(got) != 2 {
			t.Fatalf("records in moto %v", got)
		}
		h.NoDiff(a, m(map[string]any{"zoneId": zone, "name": "broker.example.org", "type": "A", "records": []string{"192.0.2.2", "192.0.2.1"}, "ttl": 300}))
		h.Update(a, m(map[string]any{"zoneId": zone, "name": "broker.example.org", "type": "A", "records": []string{"192.0.2.9"}, "ttl": 60}))
		if got := rrs("broker.example.org", "A"); len(got) != 1 || got[0] != "192.0.2.9" {
			t.Fatalf("updated records %v", got)
		}
		_, d := h.Diff(a, m(map[string]any{"zoneId": zone, "name": "other.example.org", "type": "A", "records": []string{"192.0.2.9"}, "ttl": 60}))
		wantReplace(t, d, "name", false)
		// A CREATE of a name that exists fails unless allowOverwrite.
		if _, err := h.TryCreate(tok, "dup", m(map[string]any{"zoneId": zone, "name": "broker.example.org", "type": "A", "records": []string{"192.0.2.7"}, "ttl": 60})); err == nil {
			t.Fatal("creating an existing record without allowOverwrite succeeded")
		}
		dup := h.Create(tok, "dup", m(map[string]any{"zoneId": zone, "name": "broker.example.org", "type": "A", "records": []string{"192.0.2.7"}, "ttl": 60, "allowOverwrite": true}))
		if got := rrs("broker.example.org", "A"); len(got) != 1 || got[0] != "192.0.2.7" {
			t.Fatalf("overwritten records %v", got)
		}
		h.Delete(dup)
		// TXT values are quoted for Route 53 and unquoted in the state.
		txt := h.Create(tok, "spf", m(map[string]any{"zoneId": zone, "name": "bots.example.org", "type": "TXT", "records": []string{"v=spf1 include:amazonses.com -all"}, "ttl": 300}))
		if got := rrs("bots.example.org", "TXT"); len(got) != 1 || got[0] != `"v=spf1 include:amazonses.com -all"` {
			t.Fatalf("TXT in moto %v", got)
		}
		if !h.Read(txt) {
			t.Fatal("TXT gone")
		}
		h.NoDiff(txt, m(map[string]any{"zoneId": zone, "name": "bots.example.org", "type": "TXT", "records": []string{"v=spf1 include:amazonses.com -all"}, "ttl": 300}))
		h.Delete(txt)
		if _, err := h.TryCreate(tok, "nozone", m(map[string]any{"zoneId": "Z0000000000NOZONE", "name": "x.example.org", "type": "A", "records": []string{"192.0.2.1"}, "ttl": 60})); err == nil || !strings.Contains(err.Error(), "Hosted Zone") {
			t.Fatalf("record in a missing zone: %v", err)
		}
	})
}

func TestS3(t *testing.T) {
	e := newEnv(t)
	e.sub(t, "aws:s3/bucketV2:BucketV2", func(t *testing.T, h standintest.Harness) {
		// moto accepts names S3 refuses; the stand-in refuses them like S3.
		for _, bad := range []string{"Bad_Name", "ab", "192.168.1.1", strings.Repeat("b", 64)} {
			if _, err := h.TryCreate("aws:s3/bucketV2:BucketV2", "b", m(map[string]any{"bucket": bad})); err == nil || !strings.Contains(err.Error(), "InvalidBucketName") {
				t.Fatalf("bucket %q: %v", bad, err)
			}
		}
		b := h.Create("aws:s3/bucketV2:BucketV2", "b", m(map[string]any{"bucket": "agentkeys-vault-test-2-123456789012", "forceDestroy": true}))
		if out(b, "arn").StringValue() != "arn:aws:s3:::agentkeys-vault-test-2-123456789012" || out(b, "region").StringValue() != "us-east-1" {
			t.Fatalf("outputs %v %v", out(b, "arn"), out(b, "region"))
		}
		h.NoDiff(b, m(map[string]any{"bucket": "agentkeys-vault-test-2-123456789012", "forceDestroy": true}))
		_, d := h.Diff(b, m(map[string]any{"bucket": "agentkeys-vault-test-3-123456789012", "forceDestroy": true}))
		wantReplace(t, d, "bucket", true)
		// forceDestroy is state only: an update, not a replace.
		if _, d := h.Diff(b, m(map[string]any{"bucket": "agentkeys-vault-test-2-123456789012", "forceDestroy": false})); d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
			t.Fatalf("forceDestroy change: %v %v", d.Changes, d.ReplaceKeys)
		}
		if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("agentkeys-vault-test-2-123456789012"), Key: aws.String("bots/x"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		h.Delete(b) // emptied first
		keep := h.Create("aws:s3/bucketV2:BucketV2", "keep", m(map[string]any{"bucket": "agentkeys-vault-prod-123456789012"}))
		if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("agentkeys-vault-prod-123456789012"), Key: aws.String("x"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.P.Delete(ctx, plugin.DeleteRequest{Type: "aws:s3/bucketV2:BucketV2", ID: "agentkeys-vault-prod-123456789012", Outputs: keep.Outputs}); err == nil || !strings.Contains(err.Error(), "BucketNotEmpty") {
			t.Fatalf("deleting a non-empty bucket without forceDestroy: %v", err)
		}
	})
	const bucket = "agentkeys-mail-test-2-123456789012"
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	e.sub(t, "aws:s3/bucketPolicy:BucketPolicy", func(t *testing.T, h standintest.Harness) {
		pol := `{"Version":"2012-10-17","Statement":[{"Sid":"TLS","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::` + bucket + `","arn:aws:s3:::` + bucket + `/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`
		_, f := h.Check("aws:s3/bucketPolicy:BucketPolicy", "p", nil, m(map[string]any{"bucket": bucket, "policy": "not json"}))
		wantFailure(t, f, "policy", "invalid JSON")
		p := h.Create("aws:s3/bucketPolicy:BucketPolicy", "p", m(map[string]any{"bucket": bucket, "policy": pol}))
		h.NoDiff(p, m(map[string]any{"bucket": bucket, "policy": pol}))
		if !h.Read(p) {
			t.Fatal("policy gone")
		}
		h.NoDiff(p, m(map[string]any{"bucket": bucket, "policy": pol}))
		pol2 := strings.Replace(pol, `"Sid":"TLS"`, `"Sid":"TLSOnly"`, 1)
		h.Update(p, m(map[string]any{"bucket": bucket, "policy": pol2}))
		got, _ := e.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
		if !strings.Contains(aws.ToString(got.Policy), "TLSOnly") {
			t.Fatalf("policy in moto %s", aws.ToString(got.Policy))
		}
		_, d := h.Diff(p, m(map[string]any{"bucket": "other-bucket-name", "policy": pol2}))
		wantReplace(t, d, "bucket", false)
		h.Delete(p)
	})
	e.sub(t, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", func(t *testing.T, h standintest.Harness) {
		in := m(map[string]any{"bucket": bucket, "blockPublicAcls": true, "blockPublicPolicy": true, "ignorePublicAcls": true, "restrictPublicBuckets": true})
		p := h.Create("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "p", in)
		h.NoDiff(p, in)
		h.Update(p, m(map[string]any{"bucket": bucket, "blockPublicAcls": true}))
		got, _ := e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(bucket)})
		if c := got.PublicAccessBlockConfiguration; !aws.ToBool(c.BlockPublicAcls) || aws.ToBool(c.BlockPublicPolicy) {
			t.Fatalf("flags %+v (unset flags default to false)", c)
		}
		h.Delete(p)
	})
	e.sub(t, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", func(t *testing.T, h standintest.Harness) {
		_, f := h.Check("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "o", nil, m(map[string]any{"bucket": bucket, "rule": m(map[string]any{"objectOwnership": "Mine"})}))
		wantFailure(t, f, "objectOwnership", "one of")
		_, f = h.Check("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "o", nil, m(map[string]any{"bucket": bucket}))
		wantFailure(t, f, "rule", "Missing required")
		in := m(map[string]any{"bucket": bucket, "rule": m(map[string]any{"objectOwnership": "BucketOwnerEnforced"})})
		o := h.Create("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "o", in)
		h.NoDiff(o, in)
		h.Update(o, m(map[string]any{"bucket": bucket, "rule": m(map[string]any{"objectOwnership": "ObjectWriter"})}))
		h.Delete(o)
	})
	e.sub(t, "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2", func(t *testing.T, h standintest.Harness) {
		const tok = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
		rule := func(alg string) []props {
			return []props{m(map[string]any{"applyServerSideEncryptionByDefault": m(map[string]any{"sseAlgorithm": alg})})}
		}
		_, f := h.Check(tok, "s", nil, m(map[string]any{"bucket": bucket, "rules": rule("ROT13")}))
		wantFailure(t, f, "sseAlgorithm", "one of")
		s := h.Create(tok, "s", m(map[string]any{"bucket": bucket, "rules": rule("AES256")}))
		h.NoDiff(s, m(map[string]any{"bucket": bucket, "rules": rule("AES256")}))
		h.Update(s, m(map[string]any{"bucket": bucket, "rules": rule("aws:kms")}))
		got, _ := e.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(bucket)})
		if alg := got.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm; alg != "aws:kms" {
			t.Fatalf("algorithm %s", alg)
		}
		if _, err := h.P.Delete(ctx, plugin.DeleteRequest{Type: tok, ID: "agentkeys-mail-test-2-123456789012", Outputs: s.Outputs}); err != nil {
			t.Fatal(err)
		}
	})
	e.sub(t, "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2", func(t *testing.T, h standintest.Harness) {
		const tok = "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2"
		rules := func(days int) []props {
			return []props{m(map[string]any{"id": "expire-inbound", "status": "Enabled", "filter": m(map[string]any{"prefix": "inbound/"}),
				"expiration": m(map[string]any{"days": days})})}
		}
		_, f := h.Check(tok, "l", nil, m(map[string]any{"bucket": bucket, "rules": []props{m(map[string]any{"id": "x", "status": "On"})}}))
		wantFailure(t, f, "status", "one of")
		l := h.Create(tok, "l", m(map[string]any{"bucket": bucket, "rules": rules(30)}))
		h.NoDiff(l, m(map[string]any{"bucket": bucket, "rules": rules(30)}))
		if !h.Read(l) {
			t.Fatal("lifecycle gone")
		}
		h.NoDiff(l, m(map[string]any{"bucket": bucket, "rules": rules(30)}))
		h.Update(l, m(map[string]any{"bucket": bucket, "rules": rules(7)}))
		got, _ := e.s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(bucket)})
		if d := aws.ToInt32(got.Rules[0].Expiration.Days); d != 7 {
			t.Fatalf("days %d", d)
		}
		h.Delete(l)
	})
}

func TestSES(t *testing.T) {
	e := newEnv(t)
	const bucket = "agentkeys-mail-test-2-123456789012"
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	var set *standintest.Res
	e.sub(t, "aws:ses/receiptRuleSet:ReceiptRuleSet", func(t *testing.T, h standintest.Harness) {
		for _, bad := range []string{"-agentkeys", "agent keys", strings.Repeat("s", 65)} {
			if _, f := h.Check("aws:ses/receiptRuleSet:ReceiptRuleSet", "s", nil, m(map[string]any{"ruleSetName": bad})); len(f) == 0 {
				t.Fatalf("rule set name %q accepted", bad)
			}
		}
		set = h.Create("aws:ses/receiptRuleSet:ReceiptRuleSet", "s", m(map[string]any{"ruleSetName": "agentkeys"}))
		if out(set, "arn").StringValue() != "arn:aws:ses:us-east-1:123456789012:receipt-rule-set/agentkeys" {
			t.Fatalf("arn %v", out(set, "arn"))
		}
		h.NoDiff(set, m(map[string]any{"ruleSetName": "agentkeys"}))
		_, d := h.Diff(set, m(map[string]any{"ruleSetName": "other"}))
		wantReplace(t, d, "ruleSetName", false)
	})
	e.sub(t, "aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet", func(t *testing.T, h standintest.Harness) {
		a := h.Create("aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet", "a", m(map[string]any{"ruleSetName": "agentkeys"}))
		got, _ := e.ses.DescribeActiveReceiptRuleSet(ctx, &ses.DescribeActiveReceiptRuleSetInput{})
		if got.Metadata == nil || aws.ToString(got.Metadata.Name) != "agentkeys" {
			t.Fatalf("active set %+v", got.Metadata)
		}
		h.NoDiff(a, m(map[string]any{"ruleSetName": "agentkeys"}))
		// A different name activates that set in place.
		if _, d := h.Diff(a, m(map[string]any{"ruleSetName": "other"})); d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
			t.Fatalf("rename: %v %v", d.Changes, d.ReplaceKeys)
		}
		h.Delete(a)
		got, _ = e.ses.DescribeActiveReceiptRuleSet(ctx, &ses.DescribeActiveReceiptRuleSetInput{})
		if got.Metadata != nil {
			t.Fatalf("a set is still active: %+v", got.Metadata)
		}
	})
	e.sub(t, "aws:ses/receiptRule:ReceiptRule", func(t *testing.T, h standintest.Harness) {
		const tok = "aws:ses/receiptRule:ReceiptRule"
		rule := func(name string, recipients ...string) props {
			return m(map[string]any{"name": name, "ruleSetName": "agentkeys", "recipients": recipients, "enabled": true, "scanEnabled": true,
				"tlsPolicy": "Optional", "s3Actions": []props{m(map[string]any{"bucketName": bucket, "objectKeyPrefix": "inbound/", "position": 1})}})
		}
		_, f := h.Check(tok, "r", nil, rule("_bad"))
		wantFailure(t, f, "name", "begin and end")
		_, f = h.Check(tok, "r", nil, m(map[string]any{"name": "x"}))
		wantFailure(t, f, "ruleSetName", "Missing required")
		r := h.Create(tok, "r", rule("agentkeys-inbound-test-2", "bots-test-2.example.org"))
		if out(r, "arn").StringValue() != "arn:aws:ses:us-east-1:123456789012:receipt-rule-set/agentkeys:receipt-rule/agentkeys-inbound-test-2" {
			t.Fatalf("arn %v", out(r, "arn"))
		}
		h.NoDiff(r, rule("agentkeys-inbound-test-2", "bots-test-2.example.org"))
		if !h.Read(r) {
			t.Fatal("rule gone")
		}
		h.NoDiff(r, rule("agentkeys-inbound-test-2", "bots-test-2.example.org"))
		h.Update(r, rule("agentkeys-inbound-test-2", "bots-test-2.example.org", "other.example.org"))
		got, _ := e.ses.DescribeReceiptRule(ctx, &ses.DescribeReceiptRuleInput{RuleSetName: aws.String("agentkeys"), RuleName: aws.String("agentkeys-inbound-test-2")})
		if len(got.Rule.Recipients) != 2 {
			t.Fatalf("recipients %v", got.Rule.Recipients)
		}
		_, d := h.Diff(r, rule("agentkeys-inbound-test-3", "bots-test-2.example.org"))
		wantReplace(t, d, "name", true)
		// A second rule of the same name is refused (SES AlreadyExists).
		if _, err := h.TryCreate(tok, "dup", rule("agentkeys-inbound-test-2", "x.example.org")); err == nil || !strings.Contains(err.Error(), "AlreadyExists") {
			t.Fatalf("duplicate rule: %v", err)
		}
		// An S3 action into a missing bucket is refused by SES.
		bad := rule("agentkeys-inbound-test-4", "y.example.org")
		bad["s3Actions"] = standin.V([]props{m(map[string]any{"bucketName": "no-such-bucket-here", "position": 1})})
		if _, err := h.TryCreate(tok, "bad", bad); err == nil {
			t.Fatal("a rule writing to a missing bucket was created")
		}
		other := h.Create(tok, "other", rule("agentkeys-inbound-test-3", "bots-test-3.example.org"))
		h.Delete(r)
		set, _ := e.ses.DescribeReceiptRuleSet(ctx, &ses.DescribeReceiptRuleSetInput{RuleSetName: aws.String("agentkeys")})
		if len(set.Rules) != 1 || aws.ToString(set.Rules[0].Name) != "agentkeys-inbound-test-3" {
			t.Fatalf("rules left in the shared set: %+v", set.Rules)
		}
		h.Delete(other)
	})
	e.sub(t, "aws:sesv2/emailIdentity:EmailIdentity", func(t *testing.T, h standintest.Harness) {
		const tok = "aws:sesv2/emailIdentity:EmailIdentity"
		in := m(map[string]any{"emailIdentity": "bots-test-2.example.org", "dkimSigningAttributes": m(map[string]any{"nextSigningKeyLength": "RSA_2048_BIT"})})
		_, f := h.Check(tok, "d", nil, m(map[string]any{"emailIdentity": "x.example.org", "dkimSigningAttributes": m(map[string]any{"nextSigningKeyLength": "RSA_4096_BIT"})}))
		wantFailure(t, f, "nextSigningKeyLength", "one of")
		// DKIM tokens are computed: unknown in a preview.
		prev := h.Preview(tok, "d", in)
		if !prev["dkimSigningAttributes"].ObjectValue()["tokens"].IsComputed() {
			t.Fatalf("preview tokens %v, want unknown", prev["dkimSigningAttributes"])
		}
		d := h.Create(tok, "d", in)
		dk := out(d, "dkimSigningAttributes").ObjectValue()
		if len(dk["tokens"].ArrayValue()) != 3 || dk["nextSigningKeyLength"].StringValue() != "RSA_2048_BIT" {
			t.Fatalf("dkim %v", dk)
		}
		if out(d, "identityType").StringValue() != "DOMAIN" {
			t.Fatalf("type %v", out(d, "identityType"))
		}
		h.NoDiff(d, in)
		if !h.Read(d) {
			t.Fatal("identity gone")
		}
		h.NoDiff(d, in)
		_, df := h.Diff(d, m(map[string]any{"emailIdentity": "bots-test-3.example.org"}))
		wantReplace(t, df, "emailIdentity", false)
		s := h.Create(tok, "s", m(map[string]any{"emailIdentity": "noreply-test-2@bots-test-2.example.org"}))
		if out(s, "identityType").StringValue() != "EMAIL_ADDRESS" {
			t.Fatalf("type %v", out(s, "identityType"))
		}
		h.Delete(s)
		h.Delete(d)
		if _, err := e.v2.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String("bots-test-2.example.org")}); err == nil {
			t.Fatal("identity still in moto")
		}
	})
}

func TestInvokesAndConfigure(t *testing.T) {
	e := newEnv(t)
	e.sub(t, "aws:index/getCallerIdentity:getCallerIdentity", func(t *testing.T, h standintest.Harness) {
		res, err := h.Invoke("aws:index/getCallerIdentity:getCallerIdentity", props{})
		if err != nil || res["accountId"].StringValue() != "123456789012" || res["id"].StringValue() != "123456789012" {
			t.Fatalf("%v %v", err, res)
		}
	})
	e.sub(t, "aws:kms/getAlias:getAlias", func(t *testing.T, h standintest.Harness) {
		if _, err := h.Invoke("aws:kms/getAlias:getAlias", m(map[string]any{"name": "alias/agentkeys-pulumi"})); err == nil || !strings.Contains(err.Error(), "couldn't find resource") {
			t.Fatalf("missing alias: %v", err)
		}
		k, err := e.kms.CreateKey(ctx, &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.kms.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/agentkeys-pulumi"), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
			t.Fatal(err)
		}
		res, err := h.Invoke("aws:kms/getAlias:getAlias", m(map[string]any{"name": "alias/agentkeys-pulumi"}))
		if err != nil || res["targetKeyArn"].StringValue() != aws.ToString(k.KeyMetadata.Arn) {
			t.Fatalf("%v %v", err, res)
		}
	})
	e.sub(t, "unknown", func(t *testing.T, h standintest.Harness) {
		if _, err := h.Invoke("aws:ec2/getInstance:getInstance", props{}); err == nil || !strings.Contains(err.Error(), "does not implement") {
			t.Fatalf("unknown function: %v", err)
		}
		if _, err := h.P.Check(ctx, plugin.CheckRequest{Type: "aws:ec2/instance:Instance"}); err == nil {
			t.Fatal("an unknown type checked")
		}
	})
	e.sub(t, "configure", func(t *testing.T, h standintest.Harness) {
		t.Setenv("AWS_REGION", "")
		os.Unsetenv("AWS_REGION")
		if _, err := awsstandin.New().Configure(context.Background(), plugin.ConfigureRequest{Inputs: props{}}); err == nil || !strings.Contains(err.Error(), "aws:region") {
			t.Fatalf("no region: %v", err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		if _, err := awsstandin.New().Configure(context.Background(), plugin.ConfigureRequest{Inputs: m(map[string]any{"region": "us-east-1"})}); err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Fatalf("no credentials: %v", err)
		}
		info, _ := h.P.GetPluginInfo(ctx)
		if info.Version.String() != "6.83.4" {
			t.Fatalf("version %s", info.Version)
		}
	})
}
