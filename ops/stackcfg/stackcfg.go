// Package stackcfg resolves a stack name to what the operator commands need:
// its derived names plus the deployed facts names cannot derive (instance id,
// configured EIP), read through infra/config from Pulumi.<stack>.yaml.
package stackcfg

import (
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Target is one stack as the operator tools see it.
type Target struct {
	Names      naming.Names
	InstanceID string
	EIP        string // configured address (agentkeys:eipAddress), "" when not set
	Config     *config.Config
}

// Load reads and validates projectDir/Pulumi.<stack>.yaml.
func Load(projectDir, stack string) (Target, error) {
	if _, err := naming.ParseStack(stack); err != nil {
		return Target{}, err
	}
	c, err := config.LoadFile(projectDir, stack)
	if err != nil {
		return Target{}, err
	}
	return Target{Names: c.Names(), InstanceID: c.InstanceID, EIP: c.EIPAddress, Config: c}, nil
}

// Stacks lists every valid stack name with a Pulumi.<stack>.yaml in projectDir.
func Stacks(projectDir string) ([]string, error) {
	all, err := config.StackFiles(projectDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range all {
		if _, err := naming.ParseStack(s); err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}
