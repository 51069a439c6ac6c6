package main

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/profile"
)

func (a *app) attachProfileCmd() *cobra.Command {
	var stack, awsProfile string
	c := &cobra.Command{
		Use:   "attach-profile --stack X",
		Short: "Attach the stack's instance profile to its broker EC2 (idempotent; replaces a stale one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.loadStack(stack)
			if err != nil {
				return err
			}
			cfg, err := awsx.Load(cmd.Context(), t.Names.Region, awsProfile)
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			r, err := profile.Attach(cmd.Context(), ec2.NewFromConfig(cfg), t.InstanceID, t.Names.InstanceProfile)
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			switch r.Action {
			case "ok":
				fmt.Fprintf(a.out, "ok: %s already has instance profile %s\n", r.Instance, r.Profile)
			case "replaced":
				fmt.Fprintf(a.out, "changed: %s now has instance profile %s (was %s)\n", r.Instance, r.Profile, r.Previous)
			default:
				fmt.Fprintf(a.out, "changed: %s now has instance profile %s\n", r.Instance, r.Profile)
			}
			return nil
		},
	}
	c.Flags().StringVar(&stack, "stack", "", "stack name")
	c.Flags().StringVar(&awsProfile, "profile", "", "AWS profile (default: the SDK chain, e.g. AWS_PROFILE=agentkeys-admin)")
	return c
}
