package realhost_test

import (
	"strings"
	"testing"
)

// The agent killed (SIGKILL, through sudo, over SSH) at successive points of
// a first bring-up converges on the next run: every unit active, every
// hostname served over TLS, and the master secret, KEKs and keypairs those
// killed runs minted unchanged (sha256 before and after). Each killed run
// redoes what the one before left, so every point is reached on a host
// that an earlier kill left half converged.
func TestKilledApplyConverges(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{certs: true, cargo: true})
	s := st.spec
	st.root(eicRepoScript)

	points := []string{
		"users:before-sshd-reload", // drop-in written, sshd not reloaded
		"source:after-clone",       // clone beside the checkout, not renamed
		"build:after-build",        // built, nothing installed
		"secrets:after-values",     // master secret and KEKs minted, no keypairs yet
		"units:before-daemon-reload",
		"units:before-restart", // daemon reloaded, the first unit not started
		"nginx:before-reload",  // vhosts written, nginx not reloaded
	}
	var minted map[string]string
	for i, p := range points {
		r := st.applyKilled(s, p)
		if i == 1 && !strings.Contains(r.Stderr, "reloaded sshd (owed by an interrupted run)") {
			t.Errorf("the run after the kill at %s did not carry out the sshd reload it owed:\n%s", points[0], r.Stderr)
		}
		sums := st.secretSums()
		if minted != nil {
			if d := diffSums(minted, sums); len(d) > 0 {
				t.Fatalf("after the kill at %s, secrets a killed run minted changed: %v", p, d)
			}
		}
		minted = sums
	}
	if len(minted) != len(s.Secrets)-2+len(s.Keypairs) { // the channel secrets are carried over, never minted
		t.Fatalf("killed runs left %d secrets, want the master secret, 3 KEKs and 2 keypairs: %v", len(minted), minted)
	}

	final := st.applyOK(s)
	if d := diffSums(minted, st.secretSums()); len(d) > 0 {
		t.Fatalf("the converging run changed secrets: %v", d)
	}
	st.requireActive(st.expectedUnits()...)
	st.requireServed()
	if got := final.Summary.Hosts.Issued; len(got) != len(s.Hostnames()) {
		t.Errorf("issued %v, want every hostname (skipped: %v)", got, final.Summary.Hosts.Skipped)
	}
	requireNoop(t, "apply after the converging run", st.applyOK(s))
}
