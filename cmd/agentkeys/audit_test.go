package main

import (
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

// The CLI maps findings to exit 1 and prints them; the finding logic itself
// is covered against seeded clean/broken accounts in ops/audit.
func TestAuditCommandOnUndeployedStack(t *testing.T) {
	dir := project(t, "test-2")
	mototest.Start(t)
	code, out, errs := runCLI(t, deps{}, "audit", "--project-dir", dir, "--stack", "test-2")
	if code != exitFail || !strings.Contains(errs, "findings") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"user/agentkeys-daemon-test-2", "role/agentkeys-test-broker-ssm-2", "bucket/agentkeys-mail-test-2-123456789012", "instance/i-0123456789abcdef0", "missing", "13 resources checked"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runCLI(t, deps{}, "audit", "--project-dir", dir); code != exitUsage || !strings.Contains(errs, "--stack") {
		t.Fatalf("no --stack: %d %s", code, errs)
	}
}
