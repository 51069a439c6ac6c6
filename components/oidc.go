package components

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// OidcFederationArgs configures the stack's IAM OIDC provider.
type OidcFederationArgs struct {
	Names naming.Names
	// Thumbprints is optional: ThumbprintList is optional in pulumi-aws
	// v6.83.4 and AWS validates the JWKS host against its CA library. Once
	// set it cannot be cleared by an update, so callers pass the existing
	// list when the live chain cannot be read.
	Thumbprints pulumi.StringArrayInput
	// Existing is the provider the account already has (LookupOIDCProvider):
	// it is declared unconditionally, so federation never undoes itself, and
	// adopted by import when this stack's state lacks it (a provider made by
	// hand under the old runbook). Its thumbprints are then left as they
	// are: AWS checks trusted CAs itself, and an import must match.
	Existing *ExistingProvider
	// Serving gates the first creation: the provider is declared only once
	// the host bring-up reports the broker serving OIDC discovery over TLS,
	// because IAM fetches the issuer's certificate when it registers it.
	// Unset (and no Existing, no Defer): declared unconditionally.
	Serving pulumi.BoolOutput
	// Defer leaves the provider undeclared in this run (no bring-up and
	// none in the account yet).
	Defer bool
	// DependsOn orders the provider after the host bring-up.
	DependsOn []pulumi.Resource
}

// ExistingProvider is the stack's IAM OIDC provider as the account has it.
type ExistingProvider struct {
	Arn         string
	Thumbprints []string
}

// LookupOIDCProvider reads the provider at arn; nil when the account has none.
func LookupOIDCProvider(ctx *pulumi.Context, arn string, opts ...pulumi.InvokeOption) (*ExistingProvider, error) {
	r, err := iam.LookupOpenIdConnectProvider(ctx, &iam.LookupOpenIdConnectProviderArgs{Arn: pulumi.StringRef(arn)}, opts...)
	if err != nil {
		if s := err.Error(); strings.Contains(s, "NoSuchEntity") || strings.Contains(s, "couldn't find resource") {
			return nil, nil
		}
		return nil, fmt.Errorf("looking up the OIDC provider %s: %w", arn, err)
	}
	if r == nil || r.Arn == "" {
		return nil, nil
	}
	return &ExistingProvider{Arn: r.Arn, Thumbprints: r.ThumbprintLists}, nil
}

// OidcFederation is the IAM OIDC provider for the stack's broker issuer. The
// federated trusts live on the roles (DataRole, DataClassRole).
type OidcFederation struct {
	pulumi.ResourceState

	// Provider is nil when its declaration waits for Serving.
	Provider *iam.OpenIdConnectProvider
	// ProviderArn is "" while the provider is not declared (first bring-up
	// not serving TLS yet).
	ProviderArn pulumi.StringOutput
	// Active reports whether the provider is declared in this run.
	Active pulumi.BoolOutput
}

