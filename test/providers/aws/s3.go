package aws

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

func s3Types(p *awsProvider) []*standin.Type {
	return []*standin.Type{bucketType(p), bucketPolicyType(p), publicAccessBlockType(p), ownershipControlsType(p),
		sseConfigType(p), lifecycleType(p)}
}

// s3Hosted is S3's Route 53 hosted zone per region (S3 endpoints table).
var s3Hosted = map[string]string{"us-east-1": "Z3AQBSTGFYJSTF", "us-east-2": "Z2O1EMRO9K5GLX", "us-west-2": "Z3BJ6K6RIION7M", "eu-west-1": "Z1BKCTXD74EZPE", "eu-central-1": "Z21DNDUVLTQW6Q"}

// bucketType is aws:s3/bucketV2:BucketV2 (internal/service/s3/bucket.go):
// bucket, bucketPrefix and objectLockEnabled replace; forceDestroy is
// state only and lets delete empty the bucket first.
func bucketType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		if _, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(id)}); err != nil {
			if notFound(err, "NotFound", "NoSuchBucket") {
				return nil, nil
			}
			return nil, err
		}
		region := c.region
		if loc, err := c.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(id)}); err == nil && loc.LocationConstraint != "" {
			region = string(loc.LocationConstraint)
		}
		m := mk(map[string]any{"bucket": id, "arn": "arn:" + c.partition + ":s3:::" + id, "region": region,
			"bucketDomainName": id + ".s3.amazonaws.com", "bucketRegionalDomainName": id + ".s3." + region + ".amazonaws.com",
			"hostedZoneId": s3Hosted[region]})
		if tags, err := c.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(id)}); err == nil {
			t := map[string]string{}
			for _, tg := range tags.TagSet {
				t[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
			m["tagsAll"] = standin.V(t)
		} else {
			m["tagsAll"] = standin.V(map[string]string{})
		}
		return m, nil
	}
	putTags := func(ctx context.Context, id string, tags map[string]string) error {
		c := p.get()
		if len(tags) == 0 {
			_, err := c.s3.DeleteBucketTagging(ctx, &s3.DeleteBucketTaggingInput{Bucket: aws.String(id)})
			return err
		}
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var set []s3types.Tag
		for _, k := range keys {
			set = append(set, s3types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		_, err := c.s3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{Bucket: aws.String(id), Tagging: &s3types.Tagging{TagSet: set}})
		return err
	}
	return &standin.Type{
		Token:            "aws:s3/bucketV2:BucketV2",
		Inputs:           []string{"bucket", "bucketPrefix", "forceDestroy", "objectLockEnabled", "tags"},
		ForceNew:         []string{"bucket", "bucketPrefix", "objectLockEnabled"},
		OptionalComputed: []string{"bucketPrefix", "objectLockEnabled"},
		Defaults:         map[string]resource.PropertyValue{"forceDestroy": resource.NewBoolProperty(false)},
		AutoName:         "bucket", AutoNameMax: 63,
		Computed: []string{"arn", "bucketDomainName", "bucketRegionalDomainName", "hostedZoneId", "region", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			name := str(in, "bucket")
			// resourceBucketCreate validates the name before calling S3.
			if err := bucketNameError(name); err != nil {
				return "", nil, fmt.Errorf("validating S3 Bucket (%s) name: %w", name, err)
			}
			input := &s3.CreateBucketInput{Bucket: aws.String(name)}
			if c.region != "us-east-1" {
				input.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(c.region)}
			}
			if standin.Bool(in, "objectLockEnabled") {
				input.ObjectLockEnabledForBucket = aws.Bool(true)
			}
			if _, err := c.s3.CreateBucket(ctx, input); err != nil {
				return "", nil, err
			}
			if tags := standin.StrMap(in, "tags"); len(tags) > 0 {
				if err := putTags(ctx, name, tags); err != nil {
					return name, nil, err
				}
			}
			live, err := read(ctx, name, nil)
			return name, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, changed []string) (props, error) {
			if contains(changed, "tags") {
				if err := putTags(ctx, id, standin.StrMap(news, "tags")); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			c := p.get()
			_, err := c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(id)})
			if notFound(err, "NoSuchBucket") {
				return nil
			}
			if code(err) == "BucketNotEmpty" && standin.Bool(state, "forceDestroy") {
				if err := emptyBucket(ctx, c, id); err != nil {
					return fmt.Errorf("emptying S3 Bucket (%s): %w", id, err)
				}
				_, err = c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(id)})
			}
			return err
		},
	}
}

