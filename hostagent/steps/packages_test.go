package steps

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

var (
	noCargo   = func() (string, error) { return "", exec.ErrNotFound }
	haveCargo = func() (string, error) { return "/opt/rust/bin/cargo", nil }
)

// sandboxCalls returns the sandbox's recorded calls as "op arg..." lines.
func sandboxCalls(t *testing.T, sb *agent.Sandbox) []string {
	t.Helper()
	cs, err := sb.Calls()
	require.NoError(t, err)
	var out []string
	for _, c := range cs {
		out = append(out, strings.TrimSpace(c.Op+" "+strings.Join(c.Args, " ")))
	}
	return out
}

func installCalls() []string {
	var out []string
	for _, p := range OSPackages {
		out = append(out, "install-package "+p)
	}
	return out
}

// A host without cargo whose build is cargo's: every package, then the
// toolchain, goes to the System; the sandbox installs neither and says so.
func TestPackagesSandboxNoCargo(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	s.Build.Command = nil // cargo build -p agentkeys-<service>
	env, sb := newEnv(t, s)
	res, err := Packages{LookCargo: noCargo}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"install-package nginx", "install-package git", "install-package curl", "install-package ca-certificates",
		"install-package build-essential", "install-package pkg-config", "install-package libssl-dev", "install-rust-toolchain"}, sandboxCalls(t, sb))
	assert.Empty(t, res.Changes)
	assert.Equal(t, "skipped: "+agent.SandboxNoRust, res.Detail["rust-toolchain"])
	for _, p := range OSPackages {
		assert.Equal(t, "skipped: "+agent.SandboxNoPackages, res.Detail[p], p)
	}
}

func TestPackagesNoToolchainWhenCargoPresentOrNotRun(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	s.Build.Command = nil
	env, sb := newEnv(t, s)
	res, err := Packages{LookCargo: haveCargo}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, installCalls(), sandboxCalls(t, sb), "cargo present: no toolchain call")
	assert.Equal(t, "cargo at /opt/rust/bin/cargo", res.Detail["rust-toolchain"])

	// A custom build command that is not cargo needs no toolchain, even
	// where cargo is absent.
	s = sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	env, sb = newEnv(t, s)
	res, err = Packages{LookCargo: noCargo}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, installCalls(), sandboxCalls(t, sb), "custom build command: no toolchain call")
	assert.Equal(t, "skipped: not required, the build runs no cargo (sh build.sh)", res.Detail["rust-toolchain"])

	// A custom build command that is cargo does need it.
	s.Build.Command = []string{"/usr/local/bin/cargo", "build", "--release", "--workspace"}
	assert.True(t, NeedsCargo(s))
	s.Services = nil
	s.Build.Command = nil
	assert.False(t, NeedsCargo(s), "nothing to build")
}

func TestPackagesPlanInstallsNothing(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	s.Build.Command = nil
	env, sb := newEnv(t, s)
	env.DryRun = true
	res, err := Packages{LookCargo: noCargo}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Empty(t, sandboxCalls(t, sb), "plan makes no install call")
	assert.Equal(t, []string{"would install " + RustToolchainChange}, res.Changes)
	assert.Equal(t, "skipped: "+agent.SandboxNoPackages, res.Detail["nginx"])

	// On a host that can tell, plan names each missing package.
	fh := &fakePkgHost{sandboxSys: sb, present: map[string]bool{"git": true, "curl": true, "ca-certificates": true}}
	env.Sys = fh
	res, err = Packages{LookCargo: noCargo}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"would install nginx", "would install build-essential", "would install pkg-config", "would install libssl-dev",
		"would install " + RustToolchainChange}, res.Changes)
	assert.Empty(t, fh.installs, "plan installs nothing")
}

// sandboxSys names the embedded field so that its Sandbox method is promoted.
type sandboxSys = agent.Sandbox

// fakePkgHost is a host with some packages present that installs the
// others (or fails to, for names in fail).
type fakePkgHost struct {
	*sandboxSys
	present     map[string]bool
	fail        map[string]bool
	unavailable map[string]bool // not in the package sources at all
	cargo       bool
	installs    []string
}

func (f *fakePkgHost) HasPackage(_ context.Context, name string) (bool, string, error) {
	return f.present[name], "", nil
}

func (f *fakePkgHost) InstallPackage(_ context.Context, name string) (bool, string, error) {
	if f.present[name] {
		return false, "", nil
	}
	if f.unavailable[name] {
		return false, "", fmt.Errorf("%s: %w (apt-cache policy shows no candidate): E: Unable to locate package %s", name, agent.ErrPackageUnavailable, name)
	}
	if f.fail[name] {
		return false, "", errors.New("apt-get install -y -q -o DPkg::Lock::Timeout=600 " + name + ": exit status 100: E: Unable to locate package " + name)
	}
	f.installs = append(f.installs, name)
	f.present[name] = true
	return true, "", nil
}

func (f *fakePkgHost) InstallRustToolchain(context.Context) (bool, string, error) {
	if f.cargo {
		return false, "", nil
	}
	f.installs = append(f.installs, "rust")
	f.cargo = true
	return true, "", nil
}

