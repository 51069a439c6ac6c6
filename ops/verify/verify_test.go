package verify

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/miekg/dns"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
	os.Exit(code)
}

const eip = "203.0.113.7"

func testNames(t testing.TB) naming.Names {
	s, err := naming.ParseStack("test-2")
	if err != nil {
		t.Fatal(err)
	}
	return naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: "example.test"})
}

// seedProvider registers the stack's OIDC provider in moto.
func seedProvider(t testing.TB, n naming.Names, clientID string) *iam.Client {
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

func opts(n naming.Names, st *stacktest.Stack, doh string, c *iam.Client) Options {
	return Options{
		Names: n, Resolver: DoH{URL: doh}, EIP: eip, EIPSource: "test",
		Connect: map[string]string{"*": st.Addr}, RootCAs: st.CAPool, IAM: c,
	}
}

func count(r Report, check string) int {
	n := 0
	for _, c := range r.Checks {
		if c.Check == check {
			n++
		}
	}
	return n
}

func TestHealthyStackPassesEveryCheck(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Options{})
	c := seedProvider(t, n, naming.OIDCAudience)
	r := Run(context.Background(), opts(n, st, stacktest.DoH(t, stacktest.Records(n, eip)), c))
	for _, c := range r.Checks {
		if c.Status != OK {
			t.Errorf("%s %s: %s %s (fix: %s)", c.Check, c.Target, c.Status, c.Detail, c.Fix)
		}
	}
	// Every hostname's A record, TLS and health path, every readiness tier
	// the real broker reports with email_link on, discovery, JWKS, IAM.
	for check, want := range map[string]int{"eip": 1, "dns": 9, "tls": 8, "health": 8, "readyz": 1, "ready": 5, "oidc-discovery": 1, "oidc-jwks": 1, "iam-oidc-provider": 1} {
		if got := count(r, check); got != want {
			t.Errorf("%d %s rows, want %d", got, check, want)
		}
	}
	m := byKey(r)
	for _, tier := range []string{"auth/wallet_sig", "auth/email_link", "wallet/client_keystore", "audit/sqlite", "tier2/ses"} {
		if _, ok := m["ready "+tier]; !ok {
			t.Errorf("no row for tier %s", tier)
		}
	}
	if d := m["tls "+n.BrokerHost].Detail; !strings.Contains(d, "days left") || !strings.Contains(d, n.BrokerHost+" <- agentkeys test R1 <- agentkeys test root") {
		t.Errorf("tls detail %q: want days left and the chain", d)
	}
	if d := m["health https://"+n.WorkerHosts["memory"]+"/healthz"].Detail; !strings.Contains(d, `"ok":true`) {
		t.Errorf("memory health %q: want the JSON body", d)
	}
	if !r.OK() || r.Warned() != 0 {
		t.Fatalf("healthy stack: ok=%v warnings=%d", r.OK(), r.Warned())
	}
}

func TestBrokenStackReportsEachFault(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Options{
		SES:      "fail",
		Issuer:   n.Issuer + "/", // not stripped by the broker: iss and jwks_uri break
		CertFor:  map[string]string{n.WorkerHosts["cred"]: "other.example.test"},
		CertDays: map[string]int{n.BrokerHost: 20, n.WorkerHosts["email"]: 3},
		Misroute: map[string]string{n.WorkerHosts["config"]: "audit"}, // a JSON worker's site serving plain "ok"
	})
	st.Stop("signer")
	c := seedProvider(t, n, "not-sts")
	recs := stacktest.Records(n, eip)
	recs[n.WorkerHosts["audit"]] = "198.51.100.9" // the spec's prod/test EIP mix-up
	delete(recs, n.MCPHost)
	r := Run(context.Background(), opts(n, st, stacktest.DoH(t, recs), c))
	m := byKey(r)
	type want struct {
		status Status
		sub    string
		fix    string
	}
	wants := map[string]want{
		"dns " + n.WorkerHosts["audit"]:                                    {Fail, "198.51.100.9, want the stack's EIP = " + eip, "pulumi up --stack test-2"},
		"dns " + n.MCPHost:                                                 {Fail, "NXDOMAIN (no fallback to the local resolver", "pulumi up --stack test-2"},
		"tls " + n.WorkerHosts["cred"]:                                     {Fail, "certificate is valid for other.example.test", "agentkeys:redeploy"},
		"tls " + n.BrokerHost:                                              {Warn, "renewal overdue", "hostagent renew"},
		"tls " + n.WorkerHosts["email"]:                                    {Fail, "under 7 days", "hostagent renew"},
		"health https://" + n.SignerHost + "/healthz":                      {Fail, "HTTP 502", "systemctl status agentkeys-signer.service"},
		"health https://" + n.WorkerHosts["cred"] + "/healthz":             {Fail, "valid for other.example.test", "agentkeys-worker-creds.service"},
		"health https://" + n.WorkerHosts["config"] + "/healthz":           {Fail, `body "ok": want a JSON object`, "agentkeys-worker-config.service"},
		"ready tier2/ses":                                                  {Fail, "unready: SES sender identity not yet verified", "ses:GetEmailIdentity"},
		"ready auth/email_link":                                            {Warn, "degraded: email_link: SES verification cache absent", n.Sender},
		"oidc-discovery " + n.Issuer + "/.well-known/openid-configuration": {Fail, "byte for byte", "BROKER_OIDC_ISSUER"},
		"oidc-jwks " + n.Issuer + "//.well-known/jwks.json":                {Fail, "HTTP 404", "journalctl"},
		"iam-oidc-provider " + n.OIDCProviderARN:                           {Fail, "lack sts.amazonaws.com", "add-client-id-to-open-id-connect-provider"},
	}
	for k, w := range wants {
		c, ok := m[k]
		if !ok {
			t.Errorf("no check %q", k)
			continue
		}
		if c.Status != w.status || !strings.Contains(c.Detail, w.sub) || !strings.Contains(c.Fix, w.fix) {
			t.Errorf("%s: %s %q fix %q; want %s mentioning %q, fix mentioning %q", k, c.Status, c.Detail, c.Fix, w.status, w.sub, w.fix)
		}
	}
	for _, c := range r.Checks {
		if _, ok := wants[c.Check+" "+c.Target]; !ok && c.Status != OK {
			t.Errorf("unexpected %s: %s %s: %s", c.Status, c.Check, c.Target, c.Detail)
		}
	}
	// The 503 agrees with the unready tier: the summary row stays green.
	if c := m["readyz "+n.Issuer+"/readyz"]; c.Status != OK || !strings.Contains(c.Detail, "HTTP 503, status unready") {
		t.Errorf("readyz summary: %s %q", c.Status, c.Detail)
	}
}

