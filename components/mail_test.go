package components

import (
	"testing"

	"github.com/agentkeys/agentkeys-infra/components/componenttest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runMail(t *testing.T, stack string) (*componenttest.Recorder, naming.Names) {
	t.Helper()
	n := namesFor(t, stack)
	rec := newRec(stack)
	require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
		// Stands in for the data role the bucket policy names.
		role, err := iam.NewRole(ctx, "data-role", &iam.RoleArgs{Name: pulumi.String(n.DataRole), AssumeRolePolicy: pulumi.String("{}")})
		if err != nil {
			return err
		}
		m, err := NewMailBackend(ctx, "mail", &MailBackendArgs{Names: n, ProdPosture: n.Stack.ProdPosture(), PolicyDependsOn: []pulumi.Resource{role}})
		if err != nil {
			return err
		}
		assert.Equal(t, n.MailBucket, await(t, ctx, m.BucketName).Value)
		assert.Equal(t, n.Sender, await(t, ctx, m.Sender).Value)
		return nil
	}))
	return rec, n
}

func TestMailBackendPerKind(t *testing.T) {
	for _, stack := range kinds {
		t.Run(stack, func(t *testing.T) {
			rec, n := runMail(t, stack)

			dom := mustFind(t, rec, "aws:sesv2/emailIdentity:EmailIdentity", "mail-domain")
			assert.Equal(t, n.MailDomain, dom.Str("emailIdentity"))
			attrs, ok := dom.Input("dkimSigningAttributes")
			require.True(t, ok)
			assert.Equal(t, "RSA_2048_BIT", attrs.ObjectValue()["nextSigningKeyLength"].StringValue())

			for i := 0; i < 3; i++ {
				r := mustFind(t, rec, "aws:route53/record:Record", "mail-dkim-"+string(rune('0'+i)))
				tok := "tok" + string(rune('0'+i)) + "mail-domain"
				assert.Equal(t, tok+"._domainkey."+n.MailDomain, r.Str("name"))
				assert.Equal(t, "CNAME", r.Str("type"))
				assert.Equal(t, []string{tok + ".dkim.amazonses.com"}, strs(r.Inputs["records"]))
				assert.Equal(t, testZoneID, r.Str("zoneId"))
				assert.True(t, r.DependsOn(dom.URN))
			}
			mx := mustFind(t, rec, "aws:route53/record:Record", "mail-mx")
			assert.Equal(t, n.MailDomain, mx.Str("name"))
			assert.Equal(t, []string{"10 inbound-smtp.us-east-1.amazonaws.com"}, strs(mx.Inputs["records"]))
			spf := mustFind(t, rec, "aws:route53/record:Record", "mail-spf")
			assert.Equal(t, "TXT", spf.Str("type"))
			assert.Equal(t, []string{"v=spf1 include:amazonses.com -all"}, strs(spf.Inputs["records"]))
			dmarc := mustFind(t, rec, "aws:route53/record:Record", "mail-dmarc")
			assert.Equal(t, "_dmarc."+n.MailDomain, dmarc.Str("name"))
			assert.Equal(t, []string{"v=DMARC1; p=quarantine; rua=mailto:dmarc@" + n.MailDomain}, strs(dmarc.Inputs["records"]))

			b := mustFind(t, rec, "aws:s3/bucketV2:BucketV2", "mail-bucket")
			assert.Equal(t, n.MailBucket, b.Str("bucket"))
			assertHardened(t, rec, "mail-bucket", b, n.Stack.ProdPosture())
			lc := mustFind(t, rec, "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2", "mail-bucket-lifecycle")
			rule := componenttest.Unwrap(lc.Inputs["rules"]).ArrayValue()[0].ObjectValue()
			assert.Equal(t, "inbound/", rule["filter"].ObjectValue()["prefix"].StringValue())
			assert.EqualValues(t, 30, rule["expiration"].ObjectValue()["days"].NumberValue())
			assert.Equal(t, "Enabled", rule["status"].StringValue())

			pol := mustFind(t, rec, "aws:s3/bucketPolicy:BucketPolicy", "mail-bucket-policy")
			assert.JSONEq(t, policy.MailBucketPolicy(n).JSON(), pol.Str("policy"))
			role := mustFind(t, rec, "aws:iam/role:Role", "data-role")
			assert.True(t, pol.DependsOn(role.URN), "the policy names the data role, which must exist first")

			rr := mustFind(t, rec, "aws:ses/receiptRule:ReceiptRule", "mail-receipt-rule")
			assert.Equal(t, n.ReceiptRule, rr.Str("name"))
			assert.Equal(t, naming.SharedRuleSet, rr.Str("ruleSetName"))
			assert.Equal(t, []string{n.MailDomain}, strs(rr.Inputs["recipients"]))
			assert.True(t, rr.Bool("enabled"))
			assert.True(t, rr.Bool("scanEnabled"))
			assert.Equal(t, "Optional", rr.Str("tlsPolicy"))
			act := componenttest.Unwrap(rr.Inputs["s3Actions"]).ArrayValue()
			require.Len(t, act, 1)
			a := act[0].ObjectValue()
			assert.Equal(t, n.MailBucket, a["bucketName"].StringValue())
			assert.Equal(t, "inbound/", a["objectKeyPrefix"].StringValue())
			assert.EqualValues(t, 1, a["position"].NumberValue())
			assert.True(t, rr.DependsOn(pol.URN), "SES test-writes the bucket on rule creation: policy first")

			snd := mustFind(t, rec, "aws:sesv2/emailIdentity:EmailIdentity", "mail-sender")
			assert.Equal(t, n.Sender, snd.Str("emailIdentity"))

			// The shared rule set and its activation belong to the account stack.
			assert.Empty(t, rec.ByType("aws:ses/receiptRuleSet:ReceiptRuleSet"))
			assert.Empty(t, rec.ByType("aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet"))

			// Only the stand-in role lives outside the component.
			for _, r := range rec.Resources() {
				if r.Name != "data-role" && r.Type != "agentkeys:index:MailBackend" {
					assert.Equal(t, rec.ByType("agentkeys:index:MailBackend")[0].URN, r.Parent, "%s %s", r.Type, r.Name)
				}
			}
		})
	}
}

