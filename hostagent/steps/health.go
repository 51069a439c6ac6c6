package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
)

// Health waits, bounded by spec.HealthTimeoutSeconds (default 60), for each
// service's health path on 127.0.0.1, and for the broker's OIDC discovery
// (issuer byte-for-byte equal to the spec's) and JWKS (at least one ES256
// key). Every check is reported; any failure fails the step.
type Health struct{}

func (Health) Name() string { return "health" }

type check struct {
	name, url string
	verify    func([]byte) error
}

func (Health) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "health"}
	if env.DryRun {
		return agent.Result{Step: "health", Status: agent.Skipped, Reason: "plan does not probe services"}, nil
	}
	s := env.Spec
	var checks []check
	for _, svc := range s.Services {
		checks = append(checks, check{name: svc.Name, url: "http://127.0.0.1:" + strconv.Itoa(svc.Port) + svc.Health})
	}
	if b := s.Broker(); b != nil {
		base := "http://127.0.0.1:" + strconv.Itoa(b.Port)
		checks = append(checks,
			check{"broker-openid-configuration", base + "/.well-known/openid-configuration", func(body []byte) error {
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
			}},
			check{"broker-jwks", base + "/.well-known/jwks.json", func(body []byte) error {
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
	}
	timeout := time.Duration(s.HealthTimeoutSeconds) * time.Second
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	var failed []string
	detail := map[string]any{}
	for _, c := range checks {
		err := probe(ctx, client, c)
		hc := agent.HealthCheck{URL: c.url, OK: err == nil}
		if err != nil {
			hc.Detail = err.Error()
			failed = append(failed, fmt.Sprintf("%s (%s): %v", c.name, c.url, err))
		}
		env.Report.Health(c.name, hc)
		detail[c.name] = hc
	}
	res.Detail = detail
	if len(failed) > 0 {
		return res, fmt.Errorf("%d of %d checks failed within %s: %v", len(failed), len(checks), timeout, failed)
	}
	return res, nil
}

// probe polls one URL until it answers 200 (and verifies) or ctx ends.
func probe(ctx context.Context, client *http.Client, c check) error {
	var last error
	for {
		last = get(ctx, client, c)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
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