// A degraded tier is a named warning, not a failure: the stack verifies.
func TestDegradedTierIsAWarning(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Options{})
	st.DropSESCache()
	r := Run(context.Background(), opts(n, st, stacktest.DoH(t, stacktest.Records(n, eip)), seedProvider(t, n, naming.OIDCAudience)))
	m := byKey(r)
	if c := m["ready auth/email_link"]; c.Status != Warn || !strings.Contains(c.Detail, "degraded: email_link: SES verification cache absent") || c.Fix == "" {
		t.Fatalf("auth/email_link: %+v", c)
	}
	if c := m["ready tier2/ses"]; c.Status != OK {
		t.Fatalf("tier2/ses stays ready (verified since boot): %+v", c)
	}
	if !r.OK() || r.Warned() != 1 {
		t.Fatalf("ok=%v warnings=%d, want ok with one warning", r.OK(), r.Warned())
	}
}

// A failing DoH endpoint is an error on every A record, and nothing is
// looked up through the local resolver: TLS goes to the EIP, or nowhere.
func TestDoHFailureIsAnErrorNeverAFallback(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Options{})
	c := seedProvider(t, n, naming.OIDCAudience)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(broken.Close)
	o := opts(n, st, broken.URL+"/resolve", c)
	r := Run(context.Background(), o)
	for _, c := range r.Checks {
		switch c.Check {
		case "dns":
			if c.Status != Fail || !strings.Contains(c.Detail, "HTTP 502") || !strings.Contains(c.Detail, "no fallback to the local resolver") {
				t.Errorf("dns %s: %s %q", c.Target, c.Status, c.Detail)
			}
		case "tls", "health":
			if c.Status != OK {
				t.Errorf("%s %s goes to the EIP/--connect, not DNS: %s %q", c.Check, c.Target, c.Status, c.Detail)
			}
		}
	}
	// Unknown EIP and no DoH answer: no address at all, never the local resolver.
	o.Connect, o.EIP, o.EIPErr = nil, "", errString("no EIP known")
	r = Run(context.Background(), o)
	m := byKey(r)
	if c := m["eip "+n.EIPTag]; c.Status != Fail || !strings.Contains(c.Detail, "no EIP known") || !strings.Contains(c.Fix, "--eip") {
		t.Errorf("eip row: %+v", c)
	}
	if c := m["tls "+n.BrokerHost]; c.Status != Fail || !strings.Contains(c.Detail, "no address for "+n.BrokerHost) {
		t.Errorf("tls without address: %+v", c)
	}
	// A dead DoH server (connection refused) is the same error.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String() + "/resolve"
	l.Close()
	if _, err := (DoH{URL: dead}).LookupA(context.Background(), n.BrokerHost); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("dead DoH: %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestWaitPollsUntilHealthy(t *testing.T) {
	n := testNames(t)
	st := stacktest.Start(t, n, stacktest.Options{})
	o := opts(n, st, stacktest.DoH(t, stacktest.Records(n, eip)), seedProvider(t, n, naming.OIDCAudience))
	st.Stop("classify")
	go func() {
		time.Sleep(300 * time.Millisecond)
		st.Start("classify")
	}()
	r := Wait(context.Background(), o, time.Minute, 100*time.Millisecond)
	if !r.OK() || r.Attempts < 2 {
		t.Fatalf("ok=%v after %d attempts, want ok after the restart", r.OK(), r.Attempts)
	}
	// A stack that never heals stops at the bound with the failing table.
	st.Stop("broker")
	r = Wait(context.Background(), o, 300*time.Millisecond, 50*time.Millisecond)
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
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(eip)})
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
	if err != nil || len(got) != 1 || got[0] != eip {
		t.Fatalf("LookupA = %v, %v", got, err)
	}
	if _, err := res.LookupA(context.Background(), n.SignerHost); err == nil || !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Fatalf("missing name: %v", err)
	}
	if _, err := ParseResolver("tcp://x", ""); err == nil || !strings.Contains(err.Error(), "--resolver") {
		t.Fatalf("bad resolver flag accepted: %v", err)
	}
}

// BenchmarkVerifyHealthyStack times one full pass (EIP, 9 DNS, 8 TLS, 8
// health, /readyz, discovery, JWKS, IAM provider on moto_server) against the
// local host of stand-in services.
func BenchmarkVerifyHealthyStack(b *testing.B) {
	n := testNames(b)
	st := stacktest.Start(b, n, stacktest.Options{})
	o := opts(n, st, stacktest.DoH(b, stacktest.Records(n, eip)), seedProvider(b, n, naming.OIDCAudience))
	b.ResetTimer()
	for b.Loop() {
		if r := Run(context.Background(), o); !r.OK() {
			b.Fatalf("not healthy: %+v", r.Checks)
		}
	}
}
