package nginx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func testSpec() *spec.HostSpec {
	iss := "https://broker-test-2.example.org"
	return &spec.HostSpec{
		Version: spec.Version, Stack: "test-2", Issuer: iss, Zone: "example.org",
		PublicIP: "192.0.2.10", Account: "123456789012", Chain: "heima",
		Nginx: spec.Nginx{HTTPPort: 80, HTTPSPort: 443, Webroot: "/var/www/certbot",
			SitesDir: "/etc/nginx/sites-available", EnabledDir: "/etc/nginx/sites-enabled", ConfDir: "/etc/nginx/conf.d"},
		StateDir: "/var/lib/agentkeys",
		Services: []spec.Service{
			{Name: "broker", Port: 8091, Hostname: "broker-test-2.example.org", Site: "agentkeys-broker", Scope: "all", Env: map[string]string{"BROKER_OIDC_ISSUER": iss}},
			{Name: "signer", Port: 8092, Hostname: "signer-test-2.example.org", Site: "agentkeys-signer", Scope: "signer"},
			{Name: "backend", Port: 8090},
		},
	}
}

// debianNginx creates the layout Debian's nginx package leaves.
func debianNginx(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"etc/nginx/sites-available", "etc/nginx/sites-enabled", "etc/nginx/conf.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	brokerSite = "/etc/nginx/sites-available/agentkeys-broker"
	signerSite = "/etc/nginx/sites-available/agentkeys-signer"
)

func newEnv(t *testing.T, root string) *agent.Env {
	debianNginx(t, root)
	return &agent.Env{Spec: testSpec(), Root: root, Sys: agent.NewSandbox(root), Counters: &agent.Counters{}, Report: &agent.Report{}}
}

