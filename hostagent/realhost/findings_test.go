package realhost_test

import (
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/hostagent/steps"
)

// The renew unit, as installed, under real systemd: within its sandbox a
// renewal runs nginx -t (which binds the listen ports), flips a vhost in
// conf.d or in sites-available + sites-enabled, writes the certificate and
// state dirs, and reloads nginx. Only the ExecStart is swapped for those
// actions; every hardening line is the unit's own.
func TestRenewUnitCanTestAndFlipNginx(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	h.root("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null")
	// The directories exist on a converged host; ReadWritePaths skips absent ones.
	h.root(fmt.Sprintf("mkdir -p %s %s %s", nginx.CertDir, s.StateDir, s.Nginx.Webroot))
	units := acme.RenewUnits(spec.DefaultPath, s.StateDir, s.Nginx.Webroot)
	for name, text := range units {
		h.writeRoot("/etc/systemd/system/"+name, []byte(text), 0o644)
	}
	renewal := strings.Join([]string{
		"#!/bin/sh",
		"set -ex",
		"nginx -t",
		"echo '# phase B' > /etc/nginx/conf.d/agentkeys-renewal-probe.conf",
		"echo '# phase B' > /etc/nginx/sites-available/agentkeys-renewal-probe",
		"ln -sfn ../sites-available/agentkeys-renewal-probe /etc/nginx/sites-enabled/agentkeys-renewal-probe",
		"echo cert > " + path.Join(nginx.CertDir, "renewal-probe"),
		"echo state > " + path.Join(s.StateDir, "renewal-probe"),
		"nginx -t",
		"systemctl reload nginx",
	}, "\n")
	h.writeRoot("/usr/local/sbin/renewal-probe", []byte(renewal+"\n"), 0o755)
	h.writeRoot("/etc/systemd/system/"+acme.RenewService+".d/probe.conf",
		[]byte("[Service]\nExecStart=\nExecStart=/usr/local/sbin/renewal-probe\n"), 0o644)
	h.root("systemctl daemon-reload && systemctl enable --now " + acme.RenewTimer)

	r := h.Run("sudo -n systemctl start " + acme.RenewService)
	if r.Code != 0 {
		t.Fatalf("the renew unit cannot do a renewal's work under its own sandbox: %s\n%s", r, h.Journal(acme.RenewService))
	}
	for _, f := range []string{"/etc/nginx/conf.d/agentkeys-renewal-probe.conf", "/etc/nginx/sites-enabled/agentkeys-renewal-probe",
		path.Join(nginx.CertDir, "renewal-probe"), path.Join(s.StateDir, "renewal-probe")} {
		h.root("test -e " + f)
	}
	if !strings.Contains(h.Journal(acme.RenewService), "test is successful") {
		t.Fatalf("nginx -t did not pass inside the unit:\n%s", h.Journal(acme.RenewService))
	}
	if got := strings.TrimSpace(h.Run("systemctl is-active nginx").Stdout); got != "active" {
		t.Fatalf("nginx is %s after the renewal's reload", got)
	}
	if timers := h.MustRun("systemctl list-timers --all --no-legend"); !strings.Contains(timers, acme.RenewTimer) {
		t.Fatalf("%s not listed by systemctl list-timers:\n%s", acme.RenewTimer, timers)
	}
}

