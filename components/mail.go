package components

import (
	"fmt"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ses"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sesv2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// InboundPrefix is where SES writes received mail; it expires after InboundExpiryDays.
const (
	InboundPrefix     = "inbound/"
	InboundExpiryDays = 30
)

// MailBackendArgs configures one stack's mail domain.
type MailBackendArgs struct {
	Names       naming.Names
	ProdPosture bool // protect the inbound bucket instead of emptying it on destroy
	// PolicyDependsOn are the principals the bucket policy names (the data
	// role): S3 rejects a policy whose principal does not exist yet.
	PolicyDependsOn []pulumi.Resource
}

// MailBackend is the SES domain identity with its DNS, the inbound bucket and
// this stack's receipt rule.
//
// The receipt rule set naming.SharedRuleSet and its activation are NOT
// declared here: only one rule set can be active per account and region, so
// the account-level stack owns them, and destroying a broker stack removes
// only its own rule, never another stack's inbound mail.
type MailBackend struct {
	pulumi.ResourceState

	DomainIdentity *sesv2.EmailIdentity
	SenderIdentity *sesv2.EmailIdentity
	DkimRecords    []*route53.Record
	MX, SPF, DMARC *route53.Record
	Bucket         *s3.BucketV2
	BucketPolicy   *s3.BucketPolicy
	ReceiptRule    *ses.ReceiptRule

	BucketName pulumi.StringOutput
	BucketArn  pulumi.StringOutput
	Sender     pulumi.StringOutput
}

// NewMailBackend declares the mail domain of one stack.
func NewMailBackend(ctx *pulumi.Context, name string, args *MailBackendArgs, opts ...pulumi.ResourceOption) (*MailBackend, error) {
	if args == nil || args.Names.MailDomain == "" {
		return nil, fmt.Errorf("mail backend %s: Names with a mail domain are required", name)
	}
	n := args.Names
	c := &MailBackend{}
	if err := ctx.RegisterComponentResource("agentkeys:index:MailBackend", name, c, opts...); err != nil {
		return nil, err
	}
	p := pulumi.Parent(c)
	var err error
	if c.DomainIdentity, err = sesv2.NewEmailIdentity(ctx, name+"-domain", &sesv2.EmailIdentityArgs{
		EmailIdentity: pulumi.String(n.MailDomain),
		DkimSigningAttributes: &sesv2.EmailIdentityDkimSigningAttributesArgs{
			NextSigningKeyLength: pulumi.String("RSA_2048_BIT"),
		},
	}, p); err != nil {
		return nil, err
	}
	record := func(suffix string, rname pulumi.StringInput, typ string, values pulumi.StringArrayInput) (*route53.Record, error) {
		return route53.NewRecord(ctx, name+"-"+suffix, &route53.RecordArgs{
			ZoneId:  pulumi.String(n.Fork.ParentZoneID),
			Name:    rname,
			Type:    pulumi.String(typ),
			Ttl:     pulumi.Int(300),
			Records: values,
			// The old scripts UPSERTed these names; take them over instead of failing.
			AllowOverwrite: pulumi.Bool(true),
		}, p)
	}
	// DKIM tokens are computed by SES, so names and values are outputs.
	tokens := c.DomainIdentity.DkimSigningAttributes.Tokens()
	for i := 0; i < 3; i++ {
		tok := tokens.Index(pulumi.Int(i))
		r, err := record(fmt.Sprintf("dkim-%d", i),
			tok.ApplyT(func(t string) string { return t + "._domainkey." + n.MailDomain }).(pulumi.StringOutput),
			"CNAME",
			pulumi.StringArray{tok.ApplyT(func(t string) string { return t + ".dkim.amazonses.com" }).(pulumi.StringOutput)})
		if err != nil {
			return nil, err
		}
		c.DkimRecords = append(c.DkimRecords, r)
	}
	if c.MX, err = record("mx", pulumi.String(n.MailDomain), "MX",
		pulumi.StringArray{pulumi.String("10 inbound-smtp." + n.Region + ".amazonaws.com")}); err != nil {
		return nil, err
	}
	if c.SPF, err = record("spf", pulumi.String(n.MailDomain), "TXT",
		pulumi.StringArray{pulumi.String("v=spf1 include:amazonses.com -all")}); err != nil {
		return nil, err
	}
	if c.DMARC, err = record("dmarc", pulumi.String("_dmarc."+n.MailDomain), "TXT",
		pulumi.StringArray{pulumi.String("v=DMARC1; p=quarantine; rua=mailto:dmarc@" + n.MailDomain)}); err != nil {
		return nil, err
	}
	hb, err := newHardenedBucket(ctx, name+"-bucket", c, bucketSpec{
		bucket:          n.MailBucket,
		prodPosture:     args.ProdPosture,
		expirePrefix:    InboundPrefix,
		expireDays:      InboundExpiryDays,
		policy:          policy.MailBucketPolicy(n).JSON(),
		policyDependsOn: args.PolicyDependsOn,
	})
	if err != nil {
		return nil, err
	}
	c.Bucket, c.BucketPolicy = hb.Bucket, hb.Policy
	// SES test-writes the bucket when the rule is created: the policy must exist first.
	if c.ReceiptRule, err = ses.NewReceiptRule(ctx, name+"-receipt-rule", &ses.ReceiptRuleArgs{
		Name:        pulumi.String(n.ReceiptRule),
		RuleSetName: pulumi.String(n.RuleSet),
		// Only this stack's domain: a rule without recipients would take every
		// stack's mail in the shared set.
		Recipients:  pulumi.StringArray{pulumi.String(n.MailDomain)},
		Enabled:     pulumi.Bool(true),
		ScanEnabled: pulumi.Bool(true),
		TlsPolicy:   pulumi.String("Optional"),
		S3Actions: ses.ReceiptRuleS3ActionArray{&ses.ReceiptRuleS3ActionArgs{
			BucketName:      c.Bucket.Bucket,
			ObjectKeyPrefix: pulumi.String(InboundPrefix),
			Position:        pulumi.Int(1),
		}},
	}, p, pulumi.DependsOn([]pulumi.Resource{hb.Policy})); err != nil {
		return nil, err
	}
	if c.SenderIdentity, err = sesv2.NewEmailIdentity(ctx, name+"-sender", &sesv2.EmailIdentityArgs{
		EmailIdentity: pulumi.String(n.Sender),
	}, p, pulumi.DependsOn([]pulumi.Resource{c.DomainIdentity})); err != nil {
		return nil, err
	}
	c.BucketName = c.Bucket.Bucket
	c.BucketArn = c.Bucket.Arn
	c.Sender = c.SenderIdentity.EmailIdentity
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"mailDomain":  pulumi.String(n.MailDomain),
		"bucketName":  c.BucketName,
		"bucketArn":   c.BucketArn,
		"sender":      c.Sender,
		"receiptRule": c.ReceiptRule.Name,
	})
}
