package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// What `make plan STACK=test-7` says before Pulumi.test-7.yaml exists is what
// the README's "A new test slot N" journey does, command for command.
func TestNewStackAdviceMatchesTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ReadStackFile(t.TempDir(), "test-7")
	if err == nil {
		t.Fatal("a missing stack file read")
	}
	cmds := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(err.Error(), -1)
	if len(cmds) < 3 {
		t.Fatalf("advice names %d commands: %v", len(cmds), err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readme), "\n") {
		lines[strings.TrimSpace(strings.SplitN(l, "  #", 2)[0])] = true
	}
	for _, c := range cmds {
		if !lines[c[1]] {
			t.Errorf("the advice's %q is not a command line of the README", c[1])
		}
	}
	if !strings.Contains(err.Error(), "commit Pulumi.test-7.yaml") || !strings.Contains(string(readme), "git add Pulumi.test-7.yaml") {
		t.Errorf("advice and README must both say to commit the file: %v", err)
	}
	// The prod side's advice names the prod key.
	if a := NewStackAdvice("base"); !strings.Contains(a, "alias/agentkeys-pulumi-prod") || !strings.Contains(a, "cp Pulumi.prod.yaml Pulumi.base.yaml") {
		t.Errorf("base: %s", a)
	}
}