// One crash-looping worker must not fail the healthy services' checks: each
// check has its own deadline, and the dead one reports its own error. The
// units are the agent's own, started by real systemd; the audit worker's
// binary exits at once, so systemd keeps restarting it.
func TestHealthChecksDoNotShareOneDeadline(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t, "broker", "audit", "signer") // audit is checked before signer and the broker's documents
	s.HealthTimeoutSeconds = 5
	h.installStandin()
	for _, svc := range s.Services {
		if svc.Name == "audit" {
			h.writeRoot(svc.Install, []byte("#!/bin/sh\necho audit crashing >&2\nsleep 0.3\nexit 1\n"), 0o755)
			continue
		}
		h.root("ln -sfn " + StandinPath + " " + svc.Install)
	}
	res := h.apply(s, "--only", "users,secrets,units,health")
	if res.Code == 0 {
		t.Fatal("apply passed with a crash-looping worker")
	}
	health := res.Summary.Health
	for _, name := range []string{"broker", "signer", agent.HealthBrokerDiscovery, agent.HealthBrokerJWKS} {
		if c := health[name]; !c.OK {
			t.Errorf("healthy check %s failed because of another service: %q", name, c.Detail)
		}
	}
	audit := health["audit"]
	if audit.OK || !strings.Contains(audit.Detail, "connection refused") {
		t.Errorf("the crash-looping worker's check = %+v, want its own error (connection refused)", audit)
	}
	if reason := res.step(t, "health").Reason; !strings.Contains(reason, "1 of 5 checks failed") {
		t.Errorf("health reason %q, want exactly the dead worker failing", reason)
	}
	// The check says what systemd says: the unit crash-loops, and why.
	unit := s.Service("audit").Unit
	for _, want := range []string{"unit " + unit + " is activating/auto-restart", "last journal lines of " + unit, "audit crashing"} {
		if !strings.Contains(audit.Detail, want) {
			t.Errorf("the crash-looping worker's check lacks %q:\n%s", want, audit.Detail)
		}
	}

	// Once systemd gives up (failed), another process answering on the
	// worker's port, with a healthy body, is not the worker being healthy.
	deadline := time.Now().Add(2 * time.Minute)
	for h.unitState(unit) != "failed/failed" {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached failed (StartLimitBurst): %s\n%s", unit, h.unitState(unit), h.Journal(unit))
		}
		time.Sleep(time.Second)
	}
	port := s.Service("audit").Port
	h.root(fmt.Sprintf("systemd-run --unit=squatter --setenv=AGENTKEYS_WORKER_AUDIT_BIND=127.0.0.1:%d --setenv=AGENTKEYS_WORKER_AUDIT_LEAVES_DIR=/tmp %s agentkeys-worker-audit", port, StandinPath))
	h.root(fmt.Sprintf("for i in $(seq 100); do curl -fsS http://127.0.0.1:%d/healthz >/dev/null && exit 0; sleep 0.1; done; exit 1", port))
	res = h.apply(s, "--only", "health")
	audit = res.Summary.Health["audit"]
	if res.Code == 0 || audit.OK || !strings.Contains(audit.Detail, "it answers, but its unit "+unit+" is failed/failed, restarted 5 times: another process holds port") ||
		!strings.Contains(audit.Detail, "audit crashing") || !strings.HasPrefix(audit.UnitState, "failed/failed") {
		t.Errorf("a failed unit whose port another process answers: exit %d, check %+v", res.Code, audit)
	}
}

// On a Debian host: --skip build installs no Rust toolchain; and when the
// toolchain install does run and cannot download, the failure is curl's.
func TestPackagesRustToolchainOnDebian(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	s.Build.Command = nil // the default build: cargo

	// --skip build: the OS packages come from the real mirror, no Rust.
	res := h.apply(s, "--only", "packages", "--skip", "build")
	if res.Code != 0 {
		t.Fatalf("apply --only packages --skip build: exit %d: %+v\n%s", res.Code, res.step(t, "packages"), res.Stderr)
	}
	pk := res.step(t, "packages")
	if !strings.Contains(strings.Join(pk.Changes, "\n"), "installed nginx") {
		t.Fatalf("nginx not installed through apt: %+v", pk)
	}
	if r := h.Run("sudo -n test -e /root/.cargo || sudo -n test -e /root/.rustup"); r.Code == 0 {
		t.Fatal("--skip build installed a Rust toolchain")
	}
	if d, _ := pk.Detail["rust-toolchain"].(string); !strings.Contains(d, "build step does not run") {
		t.Errorf("rust-toolchain detail %q does not say why it was left out", d)
	}

	// With the build in the run, sh.rustup.rs unresolvable: the step fails
	// with curl's own error (before, sh read an empty pipe and exited 0).
	h.root("cp /etc/resolv.conf /etc/resolv.conf.real && echo 'nameserver 127.0.0.1' > /etc/resolv.conf")
	res = h.apply(s, "--only", "packages,build")
	pk = res.step(t, "packages")
	if res.Code == 0 || pk.Status != agent.Failed {
		t.Fatalf("the toolchain install without DNS did not fail: %+v", pk)
	}
	if !strings.Contains(pk.Reason, "Could not resolve host: sh.rustup.rs") {
		t.Fatalf("the failure hides curl's error:\n%s", pk.Reason)
	}
	if !strings.Contains(pk.Reason, "exit status 6") {
		t.Fatalf("the installer's exit status is not curl's (6): a failed download still looks like success:\n%s", pk.Reason)
	}
}

