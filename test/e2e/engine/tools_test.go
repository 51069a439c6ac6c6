package engine

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the module root (this file is test/e2e/engine/tools_test.go).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// goModVersion is the version go.mod requires of module mod.
func goModVersion(t *testing.T, mod string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == mod {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", mod)
	return ""
}

// toolset is what `make deps` installed for the real engine.
type toolset struct {
	CLI        string // the pulumi binary
	PulumiHome string // holds plugins/
}

// requireTools returns the installed CLI and PULUMI_HOME; a missing piece
// skips the test, or fails it under AGENTKEYS_E2E=1.
func requireTools(t *testing.T) toolset {
	t.Helper()
	root := repoRoot(t)
	ts := toolset{CLI: os.Getenv("AGENTKEYS_PULUMI"), PulumiHome: os.Getenv("AGENTKEYS_PULUMI_HOME")}
	if ts.CLI == "" {
		ts.CLI = filepath.Join(root, "bin", "pulumi")
	}
	if ts.PulumiHome == "" {
		ts.PulumiHome = filepath.Join(root, ".pulumi-home")
	}
	var missing []string
	if _, err := os.Stat(ts.CLI); err != nil {
		missing = append(missing, ts.CLI)
	}
	for _, p := range plugins(t) {
		bin := filepath.Join(ts.PulumiHome, "plugins", "resource-"+p.name+"-v"+p.version, "pulumi-resource-"+p.name)
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		msg := "the real-engine tools are missing: " + strings.Join(missing, ", ") + " (install: make deps, or bash .ci/install.d/engine.sh)"
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return ts
}

type pluginRef struct{ name, version string }

// plugins are the resource plugins the program's SDKs ask for, at the
// versions go.mod pins.
func plugins(t *testing.T) []pluginRef {
	v := func(mod string) string { return strings.TrimPrefix(goModVersion(t, mod), "v") }
	return []pluginRef{
		{"aws", v("github.com/pulumi/pulumi-aws/sdk/v6")},
		{"command", v("github.com/pulumi/pulumi-command/sdk")},
		{"tls", v("github.com/pulumi/pulumi-tls/sdk/v5")},
	}
}

// TestToolsInstalled: the CLI reports the SDK's version (the Automation API
// refuses a CLI older than its SDK, and an unversioned build), and the CLI
// sees every plugin in the project's PULUMI_HOME at the pinned version, so
// it never tries to download one.
func TestToolsInstalled(t *testing.T) {
	ts := requireTools(t)
	out, err := exec.Command(ts.CLI, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", ts.CLI, err)
	}
	if got, want := strings.TrimSpace(string(out)), goModVersion(t, "github.com/pulumi/pulumi/sdk/v3"); os.Getenv("AGENTKEYS_PULUMI") == "" && got != want {
		t.Fatalf("bin/pulumi is %s, go.mod's SDK is %s: re-run make deps", got, want)
	}
	cmd := exec.Command(ts.CLI, "plugin", "ls", "--json")
	cmd.Env = append(os.Environ(), "PULUMI_HOME="+ts.PulumiHome, "PULUMI_SKIP_UPDATE_CHECK=true")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("pulumi plugin ls: %v", err)
	}
	var listed []struct{ Name, Kind, Version string }
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("pulumi plugin ls --json: %v\n%s", err, out)
	}
	for _, p := range plugins(t) {
		found := false
		for _, l := range listed {
			found = found || l.Name == p.name && l.Kind == "resource" && l.Version == p.version
		}
		if !found {
			t.Errorf("plugin %s %s is not installed in %s (listed: %s)", p.name, p.version, ts.PulumiHome, out)
		}
	}
}