func writeCert(t *testing.T, root, host string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	fc, pk := CertFiles(host)
	os.MkdirAll(filepath.Join(root, filepath.Dir(fc)), 0o700)
	os.WriteFile(filepath.Join(root, fc), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(root, pk), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPhasesStaleFilesAndNoopRuns(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "etc/nginx/conf.d")
	debianNginx(t, root)
	// An earlier agent's conf.d vhost, and a site an operator disabled.
	os.WriteFile(filepath.Join(confDir, "agentkeys-old-host.example.org.conf"), []byte("server {}\n"), 0o644)
	os.WriteFile(filepath.Join(confDir, "default.conf"), []byte("# not ours\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/nginx/sites-available/agentkeys-worker-gone"), []byte("server {}\n"), 0o644)
	os.Symlink("/etc/nginx/sites-available/agentkeys-worker-gone", filepath.Join(root, "etc/nginx/sites-enabled/agentkeys-worker-gone"))
	ctx := context.Background()
	s := &Step{}

	env := newEnv(t, root)
	res, err := s.Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.Changed || env.Counters.Reloads != 1 {
		t.Fatalf("first run: %s reloads=%d, want changed and one reload", res.Status, env.Counters.Reloads)
	}
	broker := read(t, filepath.Join(root, brokerSite))
	if l, err := os.Readlink(filepath.Join(root, "etc/nginx/sites-enabled/agentkeys-broker")); err != nil || l != "../sites-available/agentkeys-broker" {
		t.Errorf("the broker site is not enabled: %q %v", l, err)
	}
	for _, want := range []string{"listen 80;", "server_name broker-test-2.example.org;", "location ^~ /.well-known/acme-challenge/",
		"root " + filepath.Join(root, "var/www/certbot") + ";", `return 503 "TLS cert not yet issued`} {
		if !strings.Contains(broker, want) {
			t.Errorf("Phase A vhost lacks %q:\n%s", want, broker)
		}
	}
	if strings.Contains(broker, "ssl") || strings.Contains(broker, "proxy_pass") {
		t.Errorf("Phase A vhost names TLS or the service before a certificate exists:\n%s", broker)
	}
	for _, p := range []string{"etc/nginx/conf.d/agentkeys-old-host.example.org.conf", "etc/nginx/sites-available/agentkeys-worker-gone", "etc/nginx/sites-enabled/agentkeys-worker-gone"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("stale %s was not removed", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, agent.RetiredDir("/var/lib/agentkeys"), "etc/nginx/conf.d/agentkeys-old-host.example.org.conf")); err != nil || string(b) != "server {}\n" {
		t.Errorf("a file the agent did not write was removed without a backup: %v", err)
	}
	if read(t, filepath.Join(confDir, "default.conf")) != "# not ours\n" {
		t.Error("a file the agent does not own was touched")
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "etc/nginx/sites-available")); len(ents) != 2 {
		t.Errorf("sites: %v, want the broker's and the signer's (the backend has no vhost)", ents)
	}
	if st, err := os.Stat(filepath.Join(root, "var/www/certbot/.well-known/acme-challenge")); err != nil || !st.IsDir() {
		t.Errorf("challenge dir not created: %v", err)
	}

	env = newEnv(t, root)
	if res, err := s.Run(ctx, env); err != nil || res.Status != agent.OK || *env.Counters != (agent.Counters{}) {
		t.Fatalf("second run: %s %v %+v, want ok and zero counters", res.Status, err, *env.Counters)
	}

	// A certificate flips that host (only) to Phase B.
	writeCert(t, root, "signer-test-2.example.org")
	env = newEnv(t, root)
	res, err = s.Run(ctx, env)
	if err != nil || env.Counters.Reloads != 1 || env.Counters.FilesWritten != 2 {
		t.Fatalf("flip: %v reloads=%d written=%d (%v), want 1 reload, the vhost and the marker written", err, env.Counters.Reloads, env.Counters.FilesWritten, res.Changes)
	}
	signer := read(t, filepath.Join(root, signerSite))
	for _, want := range []string{"listen 443 ssl http2;", "ssl_certificate     " + filepath.Join(root, "etc/agentkeys/tls/signer-test-2.example.org/fullchain.pem"),
		"proxy_pass http://127.0.0.1:8092;", "return 301 https://$host$request_uri;", "location ^~ /.well-known/acme-challenge/",
		// The signer's scope, as the setup script's site: /dev/ and /healthz, 404 elsewhere.
		"location /dev/ {", "location = /healthz {", "return 404;", "proxy_set_header Authorization     $http_authorization;",
		"proxy_set_header X-Forwarded-For   $remote_addr;"} {
		if !strings.Contains(signer, want) {
			t.Errorf("Phase B vhost lacks %q:\n%s", want, signer)
		}
	}
	if res.Detail["phases"].(map[string]string)["broker-test-2.example.org"] != "A" {
		t.Error("broker left Phase A without a certificate")
	}

	// A renewed certificate (same paths, new bytes) reloads without a vhost change.
	writeCert(t, root, "signer-test-2.example.org")
	env = newEnv(t, root)
	if _, err := s.Run(ctx, env); err != nil || env.Counters.Reloads != 1 {
		t.Fatalf("renewed cert: %v reloads=%d, want one reload", err, env.Counters.Reloads)
	}
}

func TestKilledBeforeReloadReloadsOnRerun(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	s := &Step{}
	if _, err := s.Run(ctx, newEnv(t, root)); err != nil {
		t.Fatal(err)
	}
	// The files are in place but the reload never happened (the marker is
	// written only after it): the next run must reload.
	os.Remove(filepath.Join(root, AppliedRecord("/var/lib/agentkeys")))
	env := newEnv(t, root)
	if _, err := s.Run(ctx, env); err != nil || env.Counters.Reloads != 1 {
		t.Fatalf("rerun after a lost reload: %v reloads=%d, want 1", err, env.Counters.Reloads)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	root := t.TempDir()
	env := newEnv(t, root)
	env.DryRun = true
	res, err := (&Step{}).Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.Changed || !strings.Contains(strings.Join(res.Changes, "\n"), "would write "+brokerSite) {
		t.Errorf("plan: %s %v", res.Status, res.Changes)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "etc/nginx/sites-available")); len(ents) != 0 {
		t.Error("dry run created files")
	}
}

