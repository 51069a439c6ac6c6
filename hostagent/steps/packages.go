package steps

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// OSPackages are the OS packages the later steps need, by their
// Debian/Ubuntu names (the Host maps them on dnf hosts: agent.DNFNames):
// git for source; build-essential, pkg-config and libssl-dev for the cargo
// build (cc, make, openssl-sys); nginx for nginx; curl and ca-certificates
// for rustup and the health probes.
var OSPackages = []string{"nginx", "git", "curl", "ca-certificates", "build-essential", "pkg-config", "libssl-dev"}

// RustToolchainChange is what the packages step reports for an installed
// (or, in plan, missing) toolchain.
const RustToolchainChange = "the Rust toolchain (rustup, minimal profile) in " + agent.RootCargoHome

// Packages installs OSPackages and, when this run's build runs cargo and
// cargo is not found, a Rust toolchain for root. It changes nothing on a host that
// has them all (only presence checks run). Plan reports what apply would
// install.
type Packages struct {
	// LookCargo finds cargo; nil: agent.LookCargo (PATH, then the rustup
	// bin directories), as the build will.
	LookCargo func() (string, error)
}

func (Packages) Name() string { return "packages" }

func (p Packages) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "packages", Detail: map[string]any{}}
	for _, name := range OSPackages {
		if env.DryRun {
			present, skipped, err := env.Sys.HasPackage(ctx, name)
			switch {
			case err != nil:
				return res, fmt.Errorf("check OS package %s: %w", name, err)
			case skipped != "":
				res.Detail[name] = "skipped: " + skipped
			case !present:
				res.Changes = append(res.Changes, "would install "+name)
			}
			continue
		}
		installed, skipped, err := env.Sys.InstallPackage(ctx, name)
		if err != nil {
			return res, fmt.Errorf("install OS package %s: %w", name, err)
		}
		if installed {
			res.Changes = append(res.Changes, "installed "+name)
		}
		if skipped != "" {
			res.Detail[name] = "skipped: " + skipped
		}
	}
	if err := p.rust(ctx, env, &res); err != nil {
		return res, err
	}
	if len(res.Detail) == 0 {
		res.Detail = nil
	}
	return res, nil
}

// rust ensures cargo when the build runs it.
func (p Packages) rust(ctx context.Context, env *agent.Env, res *agent.Result) error {
	if !NeedsCargo(env.Spec) {
		cmds := describe(Commands(env.Spec))
		if cmds == "" {
			cmds = "no build commands"
		}
		res.Detail["rust-toolchain"] = "skipped: not required, the build runs no cargo (" + cmds + ")"
		return nil
	}
	if build := (Build{}).Name(); !env.WillRun(build) {
		res.Detail["rust-toolchain"] = "skipped: the " + build + " step does not run in this run (--skip " + build + ", or --only without it); the run that builds installs it"
		return nil
	}
	look := p.LookCargo
	if look == nil {
		look = agent.LookCargo
	}
	if cargo, err := look(); err == nil {
		res.Detail["rust-toolchain"] = "cargo at " + cargo
		return nil
	}
	if env.DryRun {
		res.Changes = append(res.Changes, "would install "+RustToolchainChange)
		return nil
	}
	installed, skipped, err := env.Sys.InstallRustToolchain(ctx)
	if err != nil {
		return fmt.Errorf("install the Rust toolchain (cargo not found): %w", err)
	}
	if skipped != "" {
		res.Detail["rust-toolchain"] = "skipped: " + skipped
	}
	if installed {
		agent.CargoOnPath() // for the build step, in this run
		res.Changes = append(res.Changes, "installed "+RustToolchainChange)
	}
	return nil
}

// NeedsCargo reports whether a build command runs cargo: the default
// build, or a spec build command that is cargo itself.
func NeedsCargo(s *spec.HostSpec) bool {
	for _, c := range Commands(s) {
		if len(c) > 0 && filepath.Base(c[0]) == "cargo" {
			return true
		}
	}
	return false
}