func TestPackagesInstallOnceThenOK(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	s.Build.Command = nil
	env, sb := newEnv(t, s)
	fh := &fakePkgHost{sandboxSys: sb, present: map[string]bool{"git": true, "ca-certificates": true}}
	env.Sys = fh
	step := Packages{LookCargo: func() (string, error) {
		if fh.cargo {
			return "/root/.cargo/bin/cargo", nil
		}
		return "", exec.ErrNotFound
	}}
	guard, _ := Core()
	r := &agent.Runner{Guard: guard, Steps: []agent.Step{step}}
	sum, err := r.Run(context.Background(), env)
	require.NoError(t, err)
	res := stepResult(t, sum, "packages")
	assert.Equal(t, agent.Changed, res.Status)
	assert.Equal(t, []string{"installed nginx", "installed curl", "installed build-essential", "installed pkg-config", "installed libssl-dev",
		"installed " + RustToolchainChange}, res.Changes)
	assert.Equal(t, []string{"nginx", "curl", "build-essential", "pkg-config", "libssl-dev", "rust"}, fh.installs)

	// Everything present: ok, nothing installed.
	fh.installs = nil
	sum, err = r.Run(context.Background(), env)
	require.NoError(t, err)
	res = stepResult(t, sum, "packages")
	assert.Equal(t, agent.OK, res.Status, "%v", res.Changes)
	assert.Empty(t, res.Changes)
	assert.Empty(t, fh.installs)
	assert.Equal(t, map[string]any{"rust-toolchain": "cargo at /root/.cargo/bin/cargo"}, res.Detail)
}

func TestPackagesFailureNamesPackageAndCommand(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	env, sb := newEnv(t, s)
	fh := &fakePkgHost{sandboxSys: sb, present: map[string]bool{}, fail: map[string]bool{"libssl-dev": true}}
	env.Sys = fh
	_, err := Packages{}.Run(context.Background(), env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "install OS package libssl-dev: apt-get install -y -q -o DPkg::Lock::Timeout=600 libssl-dev: exit status 100")
}

// --skip build, or --only without build: the toolchain only the build
// needs is not installed in this run.
func TestPackagesNoToolchainWhenBuildDoesNotRun(t *testing.T) {
	for name, tc := range map[string]struct {
		steps []agent.Step
		only  []string
	}{
		"--skip build":           {steps: []agent.Step{Packages{LookCargo: noCargo}, agent.Skip("build", "--skip")}},
		"--only packages":        {steps: []agent.Step{Packages{LookCargo: noCargo}, Build{}}, only: []string{"packages"}},
		"build runs (reference)": {steps: []agent.Step{Packages{LookCargo: noCargo}}},
	} {
		t.Run(name, func(t *testing.T) {
			s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
			s.Build.Command = nil // cargo
			env, sb := newEnv(t, s)
			guard, _ := Core()
			sum, err := (&agent.Runner{Guard: guard, Steps: tc.steps}).Run(context.Background(), env, tc.only...)
			require.NoError(t, err)
			res := stepResult(t, sum, "packages")
			calls := strings.Join(sandboxCalls(t, sb), "\n")
			if name == "build runs (reference)" {
				assert.Contains(t, calls, "install-rust-toolchain")
				return
			}
			assert.NotContains(t, calls, "install-rust-toolchain")
			assert.Contains(t, res.Detail["rust-toolchain"], "skipped: the build step does not run in this run")
		})
	}
}

// Debian has no ec2-instance-connect: the users step creates the users,
// reports why Instance Connect is not wired, and leaves sshd alone.
func TestUsersWithoutInstanceConnectPackage(t *testing.T) {
	s := sandboxtest.Spec(t, sandboxtest.NewRepo(t))
	env, sb := newEnv(t, s)
	env.Sys = &fakePkgHost{sandboxSys: sb, present: map[string]bool{}, unavailable: map[string]bool{EICPackage: true}}
	res, err := Users{}.Run(context.Background(), env)
	require.NoError(t, err, "a missing Instance Connect package is not a failure")
	assert.Contains(t, res.Changes, "created user "+s.ServiceUser)
	assert.Contains(t, res.Changes, "created user "+s.LoginUser)
	assert.Contains(t, res.Reason, "EC2 Instance Connect not wired")
	assert.Contains(t, res.Detail[EICPackage], "not available from this host's package sources")
	assert.NoFileExists(t, env.Path(SSHDDropIn), "a drop-in naming a command that does not exist")
	for _, c := range sandboxCalls(t, sb) {
		assert.NotContains(t, c, "reload", "sshd reloaded for nothing")
	}
	// Any other install failure still fails the step.
	env2, sb2 := newEnv(t, s)
	env2.Sys = &fakePkgHost{sandboxSys: sb2, present: map[string]bool{}, fail: map[string]bool{EICPackage: true}}
	_, err = Users{}.Run(context.Background(), env2)
	require.Error(t, err)
}
