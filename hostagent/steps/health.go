package steps

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/procnet"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Health waits, each check bounded on its own by spec.HealthTimeoutSeconds
// (default 60) and all at once, for each service's health path on 127.0.0.1
// to answer the contract's healthy body (exactly "ok", or JSON with "ok":
// true) while systemd runs its unit (a unit that is failed or restarting
// fails the check, with its last journal lines, even when something else
// answers on its port), and for the broker's OIDC discovery
// (issuer byte-for-byte equal to the spec's) and JWKS (at least one ES256
// key). Once the broker's certificate is on disk it also fetches the
// discovery through nginx over TLS, as AWS will, and (when the certificates
// step did not run) records the broker host as issued while it is valid and
// from the spec's ACME directory (or certbot), else as skipped. Every check
// is reported; any failure fails the step.
type Health struct{}

func (Health) Name() string { return "health" }

type check struct {
	name, url string
	verify    func([]byte) error
	client    *http.Client // nil: the plain loopback client
	unit      string       // the service's unit, whose state is checked too
	gone      func() error // non-nil error: stop waiting, nothing will answer
}

// JournalLines is how much of a failing unit's journal a check reports.
const JournalLines = 10

// HealthyBody checks the body a healthy service returns (contract.Health):
// a JSON object with "ok": true, or exactly "ok". A 200 with anything else
// is another server on the port, or a service that is not ready.
func HealthyBody(svc spec.Service) func([]byte) error {
	if svc.HealthJSON {
		return func(b []byte) error {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil || m["ok"] != true {
				return fmt.Errorf("body %s is not %s's healthy JSON {\"ok\":true,...}", quoteBody(b), svc.Name)
			}
			return nil
		}
	}
	return func(b []byte) error {
		if string(b) != "ok" {
			return fmt.Errorf("body %s, want exactly \"ok\" from %s", quoteBody(b), svc.Name)
		}
		return nil
	}
}

func quoteBody(b []byte) string {
	if len(b) > 200 {
		return strconv.Quote(string(b[:200])) + "..."
	}
	return strconv.Quote(string(b))
}

// unitCheck adds systemd's view to a service's check: a unit that is not
// active fails the check even when the port answers (another process holds
// it), and a failing check carries the unit's state and last journal lines.
func unitCheck(ctx context.Context, env *agent.Env, c check, probeErr error, hc *agent.HealthCheck) error {
	st, err := env.Sys.UnitStatus(ctx, c.unit)
	if err != nil {
		if probeErr != nil {
			return probeErr
		}
		return fmt.Errorf("systemctl show %s: %w", c.unit, err)
	}
	if st.ActiveState == "" {
		return probeErr // the System does not know the unit
	}
	hc.Unit, hc.UnitState = c.unit, st.String()
	err = probeErr
	if !st.Running() {
		if err == nil {
			err = fmt.Errorf("it answers, but its unit %s is %s: another process holds port %s", c.unit, st, portOf(c.url))
		} else {
			err = fmt.Errorf("%w; unit %s is %s", err, c.unit, st)
		}
	}
	if err == nil {
		return nil
	}
	if j, jerr := env.Sys.JournalTail(ctx, c.unit, JournalLines); jerr == nil && j != "" {
		err = fmt.Errorf("%w; last journal lines of %s:\n%s", err, c.unit, j)
	}
	return err
}

func portOf(u string) string {
	if req, err := http.NewRequest(http.MethodGet, u, nil); err == nil {
		return req.URL.Port()
	}
	return "?"
}

