package components

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// bucketSpec describes one hardened bucket: the shared shape of the mail and
// data-class buckets.
type bucketSpec struct {
	bucket       string // physical bucket name
	prodPosture  bool   // protect from deletion instead of emptying on destroy
	expirePrefix string // lifecycle expiry prefix ("" for none)
	expireDays   int
	policy       string // bucket policy JSON
	// policyDependsOn are the principals the policy names: S3 rejects a policy
	// whose principal does not exist yet.
	policyDependsOn []pulumi.Resource
}

// hardenedBucket is what newHardenedBucket declares.
type hardenedBucket struct {
	Bucket     *s3.BucketV2
	Access     *s3.BucketPublicAccessBlock
	Ownership  *s3.BucketOwnershipControls
	Encryption *s3.BucketServerSideEncryptionConfigurationV2
	Lifecycle  *s3.BucketLifecycleConfigurationV2 // nil without expiry
	Policy     *s3.BucketPolicy
}

// newHardenedBucket declares a bucket with public access blocked, owner-enforced
// ownership, SSE-S3, an optional prefix expiry and its policy, all parented to
// parent. SSE-S3 and the access block are AWS defaults since 2023; declaring
// them keeps drift visible and scanners quiet.
func newHardenedBucket(ctx *pulumi.Context, name string, parent pulumi.Resource, s bucketSpec) (*hardenedBucket, error) {
	p := pulumi.Parent(parent)
	bopts := []pulumi.ResourceOption{p}
	var forceDestroy bool
	if s.prodPosture {
		// Production data must outlive a mistaken destroy.
		bopts = append(bopts, pulumi.Protect(true))
	} else {
		// Test stacks are emptied and removed by pulumi destroy (§11).
		forceDestroy = true
	}
	b, err := s3.NewBucketV2(ctx, name, &s3.BucketV2Args{
		Bucket:       pulumi.String(s.bucket),
		ForceDestroy: pulumi.Bool(forceDestroy),
	}, bopts...)
	if err != nil {
		return nil, err
	}
	h := &hardenedBucket{Bucket: b}
	if h.Access, err = s3.NewBucketPublicAccessBlock(ctx, name+"-public-access", &s3.BucketPublicAccessBlockArgs{
		Bucket:                b.ID(),
		BlockPublicAcls:       pulumi.Bool(true),
		BlockPublicPolicy:     pulumi.Bool(true),
		IgnorePublicAcls:      pulumi.Bool(true),
		RestrictPublicBuckets: pulumi.Bool(true),
	}, p); err != nil {
		return nil, err
	}
	if h.Ownership, err = s3.NewBucketOwnershipControls(ctx, name+"-ownership", &s3.BucketOwnershipControlsArgs{
		Bucket: b.ID(),
		Rule:   &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}, p); err != nil {
		return nil, err
	}
	if h.Encryption, err = s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-sse", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: b.ID(),
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{&s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("AES256"),
			},
		}},
	}, p); err != nil {
		return nil, err
	}
	if s.expirePrefix != "" {
		if h.Lifecycle, err = s3.NewBucketLifecycleConfigurationV2(ctx, name+"-lifecycle", &s3.BucketLifecycleConfigurationV2Args{
			Bucket: b.ID(),
			Rules: s3.BucketLifecycleConfigurationV2RuleArray{&s3.BucketLifecycleConfigurationV2RuleArgs{
				Id:         pulumi.String("expire-" + trimSlash(s.expirePrefix)),
				Status:     pulumi.String("Enabled"),
				Filter:     &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String(s.expirePrefix)},
				Expiration: &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(s.expireDays)},
			}},
		}, p); err != nil {
			return nil, err
		}
	}
	// After the access block: S3 rejects concurrent bucket-config writes.
	deps := append([]pulumi.Resource{h.Access, h.Ownership}, s.policyDependsOn...)
	if h.Policy, err = s3.NewBucketPolicy(ctx, name+"-policy", &s3.BucketPolicyArgs{
		Bucket: b.ID(),
		Policy: pulumi.String(s.policy),
	}, p, pulumi.DependsOn(deps)); err != nil {
		return nil, err
	}
	return h, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
