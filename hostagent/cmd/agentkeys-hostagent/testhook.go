package main

import (
	"os"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
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

// cargoOnPath adds root's rustup directory to PATH when cargo is not on it
// (agent.CargoOnPath; the packages step finds cargo the same way).
func cargoOnPath() { agent.CargoOnPath() }
