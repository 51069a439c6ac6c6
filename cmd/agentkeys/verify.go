package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/table"
	"github.com/agentkeys/agentkeys-infra/ops/verify"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		stack, resolver, dohURL, caFile string
		wait, interval, timeout         time.Duration
		connect                         []string
		asJSON                          bool
	)
	c := &cobra.Command{
		Use:   "verify --stack X",
		Short: "Check DNS, TLS, /healthz, OIDC discovery and the IAM OIDC provider of a deployed stack",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.loadStack(stack)
			if err != nil {
				return err
			}
			res, err := verify.ParseResolver(resolver, dohURL)
			if err != nil {
				return fail(exitUsage, "%v", err)
			}
			o := verify.Options{Names: t.Names, Resolver: res, Timeout: timeout}
			if o.Connect, err = parseConnect(connect); err != nil {
				return err
			}
			if o.RootCAs, err = loadCA(caFile); err != nil {
				return err
			}
			ctx := cmd.Context()
			cfg, err := awsx.Load(ctx, t.Names.Region, "")
			if err != nil {
				o.IAMErr = err
			} else {
				o.IAM = iam.NewFromConfig(cfg)
			}
			rep := verify.Wait(ctx, o, wait, interval)
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(struct {
					verify.Report
					OK bool `json:"ok"`
				}{rep, rep.OK()})
			} else {
				printReport(a, rep)
			}
			if !rep.OK() {
				return fail(exitFail, "verify %s: %d of %d checks failed", stack, rep.Failed(), len(rep.Checks))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&stack, "stack", "", "stack name")
	f.StringVar(&resolver, "resolver", "doh", "DNS resolver: doh or udp://host:port")
	f.StringVar(&dohURL, "doh-url", verify.DefaultDoHURL, "DoH JSON API URL")
	f.DurationVar(&wait, "wait", 0, "keep re-checking until healthy or this long has passed")
	f.DurationVar(&interval, "interval", 5*time.Second, "pause between passes in --wait mode")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each network operation")
	f.StringVar(&caFile, "ca", "", "PEM file of CA certificates to trust instead of the system roots")
	f.StringArrayVar(&connect, "connect", nil, "host=ip:port: dial this address for host (* for every host); default: the resolved A record, port 443")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printReport(a *app, rep verify.Report) {
	rows := make([][]string, 0, len(rep.Checks))
	for _, c := range rep.Checks {
		st := "ok"
		if !c.OK {
			st = "FAIL"
		}
		rows = append(rows, []string{st, c.Check, c.Target, c.Detail})
	}
	_ = table.Write(a.out, []string{"STATUS", "CHECK", "TARGET", "DETAIL"}, rows)
	fmt.Fprintf(a.out, "\n%s: %d/%d checks passed (attempts %d, %s)\n", rep.Stack, len(rep.Checks)-rep.Failed(), len(rep.Checks), rep.Attempts, rep.Elapsed.Round(time.Millisecond))
}
