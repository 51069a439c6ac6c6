package main

import (
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/audit"
	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/table"
)

func (a *app) auditCmd() *cobra.Command {
	var (
		stack, profile string
		asJSON         bool
	)
	c := &cobra.Command{
		Use:   "audit --stack X",
		Short: "Report IAM, S3 and EC2 settings of a stack broader than the program declares (spec §7)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.loadStack(stack)
			if err != nil {
				return err
			}
			cfg, err := awsx.Load(cmd.Context(), t.Names.Region, profile)
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			r := audit.Run(cmd.Context(), t.Names, t.InstanceID, audit.Clients{
				IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg),
			})
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(r)
			} else {
				rows := [][]string{}
				for _, f := range r.Findings {
					rows = append(rows, []string{f.Resource, f.Kind, f.Detail})
				}
				if len(rows) > 0 {
					_ = table.Write(a.out, []string{"RESOURCE", "FINDING", "DETAIL"}, rows)
				}
				fmt.Fprintf(a.out, "%s: %d resources checked, %d findings\n", stack, len(r.Checked), len(r.Findings))
			}
			if len(r.Findings) > 0 {
				return fail(exitFail, "audit %s: %d findings", stack, len(r.Findings))
			}
			return nil
		},
	}
	c.Flags().StringVar(&stack, "stack", "", "stack name")
	c.Flags().StringVar(&profile, "profile", "", "AWS profile (default: the SDK chain, e.g. AWS_PROFILE=agentkeys-admin)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
