// Package verify checks a deployed stack from the outside, as the spec's
// §5b verify steps, wait-stack-healthy.sh and verify-workers.sh do: every A
// record (DoH) against the stack's EIP, TLS and its chain on every hostname,
// each service's health path with the body the real service returns, the
// broker's /readyz tier by tier, OIDC discovery and JWKS, and the IAM OIDC
// provider.
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

	"github.com/agentkeys/agentkeys-infra/contract"
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
	// EIP is the stack's Elastic IP every A record must equal, and where
	// TLS connections go; EIPSource says where it was read. "" fails the
	// eip check (EIPErr says why) and compares the A records to the broker's.
	EIP       string
	EIPSource string
	EIPErr    error
	// Connect overrides where a hostname's TLS connections go (host ->
	// host:port; key "*" for every host). Without it a host is dialled at
	// the EIP (else its DoH answer) on port 443, never through the local
	// resolver.
	Connect map[string]string
	RootCAs *x509.CertPool // nil: system roots
	IAM     IAMAPI         // nil: the IAM check fails with IAMErr
	IAMErr  error          // why IAM is unavailable
	Timeout time.Duration  // per network operation; 0 means 10s
}

// Status of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but needs attention (a degraded tier, a renewal that is late)
	Fail Status = "fail"
)

