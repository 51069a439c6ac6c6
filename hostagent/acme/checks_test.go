package acme

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer answers A/AAAA from the given maps over real DNS on loopback.
func dnsServer(t *testing.T, a, aaaa map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.TrimSuffix(q.Name, ".")
		_, hasA := a[name]
		_, hasAAAA := aaaa[name]
		if !hasA && !hasAAAA {
			m.Rcode = dns.RcodeNameError
		}
		src := a
		if q.Qtype == dns.TypeAAAA {
			src = aaaa
		}
		for _, ip := range src[name] {
			rr, _ := dns.NewRR(q.Name + " 60 IN " + dns.TypeToString[q.Qtype] + " " + ip)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestCheckDNS(t *testing.T) {
	addr := dnsServer(t,
		map[string][]string{"ok.example.org": {"203.0.113.5"}, "other.example.org": {"198.51.100.7"}, "v6.example.org": {"203.0.113.5"}, "two.example.org": {"203.0.113.5", "198.51.100.7"}},
		map[string][]string{"v6.example.org": {"2001:db8::1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct{ host, want string }{
		{"ok.example.org", ""},
		{"other.example.org", "resolves to 198.51.100.7"},
		{"two.example.org", "198.51.100.7"},
		{"v6.example.org", "AAAA record 2001:db8::1"},
		{"missing.example.org", "has no A record"},
	} {
		got, err := checkDNS(ctx, addr, c.host, "203.0.113.5")
		if err != nil {
			t.Fatal(err)
		}
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: reason %q, want %q", c.host, got, c.want)
		}
		if got != "" && !strings.Contains(got, "203.0.113.5") && !strings.Contains(got, "AAAA") {
			t.Errorf("%s: reason %q does not say which address is expected", c.host, got)
		}
	}
	if got, _ := checkDNS(ctx, "127.0.0.1:1", "ok.example.org", "203.0.113.5"); !strings.Contains(got, "failed") {
		t.Errorf("unreachable resolver: reason %q", got)
	}
}

func TestDueAtOneThirdLeft(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := certInfo{NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)}
	if c.due(nb.Add(59 * 24 * time.Hour)) {
		t.Error("due with 31 of 90 days left")
	}
	if !c.due(nb.Add(61 * 24 * time.Hour)) {
		t.Error("not due with 29 of 90 days left")
	}
}
