// Package program is the Pulumi program of the agentkeys project: the stack's
// typed config -> naming -> components. infra/main.go runs it under the real
// engine; infra/plan runs the same function under the mock engine.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/infra/config"
)

// Run is the program's entry point for pulumi.Run.
func Run(ctx *pulumi.Context) error {
	outs, err := Declare(ctx)
	if err != nil {
		return err
	}
	for k, v := range outs {
		ctx.Export(k, v)
	}
	return nil
}

// Declare declares the stack's resources and returns its outputs. The config
// is validated before anything is declared.
func Declare(ctx *pulumi.Context) (map[string]pulumi.Input, error) {
	if ctx.Stack() == AccountStackName {
		return accountProgram(ctx)
	}
	cfg, err := config.FromEnv(ctx.Stack())
	if err != nil {
		return nil, err
	}
	return declareBroker(ctx, cfg)
}