// NewOidcFederation declares the OIDC provider for names.Issuer: always when
// the account has it, else once Serving turns true.
func NewOidcFederation(ctx *pulumi.Context, name string, args *OidcFederationArgs, opts ...pulumi.ResourceOption) (*OidcFederation, error) {
	if args == nil || args.Names.Issuer == "" {
		return nil, fmt.Errorf("oidc federation %s: Names with an issuer are required", name)
	}
	c := &OidcFederation{}
	if err := ctx.RegisterComponentResource("agentkeys:index:OidcFederation", name, c, opts...); err != nil {
		return nil, err
	}
	pargs := &iam.OpenIdConnectProviderArgs{
		Url:           pulumi.String(args.Names.Issuer),
		ClientIdLists: pulumi.StringArray{pulumi.String(naming.OIDCAudience)},
	}
	if args.Thumbprints != nil {
		pargs.ThumbprintLists = args.Thumbprints
	}
	popts := []pulumi.ResourceOption{pulumi.Parent(c), pulumi.DependsOn(args.DependsOn)}
	if args.Existing != nil {
		// Already in state with this id: an ordinary resource; else adopted.
		popts = append(popts, pulumi.Import(pulumi.ID(args.Existing.Arn)), pulumi.IgnoreChanges([]string{"thumbprintLists"}))
	}
	declare := func() (*iam.OpenIdConnectProvider, error) {
		return iam.NewOpenIdConnectProvider(ctx, name+"-provider", pargs, popts...)
	}
	switch {
	case args.Existing == nil && args.Defer:
		c.ProviderArn, c.Active = pulumi.String("").ToStringOutput(), pulumi.Bool(false).ToBoolOutput()
	case args.Existing != nil || args.Serving == (pulumi.BoolOutput{}):
		var err error
		if c.Provider, err = declare(); err != nil {
			return nil, err
		}
		c.ProviderArn, c.Active = c.Provider.Arn, pulumi.Bool(true).ToBoolOutput()
	default:
		// Declared inside the apply: a first-time provider exists only once
		// the broker serves TLS; afterwards Existing declares it up front.
		c.ProviderArn = args.Serving.ApplyT(func(ok bool) (pulumi.StringOutput, error) {
			if !ok {
				return pulumi.String("").ToStringOutput(), nil
			}
			p, err := declare()
			if err != nil {
				return pulumi.StringOutput{}, err
			}
			return p.Arn, nil
		}).(pulumi.StringOutput)
		c.Active = args.Serving
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"providerArn": c.ProviderArn,
		"issuer":      pulumi.String(args.Names.Issuer),
	})
}

// TopIntermediateThumbprint returns the hex SHA-1 of the top intermediate CA
// of a served chain (the CA just below the root), which AWS documents as the
// provider thumbprint: it survives leaf renewals. Self-signed roots and the
// leaf are skipped; the order of certs does not matter (tls.GetCertificate
// returns the root first).
func TopIntermediateThumbprint(certs []tls.GetCertificateCertificate) (string, error) {
	type parsed struct {
		c   *x509.Certificate
		der []byte
	}
	var cas []parsed
	for i, gc := range certs {
		blk, _ := pem.Decode([]byte(gc.CertPem))
		if blk == nil {
			return "", fmt.Errorf("certificate %d (%s): no PEM block", i, gc.Subject)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("certificate %d (%s): %w", i, gc.Subject, err)
		}
		selfSigned := string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
		if c.IsCA && !selfSigned {
			cas = append(cas, parsed{c, blk.Bytes})
		}
	}
	// The top intermediate is the one no other intermediate in the chain issued.
	var top []parsed
	for _, a := range cas {
		issuedByOther := false
		for _, b := range cas {
			if a.c != b.c && string(a.c.RawIssuer) == string(b.c.RawSubject) {
				issuedByOther = true
			}
		}
		if !issuedByOther {
			top = append(top, a)
		}
	}
	switch len(top) {
	case 0:
		return "", errors.New("no intermediate CA in the chain; serve the full chain (leaf + intermediates)")
	case 1:
		sum := sha1.Sum(top[0].der)
		return hex.EncodeToString(sum[:]), nil
	default:
		return "", fmt.Errorf("%d unrelated intermediate CAs in the chain; cannot tell which is the top", len(top))
	}
}

// LiveThumbprints reads the certificate chain https://<host> serves (a live
// TLS call: pass pulumi.DependsOn of the host bring-up so it runs only once
// the host serves TLS) and returns the one-element thumbprint list.
func LiveThumbprints(ctx *pulumi.Context, host string, opts ...pulumi.InvokeOption) pulumi.StringArrayOutput {
	res := tls.GetCertificateOutput(ctx, tls.GetCertificateOutputArgs{
		Url:         pulumi.String("https://" + host),
		VerifyChain: pulumi.Bool(true),
	}, opts...)
	return res.Certificates().ApplyT(func(cs []tls.GetCertificateCertificate) ([]string, error) {
		t, err := TopIntermediateThumbprint(cs)
		if err != nil {
			return nil, fmt.Errorf("thumbprint of https://%s: %w", host, err)
		}
		return []string{t}, nil
	}).(pulumi.StringArrayOutput)
}
