package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// certChildEnv makes the test binary a certificate-step process that a
// fault kills for real (SIGKILL), like the agent's renew unit crashing.
const certChildEnv = "AGENTKEYS_E2E_CERT_CHILD"

type certChild struct {
	Root, Spec, CADir, NginxConf string
	RenewOnly                    bool
	ClockAheadHours              int
	Record                       string // append every fault point reached here instead of dying
}

// runCertChild is the child's body: the certificates step (with the nginx
// flip) against the parent's pebble and nginx.
func runCertChild(cfgJSON string) error {
	var c certChild
	if err := json.Unmarshal([]byte(cfgJSON), &c); err != nil {
		return err
	}
	sp, err := spec.Load(c.Spec)
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(c.CADir, "pebble-cert.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if c.Record != "" {
		hits := map[string]int{}
		fsx.FaultHook = func(p string) {
			hits[p]++
			f, err := os.OpenFile(c.Record, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err == nil {
				fmt.Fprintf(f, "%s:%d\n", p, hits[p])
				f.Close()
			}
		}
	}
	ngx := &Nginx{Root: c.Root, Conf: c.NginxConf, pid: filepath.Join(c.Root, "run/nginx.pid")}
	env := &agent.Env{Spec: sp, Root: c.Root, Sys: NewSystem(ngx), Counters: &agent.Counters{}, Report: &agent.Report{}}
	ahead := time.Duration(c.ClockAheadHours) * time.Hour
	step := &acme.Step{Nginx: &nginx.Step{ListenAddr: "127.0.0.1"}, HTTPClient: client, Concurrency: 1,
		RenewOnly: c.RenewOnly, Now: func() time.Time { return time.Now().Add(ahead) }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := step.Run(ctx, env)
	if err != nil {
		return err
	}
	if len(res.Detail["skipped"].(map[string]string)) > 0 {
		return fmt.Errorf("child skipped hosts: %v", res.Detail["skipped"])
	}
	return nil
}

// pairState reads host's certificate pair at the paths nginx serves:
// "absent" (neither file), the leaf's serial when both load as a matching
// pair for host, or an error describing a broken pair.
func pairState(root, host string) (string, error) {
	fc, pk := nginx.CertFiles(host)
	fcp, pkp := fsx.HostPath(root, fc), fsx.HostPath(root, pk)
	_, e1 := os.Stat(fcp)
	_, e2 := os.Stat(pkp)
	if errors.Is(e1, fs.ErrNotExist) && errors.Is(e2, fs.ErrNotExist) {
		return "absent", nil
	}
	pair, err := tls.LoadX509KeyPair(fcp, pkp)
	if err != nil {
		return "", fmt.Errorf("nginx's paths hold no matching pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return "", err
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return "", err
	}
	return leaf.SerialNumber.String(), nil
}

// TestCertWriteKilledAtEveryPoint kills a real certificates-step process at
// every fault point it reaches while issuing, then while renewing, a
// certificate from pebble. After each kill the paths nginx serves hold
// either no certificate or a matching pair, never a mix; the next run
// converges, and it orders nothing when a valid pair survived.
func TestCertWriteKilledAtEveryPoint(t *testing.T) {
	if cfg := os.Getenv(certChildEnv); cfg != "" {
		if err := runCertChild(cfg); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Valid authorizations are reused: every kill is about the write, not the
	// validation, and a run takes a fraction of a second instead of seconds.
	r := newRigCA(t, []string{"PEBBLE_AUTHZREUSE=100"}, []string{"broker"})
	host := Hostnames()["broker"]
	specFile := filepath.Join(t.TempDir(), "hostspec.json")
	b, err := r.spec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	certs := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client}
	ctx := context.Background()

	child := func(c certChild, fault string) (killed bool, out string) {
		c.Root, c.Spec, c.CADir, c.NginxConf = r.root, specFile, r.ca.dir, r.nginx.Conf
		cfg, _ := json.Marshal(c)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestCertWriteKilledAtEveryPoint$", "-test.count=1")
		cmd.Env = append(os.Environ(), certChildEnv+"="+string(cfg))
		if fault != "" {
			cmd.Env = append(cmd.Env, fsx.FaultEnv+"="+fault)
		}
		var o bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &o
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				return true, o.String()
			}
		}
		if err != nil {
			t.Fatalf("child (fault %q): %v\n%s", fault, err, o.String())
		}
		return false, o.String()
	}
	record := func(c certChild) []string {
		c.Record = filepath.Join(t.TempDir(), "points")
		child(c, "")
		b, err := os.ReadFile(c.Record)
		if err != nil {
			t.Fatalf("no fault point recorded: %v", err)
		}
		return strings.Fields(string(b))
	}
	// next is the run after a crash (nginx then certificates, as apply
	// does): it must converge and serve exactly the pair on disk.
	next := func(point string) *agent.Env {
		env := r.env(t)
		_, res := converge(t, r, env, ng, certs)
		if s := res.Detail["skipped"].(map[string]string); len(s) > 0 {
			t.Fatalf("after the kill at %s the next run skipped: %v", point, s)
		}
		st, err := pairState(r.root, host)
		if err != nil || st == "absent" {
			t.Fatalf("after the kill at %s and a re-run: %s %v", point, st, err)
		}
		if got := servedLeaf(t, host, r.httpsPort).SerialNumber.String(); got != st {
			t.Errorf("after the kill at %s nginx serves serial %s, disk holds %s", point, got, st)
		}
		return env
	}
	reset := func() {
		for _, p := range []string{host, "." + host + ".new", "." + host + ".old"} {
			os.RemoveAll(filepath.Join(r.root, "etc/agentkeys/tls", p))
		}
		if _, err := ng.Run(ctx, r.env(t)); err != nil { // back to Phase A
			t.Fatal(err)
		}
	}

	// The account exists first, so the recorded points are the order's own.
	next("setup")
	reset()
	issue := certChild{}
	points := record(issue)
	t.Logf("issue: %d fault points: %v", len(points), points)
	swapped := false
	for _, p := range points {
		reset()
		if killed, out := child(issue, p); !killed {
			t.Fatalf("issue: fault %s not reached:\n%s", p, out)
		}
		st, err := pairState(r.root, host)
		if err != nil {
			t.Fatalf("issue killed at %s: %v", p, err)
		}
		if strings.HasPrefix(p, "replace-dir:before-swap") {
			swapped = true // every file of the new pair is on disk from here on
		}
		env := next(p)
		orders := env.Counters.ACMEOrders
		switch {
		case st != "absent" && orders != 0:
			t.Errorf("issue killed at %s left a valid pair (serial %s), yet the next run ordered %d", p, st, orders)
		case swapped && orders != 0:
			t.Errorf("issue killed at %s after the pair was complete on disk; the next run ordered %d, want 0", p, orders)
		case orders > 1:
			t.Errorf("issue killed at %s: next run ordered %d", p, orders)
		}
	}

	// Renewal: the clock is moved to a third of the lifetime left.
	renew := certChild{RenewOnly: true, ClockAheadHours: 61 * 24}
	points = record(renew)
	t.Logf("renew: %d fault points: %v", len(points), points)
	for _, p := range points {
		before, err := pairState(r.root, host)
		if err != nil {
			t.Fatal(err)
		}
		if killed, out := child(renew, p); !killed {
			t.Fatalf("renew: fault %s not reached:\n%s", p, out)
		}
		st, err := pairState(r.root, host)
		if err != nil || st == "absent" {
			t.Fatalf("renewal killed at %s: %s %v", p, st, err)
		}
		env := next(p)
		if env.Counters.ACMEOrders != 0 {
			t.Errorf("renewal killed at %s (pair on disk %s, was %s): the next run ordered %d though the surviving pair is valid",
				p, st, before, env.Counters.ACMEOrders)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(r.root, "etc/agentkeys/tls")); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("leftovers beside the certificate directory: %v", names)
	}
}
