package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RootEnv is a test hook: when --root is not given and this is set, the agent
// converges the sandbox root it names instead of the machine. The SSH
// bring-up test (infra/e2e) sets it through sshd's SetEnv so that the
// declared `sudo -n agentkeys-hostagent apply` runs unmodified; sudo's
// env_reset drops it unless sudoers keeps it (env_keep), as the test's does.
const RootEnv = "AGENTKEYS_HOSTAGENT_ROOT"

func rootFromEnv(o *opts) {
	if o.root == "" {
		o.root = os.Getenv(RootEnv)
	}
}

// cargoOnPath adds root's rustup directory to PATH when cargo is not on it:
// `sudo -n` resets PATH to secure_path, which never holds ~/.cargo/bin, so a
// rustup-installed toolchain is otherwise invisible to the build step.
func cargoOnPath() {
	if _, err := exec.LookPath("cargo"); err == nil {
		return
	}
	for _, home := range []string{os.Getenv("HOME"), "/root"} {
		if home == "" {
			continue
		}
		dir := filepath.Join(home, ".cargo", "bin")
		if fi, err := os.Stat(filepath.Join(dir, "cargo")); err == nil && !fi.IsDir() {
			os.Setenv("PATH", strings.TrimSuffix(os.Getenv("PATH")+string(os.PathListSeparator)+dir, string(os.PathListSeparator)))
			return
		}
	}
}
