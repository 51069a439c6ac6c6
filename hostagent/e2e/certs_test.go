package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// converge runs nginx (Phase A) then certificates (which flips to Phase B).
func converge(t *testing.T, r *rig, env *agent.Env, ng *nginx.Step, certs *acme.Step) (agent.Result, agent.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nres, err := ng.Run(ctx, env)
	if err != nil {
		t.Fatalf("nginx step: %v", err)
	}
	cres, err := certs.Run(ctx, env)
	if err != nil {
		t.Fatalf("certificates step: %v\npebble log:\n%s", err, r.ca.PebbleLog())
	}
	return nres, cres
}

func servedLeaf(t *testing.T, host string, port int) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&netDialer, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", host, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func TestConvergeIssuesServesAndIsIdempotent(t *testing.T) {
	services := []string{"broker", "signer", "audit", "email"}
	r := newRig(t, services)
	hosts := Hostnames()
	elsewhere := hosts["email"]
	if err := r.ca.PointElsewhere(elsewhere, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	certs := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client}

	env := r.env(t)
	nres, cres := converge(t, r, env, ng, certs)
	if nres.Status != agent.Changed {
		t.Errorf("first nginx run: status %s, want changed", nres.Status)
	}
	if cres.Status != agent.Changed {
		t.Errorf("first certificates run: status %s (%s), want changed", cres.Status, cres.Reason)
	}
	issued := cres.Detail["issued"].([]string)
	want := []string{hosts["audit"], hosts["broker"], hosts["signer"]}
	if strings.Join(issued, ",") != strings.Join(want, ",") {
		t.Errorf("issued %v, want %v", issued, want)
	}
	skipped := cres.Detail["skipped"].(map[string]string)
	if reason := skipped[elsewhere]; !strings.Contains(reason, "192.0.2.10") || !strings.Contains(reason, "127.0.0.1") {
		t.Errorf("%s: skip reason %q should name the wrong address and this host's", elsewhere, reason)
	}
	if got := env.Report.Hosts().Skipped[elsewhere]; got == "" {
		t.Errorf("the run summary does not list %s as skipped", elsewhere)
	}
	if env.Counters.ACMEOrders != 3 {
		t.Errorf("ACME orders = %d, want 3 (one per host that points here)", env.Counters.ACMEOrders)
	}
	if env.Counters.Reloads != 2 {
		t.Errorf("reloads = %d, want 2 (Phase A, then the flip to B)", env.Counters.Reloads)
	}

	ctx := context.Background()
	for _, name := range []string{"broker", "signer", "audit"} {
		body, err := FetchTLS(ctx, r.ca.Roots, hosts[name], r.httpsPort, "/healthz?who")
		if err != nil {
			t.Errorf("https://%s/healthz through nginx: %v", hosts[name], err)
			continue
		}
		if !strings.HasPrefix(body, name+" ok host="+hosts[name]+" proto=https") {
			t.Errorf("https://%s/healthz answered %q, want the %s stand-in", hosts[name], body, name)
		}
		code, _, err := FetchHTTP(ctx, hosts[name], r.httpPort, "/healthz")
		if err != nil || code != 301 {
			t.Errorf("http://%s/healthz: %d %v, want a 301 to https", hosts[name], code, err)
		}
	}
	// The host whose DNS points elsewhere stays in Phase A.
	code, body, err := FetchHTTP(ctx, elsewhere, r.httpPort, "/healthz")
	if err != nil || code != 503 || !strings.Contains(body, "TLS cert not yet issued") {
		t.Errorf("http://%s/ = %d %q %v, want the Phase A 503", elsewhere, code, body, err)
	}
	if _, err := FetchTLS(ctx, r.ca.Roots, elsewhere, r.httpsPort, "/healthz"); err == nil {
		t.Errorf("https://%s answered though it has no certificate", elsewhere)
	}
	conf := string(readFile(t, filepath.Join(r.root, "etc/nginx/sites-available", siteOf(t, r.spec, elsewhere))))
	if !strings.Contains(conf, "Phase A") || strings.Contains(conf, "ssl") {
		t.Errorf("%s vhost is not Phase A:\n%s", elsewhere, conf)
	}
	for _, f := range []string{"var/lib/agentkeys/acme/account.key", "var/lib/agentkeys/acme/accounts.json", "etc/agentkeys/tls/" + hosts["broker"] + "/privkey.pem"} {
		st, err := os.Stat(filepath.Join(r.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	// Second run: nothing to do, nothing touched.
	before := snapshot(t, r.root)
	env2 := r.env(t)
	nres, cres = converge(t, r, env2, ng, certs)
	if nres.Status != agent.OK || cres.Status != agent.OK {
		t.Errorf("second run: nginx %s %v, certificates %s %v; want ok, ok", nres.Status, nres.Changes, cres.Status, cres.Changes)
	}
	if *env2.Counters != (agent.Counters{}) {
		t.Errorf("second run counters %+v, want all zero", *env2.Counters)
	}
	if d := diffSnapshots(before, snapshot(t, r.root)); len(d) > 0 {
		t.Errorf("second run touched files: %v", d)
	}
	if !strings.Contains(cres.Reason, elsewhere) {
		t.Errorf("second run reason %q should still name the skipped host", cres.Reason)
	}

	// A broken render fails nginx -t; the previous files stay and are served.
	live := sites(t, r.root)
	bad := &nginx.Step{ListenAddr: "127.0.0.1", Mutate: func(host string, b []byte) []byte {
		if host == hosts["signer"] {
			return append(b, []byte("bogus_directive on;\n")...)
		}
		return b
	}}
	env3 := r.env(t)
	_, err = bad.Run(ctx, env3)
	if err == nil || !strings.Contains(err.Error(), "bogus_directive") || !strings.Contains(err.Error(), "restored") {
		t.Fatalf("broken render: err = %v, want nginx -t's complaint and a restore", err)
	}
	if env3.Counters.Reloads != 0 {
		t.Errorf("broken render reloaded nginx %d times", env3.Counters.Reloads)
	}
	if d := diffSnapshots(live, sites(t, r.root)); len(d) > 0 {
		t.Errorf("broken render left changed vhost files: %v", d)
	}
	if body, err := FetchTLS(ctx, r.ca.Roots, hosts["signer"], r.httpsPort, "/healthz?who"); err != nil || !strings.HasPrefix(body, "signer ok") {
		t.Errorf("after the rejected render, signer is not served: %q %v", body, err)
	}
	// And the next good run is a no-op again.
	env4 := r.env(t)
	if res, err := ng.Run(ctx, env4); err != nil || res.Status != agent.OK || env4.Counters.Reloads != 0 {
		t.Errorf("good run after the rejected one: %s %v %v reloads=%d", res.Status, res.Changes, err, env4.Counters.Reloads)
	}

	// A third of the lifetime left: every certificate is due and renewed;
	// nginx reloads though no vhost byte changed, and serves the new one.
	old := servedLeaf(t, hosts["broker"], r.httpsPort)
	renew := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client, RenewOnly: true,
		Now: func() time.Time { return time.Now().Add(61 * 24 * time.Hour) }}
	env5 := r.env(t)
	res, err := renew.Run(ctx, env5)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if env5.Counters.ACMEOrders != 3 || env5.Counters.Reloads != 1 {
		t.Errorf("renew: orders %d reloads %d, want 3 and 1 (%v)", env5.Counters.ACMEOrders, env5.Counters.Reloads, res.Changes)
	}
	if reason := res.Detail["skipped"].(map[string]string)[elsewhere]; !strings.Contains(reason, "no certificate yet") {
		t.Errorf("renew should leave the host without a certificate alone, got %q", reason)
	}
	if cur := servedLeaf(t, hosts["broker"], r.httpsPort); cur.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Errorf("nginx still serves the old certificate after renewal")
	}
}