// Debian has no ec2-instance-connect package: the users step creates both
// users, says why Instance Connect is not wired, and leaves sshd alone.
func TestUsersOnDebianWithoutInstanceConnect(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	res := h.apply(s, "--only", "users")
	us := res.step(t, "users")
	if res.Code != 0 {
		t.Fatalf("users failed on Debian: %+v", us)
	}
	if !strings.Contains(us.Reason, "EC2 Instance Connect not wired") || !strings.Contains(us.Reason, "ec2-instance-connect") {
		t.Errorf("users reason %q does not say Instance Connect is not wired and why", us.Reason)
	}
	h.root("id " + s.LoginUser + " && id " + s.ServiceUser)
	h.root("! test -e " + steps.SSHDDropIn)
	// The bring-up user still logs in and sudoes.
	h.dropAndCheckLogin(t)
	if res.Summary.Counters.Reloads != 0 {
		t.Errorf("reloads = %d, want 0 (nothing of sshd changed)", res.Summary.Counters.Reloads)
	}
}

// Where the package exists (Ubuntu; here a stand-in package in a local apt
// repository): it is installed through apt, the drop-in goes live with a
// real sshd reload, and that reload is counted.
func TestUsersWithInstanceConnectPackageReloadsAndCountsSSHD(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	h.root(eicRepoScript)

	// sshd re-executes itself on the reload, closing its listening socket
	// for a moment: a connection made as soon as the agent is done (the
	// bring-up's next command) must not be refused.
	res := h.applyThen(s, "if bash -c 'exec 3<>/dev/tcp/127.0.0.1/22' 2>/dev/null; then echo sshd-accepts; else echo sshd-refuses; fi", "--only", "users")
	us := res.step(t, "users")
	if res.Code != 0 {
		t.Fatalf("users: %+v", us)
	}
	if !strings.Contains(res.Stderr, "sshd-accepts") {
		t.Errorf("a connection right after the apply that reloaded sshd was refused:\n%s", res.Stderr)
	}
	changes := strings.Join(us.Changes, "\n")
	for _, want := range []string{"installed " + steps.EICPackage, "wrote " + steps.SSHDDropIn, "reloaded sshd"} {
		if !strings.Contains(changes, want) {
			t.Errorf("users changes lack %q:\n%s", want, changes)
		}
	}
	if !strings.Contains(h.Journal("ssh.service"), "Received SIGHUP") {
		t.Errorf("sshd was not reloaded:\n%s", h.Journal("ssh.service"))
	}
	if n := res.Summary.Counters.Reloads; n != 1 {
		t.Errorf("counters.reloads = %d after one sshd reload, want 1", n)
	}
	h.dropAndCheckLogin(t)

	again := h.apply(s, "--only", "users")
	if c := again.Summary.Counters; again.Code != 0 || c != (agent.Counters{}) {
		t.Errorf("second apply: exit %d, counters %+v, want a no-op", again.Code, c)
	}
}

// dropAndCheckLogin logs in afresh as the bring-up user and runs sudo -n.
func (h *host) dropAndCheckLogin(t *testing.T) {
	t.Helper()
	if out, err := sshCLI(h, "sudo -n true && echo ok"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("a new SSH login with sudo -n fails: %v %s", err, out)
	}
}