func TestNonDefaultHTTPSPortInRedirect(t *testing.T) {
	root := t.TempDir()
	writeCert(t, root, "broker-test-2.example.org")
	sp := testSpec()
	sp.Nginx.HTTPSPort = 8443
	v, err := Render(sp, root, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v[0].Data), "return 301 https://$host:8443$request_uri;") || !strings.Contains(string(v[0].Data), "listen 127.0.0.1:8443 ssl http2;") {
		t.Errorf("redirect/listen ignore the port or address:\n%s", v[0].Data)
	}
}

// pickySystem is the sandbox with an nginx -t that rejects any agentkeys
// vhost on disk holding "bogus_directive", as real nginx would.
type pickySystem struct {
	*sandbox
	root  string
	tests int
}

func (p *pickySystem) NginxTest(ctx context.Context) error {
	p.tests++
	files, _ := filepath.Glob(filepath.Join(p.root, "etc/nginx/sites-available", SitePrefix+"*"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "bogus_directive") {
			return fmt.Errorf("nginx: [emerg] unknown directive \"bogus_directive\" in %s", f)
		}
	}
	return p.sandbox.NginxTest(ctx)
}

// sandbox names the embedded field so that its Sandbox method is promoted.
type sandbox = agent.Sandbox

type killed struct{}

// confs maps each agentkeys site to its content.
func confs(t *testing.T, root string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "etc/nginx/sites-available", SitePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[filepath.Base(f)] = read(t, f)
	}
	return out
}

func reloads(t *testing.T, sb *agent.Sandbox) int {
	t.Helper()
	calls, err := sb.Calls()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range calls {
		if c.Op == "nginx" && len(c.Args) == 1 && c.Args[0] == "reload" {
			n++
		}
	}
	return n
}

// A run killed after writing a bad vhost and before the reload leaves the
// bad file on disk and the reload owed. The next run (same bad render)
// writes nothing, owes the reload, and nginx -t rejects the files: the
// files nginx last loaded must really be put back (not just claimed to
// be), pass nginx -t, and the error must say so.
func TestRejectedConfigRestoresWhatNginxLastLoaded(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	sys := &pickySystem{sandbox: agent.NewSandbox(root), root: root}
	env := func() *agent.Env {
		e := newEnv(t, root)
		e.Sys = sys
		return e
	}
	good := &Step{}
	bad := &Step{Mutate: func(host string, b []byte) []byte {
		if host == "signer-test-2.example.org" {
			return append(b, "bogus_directive on;\n"...)
		}
		return b
	}}
	if _, err := good.Run(ctx, env()); err != nil {
		t.Fatal(err)
	}
	loaded := confs(t, root)

	fsx.FaultHook = func(p string) {
		if p == "nginx:before-reload" {
			panic(killed{})
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("the kill before the reload was not reached")
			} else if _, ok := r.(killed); !ok {
				panic(r)
			}
		}()
		bad.Run(ctx, env())
	}()
	fsx.FaultHook = nil
	if reflect.DeepEqual(confs(t, root), loaded) {
		t.Fatal("the killed run wrote no bad vhost")
	}
	before := reloads(t, sys.sandbox)

	e := env()
	_, err := bad.Run(ctx, e)
	if err == nil {
		t.Fatal("nginx -t accepted the bogus vhost")
	}
	for _, want := range []string{"bogus_directive", "the sites nginx last loaded are restored and pass nginx -t"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := confs(t, root); !reflect.DeepEqual(got, loaded) {
		t.Errorf("the rejected files stayed on disk:\n%v\nwant what nginx last loaded:\n%v", got, loaded)
	}
	if err := sys.NginxTest(ctx); err != nil {
		t.Errorf("after the rollback nginx -t fails: %v", err)
	}
	if n := reloads(t, sys.sandbox) - before; n != 0 {
		t.Errorf("a rejected config was reloaded %d times", n)
	}
	if owed, _ := e.IsPending(agent.ActionReloadNginx); owed {
		t.Error("a reload is still owed though the disk holds what nginx runs")
	}
	// And the good render is a no-op again.
	e = env()
	if res, err := good.Run(ctx, e); err != nil || res.Status != agent.OK || *e.Counters != (agent.Counters{}) {
		t.Errorf("good run after the rollback: %s %v %v %+v, want ok and nothing done", res.Status, res.Changes, err, *e.Counters)
	}
}

