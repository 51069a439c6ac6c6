package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/hostagent/steps"
)

// benchNames are the sandbox host's services, each with its own hostname:
// broker, mcp, signer and the six workers (nine hostnames).
var benchNames = []string{"broker", "signer", "audit", "email", "creds", "memory", "config", "classify"}

// TestBenchHostagent is the benchmark behind make bench-hostagent, not a
// test: it asserts only that the runs succeed, and writes its figures to
// $AGENTKEYS_BENCH_OUT.
func TestBenchHostagent(t *testing.T) {
	if os.Getenv("AGENTKEYS_BENCH") != "1" {
		t.Skip("benchmark; run make bench-hostagent")
	}
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var figures []string
	durations := map[string]time.Duration{}
	fig := func(name string, v any) {
		if d, ok := v.(time.Duration); ok {
			v = fmt.Sprintf("%.3f", d.Seconds())
		}
		figures = append(figures, fmt.Sprintf("%s: %v", name, v))
	}

	// The full agent (every step) on a sandbox host.
	root := t.TempDir()
	ports := sandboxtest.FreePorts(t, 2)
	ngx, err := WriteNginxConf(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := ngx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ngx.Stop)
	ca, err := StartCA(t.TempDir(), ports[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Close)
	repo := sandboxtest.NewRepo(t)
	sp := sandboxtest.Generate(t, sandboxtest.Options{
		Repo: repo.Bare, Zone: Zone, Ports: sandboxtest.ServicePorts(t), HTTPPort: ports[0], HTTPSPort: ports[1], PublicIP: "127.0.0.1",
		ACME: spec.ACME{Directory: ca.Directory, Resolver: ca.DNS, ProbeBase: fmt.Sprintf("http://127.0.0.1:%d", ports[0])},
	})
	hosts := Hostnames()
	sys := NewSystem(ngx)
	t.Cleanup(sys.StopAll)
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	certs := &acme.Step{Nginx: ng, HTTPClient: ca.Client}
	units := steps.Units{Extra: func(env *agent.Env) map[string]string {
		return acme.RenewUnits("/etc/agentkeys/hostspec.json", env.Spec.StateDir, env.Spec.Nginx.Webroot)
	}}
	runner := &agent.Runner{Guard: steps.Identity{}, Steps: []agent.Step{
		steps.Packages{}, steps.Users{}, steps.Source{}, steps.Build{}, steps.Secrets{}, units, ng, certs, steps.Health{}}}
	newEnv := func() *agent.Env {
		return &agent.Env{Spec: sp, Root: root, Sys: sys, Counters: &agent.Counters{}, Report: &agent.Report{}, Log: testLog{t}}
	}
	run := func(label string, only ...string) (*agent.Summary, time.Duration) {
		start := time.Now()
		sum, err := runner.Run(ctx, newEnv(), only...)
		d := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v\npebble:\n%s", label, err, ca.PebbleLog())
		}
		t.Logf("%s: %s, counters %+v", label, d, sum.Counters)
		return sum, d
	}
	run("build (not measured)", "users", "source", "build")
	sum, cold := run("cold converge")
	if got := len(sum.Hosts.Issued); got != len(benchNames) {
		t.Fatalf("cold converge issued %d certificates, want %d: %v", got, len(benchNames), sum.Hosts.Skipped)
	}
	for _, name := range []string{"broker", "creds"} {
		if body, err := FetchTLS(ctx, ca.Roots, hosts[name], ports[1], "/healthz"); err != nil || !strings.HasPrefix(body, map[string]string{"broker": "ok", "creds": `{"ok":true`}[name]) {
			t.Fatalf("https://%s/healthz: %q %v", hosts[name], body, err)
		}
	}
	noop, noopD := run("no-op apply")
	for _, s := range noop.Steps {
		if s.Status != agent.OK {
			t.Errorf("no-op apply: step %s is %s %v", s.Step, s.Status, s.Changes)
		}
	}
	fig("noop_apply_s", noopD)
	fig("cold_converge_s", cold)

	// Certificates: one hostname alone, then every hostname at once (the
	// agent's default), each on a fresh rig (nginx + certificates only), the
	// median of five (lego polls at randomised intervals); and all of them
	// one after another, once, for comparison. The goal is
	// certs_concurrent_s / certs_one_s <= 1.5.
	for _, c := range []struct {
		name  string
		names []string
		n     int
		reps  int
	}{{"certs_one_s", []string{"broker"}, 0, 5}, {"certs_concurrent_s", benchNames, 0, 5}, {"certs_sequential_s", benchNames, 1, 1}} {
		var ds []time.Duration
		for i := 0; i < c.reps; i++ {
			r := newRig(t, benchNames)
			sandboxtest.Keep(r.spec, c.names...)
			env := r.env(t)
			ng := &nginx.Step{ListenAddr: "127.0.0.1"}
			if _, err := ng.Run(ctx, env); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res, err := (&acme.Step{Nginx: ng, HTTPClient: r.ca.Client, Concurrency: c.n}).Run(ctx, env)
			d := time.Since(start)
			if err != nil || len(res.Detail["issued"].([]string)) != len(c.names) {
				t.Fatalf("%s: %v %v", c.name, err, res.Reason)
			}
			t.Logf("%s #%d: %s for %d orders", c.name, i+1, d, env.Counters.ACMEOrders)
			ds = append(ds, d)
		}
		slices.Sort(ds)
		fig(c.name, ds[len(ds)/2])
		durations[c.name] = ds[len(ds)/2]
	}
	fig("certs_concurrent_over_one", fmt.Sprintf("%.2f", durations["certs_concurrent_s"].Seconds()/durations["certs_one_s"].Seconds()))
	fig("noop_files_written", noop.Counters.FilesWritten)
	fig("noop_restarts", noop.Counters.Restarts)
	fig("noop_reloads", noop.Counters.Reloads)
	fig("noop_acme_orders", noop.Counters.ACMEOrders)

	out := strings.Join(figures, "\n") + "\n"
	t.Logf("figures (%d services, %d hostnames):\n%s", len(sp.Services), len(sp.Hostnames()), out)
	if p := os.Getenv("AGENTKEYS_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
