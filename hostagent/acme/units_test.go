package acme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

func TestRenewUnitsVerifyAndScoreBelowFive(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal("systemd-analyze missing: apt-get install systemd")
		}
		t.Skip("systemd-analyze missing")
	}
	// verify runs under a root holding the installed agent and the
	// system's units (the ones ours depend on).
	root := t.TempDir()
	dir := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	units := RenewUnits("/etc/agentkeys/hostspec.json", "/var/lib/agentkeys", "/var/www/certbot")
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(units[RenewTimer], "RandomizedDelaySec=") || !strings.Contains(units[RenewTimer], "OnCalendar=daily") {
		t.Errorf("timer is not a daily randomized timer:\n%s", units[RenewTimer])
	}
	// The installed agent, whichever binary rendered the unit.
	if !strings.Contains(units[RenewService], "\nExecStart=/usr/local/bin/agentkeys-hostagent renew --spec /etc/agentkeys/hostspec.json\n") {
		t.Errorf("service does not run the installed agent's renew with the spec:\n%s", units[RenewService])
	}
	// Every writable path is optional: an absent one must not fail the unit.
	rw := regexp.MustCompile(`(?m)^ReadWritePaths=(.*)$`).FindStringSubmatch(units[RenewService])
	if rw == nil {
		t.Fatalf("no ReadWritePaths:\n%s", units[RenewService])
	}
	for _, p := range strings.Fields(rw[1]) {
		if !strings.HasPrefix(p, "-/") {
			t.Errorf("ReadWritePaths entry %q is not optional (\"-\" prefix)", p)
		}
	}
	if !strings.Contains(rw[1], "-/var/lib/agentkeys") || !strings.Contains(rw[1], "-/etc/agentkeys/tls") || !strings.Contains(rw[1], "-/var/www/certbot") {
		t.Errorf("ReadWritePaths %q lack the state, certificate or webroot dirs", rw[1])
	}
	bin := filepath.Join(root, spec.AgentPath)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sysdir := "/usr/lib/systemd/system"
	if _, err := os.Stat(sysdir); err != nil {
		sysdir = "/lib/systemd/system"
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sysdir, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out, err := exec.Command(sa, "verify", "--root="+root, "--man=no", filepath.Join(dir, RenewTimer), filepath.Join(dir, RenewService)).CombinedOutput()
	// Lines about the host's own units (outside our root) are not ours.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "agentkeys-hostagent") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
	out, err = exec.Command(sa, "security", "--offline=yes", filepath.Join(dir, RenewService)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("%s exposure %.1f", RenewService, score)
	if score >= 5.0 {
		t.Errorf("%s exposure %.1f, want below 5.0", RenewService, score)
	}
}
