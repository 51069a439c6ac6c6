package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/fleet"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
	"github.com/agentkeys/agentkeys-infra/ops/verify"
)

func (a *app) fleetCmd() *cobra.Command {
	var (
		watch, timeout           time.Duration
		count                    int
		caFile, resolver, dohURL string
		backend                  string
		connect                  []string
		stacks                   []string
		asJSON                   bool
	)
	c := &cobra.Command{
		Use:   "fleet [--watch DURATION] [--json]",
		Short: "One table of every stack, account included: EC2 state, EIP and its drift, DNS drift, TLS days left, every endpoint, CI slot, last deploy",
		Long: "Reads each stack's outputs and history with `pulumi ... --stack X` (never `pulumi stack select`: the\n" +
			"current stack stays as it was), AWS in each stack's own aws:region, DNS through DoH, and the stack's\n" +
			"Pulumi lock files (file:// or s3:// backend) for who holds a slot.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := fleet.Options{ProjectDir: a.projectDir, Stacks: stacks, Backend: backend, Timeout: timeout}
			var err error
			if o.Connect, err = parseConnect(connect); err != nil {
				return err
			}
			if o.RootCAs, err = loadCA(caFile); err != nil {
				return err
			}
			if o.Resolver, err = verify.ParseResolver(resolver, dohURL); err != nil {
				return fail(exitUsage, "%v", err)
			}
			if cfg, err := awsx.Load(ctx, "", ""); err == nil {
				o.AWS = &cfg
			} else {
				fmt.Fprintf(a.errOut, "agentkeys: no AWS access (%v): EC2 and EIP from config only\n", err)
			}
			o.Pulumi = a.deps.pulumi
			if o.Pulumi == nil {
				if o.Pulumi, err = stackcfg.FindPulumi(a.projectDir); err != nil {
					fmt.Fprintf(a.errOut, "agentkeys: %v: outputs and last deploy not shown\n", err)
				}
			}
			for i := 0; ; i++ {
				rows, err := fleet.Collect(ctx, o)
				if err != nil {
					return fail(exitUsage, "%v", err)
				}
				if asJSON {
					enc := json.NewEncoder(a.out)
					if watch <= 0 {
						enc.SetIndent("", "  ")
					}
					_ = enc.Encode(struct {
						At   time.Time   `json:"at"`
						Rows []fleet.Row `json:"stacks"`
					}{time.Now().UTC(), rows})
				} else {
					if watch > 0 {
						fmt.Fprintf(a.out, "fleet at %s (every %s)\n", time.Now().UTC().Format(time.RFC3339), watch)
					}
					t := make([][]string, 0, len(rows))
					for _, r := range rows {
						t = append(t, []string{r.Stack, r.Kind, r.EC2, r.EIP, r.EIPDrift, r.DNS, r.TLS, r.Endpoints, r.CI, r.LastDeploy})
					}
					_ = table.Write(a.out, []string{"STACK", "KIND", "EC2", "EIP", "EIP DRIFT", "DNS", "TLS", "ENDPOINTS", "CI", "LAST DEPLOY"}, t)
				}
				if watch <= 0 || (count > 0 && i+1 >= count) {
					return nil
				}
				if !asJSON {
					fmt.Fprintln(a.out)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	f := c.Flags()
	f.StringSliceVar(&stacks, "stack", nil, "only these stacks (comma-separated; default every Pulumi.<stack>.yaml, account included)")
	f.DurationVar(&watch, "watch", 0, "refresh the table at this interval until interrupted")
	f.IntVar(&count, "count", 0, "with --watch: stop after this many tables (0 = until interrupted)")
	f.BoolVar(&asJSON, "json", false, "print JSON (one document per refresh with --watch)")
	f.StringVar(&caFile, "ca", "", "PEM CA file to trust for TLS instead of the system roots")
	f.StringArrayVar(&connect, "connect", nil, "host=ip:port: probe this address for host (* for every host); default the stack's EIP")
	f.StringVar(&resolver, "resolver", "doh", "DNS resolver: doh or udp://host:port")
	f.StringVar(&dohURL, "doh-url", verify.DefaultDoHURL, "DoH JSON API URL")
	f.StringVar(&backend, "backend", "", "Pulumi backend whose locks show CI occupancy (default PULUMI_BACKEND_URL, else the current pulumi login)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "timeout of each network operation")
	return c
}
