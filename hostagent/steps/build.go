package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Build runs the build in the checkout and installs each binary where its
// units run it (/usr/local/bin, as the old scripts did; a binary replaced
// with another is kept as <name>.bak, as they did). It is skipped (ok) when
// the fingerprint of the sources (the git tree of HEAD), the commands,
// their environment and the service list equals the last good build's and
// every binary is installed. The fingerprint is recorded only after a
// successful build and install. A package built with features is built in
// its own cargo call (cargo drops a package's features when several
// packages share one call) and its features are checked in cargo's JSON
// report: the broker without auth-email-link refuses to boot.
type Build struct{}

func (Build) Name() string { return "build" }

// cargoBuild is one cargo call and the features it must report for pkg.
type cargoBuild struct {
	args     []string
	pkg      string
	features []string
}

// builds returns the build's cargo calls: one for every package without
// features, one per package with features.
func builds(s *spec.HostSpec) []cargoBuild {
	var plain []string
	seen := map[string]bool{}
	var featured []cargoBuild
	for _, svc := range s.Services {
		if svc.Package == "" || seen[svc.Package] {
			continue
		}
		seen[svc.Package] = true
		if len(svc.Features) == 0 {
			plain = append(plain, svc.Package)
			continue
		}
		featured = append(featured, cargoBuild{
			args: []string{"cargo", "build", "--release", "--locked", "-p", svc.Package, "--features", strings.Join(svc.Features, ","), "--message-format=json"},
			pkg:  svc.Package, features: svc.Features,
		})
	}
	var out []cargoBuild
	if len(plain) > 0 {
		c := []string{"cargo", "build", "--release", "--locked"}
		for _, p := range plain {
			c = append(c, "-p", p)
		}
		out = append(out, cargoBuild{args: c})
	}
	return append(out, featured...)
}

// Commands returns the build commands: spec.Build.Command, or the cargo calls.
func Commands(s *spec.HostSpec) [][]string {
	if len(s.Build.Command) > 0 {
		return [][]string{s.Build.Command}
	}
	var out [][]string
	for _, b := range builds(s) {
		out = append(out, b.args)
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

// reportedFeatures reads the features cargo compiled pkg's binary with from
// its --message-format=json output (nil, false when it built nothing new).
func reportedFeatures(out []byte, pkg string) ([]string, bool) {
	var feats []string
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "{") {
			continue
		}
		var m struct {
			Reason string `json:"reason"`
			Target struct {
				Name string   `json:"name"`
				Kind []string `json:"kind"`
			} `json:"target"`
			Features []string `json:"features"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Reason != "compiler-artifact" || m.Target.Name != pkg || !slices.Contains(m.Target.Kind, "bin") {
			continue
		}
		feats, found = m.Features, true
	}
	return feats, found
}

func missingFeatures(want, got []string) []string {
	var out []string
	for _, f := range want {
		if !slices.Contains(got, f) {
			out = append(out, f)
		}
	}
	return out
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
	run := func(c []string) ([]byte, error) {
		env.Logf("build: %s", strings.Join(c, " "))
		out, err := env.Sys.Run(ctx, dir, runEnv, c[0], c[1:]...)
		if err != nil {
			return out, fmt.Errorf("build failed (the installed binaries are unchanged): %w", err)
		}
		return out, nil
	}
	if len(s.Build.Command) > 0 {
		if _, err := run(s.Build.Command); err != nil {
			return res, err
		}
	} else {
		for _, b := range builds(s) {
			out, err := run(b.args)
			if err != nil {
				return res, err
			}
			if b.pkg == "" {
				continue
			}
			got, built := reportedFeatures(out, b.pkg)
			if !built || len(missingFeatures(b.features, got)) == 0 {
				continue
			}
			// Cargo reused a build without the features: rebuild it once.
			env.Logf("build: %s was built without %v; cleaning it and building again", b.pkg, missingFeatures(b.features, got))
			if _, err := run([]string{"cargo", "clean", "--release", "-p", b.pkg}); err != nil {
				return res, err
			}
			if out, err = run(b.args); err != nil {
				return res, err
			}
			if got, built = reportedFeatures(out, b.pkg); built && len(missingFeatures(b.features, got)) > 0 {
				return res, fmt.Errorf("cargo built %s without features %v even after cargo clean -p (reported: %v); a cargo config or CARGO_* variable on the host overrides feature resolution: check ~/.cargo/config.toml, %s/.cargo/config.toml and the environment",
					b.pkg, missingFeatures(b.features, got), got, s.Source.Dir)
			}
		}
	}
	res.Changes = append(res.Changes, "built: "+describe(cmds))
	fsx.Fault("build:after-build")
	hashes := map[string]string{}
	for _, svc := range s.Services {
		if _, done := hashes[svc.Install]; done {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, svc.Binary))
		if err != nil {
			return res, fmt.Errorf("service %s: the build did not produce %s (services[].binary): %w", svc.Name, svc.Binary, err)
		}
		if cur, err := os.ReadFile(env.Path(svc.Install)); err == nil && sha(cur) != sha(b) {
			if _, err := env.WriteFile(&res, svc.Install+".bak", cur, 0o755, mustRoot(env)); err != nil {
				return res, err
			}
		}
		if _, err := env.WriteFile(&res, svc.Install, b, 0o755, mustRoot(env)); err != nil {
			return res, err
		}
		hashes[svc.Install] = sha(b)
	}
	if _, err := env.EnsureDir(nil, agent.AgentDir(s.StateDir), 0o700, mustRoot(env)); err != nil {
		return res, err
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
	type svc struct{ Name, Package, Binary, Install string }
	var ss []svc
	for _, s := range svcs {
		ss = append(ss, svc{s.Name, s.Package, s.Binary, s.Install})
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
		if _, err := os.Stat(env.Path(svc.Install)); err != nil {
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
