// Package awsx loads AWS SDK configuration the way every operator command
// needs it: the standard SDK environment (profiles, AWS_REGION,
// AWS_ENDPOINT_URL for moto_server) with the stack's region as default.
package awsx

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Load returns an SDK config. region is the stack's region, used unless
// AWS_REGION/AWS_DEFAULT_REGION is set (the admin profile's default region is
// often not the broker's: the spec's caller-region trap). profile "" means
// the SDK default chain.
func Load(ctx context.Context, region, profile string) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" && region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if profile != "" {
			return aws.Config{}, fmt.Errorf("AWS profile %q: %v; add it to ~/.aws/credentials or pass another with --profile", profile, err)
		}
		return aws.Config{}, fmt.Errorf("AWS config: %v", err)
	}
	return cfg, nil
}

// S3Options uses path-style addressing when an endpoint override is set
// (moto_server on 127.0.0.1 has no per-bucket hostnames).
func S3Options(o *s3.Options) {
	if os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != "" {
		o.UsePathStyle = true
	}
}
