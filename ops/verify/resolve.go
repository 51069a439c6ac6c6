package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultDoHURL is Google's DoH JSON API, which the spec uses because laptop
// resolvers behind VPNs rewrite the zone (198.18.x.y).
const DefaultDoHURL = "https://dns.google/resolve"

// Resolver answers A-record lookups.
type Resolver interface {
	LookupA(ctx context.Context, host string) ([]string, error)
	String() string
}

// DoH queries a DNS-over-HTTPS JSON API (dns.google/resolve shape).
type DoH struct {
	URL    string
	Client *http.Client
}

func (d DoH) String() string { return "doh " + d.URL }

// LookupA returns the sorted A records of host; no answer is an error.
func (d DoH) LookupA(ctx context.Context, host string) ([]string, error) {
	c := d.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, fmt.Errorf("--doh-url %q: %v", d.URL, err)
	}
	q := u.Query()
	q.Set("name", host)
	q.Set("type", "A")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/dns-json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("DoH %s: HTTP %d", d.URL, resp.StatusCode)
	}
	var body struct {
		Status int
		Answer []struct {
			Type int    `json:"type"`
			Data string `json:"data"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("DoH %s: bad JSON: %v", d.URL, err)
	}
	if body.Status != 0 {
		return nil, fmt.Errorf("%s", rcode(body.Status))
	}
	var out []string
	for _, a := range body.Answer {
		if a.Type == int(dns.TypeA) {
			out = append(out, a.Data)
		}
	}
	return answer(out)
}

// UDP queries a plain DNS server (host:port) with miekg/dns.
type UDP struct {
	Addr string
}

func (u UDP) String() string { return "udp " + u.Addr }

// LookupA returns the sorted A records of host; no answer is an error.
func (u UDP) LookupA(ctx context.Context, host string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, u.Addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s", rcode(r.Rcode))
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return answer(out)
}

func rcode(c int) string {
	if s, ok := dns.RcodeToString[c]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", c)
}

func answer(out []string) ([]string, error) {
	if len(out) == 0 {
		return nil, fmt.Errorf("no A record")
	}
	sort.Strings(out)
	return out, nil
}

// ParseResolver maps the --resolver flag to a Resolver: "doh" (with dohURL)
// or "udp://host:port".
func ParseResolver(spec, dohURL string) (Resolver, error) {
	switch {
	case spec == "" || spec == "doh":
		if dohURL == "" {
			dohURL = DefaultDoHURL
		}
		return DoH{URL: dohURL}, nil
	case strings.HasPrefix(spec, "udp://"):
		addr := strings.TrimPrefix(spec, "udp://")
		if !strings.Contains(addr, ":") {
			addr += ":53"
		}
		return UDP{Addr: addr}, nil
	}
	return nil, fmt.Errorf("--resolver %q: use doh (default, see --doh-url) or udp://host:port", spec)
}
