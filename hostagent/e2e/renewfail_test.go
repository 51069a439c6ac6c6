package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/steps"
)

// TestFailedRenewalKeepsTheBrokerIssuedAndHealthy: the broker's certificate
// is due, and its renewal fails (its DNS now points elsewhere). nginx keeps
// serving the valid certificate, so the run must still report the broker
// host issued (not skipped) and its broker-tls check healthy: that is what
// the Pulumi program federates on. The same holds for a run without the
// certificates step (apply --skip certificates, --only health).
func TestFailedRenewalKeepsTheBrokerIssuedAndHealthy(t *testing.T) {
	r := newRig(t, []string{"broker"})
	r.spec.HealthTimeoutSeconds = 10
	host := Hostnames()["broker"]
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	if _, res := converge(t, r, r.env(t), ng, &acme.Step{Nginx: ng, HTTPClient: r.ca.Client}); len(res.Detail["issued"].([]string)) != 1 {
		t.Fatalf("setup: %v", res.Detail)
	}
	served := servedLeaf(t, host, r.httpsPort)
	if err := r.ca.PointElsewhere(host, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	renew := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client, RenewOnly: true,
		Now: func() time.Time { return time.Now().Add(61 * 24 * time.Hour) }}
	env := r.env(t)
	res, err := renew.Run(ctx, env)
	// renew fails (the timer's unit shows it), but the host stays issued.
	if err == nil || !strings.Contains(err.Error(), "1 due renewals failed") {
		t.Fatalf("renew: %v, want the failed due renewal as its error", err)
	}
	if env.Counters.ACMEOrders != 0 {
		t.Errorf("ordered %d though DNS points elsewhere", env.Counters.ACMEOrders)
	}
	hosts := env.Report.Hosts()
	if strings.Join(hosts.Issued, ",") != host || len(hosts.Skipped) != 0 {
		t.Errorf("hosts %+v, want %s issued and nothing skipped", hosts, host)
	}
	if !strings.Contains(res.Reason, "renewal of "+host+" failed: ") || !strings.Contains(res.Reason, "192.0.2.10") ||
		!strings.Contains(res.Reason, "current certificate valid until "+served.NotAfter.UTC().Format(time.RFC3339)) {
		t.Errorf("reason %q should name the failed renewal, its cause and the current certificate's end", res.Reason)
	}
	if res.Status == agent.Skipped {
		t.Errorf("status %s", res.Status)
	}
	if _, err := (steps.Health{}).Run(ctx, env); err != nil {
		t.Fatalf("health: %v", err)
	}
	if c, ok := env.Report.HealthChecks()[agent.HealthBrokerTLS]; !ok || !c.OK {
		t.Errorf("broker-tls %+v (reported %v), want a healthy check", c, ok)
	}

	// Without the certificates step: the certificate on disk decides.
	env = r.env(t)
	if _, err := (steps.Health{}).Run(ctx, env); err != nil {
		t.Fatalf("health alone: %v", err)
	}
	if c, ok := env.Report.HealthChecks()[agent.HealthBrokerTLS]; !ok || !c.OK {
		t.Errorf("health alone: broker-tls %+v (reported %v), want a healthy check", c, ok)
	}
	if got := env.Report.Hosts().Issued; strings.Join(got, ",") != host {
		t.Errorf("health alone: issued %v, want %s", got, host)
	}
}
