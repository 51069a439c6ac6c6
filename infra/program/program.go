// Package program is the Pulumi program of the agentkeys project: the stack's
// typed config -> naming -> components. infra/main.go runs it under the real
// engine's Go language host; `agentkeys deploy` runs it inline through the
// Automation API (Inline); infra/plan runs the same function under the mock
// engine.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/infra/config"
)

// Run is the program's entry point for pulumi.Run.
func Run(ctx *pulumi.Context) error { return export(ctx, Declare) }

func export(ctx *pulumi.Context, declare func(*pulumi.Context) (map[string]pulumi.Input, error)) error {
	outs, err := declare(ctx)
	if err != nil {
		return err
	}
	for k, v := range outs {
		ctx.Export(k, v)
	}
	return nil
}

// Source is where an inline run takes what the language host would give a
// program: the stack's config and the project's directory.
type Source struct {
	// Config is the stack's config as the engine holds it (secrets decrypted).
	Config *config.Raw
	// ProjectDir is the checkout the host agent is built from ("" = find
	// go.mod above the working directory).
	ProjectDir string
}

// Inline is the program for the Automation API: the Go language host is not
// involved, so config.FromEnv would see nothing; the caller reads the
// stack's config (auto.Stack.GetAllConfig) and passes it here.
func Inline(src Source) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		return export(ctx, func(ctx *pulumi.Context) (map[string]pulumi.Input, error) { return DeclareFrom(ctx, src) })
	}
}

// Declare declares the stack's resources and returns its outputs, with the
// config the language host (or the mock engine) passes in PULUMI_CONFIG.
// The config is validated before anything is declared.
func Declare(ctx *pulumi.Context) (map[string]pulumi.Input, error) {
	vals, err := config.EnvValues()
	if err != nil {
		return nil, err
	}
	secret, err := config.EnvSecretKeys()
	if err != nil {
		return nil, err
	}
	return DeclareFrom(ctx, Source{Config: &config.Raw{Values: vals, SecretKeys: secret}, ProjectDir: ctx.RootDirectory()})
}

// DeclareFrom is Declare with the config and project directory given.
func DeclareFrom(ctx *pulumi.Context, src Source) (map[string]pulumi.Input, error) {
	if ctx.Stack() == AccountStackName {
		return accountProgram(ctx, src.Config.Values)
	}
	cfg, err := src.Config.Validate(ctx.Stack())
	if err != nil {
		return nil, err
	}
	return declareBroker(ctx, cfg, src.ProjectDir)
}