// eicRepoScript builds a stand-in ec2-instance-connect package (its key
// command and its system user, as the real one has) into a local apt
// repository the host's apt reads.
const eicRepoScript = `set -e
d=$(mktemp -d); mkdir -p $d/DEBIAN $d/usr/share/ec2-instance-connect
printf 'Package: ec2-instance-connect\nVersion: 1.1.17-0test1\nArchitecture: all\nMaintainer: agentkeys tests <tests@example.org>\nDescription: stand-in for EC2 Instance Connect (tests)\n' > $d/DEBIAN/control
printf '#!/bin/sh\nset -e\ngetent passwd ec2-instance-connect >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ec2-instance-connect\n' > $d/DEBIAN/postinst
printf '#!/bin/sh\nexit 0\n' > $d/usr/share/ec2-instance-connect/eic_run_authorized_keys
chmod 755 $d/DEBIAN/postinst $d/usr/share/ec2-instance-connect/eic_run_authorized_keys
mkdir -p /srv/eic-repo; cd /srv/eic-repo
f=ec2-instance-connect_1.1.17-0test1_all.deb
dpkg-deb --root-owner-group --build $d $f >/dev/null
{ dpkg-deb -f $f; echo "Filename: ./$f"; echo "Size: $(stat -c %s $f)"; echo "SHA256: $(sha256sum $f | cut -d' ' -f1)"; echo; } > Packages
echo 'deb [trusted=yes] file:/srv/eic-repo ./' > /etc/apt/sources.list.d/eic-test.list
rm -rf $d`

// The units step's daemon-reload is counted, and a second apply reloads
// nothing. The services' binaries are the stand-in, where the build step
// installs them; real systemd starts each hardened unit.
func TestDaemonReloadIsCounted(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	h.installStandin()
	for _, svc := range s.Services {
		h.root("ln -sfn " + StandinPath + " " + svc.Install)
	}
	res := h.apply(s, "--only", "users,secrets,units")
	if res.Code != 0 {
		t.Fatalf("apply: %s", res.Summary.Error)
	}
	if !strings.Contains(strings.Join(res.step(t, "units").Changes, "\n"), "daemon-reload") {
		t.Fatalf("no daemon-reload in the units step: %+v", res.step(t, "units"))
	}
	// Debian: no Instance Connect, so no sshd reload; the one reload is systemd's.
	if n := res.Summary.Counters.Reloads; n != 1 {
		t.Errorf("counters.reloads = %d after one daemon-reload, want 1", n)
	}
	var units []string
	for _, svc := range s.Services {
		units = append(units, svc.Unit)
	}
	h.requireActive(units...)
	again := h.apply(s, "--only", "users,secrets,units")
	if c := again.Summary.Counters; again.Code != 0 || c != (agent.Counters{}) {
		t.Errorf("second apply: exit %d, counters %+v, want a no-op", again.Code, c)
	}
}

// Units ordered after the broker (the signer, the workers) start only once
// the broker serves: the broker rewrites the session public key the signer
// reads at each boot, and with Type=simple, After= alone lets the signer
// start while the broker is still booting (seen on a reboot: the signer
// read an empty file, exit 2). Here the broker boots slowly and the file is
// empty, as a rewrite leaves it, when the signer's start pulls the broker in.
func TestDependentsStartAfterTheBrokerServes(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t, "backend", "signer")
	s.Broker().Env["BROKER_SHUTDOWN_GRACE_SECONDS"] = "1" // a quick stop
	h.installStandin()
	for _, svc := range s.Services {
		if svc.Name == "broker" {
			h.writeRoot(svc.Install, []byte("#!/bin/sh\nsleep 1\nexec "+StandinPath+" agentkeys-broker-server \"$@\"\n"), 0o755)
			continue
		}
		h.root("ln -sfn " + StandinPath + " " + svc.Install)
	}
	h.applyOK(s, "--only", "users,secrets,units")
	signer := s.Service("signer").Unit
	k, _ := s.Keypair("session")
	h.root("systemctl stop " + signer + " " + s.Broker().Unit + " && : > " + k.PublicPEM)
	if r := h.try("systemctl start " + signer); r.Code != 0 {
		t.Fatalf("systemctl start %s: %s\n%s", signer, r, h.Journal(signer))
	}
	// Until the signer serves (it reads the key at startup), or gives up.
	port := s.Service("signer").Port
	if r := h.try(fmt.Sprintf("for i in $(seq 150); do curl -fsS http://127.0.0.1:%d/healthz >/dev/null && exit 0; sleep 0.1; done; exit 1", port)); r.Code != 0 {
		t.Errorf("%s does not serve within 15 s (%s):\n%s", signer, h.unitState(signer), h.Journal(signer))
	}
	if n := strings.TrimSpace(h.root("systemctl show -P NRestarts " + signer)); n != "0" {
		t.Errorf("%s restarted %s times: it started before the broker had written its key:\n%s", signer, n, h.Journal(signer))
	}
}

