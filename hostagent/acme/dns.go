package acme

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// checkDNS returns "" when host's A records are exactly this host's public
// address and it has no AAAA record (the CA tries AAAA first, and the spec
// gives this host no IPv6 address), else the reason to skip the host.
func checkDNS(ctx context.Context, resolver, host, publicIP string) (string, error) {
	var a, aaaa []string
	if resolver == "" {
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return fmt.Sprintf("DNS lookup of %s failed (%v); create its A record pointing at %s", host, err, publicIP), nil
		}
		for _, ip := range ips {
			if ip.IP.To4() != nil {
				a = append(a, ip.IP.String())
			} else {
				aaaa = append(aaaa, ip.IP.String())
			}
		}
	} else {
		var err error
		if a, err = query(ctx, resolver, host, dns.TypeA); err != nil {
			return fmt.Sprintf("DNS A query for %s at %s failed: %v", host, resolver, err), nil
		}
		if aaaa, err = query(ctx, resolver, host, dns.TypeAAAA); err != nil {
			return fmt.Sprintf("DNS AAAA query for %s at %s failed: %v", host, resolver, err), nil
		}
	}
	sort.Strings(a)
	via := "the system resolver"
	if resolver != "" {
		via = resolver
	}
	switch {
	case len(a) == 0:
		return fmt.Sprintf("%s has no A record (via %s); point it at %s and re-run", host, via, publicIP), nil
	case len(a) != 1 || a[0] != publicIP:
		return fmt.Sprintf("%s resolves to %s (via %s), not this host's %s; fix the A record and re-run", host, strings.Join(a, ","), via, publicIP), nil
	case len(aaaa) > 0:
		return fmt.Sprintf("%s has AAAA record %s (via %s), which the CA would try first and this host does not serve; remove it and re-run", host, strings.Join(aaaa, ","), via), nil
	}
	return "", nil
}

func query(ctx context.Context, resolver, host string, qtype uint16) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), qtype)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 3 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, resolver)
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[in.Rcode])
	}
	var out []string
	for _, rr := range in.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	return out, nil
}
