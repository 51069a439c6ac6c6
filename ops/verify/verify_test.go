package verify

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/miekg/dns"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
)

func testNames(t *testing.T) naming.Names {
	s, err := naming.ParseStack("test-2")
	if err != nil {
		t.Fatal(err)
	}
	return naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: "example.test"})
}

// seedProvider registers the stack's OIDC provider in moto.
func seedProvider(t *testing.T, n naming.Names, clientID string) *iam.Client {
	mototest.Start(t)
	c := iam.NewFromConfig(mototest.Config(t))
	_, err := c.CreateOpenIDConnectProvider(context.Background(), &iam.CreateOpenIDConnectProviderInput{
		Url:            aws.String(n.Issuer),
		ClientIDList:   []string{clientID},
		ThumbprintList: []string{strings.Repeat("a", 40)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func byKey(r Report) map[string]Check {
	m := map[string]Check{}
	for _, c := range r.Checks {
		m[c.Check+" "+c.Target] = c
	}
	return m
}

func TestHealthyStackPassesEveryCheck(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Faults{})
	c := seedProvider(t, n, naming.OIDCAudience)
	o := Options{
		Names:    n,
		Resolver: DoH{URL: stacktest.DoH(t, stacktest.Records(n, "203.0.113.7"))},
		Connect:  map[string]string{"*": st.Addr},
		RootCAs:  st.CAPool,
		IAM:      c,
	}
	r := Run(context.Background(), o)
	for _, c := range r.Checks {
		if !c.OK {
			t.Errorf("%s %s failed: %s", c.Check, c.Target, c.Detail)
		}
	}
	// 9 dns + 8 tls + 8 healthz + discovery + jwks + provider
	if got := len(r.Checks); got != 9+8+8+3 {
		t.Errorf("got %d checks, want 28", got)
	}
	if !r.OK() {
		t.Fatal("healthy stack reported not OK")
	}
}

func TestBrokenStackReportsEachFault(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Faults{
		CertFor:   map[string]string{n.WorkerHosts["cred"]: "other.example.test"},
		Unhealthy: map[string]int{n.SignerHost: 502},
		Issuer:    n.Issuer + "/",
		JWKSAlg:   "RS256",
	})
	c := seedProvider(t, n, "not-sts")
	recs := stacktest.Records(n, "203.0.113.7")
	recs[n.WorkerHosts["audit"]] = "198.51.100.9" // the spec's prod/test EIP mix-up
	delete(recs, n.MCPHost)
	r := Run(context.Background(), Options{
		Names:    n,
		Resolver: DoH{URL: stacktest.DoH(t, recs)},
		Connect:  map[string]string{"*": st.Addr},
		RootCAs:  st.CAPool,
		IAM:      c,
	})
	m := byKey(r)
	want := map[string]string{
		"dns " + n.WorkerHosts["audit"]:                                    "198.51.100.9",
		"dns " + n.MCPHost:                                                 "NXDOMAIN",
		"tls " + n.WorkerHosts["cred"]:                                     "certificate is valid for other.example.test",
		"healthz https://" + n.SignerHost + "/healthz":                     "HTTP 502",
		"healthz https://" + n.WorkerHosts["cred"] + "/healthz":            "valid for other.example.test",
		"oidc-discovery " + n.Issuer + "/.well-known/openid-configuration": "byte for byte",
		"oidc-jwks " + n.Issuer + "/.well-known/jwks.json":                 "none ES256",
		"iam-oidc-provider " + n.OIDCProviderARN:                           "lack sts.amazonaws.com",
	}
	for k, sub := range want {
		c, ok := m[k]
		if !ok {
			t.Errorf("no check %q", k)
			continue
		}
		if c.OK || !strings.Contains(c.Detail, sub) {
			t.Errorf("%s: ok=%v detail %q, want failure mentioning %q", k, c.OK, c.Detail, sub)
		}
	}
	if got := r.Failed(); got != len(want) {
		t.Errorf("%d checks failed, want exactly %d: %+v", got, len(want), r.Checks)
	}
	// The healthy rows stay green: a fault does not smear over other hosts.
	if c := m["tls "+n.BrokerHost]; !c.OK {
		t.Errorf("broker tls failed: %s", c.Detail)
	}
}

func TestMissingProviderAndUntrustedCA(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Faults{})
	mototest.Start(t)
	r := Run(context.Background(), Options{
		Names:    n,
		Resolver: DoH{URL: stacktest.DoH(t, stacktest.Records(n, "203.0.113.7"))},
		Connect:  map[string]string{"*": st.Addr},
		IAM:      iam.NewFromConfig(mototest.Config(t)), // empty account
	})
	m := byKey(r)
	if c := m["iam-oidc-provider "+n.OIDCProviderARN]; c.OK || !strings.Contains(c.Detail, "NoSuchEntity") {
		t.Errorf("missing provider: ok=%v %q", c.OK, c.Detail)
	}
	// System roots do not trust the test CA: every TLS row fails.
	if c := m["tls "+n.BrokerHost]; c.OK || !strings.Contains(c.Detail, "unknown authority") {
		t.Errorf("untrusted CA: ok=%v %q", c.OK, c.Detail)
	}
}

func TestWaitPollsUntilHealthy(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Faults{HealthAfter: 2})
	c := seedProvider(t, n, naming.OIDCAudience)
	o := Options{
		Names:    n,
		Resolver: DoH{URL: stacktest.DoH(t, stacktest.Records(n, "203.0.113.7"))},
		Connect:  map[string]string{"*": st.Addr},
		RootCAs:  st.CAPool,
		IAM:      c,
	}
	r := Wait(context.Background(), o, time.Minute, 10*time.Millisecond)
	if !r.OK() || r.Attempts != 3 {
		t.Fatalf("ok=%v after %d attempts, want ok after 3", r.OK(), r.Attempts)
	}
	// A stack that never heals stops at the bound with the failing table.
	st.SetFaults(stacktest.Faults{Unhealthy: map[string]int{n.BrokerHost: 503}})
	r = Wait(context.Background(), o, 200*time.Millisecond, 10*time.Millisecond)
	if r.OK() || r.Attempts < 2 {
		t.Fatalf("never-healthy stack: ok=%v attempts=%d", r.OK(), r.Attempts)
	}
}

