package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/infra/config"
)

// declareBroker declares one broker stack.
func declareBroker(ctx *pulumi.Context, cfg *config.Config) (map[string]pulumi.Input, error) {
	n := cfg.Names()
	return map[string]pulumi.Input{
		"stack":      pulumi.String(n.Stack.Name),
		"issuer":     pulumi.String(n.Issuer),
		"brokerUrl":  pulumi.String(n.Issuer),
		"hostnames":  pulumi.ToStringArray(n.Hostnames()),
		"mailDomain": pulumi.String(n.MailDomain),
	}, nil
}
