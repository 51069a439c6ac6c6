// Package aws is a test stand-in for the pulumi-aws provider plugin (the
// real v6.83.4 cannot be built here): the resource types and functions the
// agentkeys program uses, with pulumi-aws v6.83.4's tokens and property
// names (its Go SDK's `pulumi:"..."` tags), the upstream Terraform
// provider's replace semantics, defaults and validation
// (hashicorp/terraform-provider-aws internal/service/..., cited per type),
// acting on a moto_server through aws-sdk-go-v2. Test-only: never shipped.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// Version is the pulumi-aws release this stand-in answers for (go.mod's
// github.com/pulumi/pulumi-aws/sdk/v6).
const Version = "6.83.4"

// clients are the AWS API clients of one configured provider.
type clients struct {
	region, account, partition string
	iam                        *iam.Client
	s3                         *s3.Client
	ec2                        *ec2.Client
	route53                    *route53.Client
	ses                        *ses.Client
	sesv2                      *sesv2.Client
	sts                        *sts.Client
	kms                        *kms.Client
}

// awsProvider holds the clients once Configure has run.
type awsProvider struct {
	mu sync.Mutex
	c  *clients
}

func (p *awsProvider) get() *clients {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		// The engine always configures a provider before using it.
		panic("pulumi-resource-aws stand-in used before Configure")
	}
	return p.c
}

// New returns the stand-in provider.
func New() *standin.Provider {
	ap := &awsProvider{}
	var types []*standin.Type
	types = append(types, iamTypes(ap)...)
	types = append(types, ec2Types(ap)...)
	types = append(types, route53Types(ap)...)
	types = append(types, s3Types(ap)...)
	types = append(types, sesTypes(ap)...)
	prov := standin.New("aws", Version, types, invokes(ap))
	prov.OnConfigure = ap.configure
	return prov
}

// configure builds the clients from the provider configuration: region,
// accessKey/secretKey/profile, endpoints (a list of {service: url}, as in
// pulumi-aws), s3UsePathStyle and skipCredentialsValidation. The standard
// SDK environment applies too (AWS_ENDPOINT_URL, AWS_REGION, ...).
func (p *awsProvider) configure(ctx context.Context, cfg standin.Props) error {
	region := standin.Str(cfg, "region")
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		// pulumi-aws: "Missing region information" when neither config nor env has one.
		return errors.New("missing required configuration key \"aws:region\": set it with `pulumi config set aws:region us-east-1` or AWS_REGION")
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if ak, sk := standin.Str(cfg, "accessKey"), standin.Str(cfg, "secretKey"); ak != "" && sk != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, standin.Str(cfg, "token"))))
	}
	if prof := standin.Str(cfg, "profile"); prof != "" {
		opts = append(opts, config.WithSharedConfigProfile(prof))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("loading the AWS configuration: %w", err)
	}
	endpoints := map[string]string{}
	for _, e := range standin.Objs(cfg, "endpoints") {
		for k, v := range e {
			if v.IsString() && v.StringValue() != "" {
				endpoints[string(k)] = v.StringValue()
			}
		}
	}
	ep := func(svc string) *string {
		if v, ok := endpoints[svc]; ok {
			return aws.String(v)
		}
		return nil
	}
	custom := len(endpoints) > 0 || ac.BaseEndpoint != nil
	c := &clients{region: region, partition: "aws"}
	c.iam = iam.NewFromConfig(ac, func(o *iam.Options) { o.BaseEndpoint = firstNonNil(ep("iam"), o.BaseEndpoint) })
	c.s3 = s3.NewFromConfig(ac, func(o *s3.Options) {
		o.BaseEndpoint = firstNonNil(ep("s3"), o.BaseEndpoint)
		// An emulator on a loopback address cannot serve bucket subdomains.
		o.UsePathStyle = standin.Bool(cfg, "s3UsePathStyle") || custom
	})
	c.ec2 = ec2.NewFromConfig(ac, func(o *ec2.Options) { o.BaseEndpoint = firstNonNil(ep("ec2"), o.BaseEndpoint) })
	c.route53 = route53.NewFromConfig(ac, func(o *route53.Options) { o.BaseEndpoint = firstNonNil(ep("route53"), o.BaseEndpoint) })
	c.ses = ses.NewFromConfig(ac, func(o *ses.Options) { o.BaseEndpoint = firstNonNil(ep("ses"), o.BaseEndpoint) })
	c.sesv2 = sesv2.NewFromConfig(ac, func(o *sesv2.Options) { o.BaseEndpoint = firstNonNil(ep("sesv2"), o.BaseEndpoint) })
	c.sts = sts.NewFromConfig(ac, func(o *sts.Options) { o.BaseEndpoint = firstNonNil(ep("sts"), o.BaseEndpoint) })
	c.kms = kms.NewFromConfig(ac, func(o *kms.Options) { o.BaseEndpoint = firstNonNil(ep("kms"), o.BaseEndpoint) })
	// pulumi-aws validates the credentials at configure time (unless
	// skipCredentialsValidation) and learns the account from them.
	who, err := c.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	switch {
	case err == nil:
		c.account = aws.ToString(who.Account)
	case !standin.Bool(cfg, "skipCredentialsValidation"):
		return fmt.Errorf("unable to validate AWS credentials: %w", err)
	}
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
	return nil
}

func firstNonNil(a, b *string) *string {
	if a != nil {
		return a
	}
	return b
}

// code is the AWS error code of err ("" when it is not an API error).
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// notFound reports whether err is one of the given not-found codes.
func notFound(err error, codes ...string) bool {
	c := code(err)
	for _, k := range codes {
		if c == k {
			return true
		}
	}
	return false
}

// unescape decodes a URL-encoded policy document as IAM returns it.
func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// arn builds an ARN in the provider's partition and account.
func (c *clients) arn(service, region, resource string) string {
	return strings.Join([]string{"arn", c.partition, service, region, c.account, resource}, ":")
}
