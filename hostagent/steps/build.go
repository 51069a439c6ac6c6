package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Build runs the build in the checkout and installs each service's binary
// to BinDir. It is skipped (ok) when the fingerprint of the sources (the git
// tree of HEAD), the commands, their environment and the service list equals
// the last good build's and every binary is installed. The fingerprint is
// recorded only after a successful build and install.
type Build struct{}

func (Build) Name() string { return "build" }

// Commands returns the build commands: spec.Build.Command, or one cargo
// build per distinct package and feature set.
func Commands(s *spec.HostSpec) [][]string {
	if len(s.Build.Command) > 0 {
		return [][]string{s.Build.Command}
	}
	seen := map[string]bool{}
	var out [][]string
	for _, svc := range s.Services {
		if svc.Package == "" {
			continue
		}
		c := []string{"cargo", "build", "--release", "-p", svc.Package}
		if len(svc.Features) > 0 {
			c = append(c, "--features", strings.Join(svc.Features, ","))
		}
		if k := strings.Join(c, " "); !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

// BuildEnv is the build's environment beyond the agent's own.
func BuildEnv(s *spec.HostSpec) (env []string, note string) {
	m := map[string]string{"CARGO_INCREMENTAL": "0"}
	if s.Build.Sccache {
		if _, err := exec.LookPath("sccache"); err == nil {
			m["RUSTC_WRAPPER"] = "sccache"
		} else {
			note = "sccache requested but not on PATH; building without a compiler cache"
		}
	}
	for k, v := range s.Build.Env {
		m[k] = v
	}
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, note
}

func (Build) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "build"}
	s := env.Spec
	dir := env.Path(s.Source.Dir)
	if !isRepo(dir) {
		if env.DryRun {
			res.Changes = append(res.Changes, "would build after the checkout exists")
			return res, nil
		}
		return res, fmt.Errorf("no checkout at %s; run the source step first", s.Source.Dir)
	}
	tree, err := git(ctx, env, dir, "rev-parse", "HEAD^{tree}")
	if err != nil {
		return res, err
	}
	cmds := Commands(s)
	benv, note := BuildEnv(s)
	fp := fingerprint(tree, cmds, benv, s.Services)
	if note != "" {
		res.Detail = map[string]any{"note": note}
	}
	old, _ := os.ReadFile(env.Path(fingerprintPath(s)))
	if strings.TrimSpace(string(old)) == fp && binariesInstalled(env) {
		return res, reclaim(env, &res)
	}
	if env.DryRun {
		res.Changes = append(res.Changes, "would build: "+describe(cmds))
		return res, nil
	}
	// The checkout belongs to the login user; git run by the build (as root)
	// must still trust it.
	runEnv := append(append([]string{}, benv...), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
	for _, c := range cmds {
		env.Logf("build: %s", strings.Join(c, " "))
		if _, err := env.Sys.Run(ctx, dir, runEnv, c[0], c[1:]...); err != nil {
			return res, fmt.Errorf("build failed (the installed binaries are unchanged): %w", err)
		}
	}
	res.Changes = append(res.Changes, "built: "+describe(cmds))
	fsx.Fault("build:after-build")
	hashes := map[string]string{}
	for _, svc := range s.Services {
		b, err := os.ReadFile(filepath.Join(dir, svc.Binary))
		if err != nil {
			return res, fmt.Errorf("service %s: the build did not produce %s (services[].binary): %w", svc.Name, svc.Binary, err)
		}
		if _, err := env.WriteFile(&res, BinPath(svc.Name), b, 0o755, mustRoot(env)); err != nil {
			return res, err
		}
		hashes[svc.Name] = sha(b)
	}
	hb, _ := json.MarshalIndent(hashes, "", "  ")
	if _, err := env.WriteFile(&res, binariesPath(s), append(hb, '\n'), 0o600, mustRoot(env)); err != nil {
		return res, err
	}
	if _, err := env.WriteFile(&res, fingerprintPath(s), []byte(fp+"\n"), 0o600, mustRoot(env)); err != nil {
		return res, err
	}
	return res, reclaim(env, &res)
}

func describe(cmds [][]string) string {
	var parts []string
	for _, c := range cmds {
		parts = append(parts, strings.Join(c, " "))
	}
	return strings.Join(parts, "; ")
}

func fingerprint(tree string, cmds [][]string, benv []string, svcs []spec.Service) string {
	type svc struct{ Name, Package, Binary string }
	var ss []svc
	for _, s := range svcs {
		ss = append(ss, svc{s.Name, s.Package, s.Binary})
	}
	b, _ := json.Marshal(struct {
		Tree     string
		Commands [][]string
		Env      []string
		Services []svc
	}{tree, cmds, benv, ss})
	return sha(b)
}

func binariesInstalled(env *agent.Env) bool {
	for _, svc := range env.Spec.Services {
		if _, err := os.Stat(env.Path(BinPath(svc.Name))); err != nil {
			return false
		}
	}
	return true
}

// reclaim removes the root toolchain (~1.5 GB) when the spec asks; the next
// build then needs it reinstalled.
func reclaim(env *agent.Env, res *agent.Result) error {
	if !env.Spec.Build.ReclaimToolchain {
		return nil
	}
	for _, d := range []string{"/root/.cargo", "/root/.rustup"} {
		if !env.Exists(d) {
			continue
		}
		if env.DryRun {
			res.Changes = append(res.Changes, "would remove "+d)
			continue
		}
		if err := os.RemoveAll(env.Path(d)); err != nil {
			return err
		}
		res.Changes = append(res.Changes, "removed "+d)
	}
	return nil
}

// InstalledHashes reads the binary hashes the build step recorded.
func InstalledHashes(env *agent.Env) map[string]string {
	m := map[string]string{}
	if b, err := os.ReadFile(env.Path(binariesPath(env.Spec))); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}