// emptyBucket deletes every object version and delete marker.
func emptyBucket(ctx context.Context, c *clients, bucket string) error {
	pager := s3.NewListObjectVersionsPaginator(c.s3, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		var ids []s3types.ObjectIdentifier
		for _, v := range page.Versions {
			ids = append(ids, s3types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range page.DeleteMarkers {
			ids = append(ids, s3types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		for _, id := range ids {
			if _, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: id.Key, VersionId: id.VersionId}); err != nil {
				return err
			}
		}
	}
	return nil
}

// bucketSub is a bucket sub-resource keyed by the bucket: bucket replaces,
// the ID is the bucket name.
func bucketSub(token string, inputs, required []string, read func(ctx context.Context, bucket string) (props, error),
	put func(ctx context.Context, in props) error, del func(ctx context.Context, bucket string) error) *standin.Type {
	return &standin.Type{
		Token:    token,
		Inputs:   append([]string{"bucket"}, inputs...),
		Required: append([]string{"bucket"}, required...),
		ForceNew: []string{"bucket"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			if err := put(ctx, in); err != nil {
				return "", nil, err
			}
			b := str(in, "bucket")
			live, err := read(ctx, b)
			return b, live, err
		},
		Read: func(ctx context.Context, id string, _ props) (props, error) { return read(ctx, id) },
		Update: func(ctx context.Context, id string, _, news props, _ []string) (props, error) {
			if err := put(ctx, news); err != nil {
				return nil, err
			}
			return read(ctx, id)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			err := del(ctx, id)
			if notFound(err, "NoSuchBucket") {
				return nil
			}
			return err
		},
	}
}

// bucketPolicyType is aws:s3/bucketPolicy:BucketPolicy
// (internal/service/s3/bucket_policy.go): the document updates and is
// compared by meaning.
func bucketPolicyType(p *awsProvider) *standin.Type {
	t := bucketSub("aws:s3/bucketPolicy:BucketPolicy", []string{"policy"}, []string{"policy"},
		func(ctx context.Context, b string) (props, error) {
			out, err := p.get().s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
			if notFound(err, "NoSuchBucketPolicy", "NoSuchBucket") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return mk(map[string]any{"bucket": b, "policy": aws.ToString(out.Policy)}), nil
		},
		func(ctx context.Context, in props) error {
			_, err := p.get().s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(str(in, "bucket")), Policy: aws.String(str(in, "policy"))})
			return err
		},
		func(ctx context.Context, b string) error {
			_, err := p.get().s3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(b)})
			return err
		})
	t.Equivalent = policyEq
	t.Validate = func(in props) []plugin.CheckFailure { return policyCheck(in, "policy") }
	return t
}

var pabFlags = []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"}

// publicAccessBlockType is aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock
// (internal/service/s3/bucket_public_access_block.go): four flags, default false.
func publicAccessBlockType(p *awsProvider) *standin.Type {
	t := bucketSub("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", pabFlags, nil,
		func(ctx context.Context, b string) (props, error) {
			out, err := p.get().s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(b)})
			if notFound(err, "NoSuchPublicAccessBlockConfiguration", "NoSuchBucket") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			c := out.PublicAccessBlockConfiguration
			return mk(map[string]any{"bucket": b, "blockPublicAcls": aws.ToBool(c.BlockPublicAcls), "blockPublicPolicy": aws.ToBool(c.BlockPublicPolicy),
				"ignorePublicAcls": aws.ToBool(c.IgnorePublicAcls), "restrictPublicBuckets": aws.ToBool(c.RestrictPublicBuckets)}), nil
		},
		func(ctx context.Context, in props) error {
			_, err := p.get().s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(str(in, "bucket")),
				PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
					BlockPublicAcls: aws.Bool(standin.Bool(in, "blockPublicAcls")), BlockPublicPolicy: aws.Bool(standin.Bool(in, "blockPublicPolicy")),
					IgnorePublicAcls: aws.Bool(standin.Bool(in, "ignorePublicAcls")), RestrictPublicBuckets: aws.Bool(standin.Bool(in, "restrictPublicBuckets"))}})
			return err
		},
		func(ctx context.Context, b string) error {
			_, err := p.get().s3.DeletePublicAccessBlock(ctx, &s3.DeletePublicAccessBlockInput{Bucket: aws.String(b)})
			return err
		})
	t.Defaults = map[string]resource.PropertyValue{}
	for _, f := range pabFlags {
		t.Defaults[f] = resource.NewBoolProperty(false)
	}
	return t
}