// A unit that cannot start (here: another process holds the backend's
// port) fails the units step with systemd's word and the unit's journal,
// and the other units are still started.
func TestAUnitThatCannotStartFailsWithItsJournal(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t, "backend", "signer")
	h.installStandin()
	for _, svc := range s.Services {
		h.root("ln -sfn " + StandinPath + " " + svc.Install)
	}
	backend := s.Service("backend")
	h.root(fmt.Sprintf("systemd-run --unit=squatter --setenv=AGENTKEYS_WORKER_AUDIT_BIND=127.0.0.1:%d --setenv=AGENTKEYS_WORKER_AUDIT_LEAVES_DIR=/tmp %s agentkeys-worker-audit", backend.Port, StandinPath))
	h.root(fmt.Sprintf("for i in $(seq 100); do curl -fsS http://127.0.0.1:%d/healthz >/dev/null && exit 0; sleep 0.1; done; exit 1", backend.Port))
	res := h.apply(s, "--only", "users,secrets,units")
	units := res.step(t, "units")
	if res.Code == 0 || units.Status != agent.Failed {
		t.Fatalf("apply passed although %s cannot start: %+v", backend.Unit, units)
	}
	for _, want := range []string{backend.Unit + ": systemctl start", "last journal lines:", "in use"} {
		if !strings.Contains(units.Reason, want) {
			t.Errorf("the units step's error lacks %q:\n%s", want, units.Reason)
		}
	}
	h.requireActive(s.Broker().Unit, s.Service("signer").Unit)
}

// Changing runs take turns: an apply started while another run (here a
// stand-in holding the run lock, as the renew timer's run would) is busy
// waits for it, says so, and then converges.
func TestRunsTakeTurns(t *testing.T) {
	t.Parallel()
	h := boot(t)
	s := fixtureSpec(t)
	h.root("systemd-run --unit=other-run flock " + agent.RunLockPath + " sleep 3")
	h.root("for i in $(seq 50); do flock -n " + agent.RunLockPath + " true || exit 0; sleep 0.1; done; exit 1") // until it is held
	res := h.applyOK(s, "--only", "users")
	if !strings.Contains(res.Stderr, "waiting for another agent run to finish") {
		t.Errorf("apply did not wait for the run holding %s:\n%s", agent.RunLockPath, res.Stderr)
	}
	if got := h.unitState("other-run"); got != "inactive/dead" && got != "failed/failed" {
		t.Errorf("apply finished while the other run was still %s", got)
	}
}

// wait-ready under the units' hardening: ProtectProc=invisible hides the
// main process from the ExecStartPost (which runs as the unit's user) until
// the main process has dropped to that user. Here it stays root for 2 s
// first; the wait must go on, not take the hidden process for an exited one
// (CI saw the broker's start fail so: "the unit's process (pid N) exited").
func TestWaitReadyWaitsForAMainProcessStillHidden(t *testing.T) {
	t.Parallel()
	h := boot(t)
	h.installStandin()
	h.install(agentBinary(t), spec.AgentPath, 0o755)
	port := 24517
	unit := fmt.Sprintf(`[Service]
User=daemon
Environment=AGENTKEYS_WORKER_AUDIT_BIND=127.0.0.1:%d
Environment=AGENTKEYS_WORKER_AUDIT_LEAVES_DIR=/tmp
ExecStart=+/bin/sh -c 'sleep 2; exec setpriv --reuid=daemon --regid=daemon --clear-groups %s agentkeys-worker-audit'
ExecStartPost=%s %s http://127.0.0.1:%d/healthz --pid=${MAINPID}
ProtectProc=invisible
ProcSubset=pid
PrivateTmp=yes
`, port, StandinPath, spec.AgentPath, steps.WaitReadyCommand, port)
	h.writeRoot("/etc/systemd/system/hidden-main.service", []byte(unit), 0o644)
	if r := h.try("systemctl daemon-reload && systemctl start hidden-main.service"); r.Code != 0 {
		t.Fatalf("start: %s\n%s", r, h.Journal("hidden-main.service"))
	}
	if st := h.unitState("hidden-main.service"); !strings.HasPrefix(st, "active/running") {
		t.Fatalf("hidden-main.service is %s", st)
	}
}
