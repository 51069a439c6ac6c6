package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/fleet"
	"github.com/agentkeys/agentkeys-infra/ops/table"
)

func (a *app) fleetCmd() *cobra.Command {
	var (
		watch   time.Duration
		count   int
		caFile  string
		connect []string
		stacks  []string
	)
	c := &cobra.Command{
		Use:   "fleet [--watch DURATION]",
		Short: "One table of every stack of the project: EIP, broker health, last deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := fleet.Options{ProjectDir: a.projectDir, Engine: a.deps.engine(a.projectDir, io.Discard), Stacks: stacks}
			var err error
			if o.Connect, err = parseConnect(connect); err != nil {
				return err
			}
			if o.RootCAs, err = loadCA(caFile); err != nil {
				return err
			}
			if cfg, err := awsx.Load(ctx, "", ""); err == nil {
				o.AWS = &cfg
			} else {
				fmt.Fprintf(a.errOut, "agentkeys: no AWS access (%v): EIPs from config only\n", err)
			}
			for i := 0; ; i++ {
				rows, err := fleet.Collect(ctx, o)
				if err != nil {
					return fail(exitUsage, "%v", err)
				}
				if watch > 0 {
					fmt.Fprintf(a.out, "fleet at %s (every %s)\n", time.Now().UTC().Format(time.RFC3339), watch)
				}
				t := make([][]string, 0, len(rows))
				for _, r := range rows {
					t = append(t, []string{r.Stack, r.Kind, r.EIP, r.Instance, r.Health, r.LastDeploy})
				}
				_ = table.Write(a.out, []string{"STACK", "KIND", "EIP", "INSTANCE", "BROKER", "LAST DEPLOY"}, t)
				if watch <= 0 || (count > 0 && i+1 >= count) {
					return nil
				}
				fmt.Fprintln(a.out)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	f := c.Flags()
	f.StringSliceVar(&stacks, "stack", nil, "only these stacks (comma-separated; default every Pulumi.<stack>.yaml)")
	f.DurationVar(&watch, "watch", 0, "refresh the table at this interval until interrupted")
	f.IntVar(&count, "count", 0, "with --watch: stop after this many tables (0 = until interrupted)")
	f.StringVar(&caFile, "ca", "", "PEM CA file to trust for health probes instead of the system roots")
	f.StringArrayVar(&connect, "connect", nil, "host=ip:port: probe this address for host (* for every host)")
	return c
}