func (Health) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "health"}
	if env.DryRun {
		return agent.Result{Step: "health", Status: agent.Skipped, Reason: "plan does not probe services"}, nil
	}
	s := env.Spec
	var checks []check
	for _, svc := range s.Services {
		checks = append(checks, check{name: svc.Name, url: "http://127.0.0.1:" + strconv.Itoa(svc.Port) + svc.Health,
			verify: HealthyBody(svc), unit: svc.Unit})
	}
	if b := s.Broker(); b != nil {
		base := "http://127.0.0.1:" + strconv.Itoa(b.Port)
		discovery := func(body []byte) error {
			var d struct {
				Issuer string `json:"issuer"`
			}
			if err := json.Unmarshal(body, &d); err != nil {
				return fmt.Errorf("not JSON: %v", err)
			}
			if d.Issuer != s.Issuer {
				return fmt.Errorf("issuer %q, want %q", d.Issuer, s.Issuer)
			}
			return nil
		}
		checks = append(checks,
			check{name: agent.HealthBrokerDiscovery, url: base + "/.well-known/openid-configuration", verify: discovery},
			check{name: agent.HealthBrokerJWKS, url: base + "/.well-known/jwks.json", verify: func(body []byte) error {
				var d struct {
					Keys []struct {
						Kty, Crv, Alg, Kid string
					} `json:"keys"`
				}
				if err := json.Unmarshal(body, &d); err != nil {
					return fmt.Errorf("not JSON: %v", err)
				}
				for _, k := range d.Keys {
					if k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256") && k.Kid != "" {
						return nil
					}
				}
				return fmt.Errorf("no ES256 key among %d keys", len(d.Keys))
			}})
		// Whenever the broker's certificate is on disk (whether or not this
		// run's certificates step ran), nginx serves it in Phase B: the
		// check runs and its outcome decides.
		if b.Hostname != "" {
			if leaf, err := nginx.InstalledCert(env.Root, b.Hostname); err == nil {
				checks = append(checks, check{name: agent.HealthBrokerTLS, url: s.Issuer + "/.well-known/openid-configuration",
					verify: discovery, client: tlsClient(env, b.Hostname)})
				// The certificates step did not run: the certificate on disk
				// counts as issued by the rule that step keeps one by (from
				// the spec's ACME directory, or adopted from certbot), and
				// only while it is in date.
				now := time.Now()
				if env.Report.Recorded(b.Hostname) == "" && now.After(leaf.NotBefore) && now.Before(leaf.NotAfter) {
					if acme.Accepted(env.Root, b.Hostname, s.ACME.Directory) {
						env.Report.Issued(b.Hostname)
					} else {
						from := acme.Source(env.Root, b.Hostname)
						if from == "" {
							from = "an unknown CA (no meta.json)"
						}
						env.Report.SkipHost(b.Hostname, fmt.Sprintf("the certificate on disk is from %s, not the spec's ACME directory %s; the certificates step replaces it", from, s.ACME.Directory))
					}
				}
			}
		}
	}
	timeout := time.Duration(s.HealthTimeoutSeconds) * time.Second
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	// Each check polls on its own, with its own deadline: one service that
	// never answers (a crash loop) must not use up the time of the others.
	client := &http.Client{Timeout: 5 * time.Second}
	errs := make([]error, len(checks))
	hcs := make([]agent.HealthCheck, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		cl := client
		if c.client != nil {
			cl = c.client
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			hcs[i] = agent.HealthCheck{URL: c.url}
			errs[i] = probe(cctx, cl, c, timeout)
			if c.unit != "" {
				errs[i] = unitCheck(ctx, env, c, errs[i], &hcs[i])
			}
		}()
	}
	wg.Wait()
	var failed []string
	detail := map[string]any{}
	for i, c := range checks {
		err := errs[i]
		hc := hcs[i]
		hc.OK = err == nil
		if err != nil {
			hc.Detail = err.Error()
			failed = append(failed, fmt.Sprintf("%s (%s): %v", c.name, c.url, err))
		}
		env.Report.Health(c.name, hc)
		detail[c.name] = hc
	}
	res.Detail = detail
	if len(failed) > 0 {
		return res, fmt.Errorf("%d of %d checks failed, each within %s: %v", len(failed), len(checks), timeout, failed)
	}
	return res, nil
}

// probe polls one URL until it answers 200 (and verifies) or ctx ends. A
// failure names the service's own last answer (connection refused, HTTP
// 503…), not the deadline that cut the last attempt short.
func probe(ctx context.Context, client *http.Client, c check, timeout time.Duration) error {
	var last error
	for {
		err := get(ctx, client, c)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if c.gone != nil {
			if g := c.gone(); g != nil {
				return fmt.Errorf("%w: %w", g, last)
			}
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%w (still failing after %s)", last, timeout)
			}
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, client *http.Client, c check) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if c.verify != nil {
		return c.verify(body)
	}
	return nil
}

// tlsClient reaches https://host through this host's nginx (127.0.0.1 on
// the HTTPS port, SNI host) and accepts only the certificate the agent holds
// for host, valid for the name: the CA need not be in the system roots (a
// staging or test CA), but nginx must serve our current certificate.
func tlsClient(env *agent.Env, host string) *http.Client {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(env.Spec.Nginx.HTTPSPort))
	fullchain, _ := nginx.CertFiles(host)
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate served")
		}
		leaf := cs.PeerCertificates[0]
		if err := leaf.VerifyHostname(host); err != nil {
			return err
		}
		if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return fmt.Errorf("served certificate valid %s..%s", leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
		}
		pemBytes, err := os.ReadFile(env.Path(fullchain))
		if err != nil {
			return err
		}
		blk, _ := pem.Decode(pemBytes)
		if blk == nil || !bytes.Equal(blk.Bytes, leaf.Raw) {
			return fmt.Errorf("nginx serves a certificate other than %s", fullchain)
		}
		return nil
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		// Verification is VerifyConnection's: the served leaf must be ours.
		TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true, VerifyConnection: verify},
	}}
}

// WaitReady polls url until it answers 200 or timeout passes; the error
// names the last answer. With pid > 0 (a unit's $MAINPID) the answer counts
// only once pid itself listens on the URL's port: another process holding
// the port answers too, while the unit's own process has failed to bind.
// A pid that exits ends the wait at once.
func WaitReady(ctx context.Context, url string, timeout time.Duration, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := check{name: url, url: url}
	if pid > 0 {
		u, err := neturl.Parse(url)
		if err != nil {
			return err
		}
		port, err := procnet.PortOf(u.Host)
		if err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
		c.verify = func([]byte) error {
			switch ok, err := procnet.Listens(pid, port); {
			case errors.Is(err, procnet.ErrUnknown):
				return nil // cannot tell: the answer stands
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("port %d answers, but not from the unit's process (pid %d): another process holds it", port, pid)
			}
			return nil
		}
		c.gone = func() error {
			if !procnet.Alive(pid) {
				return fmt.Errorf("the unit's process (pid %d) exited", pid)
			}
			return nil
		}
	}
	if err := probe(ctx, &http.Client{Timeout: 5 * time.Second}, c, timeout); err != nil {
		return fmt.Errorf("%s is not ready: %w", url, err)
	}
	return nil
}