// Check is one row of the report. Fix says what to do when it is not ok.
type Check struct {
	Check  string `json:"check"`
	Target string `json:"target"`
	Status Status `json:"status"`
	OK     bool   `json:"ok"` // Status != fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func row(check, target string) Check { return Check{Check: check, Target: target} }

func (c *Check) set(s Status, detail, fix string) {
	c.Status, c.OK, c.Detail = s, s != Fail, detail
	if s != OK {
		c.Fix = fix
	}
}

// Report is the result of one or more verify passes.
type Report struct {
	Stack    string        `json:"stack"`
	EIP      string        `json:"eip"`
	Checks   []Check       `json:"checks"`
	Attempts int           `json:"attempts"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// OK reports whether no check failed (warnings do not fail a stack).
func (r Report) OK() bool { return len(r.Checks) > 0 && r.Failed() == 0 }

func (r Report) count(s Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Failed counts failing checks.
func (r Report) Failed() int { return r.count(Fail) }

// Warned counts warnings.
func (r Report) Warned() int { return r.count(Warn) }

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

// site is one TLS hostname and the service behind it (contract.Service.Host).
type site struct {
	host string
	svc  contract.Service
}

func sites(n naming.Names) []site {
	byLabel := map[string]string{"broker": n.BrokerHost, "signer": n.SignerHost}
	for w, h := range n.WorkerHosts {
		byLabel[w] = h
	}
	var out []site
	for _, s := range contract.Catalog(n.Stack.Chain) {
		if h := byLabel[s.Host]; s.Host != "" && h != "" {
			out = append(out, site{host: h, svc: s})
		}
	}
	return out
}

// Run makes one pass over every check.
func Run(ctx context.Context, o Options) Report {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	n := o.Names
	st := n.Stack.Name
	rep := Report{Stack: st, EIP: o.EIP}

	eip := row("eip", n.EIPTag)
	if o.EIP != "" {
		eip.set(OK, o.EIP+" ("+o.EIPSource+")", "")
	} else {
		why := "unknown"
		if o.EIPErr != nil {
			why = o.EIPErr.Error()
		}
		eip.set(Fail, why, fmt.Sprintf("`pulumi up --stack %s` (the program adopts or allocates it), or pass --eip", st))
	}
	rep.Checks = append(rep.Checks, eip)

	// DNS: every A record must be exactly the EIP.
	addrs := map[string][]string{}
	dnsErr := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
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
	want := []string{o.EIP}
	wantWhat := "the stack's EIP"
	if o.EIP == "" {
		want, wantWhat = addrs[n.BrokerHost], "the broker's (EIP unknown)"
	}
	dnsFix := fmt.Sprintf("`pulumi up --stack %s` rewrites the nine A records to the EIP; propagation takes up to the TTL (300 s)", st)
	for _, h := range n.Hostnames() {
		c := row("dns", h)
		got := strings.Join(addrs[h], ",")
		switch {
		case dnsErr[h] != nil:
			c.set(Fail, fmt.Sprintf("%s: %v (no fallback to the local resolver: a VPN may rewrite the zone)", o.Resolver, dnsErr[h]),
				"check the resolver (--doh-url, --resolver udp://host:port) and the network; "+dnsFix)
		case len(want) == 0 || want[0] == "":
			c.set(Fail, "A "+got+"; nothing to compare with", dnsFix)
		case !slices.Equal(addrs[h], want):
			c.set(Fail, fmt.Sprintf("A %s, want %s = %s", got, wantWhat, strings.Join(want, ",")), dnsFix)
		default:
			c.set(OK, "A "+got+" = "+wantWhat, "")
		}
		rep.Checks = append(rep.Checks, c)
	}

	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		target := ""
		if t, ok := o.Connect[host]; ok {
			target = t
		} else if t, ok := o.Connect["*"]; ok {
			target = t
		} else if o.EIP != "" {
			target = net.JoinHostPort(o.EIP, port)
		} else if a := addrs[host]; len(a) > 0 {
			target = net.JoinHostPort(a[0], port)
		} else {
			// Never the local resolver: it is what the DoH lookup avoids.
			return nil, fmt.Errorf("no address for %s: the EIP is unknown and DoH gave none", host)
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

	// TLS and the health path on every TLS hostname; /readyz, discovery and
	// the IAM provider alongside.
	ss := sites(n)
	tlsRows := make([]Check, len(ss))
	healthRows := make([]Check, len(ss))
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tlsRows[i] = checkTLS(ctx, dial, tlsConf, s.host, o.Timeout, st)
			healthRows[i] = checkHealth(ctx, client, s, st)
		}()
	}
	var ready, oidc []Check
	var prov Check
	wg.Add(3)
	go func() { defer wg.Done(); ready = checkReady(ctx, client, n) }()
	go func() { defer wg.Done(); oidc = checkOIDC(ctx, client, n) }()
	go func() { defer wg.Done(); prov = checkProvider(ctx, o, n) }()
	wg.Wait()
	rep.Checks = append(rep.Checks, tlsRows...)
	rep.Checks = append(rep.Checks, healthRows...)
	rep.Checks = append(rep.Checks, ready...)
	rep.Checks = append(rep.Checks, oidc...)
	rep.Checks = append(rep.Checks, prov)
	return rep
}

// Days below which a certificate fails outright.
const failDays = 7

func checkTLS(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), conf *tls.Config, host string, timeout time.Duration, stack string) Check {
	c := row("tls", host)
	reissue := fmt.Sprintf("the agent issues a certificate once the A record points at the host: `pulumi config set agentkeys:redeploy \"$(date +%%s)\" --stack %s && pulumi up --stack %s`", stack, stack)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := dial(ctx, "tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		c.set(Fail, err.Error(), "is the instance running and port 443 open in its security group? `agentkeys fleet --stack "+stack+"`")
		return c
	}
	defer raw.Close()
	cfg := conf.Clone()
	cfg.ServerName = host
	tc := tls.Client(raw, cfg)
	// The handshake verifies the chain against the roots and the name.
	if err := tc.HandshakeContext(ctx); err != nil {
		c.set(Fail, err.Error(), reissue)
		return c
	}
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	var chain []string
	if len(cs.VerifiedChains) > 0 {
		for _, x := range cs.VerifiedChains[0] {
			chain = append(chain, x.Subject.CommonName)
		}
	}
	left := time.Until(leaf.NotAfter)
	days := int(left.Hours() / 24)
	detail := fmt.Sprintf("%d days left (until %s); chain %s", days, leaf.NotAfter.UTC().Format("2006-01-02"), strings.Join(chain, " <- "))
	renew := "renewal is failing: `agentkeys ssh " + stack + " -- sudo agentkeys-hostagent renew` shows why"
	// The agent renews with a third of the lifetime left, daily; two days
	// past that point a renewal has failed.
	due := leaf.NotAfter.Sub(leaf.NotBefore)/3 - 48*time.Hour
	switch {
	case days < failDays:
		c.set(Fail, detail+fmt.Sprintf(" (under %d days)", failDays), renew)
	case left < due:
		c.set(Warn, detail+" (renewal overdue)", renew)
	default:
		c.set(OK, detail, "")
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

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// checkHealth asks the site's health path for the body its service returns
// (contract.Health: exactly "ok", or a JSON object with "ok": true).
func checkHealth(ctx context.Context, client *http.Client, s site, stack string) Check {
	c := row("health", "https://"+s.host+s.svc.Health.Path)
	fix := fmt.Sprintf("`agentkeys ssh %s -- sudo systemctl status %s` and `-- sudo journalctl -u %s -n 50`", stack, s.svc.Unit, s.svc.Unit)
	code, body, err := get(ctx, client, c.Target)
	switch {
	case err != nil:
		c.set(Fail, err.Error(), fix)
		return c
	case code != http.StatusOK:
		c.set(Fail, fmt.Sprintf("HTTP %d, body %s (want 200 from %s)", code, clip(body), s.svc.Unit), fix)
		return c
	}
	if s.svc.Health.JSON {
		var v struct {
			OK *bool `json:"ok"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.OK == nil || !*v.OK {
			c.set(Fail, fmt.Sprintf("HTTP 200, body %s: want a JSON object with \"ok\": true (%s)", clip(body), s.svc.Package), fix)
			return c
		}
		c.set(OK, "HTTP 200 {\"ok\":true,...} ("+s.svc.Name+")", "")
		return c
	}
	if string(body) != "ok" {
		c.set(Fail, fmt.Sprintf("HTTP 200, body %s: want exactly \"ok\" (%s)", clip(body), s.svc.Package), fix)
		return c
	}
	c.set(OK, "HTTP 200 \"ok\" ("+s.svc.Name+")", "")
	return c
}

// readyz is the broker's /readyz document (broker_status.rs readyz, cited in
// contract/refs.go as brokerStatus): any unready tier makes it 503, a
// degraded one 200 with status "degraded".
type readyz struct {
	Status   string `json:"status"`
	Degraded bool   `json:"degraded"`
	Checks   []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Reason string `json:"reason"`
		Detail string `json:"detail"`
		Docs   string `json:"docs"`
	} `json:"checks"`
	Ready []string `json:"ready"`
}

// checkReady reports the broker's readiness tiers one by one: ready ok, a
// degraded tier a warning, an unready one a failure.
func checkReady(ctx context.Context, client *http.Client, n naming.Names) []Check {
	var broker contract.Service
	for _, s := range contract.Catalog(n.Stack.Chain) {
		if s.Name == "broker" {
			broker = s
		}
	}
	path := broker.Ready
	if path == "" {
		return nil
	}
	st := n.Stack.Name
	sum := row("readyz", n.Issuer+path)
	code, body, err := get(ctx, client, sum.Target)
	logs := fmt.Sprintf("`agentkeys ssh %s -- sudo journalctl -u %s -n 50`", st, broker.Unit)
	if err != nil {
		sum.set(Fail, err.Error(), logs)
		return []Check{sum}
	}
	var r readyz
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		sum.set(Fail, fmt.Sprintf("HTTP %d, body %s: not the broker's readiness document", code, clip(body)), logs)
		return []Check{sum}
	}
	out := []Check{sum}
	unready := 0
	for _, name := range r.Ready {
		c := row("ready", name)
		c.set(OK, "ready", "")
		out = append(out, c)
	}
	for _, t := range r.Checks {
		c := row("ready", t.Name)
		why := t.Reason
		if why == "" {
			why = t.Detail
		}
		fix := t.Docs
		if strings.HasPrefix(t.Name, "tier2/ses") || t.Name == "auth/email_link" {
			// The probe is sesv2 GetEmailIdentity on the exact FROM address
			// with the instance profile (brokerEmail).
			fix = fmt.Sprintf("SES sender %s must be verified and the host role must allow ses:GetEmailIdentity on it: `agentkeys audit --stack %s`; %s", n.Sender, st, t.Docs)
		}
		switch t.Status {
		case "degraded":
			c.set(Warn, "degraded: "+why, fix)
		case "unready":
			unready++
			c.set(Fail, "unready: "+why, fix)
		default:
			c.set(Fail, fmt.Sprintf("status %q: %s", t.Status, why), fix)
		}
		out = append(out, c)
	}
	wantCode := http.StatusOK
	if unready > 0 {
		wantCode = http.StatusServiceUnavailable
	}
	switch {
	case code != wantCode:
		sum.set(Fail, fmt.Sprintf("HTTP %d with status %q and %d unready tier(s): the broker answers %d for that", code, r.Status, unready, wantCode), logs)
	case len(r.Ready)+len(r.Checks) == 0:
		sum.set(Fail, fmt.Sprintf("HTTP %d, no tiers reported", code), logs)
	default:
		sum.set(OK, fmt.Sprintf("HTTP %d, status %s (%d ready, %d not)", code, r.Status, len(r.Ready), len(r.Checks)), "")
	}
	out[0] = sum
	return out
}

func checkOIDC(ctx context.Context, client *http.Client, n naming.Names) []Check {
	st := n.Stack.Name
	disc := row("oidc-discovery", n.Issuer+"/.well-known/openid-configuration")
	jwks := row("oidc-jwks", "(jwks_uri)")
	brokerFix := fmt.Sprintf("`agentkeys ssh %s -- sudo journalctl -u agentkeys-broker.service -n 50`", st)
	code, body, err := get(ctx, client, disc.Target)
	if err != nil || code != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("HTTP %d, want 200", code)
		}
		disc.set(Fail, err.Error(), brokerFix)
		jwks.set(Fail, "skipped: no discovery document", brokerFix)
		return []Check{disc, jwks}
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		disc.set(Fail, "not JSON: "+err.Error(), brokerFix)
		jwks.set(Fail, "skipped: no discovery document", brokerFix)
		return []Check{disc, jwks}
	}
	// STS compares the issuer byte for byte (a trailing slash breaks federation).
	if doc.Issuer != n.Issuer {
		disc.set(Fail, fmt.Sprintf("issuer %q, want %q byte for byte", doc.Issuer, n.Issuer),
			fmt.Sprintf("BROKER_OIDC_ISSUER in /etc/agentkeys/broker.env must be %s: `pulumi up --stack %s` rewrites it", n.Issuer, st))
	} else {
		disc.set(OK, "issuer "+doc.Issuer, "")
	}
	if doc.JWKSURI == "" {
		jwks.set(Fail, "discovery has no jwks_uri", brokerFix)
		return []Check{disc, jwks}
	}
	jwks.Target = doc.JWKSURI
	code, body, err = get(ctx, client, doc.JWKSURI)
	if err != nil || code != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("HTTP %d, want 200", code)
		}
		jwks.set(Fail, err.Error(), brokerFix)
		return []Check{disc, jwks}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		jwks.set(Fail, "not a JWKS: "+err.Error(), brokerFix)
		return []Check{disc, jwks}
	}
	es256 := 0
	for _, k := range set.Keys {
		if !k.IsPublic() {
			jwks.set(Fail, fmt.Sprintf("key %q is PRIVATE: the JWKS leaks the signing key", k.KeyID), "rotate the OIDC keypair at once and re-register the IAM provider")
			return []Check{disc, jwks}
		}
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if ok && pub.Curve == elliptic.P256() && (k.Algorithm == "" || k.Algorithm == string(jose.ES256)) {
			es256++
		}
	}
	if es256 == 0 {
		jwks.set(Fail, fmt.Sprintf("%d keys, none ES256 (EC P-256)", len(set.Keys)), brokerFix)
	} else {
		jwks.set(OK, fmt.Sprintf("%d ES256 key(s) of %d", es256, len(set.Keys)), "")
	}
	return []Check{disc, jwks}
}

func checkProvider(ctx context.Context, o Options, n naming.Names) Check {
	c := row("iam-oidc-provider", n.OIDCProviderARN)
	fix := fmt.Sprintf("`pulumi up --stack %s` declares it once the broker serves discovery over TLS", n.Stack.Name)
	if o.IAM == nil {
		c.set(Fail, fmt.Sprintf("no AWS access: %v", o.IAMErr), "set AWS_PROFILE (e.g. agentkeys-admin) and re-run")
		return c
	}
	out, err := o.IAM.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(n.OIDCProviderARN)})
	if err != nil {
		c.set(Fail, err.Error(), fix)
		return c
	}
	url := strings.TrimPrefix(aws.ToString(out.Url), "https://")
	switch {
	case url != n.BrokerHost:
		c.set(Fail, fmt.Sprintf("url %q, want %q", url, n.BrokerHost), fix)
	case !slices.Contains(out.ClientIDList, naming.OIDCAudience):
		c.set(Fail, fmt.Sprintf("client ids %v lack %s", out.ClientIDList, naming.OIDCAudience),
			fmt.Sprintf("aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn %s --client-id %s", n.OIDCProviderARN, naming.OIDCAudience))
	default:
		c.set(OK, "url "+url+", client id "+naming.OIDCAudience, "")
	}
	return c
}