func TestUDPResolver(t *testing.T) {
	n := testNames(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := q.Question[0].Name
		if name == dns.Fqdn(n.BrokerHost) {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("203.0.113.7")})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	res, err := ParseResolver("udp://"+pc.LocalAddr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := res.LookupA(context.Background(), n.BrokerHost)
	if err != nil || len(got) != 1 || got[0] != "203.0.113.7" {
		t.Fatalf("LookupA = %v, %v", got, err)
	}
	if _, err := res.LookupA(context.Background(), n.SignerHost); err == nil || !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Fatalf("missing name: %v", err)
	}
	if _, err := ParseResolver("tcp://x", ""); err == nil || !strings.Contains(err.Error(), "--resolver") {
		t.Fatalf("bad resolver flag accepted: %v", err)
	}
}

// BenchmarkVerifyHealthyStack times one full pass (9 DNS, 8 TLS, 8 healthz,
// discovery, JWKS, IAM provider on moto_server) against the local stand-in.
func BenchmarkVerifyHealthyStack(b *testing.B) {
	s, _ := naming.ParseStack("test-2")
	n := naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: "example.test"})
	st := stacktest.Start(b, n, stacktest.Faults{})
	mototest.Start(b)
	c := iam.NewFromConfig(mototest.Config(b))
	if _, err := c.CreateOpenIDConnectProvider(context.Background(), &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(n.Issuer), ClientIDList: []string{naming.OIDCAudience}, ThumbprintList: []string{strings.Repeat("a", 40)},
	}); err != nil {
		b.Fatal(err)
	}
	o := Options{
		Names:    n,
		Resolver: DoH{URL: stacktest.DoH(b, stacktest.Records(n, "203.0.113.7"))},
		Connect:  map[string]string{"*": st.Addr},
		RootCAs:  st.CAPool,
		IAM:      c,
	}
	b.ResetTimer()
	for b.Loop() {
		if r := Run(context.Background(), o); !r.OK() {
			b.Fatalf("not healthy: %+v", r.Checks)
		}
	}
}
