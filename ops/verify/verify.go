// Package verify checks a deployed stack from the outside, as the spec's
// §5b verify steps and wait-stack-healthy.sh do: DNS, TLS, /healthz, OIDC
// discovery and the IAM OIDC provider.
package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// IAMAPI is the single IAM call verify makes.
type IAMAPI interface {
	GetOpenIDConnectProvider(context.Context, *iam.GetOpenIDConnectProviderInput, ...func(*iam.Options)) (*iam.GetOpenIDConnectProviderOutput, error)
}

// Options says what to verify and how to reach it.
type Options struct {
	Names    naming.Names
	Resolver Resolver
	// Connect overrides where a hostname's TLS connections go (host ->
	// host:port; key "*" for every host). Without it a host is dialled at
	// the address the resolver returned, on port 443.
	Connect map[string]string
	RootCAs *x509.CertPool // nil: system roots
	IAM     IAMAPI         // nil: the IAM check fails with IAMErr
	IAMErr  error          // why IAM is unavailable
	Timeout time.Duration  // per network operation; 0 means 10s
}

// Check is one row of the report.
type Check struct {
	Check  string `json:"check"`
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is the result of one or more verify passes.
type Report struct {
	Stack    string        `json:"stack"`
	Checks   []Check       `json:"checks"`
	Attempts int           `json:"attempts"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	if len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// Failed counts failing checks.
func (r Report) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if !c.OK {
			n++
		}
	}
	return n
}

// Wait runs passes until all checks pass or wait has elapsed (one pass when
// wait is 0), sleeping interval between passes, and returns the last pass.
func Wait(ctx context.Context, o Options, wait, interval time.Duration) Report {
	start := time.Now()
	deadline := start.Add(wait)
	if interval <= 0 {
		interval = 5 * time.Second
	}
	attempts := 0
	for {
		attempts++
		r := Run(ctx, o)
		r.Attempts = attempts
		r.Elapsed = time.Since(start)
		if r.OK() || wait <= 0 || time.Now().Add(interval).After(deadline) || ctx.Err() != nil {
			return r
		}
		select {
		case <-ctx.Done():
			return r
		case <-time.After(interval):
		}
	}
}

// Run makes one pass over every check.
func Run(ctx context.Context, o Options) Report {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	n := o.Names
	rep := Report{Stack: n.Stack.Name}

	// DNS: every other hostname's A set must equal the broker's.
	addrs := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	dnsErr := map[string]error{}
	for _, h := range n.Hostnames() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			a, err := o.Resolver.LookupA(c, h)
			mu.Lock()
			addrs[h], dnsErr[h] = a, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	broker := addrs[n.BrokerHost]
	for _, h := range n.Hostnames() {
		c := Check{Check: "dns", Target: h}
		switch {
		case dnsErr[h] != nil:
			c.Detail = fmt.Sprintf("%s: %v", o.Resolver, dnsErr[h])
		case h == n.BrokerHost:
			c.OK, c.Detail = true, "A "+strings.Join(broker, ",")
		case len(broker) == 0:
			c.Detail = "A " + strings.Join(addrs[h], ",") + "; broker has no A record to compare with"
		case !slices.Equal(addrs[h], broker):
			c.Detail = fmt.Sprintf("A %s, broker %s: point it at the broker EIP", strings.Join(addrs[h], ","), strings.Join(broker, ","))
		default:
			c.OK, c.Detail = true, "A "+strings.Join(addrs[h], ",")+" = broker"
		}
		rep.Checks = append(rep.Checks, c)
	}

	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		target := addr
		if t, ok := o.Connect[host]; ok {
			target = t
		} else if t, ok := o.Connect["*"]; ok {
			target = t
		} else if a := addrs[host]; len(a) > 0 {
			target = net.JoinHostPort(a[0], port)
		}
		d := net.Dialer{Timeout: o.Timeout}
		return d.DialContext(ctx, network, target)
	}
	tlsConf := &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	client := &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: true,
		},
		// A redirect away from the path under test is a failure, not a pass.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	// TLS and /healthz on every TLS hostname, concurrently.
	hosts := n.TLSHostnames()
	tlsRows := make([]Check, len(hosts))
	healthRows := make([]Check, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tlsRows[i] = checkTLS(ctx, dial, tlsConf, h, o.Timeout)
			healthRows[i] = checkHealth(ctx, client, h)
		}()
	}
	wg.Wait()
	rep.Checks = append(rep.Checks, tlsRows...)
	rep.Checks = append(rep.Checks, healthRows...)
	rep.Checks = append(rep.Checks, checkOIDC(ctx, client, n)...)
	rep.Checks = append(rep.Checks, checkProvider(ctx, o, n))
	return rep
}

func checkTLS(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), conf *tls.Config, host string, timeout time.Duration) Check {
	c := Check{Check: "tls", Target: host}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := dial(ctx, "tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	defer raw.Close()
	cfg := conf.Clone()
	cfg.ServerName = host
	tc := tls.Client(raw, cfg)
	// The handshake verifies the chain against the roots and the name.
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Detail = err.Error()
		return c
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	c.OK = true
	c.Detail = fmt.Sprintf("issuer %q, expires %s", leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format("2006-01-02"))
	if left := time.Until(leaf.NotAfter); left < 7*24*time.Hour {
		c.OK = false
		c.Detail += fmt.Sprintf(" (less than 7 days left: renewal is failing)")
	}
	return c
}

func get(ctx context.Context, client *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

func checkHealth(ctx context.Context, client *http.Client, host string) Check {
	c := Check{Check: "healthz", Target: "https://" + host + "/healthz"}
	code, _, err := get(ctx, client, c.Target)
	switch {
	case err != nil:
		c.Detail = err.Error()
	case code != http.StatusOK:
		c.Detail = fmt.Sprintf("HTTP %d, want 200", code)
	default:
		c.OK, c.Detail = true, "HTTP 200"
	}
	return c
}

func checkOIDC(ctx context.Context, client *http.Client, n naming.Names) []Check {
	disc := Check{Check: "oidc-discovery", Target: n.Issuer + "/.well-known/openid-configuration"}
	jwks := Check{Check: "oidc-jwks", Target: "(jwks_uri)"}
	code, body, err := get(ctx, client, disc.Target)
	if err != nil || code != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("HTTP %d, want 200", code)
		}
		disc.Detail = err.Error()
		jwks.Detail = "skipped: no discovery document"
		return []Check{disc, jwks}
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		disc.Detail = "not JSON: " + err.Error()
		jwks.Detail = "skipped: no discovery document"
		return []Check{disc, jwks}
	}
	// STS compares the issuer byte for byte (a trailing slash breaks federation).
	if doc.Issuer != n.Issuer {
		disc.Detail = fmt.Sprintf("issuer %q, want %q byte for byte", doc.Issuer, n.Issuer)
	} else {
		disc.OK, disc.Detail = true, "issuer "+doc.Issuer
	}
	if doc.JWKSURI == "" {
		jwks.Detail = "discovery has no jwks_uri"
		return []Check{disc, jwks}
	}
	jwks.Target = doc.JWKSURI
	code, body, err = get(ctx, client, doc.JWKSURI)
	if err != nil || code != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("HTTP %d, want 200", code)
		}
		jwks.Detail = err.Error()
		return []Check{disc, jwks}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		jwks.Detail = "not a JWKS: " + err.Error()
		return []Check{disc, jwks}
	}
	es256 := 0
	for _, k := range set.Keys {
		if !k.IsPublic() {
			jwks.Detail = fmt.Sprintf("key %q is PRIVATE: the JWKS leaks the signing key; rotate it", k.KeyID)
			return []Check{disc, jwks}
		}
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if ok && pub.Curve == elliptic.P256() && (k.Algorithm == "" || k.Algorithm == string(jose.ES256)) {
			es256++
		}
	}
	if es256 == 0 {
		jwks.Detail = fmt.Sprintf("%d keys, none ES256 (EC P-256)", len(set.Keys))
	} else {
		jwks.OK, jwks.Detail = true, fmt.Sprintf("%d ES256 key(s) of %d", es256, len(set.Keys))
	}
	return []Check{disc, jwks}
}

func checkProvider(ctx context.Context, o Options, n naming.Names) Check {
	c := Check{Check: "iam-oidc-provider", Target: n.OIDCProviderARN}
	if o.IAM == nil {
		c.Detail = fmt.Sprintf("no AWS access: %v", o.IAMErr)
		return c
	}
	out, err := o.IAM.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(n.OIDCProviderARN)})
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	url := strings.TrimPrefix(aws.ToString(out.Url), "https://")
	switch {
	case url != n.BrokerHost:
		c.Detail = fmt.Sprintf("url %q, want %q", url, n.BrokerHost)
	case !slices.Contains(out.ClientIDList, naming.OIDCAudience):
		c.Detail = fmt.Sprintf("client ids %v lack %s", out.ClientIDList, naming.OIDCAudience)
	default:
		c.OK, c.Detail = true, "url "+url+", client id "+naming.OIDCAudience
	}
	return c
}