// ownershipControlsType is aws:s3/bucketOwnershipControls:BucketOwnershipControls
// (internal/service/s3/bucket_ownership_controls.go).
func ownershipControlsType(p *awsProvider) *standin.Type {
	t := bucketSub("aws:s3/bucketOwnershipControls:BucketOwnershipControls", []string{"rule"}, []string{"rule"},
		func(ctx context.Context, b string) (props, error) {
			out, err := p.get().s3.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(b)})
			if notFound(err, "OwnershipControlsNotFoundError", "NoSuchBucket") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			rule := props{}
			if out.OwnershipControls != nil && len(out.OwnershipControls.Rules) > 0 {
				rule = mk(map[string]any{"objectOwnership": string(out.OwnershipControls.Rules[0].ObjectOwnership)})
			}
			return mk(map[string]any{"bucket": b, "rule": rule}), nil
		},
		func(ctx context.Context, in props) error {
			_, err := p.get().s3.PutBucketOwnershipControls(ctx, &s3.PutBucketOwnershipControlsInput{Bucket: aws.String(str(in, "bucket")),
				OwnershipControls: &s3types.OwnershipControls{Rules: []s3types.OwnershipControlsRule{{ObjectOwnership: s3types.ObjectOwnership(str(standin.Obj(in, "rule"), "objectOwnership"))}}}})
			return err
		},
		func(ctx context.Context, b string) error {
			_, err := p.get().s3.DeleteBucketOwnershipControls(ctx, &s3.DeleteBucketOwnershipControlsInput{Bucket: aws.String(b)})
			return err
		})
	t.Validate = func(in props) []plugin.CheckFailure {
		return oneOf(standin.Obj(in, "rule"), "objectOwnership", "BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced")
	}
	return t
}

// sseConfigType is
// aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2
// (internal/service/s3/bucket_server_side_encryption_configuration.go):
// rules is a set; expectedBucketOwner replaces.
func sseConfigType(p *awsProvider) *standin.Type {
	t := bucketSub("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
		[]string{"expectedBucketOwner", "rules"}, []string{"rules"},
		func(ctx context.Context, b string) (props, error) {
			out, err := p.get().s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)})
			if notFound(err, "ServerSideEncryptionConfigurationNotFoundError", "NoSuchBucket") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			var rules []props
			if out.ServerSideEncryptionConfiguration != nil {
				for _, r := range out.ServerSideEncryptionConfiguration.Rules {
					rule := props{}
					if d := r.ApplyServerSideEncryptionByDefault; d != nil {
						def := mk(map[string]any{"sseAlgorithm": string(d.SSEAlgorithm)})
						if d.KMSMasterKeyID != nil {
							def["kmsMasterKeyId"] = resource.NewStringProperty(*d.KMSMasterKeyID)
						}
						rule["applyServerSideEncryptionByDefault"] = resource.NewObjectProperty(def)
					}
					if r.BucketKeyEnabled != nil && *r.BucketKeyEnabled {
						rule["bucketKeyEnabled"] = resource.NewBoolProperty(true)
					}
					rules = append(rules, rule)
				}
			}
			return mk(map[string]any{"bucket": b, "rules": rules}), nil
		},
		func(ctx context.Context, in props) error {
			var rules []s3types.ServerSideEncryptionRule
			for _, r := range standin.Objs(in, "rules") {
				rule := s3types.ServerSideEncryptionRule{}
				if d := standin.Obj(r, "applyServerSideEncryptionByDefault"); d != nil {
					rule.ApplyServerSideEncryptionByDefault = &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryption(str(d, "sseAlgorithm"))}
					if has(d, "kmsMasterKeyId") {
						rule.ApplyServerSideEncryptionByDefault.KMSMasterKeyID = aws.String(str(d, "kmsMasterKeyId"))
					}
				}
				if has(r, "bucketKeyEnabled") {
					rule.BucketKeyEnabled = aws.Bool(standin.Bool(r, "bucketKeyEnabled"))
				}
				rules = append(rules, rule)
			}
			input := &s3.PutBucketEncryptionInput{Bucket: aws.String(str(in, "bucket")), ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: rules}}
			if has(in, "expectedBucketOwner") {
				input.ExpectedBucketOwner = aws.String(str(in, "expectedBucketOwner"))
			}
			_, err := p.get().s3.PutBucketEncryption(ctx, input)
			return err
		},
		func(ctx context.Context, b string) error {
			_, err := p.get().s3.DeleteBucketEncryption(ctx, &s3.DeleteBucketEncryptionInput{Bucket: aws.String(b)})
			return err
		})
	t.ForceNew = append(t.ForceNew, "expectedBucketOwner")
	t.Sets = []string{"rules"}
	t.Validate = func(in props) []plugin.CheckFailure {
		var out []plugin.CheckFailure
		for _, r := range standin.Objs(in, "rules") {
			out = append(out, oneOf(standin.Obj(r, "applyServerSideEncryptionByDefault"), "sseAlgorithm", "AES256", "aws:kms", "aws:kms:dsse")...)
		}
		return out
	}
	return t
}

