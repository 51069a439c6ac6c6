// Package tls is a test stand-in for the pulumi-tls provider plugin: the one
// function the program calls, tls:index/getCertificate, reading the real
// certificate chain a URL serves, as the upstream data source does
// (hashicorp/terraform-provider-tls internal/provider/data_source_certificate.go:
// https:// and tls:// URLs, port 443 by default, the chain returned root
// first, verifyChain checking it against the trusted roots). Test-only.
package tls

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// Version is the pulumi-tls release this stand-in answers for (go.mod's
// github.com/pulumi/pulumi-tls/sdk/v5).
const Version = "5.3.0"

// ExtraCAEnv names a PEM file of extra trusted roots (a test CA such as
// pebble's), added to the system roots for verifyChain.
const ExtraCAEnv = "AGENTKEYS_TLS_EXTRA_CA"

// New returns the stand-in provider.
func New() *standin.Provider {
	return standin.New("tls", Version, nil, map[string]standin.Invoke{
		"tls:index/getCertificate:getCertificate": getCertificate,
	})
}

func roots() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if f := os.Getenv(ExtraCAEnv); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ExtraCAEnv, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", ExtraCAEnv, f)
		}
	}
	return pool, nil
}

func getCertificate(ctx context.Context, args standin.Props) (standin.Props, error) {
	verify := standin.Bool(args, "verifyChain")
	var chain []*x509.Certificate
	switch {
	case standin.Has(args, "url") && standin.Has(args, "content"):
		return nil, errors.New(`only one of "url" or "content" can be set`)
	case standin.Has(args, "content"):
		rest := []byte(standin.Str(args, "content"))
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("failed to parse certificate: %w", err)
			}
			chain = append(chain, c)
		}
		if len(chain) == 0 {
			return nil, errors.New("content holds no PEM certificate")
		}
	case standin.Has(args, "url"):
		u, err := url.Parse(standin.Str(args, "url"))
		if err != nil {
			return nil, fmt.Errorf("failed to parse url: %w", err)
		}
		if u.Scheme != "https" && u.Scheme != "tls" {
			return nil, fmt.Errorf("invalid scheme %q: only https and tls are supported", u.Scheme)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
		cfg := &tls.Config{ServerName: u.Hostname(), InsecureSkipVerify: !verify}
		if verify {
			if cfg.RootCAs, err = roots(); err != nil {
				return nil, err
			}
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return nil, fmt.Errorf("unable to make a TLS connection to %s: %w", host, err)
		}
		chain = conn.(*tls.Conn).ConnectionState().PeerCertificates
		conn.Close()
	default:
		return nil, errors.New(`one of "url" or "content" must be set`)
	}
	var certs []standin.Props
	// Root of the chain first.
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		certs = append(certs, standin.M(map[string]any{
			"certPem":            strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))) + "\n",
			"isCa":               c.IsCA,
			"issuer":             c.Issuer.String(),
			"subject":            c.Subject.String(),
			"maxPathLength":      c.MaxPathLen,
			"notBefore":          c.NotBefore.UTC().Format(time.RFC3339),
			"notAfter":           c.NotAfter.UTC().Format(time.RFC3339),
			"publicKeyAlgorithm": c.PublicKeyAlgorithm.String(),
			"serialNumber":       c.SerialNumber.String(),
			"sha1Fingerprint":    fmt.Sprintf("%x", sha1.Sum(c.Raw)),
			"signatureAlgorithm": c.SignatureAlgorithm.String(),
			"version":            c.Version,
		}))
	}
	out := standin.M(map[string]any{"certificates": certs, "verifyChain": verify})
	out["id"] = standin.V(fmt.Sprintf("%x", sha1.Sum([]byte(standin.Str(args, "url")+standin.Str(args, "content")))))
	for _, k := range []string{"url", "content"} {
		if standin.Has(args, k) {
			out[resource.PropertyKey(k)] = args[resource.PropertyKey(k)]
		}
	}
	return out, nil
}
