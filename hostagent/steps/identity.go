package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Identity refuses a spec for another stack than the one the host serves. It
// reads BROKER_OIDC_ISSUER from the deployed broker unit's EnvironmentFile
// or its Environment= lines (the file wins, as in systemd), and changes
// nothing.
type Identity struct{}

func (Identity) Name() string { return "identity" }

func (Identity) Run(_ context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "identity"}
	deployed, src, err := DeployedIssuer(env.Root)
	if err != nil {
		return res, err
	}
	if deployed == "" {
		res.Detail = map[string]any{"deployed": "none (fresh host)"}
		return res, nil
	}
	res.Detail = map[string]any{"deployedIssuer": deployed, "source": src}
	if deployed != env.Spec.Issuer {
		return res, agent.BadInput(fmt.Errorf("cross-wiring: this host serves %s (stack %s, from %s) but the spec is for stack %s (%s); refusing to change anything",
			deployed, StackOfIssuer(deployed, env.Spec.Zone), src, env.Spec.Stack, env.Spec.Issuer))
	}
	return res, nil
}

// StackOfIssuer names the stack whose broker host is the issuer's host in zone.
func StackOfIssuer(issuer, zone string) string {
	u, err := url.Parse(issuer)
	if err == nil {
		if st, ok := naming.StackForBrokerHost(u.Host, zone); ok {
			return st
		}
	}
	return "unknown"
}

// DeployedIssuer returns the issuer the deployed broker unit serves ("" on a
// fresh host) and the file it came from.
func DeployedIssuer(root string) (issuer, source string, err error) {
	return DeployedBrokerVar(root, contract.VarIssuer)
}

// DeployedBrokerVar returns a variable of the deployed broker unit's
// environment ("" when unset or on a fresh host) and the file it came from.
// As in systemd (systemd.exec: "Settings from these files override settings
// made with Environment="), a value from an EnvironmentFile wins over an
// Environment= line, and among each kind the last assignment wins. A unit
// naming no EnvironmentFile is read with BrokerEnv only when its
// Environment= lines do not set the variable.
func DeployedBrokerVar(root, name string) (value, source string, err error) {
	unit := UnitDir + "/" + BrokerUnit
	b, err := os.ReadFile(fsx.HostPath(root, unit))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	var envFiles []string
	inline := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "Environment":
			for _, kv := range strings.Fields(v) {
				kv = strings.Trim(kv, `"'`)
				if val, ok := strings.CutPrefix(kv, name+"="); ok {
					value, source, inline = val, unit, true
				}
			}
		case "EnvironmentFile":
			envFiles = append(envFiles, strings.TrimPrefix(v, "-"))
		}
	}
	if len(envFiles) == 0 {
		if inline {
			return value, source, nil
		}
		envFiles = []string{BrokerEnv}
	}
	for _, f := range envFiles {
		lines, err := agent.ReadEnvFile(fsx.HostPath(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// An unreadable env file must not pass for a fresh host: the
			// issuer it holds may be another stack's.
			return "", "", fmt.Errorf("cannot read %s, the environment file of the deployed %s, for %s: %w; fix it (or move it away if the host serves no broker) and re-run", f, BrokerUnit, name, err)
		}
		for _, l := range lines {
			if val, ok := strings.CutPrefix(l, name+"="); ok {
				value, source = strings.Trim(val, `"'`), f
			}
		}
	}
	return value, source, nil
}