// Without a record of what nginx last loaded (the very first run), the
// rollback restores what was on disk before the run, and says that.
func TestRejectedFirstConfigSaysWhatItRestored(t *testing.T) {
	root := t.TempDir()
	debianNginx(t, root)
	os.WriteFile(filepath.Join(root, "etc/nginx/sites-available/agentkeys-old"), []byte("server {}\n"), 0o644)
	sys := &pickySystem{sandbox: agent.NewSandbox(root), root: root}
	e := newEnv(t, root)
	e.Sys = sys
	_, err := (&Step{Mutate: func(_ string, b []byte) []byte { return append(b, "bogus_directive on;\n"...) }}).Run(context.Background(), e)
	if err == nil || !strings.Contains(err.Error(), "the sites found before this run (the agent has no record of what nginx last loaded) are restored") {
		t.Fatalf("err = %v", err)
	}
	if got := confs(t, root); !reflect.DeepEqual(got, map[string]string{"agentkeys-old": "server {}\n"}) {
		t.Errorf("conf dir after the rollback: %v", got)
	}
}

// plantRecord writes an applied record naming files at host paths.
func plantRecord(t *testing.T, root, rec string, files map[string]string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"sha256": "planted", "files": files})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, rec)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, rec), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The record of what nginx last loaded is the agent's, in its root-only
// directory; the rollback writes only the step's own vhost paths, whatever
// a record names, and the copy earlier agents kept in the service user's
// state dir is ignored.
func TestRollbackWritesOnlyVhostPaths(t *testing.T) {
	ctx := context.Background()
	bad := &Step{Mutate: func(_ string, b []byte) []byte { return append(b, "bogus_directive on;\n"...) }}
	const stateDir = "/var/lib/agentkeys"
	if got, want := AppliedRecord(stateDir), agent.AgentDir(stateDir)+"/nginx-applied.json"; got != want {
		t.Fatalf("AppliedRecord = %s, want %s (in the root-only agent dir)", got, want)
	}

	t.Run("record in the agent dir", func(t *testing.T) {
		root := t.TempDir()
		if _, err := (&Step{}).Run(ctx, newEnv(t, root)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(root, agent.AgentDir(stateDir)))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("agent dir: %v %v, want 0700", st, err)
		}
		if st, err := os.Stat(filepath.Join(root, AppliedRecord(stateDir))); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("record: %v %v, want 0600", st, err)
		}
		if _, err := os.Stat(filepath.Join(root, stateDir, "nginx")); !os.IsNotExist(err) {
			t.Errorf("the record's old directory in the state dir was created: %v", err)
		}

		// A record naming another path (as a tampered one would).
		loaded := confs(t, root)
		broker := brokerSite
		files := map[string]string{broker: read(t, filepath.Join(root, broker))}
		for _, p := range []string{"/etc/cron.d/x", "/etc/nginx/sites-available/../../cron.d/y", "/etc/nginx/sites-available/default", "/etc/nginx/agentkeys-z"} {
			files[p] = "* * * * * root touch /tmp/pwned\n"
		}
		plantRecord(t, root, AppliedRecord(stateDir), files)
		e := newEnv(t, root)
		e.Sys = &pickySystem{sandbox: agent.NewSandbox(root), root: root}
		_, err = bad.Run(ctx, e)
		if err == nil {
			t.Fatal("nginx -t accepted the bogus vhost")
		}
		for _, want := range []string{"nginx rejected the new sites; the sites nginx last loaded that are the agent's are restored and pass nginx -t",
			"refused to write /etc/cron.d/x, /etc/nginx/agentkeys-z, /etc/nginx/sites-available/../../cron.d/y, /etc/nginx/sites-available/default, which " +
				AppliedRecord(stateDir) + " names: not one of the agent's sites (/etc/nginx/sites-available/agentkeys-*)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		for _, p := range []string{"/etc/cron.d/x", "/etc/cron.d/y", "/etc/nginx/sites-available/default", "/etc/nginx/agentkeys-z"} {
			if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
				t.Errorf("the rollback wrote %s", p)
			}
		}
		if got := confs(t, root); got[filepath.Base(broker)] != loaded[filepath.Base(broker)] || len(got) != 1 {
			t.Errorf("the recorded vhost was not the only one restored: %v", got)
		}
	})

	t.Run("old record in the state dir", func(t *testing.T) {
		root := t.TempDir()
		plantRecord(t, root, stateDir+"/nginx/applied.json", map[string]string{"/etc/cron.d/x": "* * * * * root touch /tmp/pwned\n"})
		e := newEnv(t, root)
		e.Sys = &pickySystem{sandbox: agent.NewSandbox(root), root: root}
		_, err := bad.Run(ctx, e)
		if err == nil || !strings.Contains(err.Error(), "the agent has no record of what nginx last loaded") {
			t.Fatalf("err = %v, want the rollback to the files found before the run", err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/cron.d/x")); !os.IsNotExist(err) {
			t.Error("the rollback wrote a path from the old record")
		}
	})
}

