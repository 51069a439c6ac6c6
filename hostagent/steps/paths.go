// Package steps holds the host agent's core steps: identity, packages,
// users, source, build, secrets, units and health. Each is idempotent,
// runnable alone, and changes nothing in a dry run.
package steps

import (
	"crypto/sha256"
	"encoding/hex"
	"path"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Host paths the steps converge.
const (
	BinDir       = "/usr/local/lib/agentkeys/bin"
	UnitDir      = "/etc/systemd/system"
	SSHDDropIn   = "/etc/ssh/sshd_config.d/60-agentkeys-eic.conf"
	BrokerUnit   = "agentkeys-broker.service"
	BrokerEnv    = "/etc/agentkeys/broker.env"
	EICCommand   = "/usr/share/ec2-instance-connect/eic_run_authorized_keys"
	EICUser      = "ec2-instance-connect"
	MasterSecret = "master-secret"
)

// Core returns the core steps in run order, with nginx and certificate steps
// (built elsewhere) placed between units and health. Identity is the guard.
func Core(extra ...agent.Step) (guard agent.Step, list []agent.Step) {
	list = []agent.Step{Packages{}, Users{}, Source{}, Build{}, Secrets{}, Units{}}
	list = append(list, extra...)
	return Identity{}, append(list, Health{})
}

// UnitName is the systemd unit of service name.
func UnitName(name string) string { return "agentkeys-" + name + ".service" }

// BinPath is where service name's binary is installed.
func BinPath(name string) string { return path.Join(BinDir, name) }

// MasterSecretPath, KeysDir, OIDCKeyPath, SessionKeyPath under the state dir.
func MasterSecretPath(s *spec.HostSpec) string { return path.Join(s.StateDir, MasterSecret) }
func KeysDir(s *spec.HostSpec) string          { return path.Join(s.StateDir, "keys") }
func OIDCKeyPath(s *spec.HostSpec) string      { return path.Join(KeysDir(s), "oidc-keypair.json") }
func SessionKeyPath(s *spec.HostSpec) string   { return path.Join(KeysDir(s), "session-keypair.json") }

// Agent state files, root-only, in the state dir.
func fingerprintPath(s *spec.HostSpec) string { return path.Join(s.StateDir, "build.fingerprint") }
func binariesPath(s *spec.HostSpec) string    { return path.Join(s.StateDir, "binaries.json") }
func unitsStatePath(s *spec.HostSpec) string  { return path.Join(s.StateDir, "units.state") }

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
