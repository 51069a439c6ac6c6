package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/audit"
	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
)

func (a *app) auditCmd() *cobra.Command {
	var (
		stack, profile string
		asJSON, fix    bool
	)
	c := &cobra.Command{
		Use:   "audit --stack X [--fix]",
		Short: "Spec §7: the stack's IAM, S3 and EC2 against what the program declares and the services need; --fix applies the safe fixes",
		Long: "Follows EIP -> instance -> instance profile -> the role actually attached, and checks that role's real policies\n" +
			"(AmazonS3FullAccess, the SES grants the broker and the email worker use), the trust and inline grants left after\n" +
			"federation, bucket policies against the declared ones, undeclared access keys, IMDSv2. Every finding names its fix.\n" +
			"--fix shows, then applies, the remediations that are safe (detach AmazonS3FullAccess from the broker's runtime role).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.loadStack(stack)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cfg, err := awsx.Load(ctx, t.Names.Region, profile)
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			cl := audit.Clients{IAM: iam.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, awsx.S3Options), EC2: ec2.NewFromConfig(cfg)}
			outs := a.outputs(ctx, stack)
			in := audit.Input{Names: t.Names, InstanceID: t.InstanceID}
			if e, err := stackcfg.FindEIP(ctx, t, outs, cl.EC2); err == nil {
				in.EIP = e.IP
			} else {
				fmt.Fprintf(a.errOut, "agentkeys: %v; auditing instance %s from config\n", err, t.InstanceID)
			}
			if outs != nil {
				in.AccessKeys = map[string]string{t.Names.DaemonUser: outs.String("daemonAccessKeyId"), t.Names.SSHUser: outs.String("sshAccessKeyId")}
			}
			r := audit.Run(ctx, in, cl)
			if fix && len(r.Safe()) > 0 && !asJSON {
				printAudit(a.out, r)
				fmt.Fprintf(a.out, "\napplying %d safe fix(es):\n", len(r.Safe()))
				failed := 0
				audit.Fix(ctx, r, cl, func(f audit.Finding, err error) {
					if err != nil {
						failed++
						fmt.Fprintf(a.out, "  FAILED %s: %v\n", f.Command(), err)
						return
					}
					fmt.Fprintf(a.out, "  done   %s\n", f.Command())
				})
				if failed > 0 {
					return fail(exitFail, "audit %s: %d fix(es) failed", stack, failed)
				}
				fmt.Fprintln(a.out, "\nafter the fixes:")
				r = audit.Run(ctx, in, cl)
			} else if fix && asJSON {
				return fail(exitUsage, "--fix shows what it applies as text: drop --json")
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(r)
			} else {
				printAudit(a.out, r)
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
	c.Flags().BoolVar(&fix, "fix", false, "show, then apply, the safe fixes (detach AmazonS3FullAccess from the broker's runtime role), and audit again")
	return c
}

func printAudit(w io.Writer, r audit.Report) {
	rows := [][]string{}
	for _, f := range r.Findings {
		rows = append(rows, []string{f.Resource, f.Kind, f.Detail})
	}
	if len(rows) > 0 {
		_ = table.Write(w, []string{"RESOURCE", "FINDING", "DETAIL"}, rows)
		fmt.Fprintln(w, "\nfixes:")
		for i, f := range r.Findings {
			safe := ""
			if f.Safe {
				safe = "  [safe: agentkeys audit --fix applies it]"
			}
			fmt.Fprintf(w, "  %d. %s %s: %s%s\n", i+1, f.Resource, f.Kind, f.Fix, safe)
		}
	}
	runtime := r.RuntimeRole
	if runtime == "" {
		runtime = "none found"
	}
	fmt.Fprintf(w, "%s: %d resources checked, federated=%v, runtime role %s, %d findings\n", r.Stack, len(r.Checked), r.Federated, runtime, len(r.Findings))
}