// failingReload is the sandbox with a reload that fails after nginx -t
// passed (systemctl reload refused, nginx not running...).
type failingReload struct {
	*sandbox
	fail bool
}

func (f *failingReload) NginxReload(ctx context.Context) error {
	if f.fail {
		return errors.New("systemctl reload nginx: exit status 1: nginx.service is not active, cannot reload")
	}
	return f.sandbox.NginxReload(ctx)
}

// A reload that fails after nginx -t passed is not a rejected config: the
// new files stay in place, the reload stays owed and the error says the
// reload failed; the next run reloads without writing anything.
func TestFailedReloadKeepsTheNewFilesAndOwesTheReload(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	sys := &failingReload{sandbox: agent.NewSandbox(root)}
	env := func() *agent.Env {
		e := newEnv(t, root)
		e.Sys = sys
		return e
	}
	if _, err := (&Step{}).Run(ctx, env()); err != nil {
		t.Fatal(err)
	}
	loadedRecord := read(t, filepath.Join(root, AppliedRecord("/var/lib/agentkeys")))
	changed := &Step{Mutate: func(host string, b []byte) []byte {
		if host == "signer-test-2.example.org" {
			return append(b, "# changed\n"...)
		}
		return b
	}}
	sys.fail = true
	_, err := changed.Run(ctx, env())
	if err == nil {
		t.Fatal("a failed reload passed")
	}
	if !strings.Contains(err.Error(), "nginx -t accepts the new vhosts, which stay in place, but reloading nginx failed") || strings.Contains(err.Error(), "rejected") {
		t.Errorf("error %q does not say that the reload (not the config) failed", err)
	}
	if got := read(t, filepath.Join(root, signerSite)); !strings.HasSuffix(got, "# changed\n") {
		t.Errorf("the accepted new vhost was rolled back:\n%s", got)
	}
	if read(t, filepath.Join(root, AppliedRecord("/var/lib/agentkeys"))) != loadedRecord {
		t.Error("the record of what nginx last loaded changed, though nginx loaded nothing")
	}
	e := env()
	if owed, _ := e.IsPending(agent.ActionReloadNginx); !owed {
		t.Error("the failed reload is not owed")
	}

	sys.fail = false
	e = env()
	res, err := changed.Run(ctx, e)
	if err != nil || e.Counters.Reloads != 1 || e.Counters.FilesWritten != 1 {
		t.Fatalf("rerun: %v %v reloads=%d written=%d, want the reload and only the record written", err, res.Changes, e.Counters.Reloads, e.Counters.FilesWritten)
	}
	if owed, _ := e.IsPending(agent.ActionReloadNginx); owed {
		t.Error("the reload is still owed after it succeeded")
	}
	e = env()
	if res, err := changed.Run(ctx, e); err != nil || res.Status != agent.OK || *e.Counters != (agent.Counters{}) {
		t.Errorf("third run: %s %v %+v, want a no-op", res.Status, err, *e.Counters)
	}
}