// assertHardened checks the public-access block, ownership, SSE and the
// destroy posture of the bucket declared under logical name prefix.
func assertHardened(t *testing.T, rec *componenttest.Recorder, prefix string, b componenttest.Resource, prod bool) {
	t.Helper()
	pab := mustFind(t, rec, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", prefix+"-public-access")
	for _, k := range []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"} {
		assert.True(t, pab.Bool(k), k)
	}
	assert.Equal(t, b.ID, pab.Str("bucket"))
	own := mustFind(t, rec, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", prefix+"-ownership")
	rule, _ := own.Input("rule")
	assert.Equal(t, "BucketOwnerEnforced", rule.ObjectValue()["objectOwnership"].StringValue())
	sse := mustFind(t, rec, "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2", prefix+"-sse")
	r := componenttest.Unwrap(sse.Inputs["rules"]).ArrayValue()[0].ObjectValue()
	assert.Equal(t, "AES256", r["applyServerSideEncryptionByDefault"].ObjectValue()["sseAlgorithm"].StringValue())
	pol := mustFind(t, rec, "aws:s3/bucketPolicy:BucketPolicy", prefix+"-policy")
	assert.True(t, pol.DependsOn(pab.URN))
	var doc policy.Document
	require.NoError(t, jsonUnmarshal(pol.Str("policy"), &doc))
	tls, ok := doc.StatementBySid("DenyInsecureTransport")
	require.True(t, ok, "TLS-only statement")
	assert.Equal(t, "Deny", tls.Effect)

	assert.Equal(t, prod, b.Protect, "prod-posture buckets are protected")
	assert.Equal(t, !prod, b.Bool("forceDestroy"), "test buckets are emptied on destroy")
}
