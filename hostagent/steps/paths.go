// Package steps holds the host agent's core steps: identity, packages,
// users, source, build, secrets, units and health. Each is idempotent,
// runnable alone, and changes nothing in a dry run.
package steps

import (
	"crypto/sha256"
	"encoding/hex"
	"path"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Host paths the steps converge.
const (
	UnitDir    = contract.UnitDir
	SSHDDropIn = "/etc/ssh/sshd_config.d/60-agentkeys-eic.conf"
	BrokerUnit = "agentkeys-broker.service"
	// BrokerEnv is read for the deployed issuer when the broker unit names
	// no environment file (hosts of the first agent versions).
	BrokerEnv  = contract.EnvDir + "/broker.env"
	EICCommand = "/usr/share/ec2-instance-connect/eic_run_authorized_keys"
	EICUser    = "ec2-instance-connect"
)

// Core returns the core steps in run order, with nginx and certificate steps
// (built elsewhere) placed between units and health. Identity is the guard.
func Core(extra ...agent.Step) (guard agent.Step, list []agent.Step) {
	list = []agent.Step{Packages{}, Users{}, Source{}, Build{}, Secrets{}, Units{}}
	list = append(list, extra...)
	return Identity{}, append(list, Health{})
}

// Agent state files, root-only, in the agent dir.
func fingerprintPath(s *spec.HostSpec) string {
	return path.Join(agent.AgentDir(s.StateDir), "build.fingerprint")
}
func binariesPath(s *spec.HostSpec) string {
	return path.Join(agent.AgentDir(s.StateDir), "binaries.json")
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// serviceOwner is the service user (with its group); in a dry run on a fresh
// host the user may not exist yet, so ownership is left out of the comparison.
func serviceOwner(env *agent.Env, group bool) (o ownerT, err error) {
	u := env.Spec.ServiceUser
	if group {
		o, err = env.Owner("", u)
	} else {
		o, err = env.Owner(u, "")
	}
	if err != nil && env.DryRun {
		return noOwner, nil
	}
	return o, err
}
