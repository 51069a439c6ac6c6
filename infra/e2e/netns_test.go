package e2e

import (
	"net"
	"os"
	"sync"
	"testing"

	"github.com/miekg/dns"

	hostagente2e "github.com/agentkeys/agentkeys-infra/hostagent/e2e"
)

// dnsServer answers every A question with one address and nothing else:
// elsewhere (every hostname "points elsewhere") or the host's own address.
type dnsServer struct {
	A       string
	mu      sync.Mutex
	queries []string
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	for _, q := range r.Question {
		d.mu.Lock()
		d.queries = append(d.queries, dns.TypeToString[q.Qtype]+" "+q.Name)
		d.mu.Unlock()
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(d.A)})
		}
	}
	w.WriteMsg(m)
}

func (d *dnsServer) Queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.queries...)
}

// startDNS serves d on addr (UDP and TCP) inside the namespace.
func startDNS(t *testing.T, nsPath, addr string, d *dnsServer) {
	t.Helper()
	var pc net.PacketConn
	var l net.Listener
	err := hostagente2e.InNetns(nsPath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("DNS server on %s in the host namespace: %v", addr, err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: l, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
}

// sameNetns reports whether nsPath is this process's network namespace.
func sameNetns(nsPath string) bool {
	a, err1 := os.Stat(nsPath)
	b, err2 := os.Stat("/proc/self/ns/net")
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
