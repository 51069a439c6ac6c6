package realhost_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/steps"
)

// The full bring-up on a fresh host: packages from the real mirror through
// the NAT (Debian's cargo preinstalled: the container cannot reach
// sh.rustup.rs, so the packages step must find it and install no rustup),
// users with EC2 Instance Connect (a stand-in package) and sshd reloaded by
// the real sshd, the source cloned from a repository in the container, the
// stand-in workspace built by the real cargo, secrets, units that real
// systemd starts and keeps running, nginx serving pebble's certificates
// for every hostname, the renew timer, health. Then a second apply changes
// nothing, and a reboot brings everything back with the next apply a no-op.
func TestFullApply(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{certs: true, cargo: true})
	s := st.spec
	st.root(eicRepoScript)

	cold := st.applyOK(s)
	figure("realhost_cold_apply_s", cold.Duration)
	for _, r := range cold.Summary.Steps {
		if r.Status == agent.Failed || r.Status == agent.Skipped {
			t.Errorf("step %s: %s %s", r.Step, r.Status, r.Reason)
		}
	}
	// Every unit starts once on its first definition: none is restarted
	// (a unit that another's Wants= pulled in is already on it).
	if n := cold.Summary.Counters.Restarts; n != 0 {
		t.Errorf("a first apply restarted %d units: %v", n, cold.step(t, "units").Changes)
	}
	pk := cold.step(t, "packages")
	changes := strings.Join(pk.Changes, "\n")
	for _, p := range steps.OSPackages {
		if !strings.Contains(changes, "installed "+p) && st.try("dpkg-query -W -f='${Status}' "+p).Stdout != "install ok installed" {
			t.Errorf("package %s neither installed by the step nor present", p)
		}
	}
	if d, _ := pk.Detail["rust-toolchain"].(string); d != "cargo at /usr/bin/cargo" {
		t.Errorf("rust-toolchain detail %q, want Debian's cargo found", d)
	}
	if st.try("test -e /root/.rustup || test -e /root/.cargo/bin/cargo").Code == 0 {
		t.Error("rustup installed a toolchain although Debian's cargo was there")
	}
	if got := cold.Summary.Hosts.Issued; len(got) != len(s.Hostnames()) {
		t.Errorf("issued %v, want every hostname %v (skipped: %v)", got, s.Hostnames(), cold.Summary.Hosts.Skipped)
	}
	for name, c := range cold.Summary.Health {
		if !c.OK {
			t.Errorf("health %s: %s", name, c.Detail)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	active := st.requireActive(st.expectedUnits()...)
	figure("realhost_units_active", active)
	figure("realhost_units_expected", len(st.expectedUnits()))
	if timers := st.root("systemctl list-timers --all --no-legend"); !strings.Contains(timers, acme.RenewTimer) {
		t.Errorf("%s not listed by systemctl list-timers:\n%s", acme.RenewTimer, timers)
	}
	st.requireServed()

	// The sshd drop-in is live: the real sshd was reloaded and runs with it.
	if !strings.Contains(st.Journal("ssh.service"), "Received SIGHUP") {
		t.Errorf("sshd was not reloaded:\n%s", st.Journal("ssh.service"))
	}
	if eff := st.root("sshd -T -C user=" + s.LoginUser + ",host=x,addr=127.0.0.1"); !strings.Contains(eff, "authorizedkeyscommand "+steps.EICCommand) {
		t.Errorf("sshd -T does not show the Instance Connect key command:\n%s", eff)
	}
	st.dropAndCheckLogin(t)

	// BROKER_CAP_PUBKEY_PEM reaches the workers intact through systemd's
	// EnvironmentFile: the multi-line PEM, newlines and all.
	k, _ := s.Keypair("session")
	pem := st.root("cat " + k.PublicPEM)
	workers := 0
	for _, svc := range s.Services {
		if !strings.Contains(strings.Join(svc.EnvFiles, " "), contract.PubKeyEnvFile) {
			continue
		}
		workers++
		got, ok := st.environ(svc.Unit)[contract.VarCapPubKey]
		if !ok || got != pem {
			t.Errorf("%s: %s in /proc/<pid>/environ = %q, want the exported PEM %q", svc.Unit, contract.VarCapPubKey, got, pem)
		}
	}

	if workers != 4 || !strings.Contains(pem, "\n-----END PUBLIC KEY-----") {
		t.Errorf("checked %d workers' %s (want creds, memory, config, classify) against %q", workers, contract.VarCapPubKey, pem)
	}

	noop := st.applyOK(s)
	figure("realhost_noop_apply_s", noop.Duration)
	figure("realhost_noop_changes", noop.changes())
	requireNoop(t, "second apply", noop)

	// plan on the converged host has nothing to do either.
	pr := st.Run("sudo -n agentkeys-hostagent plan --json")
	var plan agent.Summary
	if err := json.Unmarshal([]byte(pr.Stdout), &plan); err != nil || pr.Code != 0 {
		t.Fatalf("plan: %v %s", err, pr)
	}
	for _, r := range plan.Steps {
		if len(r.Changes) > 0 || (r.Status != agent.OK && r.Step != "health") {
			t.Errorf("plan on a converged host: step %s is %s: %v", r.Step, r.Status, r.Changes)
		}
	}

	// Reboot: every unit comes back healthy, and the next apply is a no-op.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := st.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	st.requireActive(st.expectedUnits()...)
	st.requireServed()
	after := st.applyOK(s)
	requireNoop(t, "apply after a reboot", after)

	// One variable of one worker changes: that unit alone restarts.
	creds := s.Service("creds")
	pids := map[string]string{}
	for _, u := range st.serviceUnits() {
		pids[u] = strings.TrimSpace(st.root("systemctl show -P MainPID " + u))
	}
	creds.Env["RUST_LOG"] = "debug"
	changed := st.applyOK(s)
	if c := changed.Summary.Counters; c.Restarts != 1 || c.Reloads != 0 || c.ACMEOrders != 0 {
		t.Errorf("an env change of %s: counters %+v, want one restart and nothing else", creds.Unit, c)
	}
	st.requireActive(st.serviceUnits()...)
	for u, pid := range pids {
		now := strings.TrimSpace(st.root("systemctl show -P MainPID " + u))
		if (u == creds.Unit) == (now == pid) {
			t.Errorf("%s: main pid %s before, %s after an env change of %s only", u, pid, now, creds.Unit)
		}
	}
	if got := st.environ(creds.Unit)["RUST_LOG"]; got != "debug" {
		t.Errorf("%s runs with RUST_LOG=%q after the change", creds.Unit, got)
	}
}

// requireNoop fails unless every step is ok and nothing was counted.
func requireNoop(t *testing.T, what string, r run) {
	t.Helper()
	for _, s := range r.Summary.Steps {
		if s.Status != agent.OK {
			t.Errorf("%s: step %s is %s: %s %v", what, s.Step, s.Status, s.Reason, s.Changes)
		}
	}
	if r.changes() != 0 {
		t.Errorf("%s: counters %+v, want all 0", what, r.Summary.Counters)
	}
}
