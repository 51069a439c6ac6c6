package acme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestRenewUnitsVerifyAndScoreBelowFive(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal("systemd-analyze missing: apt-get install systemd")
		}
		t.Skip("systemd-analyze missing")
	}
	dir := t.TempDir()
	units := RenewUnits("/bin/true", "/etc/agentkeys/hostspec.json", "/var/lib/agentkeys", "/var/www/certbot")
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(units[RenewTimer], "RandomizedDelaySec=") || !strings.Contains(units[RenewTimer], "OnCalendar=daily") {
		t.Errorf("timer is not a daily randomized timer:\n%s", units[RenewTimer])
	}
	if !strings.Contains(units[RenewService], "ExecStart=/bin/true renew --spec /etc/agentkeys/hostspec.json") {
		t.Errorf("service does not run renew with the spec:\n%s", units[RenewService])
	}
	out, err := exec.Command(sa, "verify", filepath.Join(dir, RenewTimer), filepath.Join(dir, RenewService)).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
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