// lifecycleType is
// aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2
// (internal/service/s3/bucket_lifecycle_configuration.go): the rules the
// program sets (id, status, filter.prefix, expiration.days) round-trip;
// others are refused rather than silently dropped.
func lifecycleType(p *awsProvider) *standin.Type {
	t := bucketSub("aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
		[]string{"expectedBucketOwner", "rules", "transitionDefaultMinimumObjectSize"}, []string{"rules"},
		func(ctx context.Context, b string) (props, error) {
			out, err := p.get().s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(b)})
			if notFound(err, "NoSuchLifecycleConfiguration", "NoSuchBucket") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			var rules []props
			for _, r := range out.Rules {
				rule := mk(map[string]any{"id": r.ID, "status": string(r.Status)})
				if r.Filter != nil && r.Filter.Prefix != nil {
					rule["filter"] = resource.NewObjectProperty(mk(map[string]any{"prefix": *r.Filter.Prefix}))
				}
				if r.Expiration != nil && r.Expiration.Days != nil {
					rule["expiration"] = resource.NewObjectProperty(mk(map[string]any{"days": int(*r.Expiration.Days)}))
				}
				rules = append(rules, rule)
			}
			m := mk(map[string]any{"bucket": b, "rules": rules, "transitionDefaultMinimumObjectSize": string(out.TransitionDefaultMinimumObjectSize)})
			if str(m, "transitionDefaultMinimumObjectSize") == "" {
				m["transitionDefaultMinimumObjectSize"] = resource.NewStringProperty("all_storage_classes_128K")
			}
			return m, nil
		},
		func(ctx context.Context, in props) error {
			var rules []s3types.LifecycleRule
			for _, r := range standin.Objs(in, "rules") {
				rule := s3types.LifecycleRule{ID: aws.String(str(r, "id")), Status: s3types.ExpirationStatus(str(r, "status"))}
				if f := standin.Obj(r, "filter"); f != nil {
					rule.Filter = &s3types.LifecycleRuleFilter{Prefix: aws.String(str(f, "prefix"))}
				} else {
					rule.Filter = &s3types.LifecycleRuleFilter{Prefix: aws.String("")}
				}
				if e := standin.Obj(r, "expiration"); e != nil {
					rule.Expiration = &s3types.LifecycleExpiration{Days: aws.Int32(int32(standin.Int(e, "days")))}
				}
				rules = append(rules, rule)
			}
			input := &s3.PutBucketLifecycleConfigurationInput{Bucket: aws.String(str(in, "bucket")), LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: rules}}
			if has(in, "expectedBucketOwner") {
				input.ExpectedBucketOwner = aws.String(str(in, "expectedBucketOwner"))
			}
			_, err := p.get().s3.PutBucketLifecycleConfiguration(ctx, input)
			return err
		},
		func(ctx context.Context, b string) error {
			_, err := p.get().s3.DeleteBucketLifecycle(ctx, &s3.DeleteBucketLifecycleInput{Bucket: aws.String(b)})
			return err
		})
	t.ForceNew = append(t.ForceNew, "expectedBucketOwner")
	t.OptionalComputed = []string{"transitionDefaultMinimumObjectSize"}
	t.Computed = []string{"transitionDefaultMinimumObjectSize"}
	t.Validate = func(in props) []plugin.CheckFailure {
		var out []plugin.CheckFailure
		for _, r := range standin.Objs(in, "rules") {
			out = append(out, oneOf(r, "status", "Enabled", "Disabled")...)
			if len(str(r, "id")) > 255 {
				out = append(out, standin.Fail("rules", "rule id longer than 255 characters"))
			}
			for k := range r {
				switch k {
				case "id", "status", "filter", "expiration":
				default:
					out = append(out, standin.Fail("rules", "stand-in: lifecycle rule field %s is not supported", k))
				}
			}
		}
		return out
	}
	return t
}
