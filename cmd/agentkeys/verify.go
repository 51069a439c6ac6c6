package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/table"
	"github.com/agentkeys/agentkeys-infra/ops/verify"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		stack, resolver, dohURL, caFile string
		eip                             string
		wait, interval, timeout         time.Duration
		connect                         []string
		asJSON                          bool
	)
	c := &cobra.Command{
		Use:   "verify --stack X",
		Short: "Check a deployed stack: A records = EIP (DoH), TLS, health bodies, /readyz tiers, OIDC discovery + JWKS, IAM provider",
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
			if eip != "" {
				if net.ParseIP(eip) == nil {
					return fail(exitUsage, "--eip %q: not an IP address", eip)
				}
				o.EIP, o.EIPSource = eip, "--eip"
			} else {
				var ec stackcfg.AddressAPI
				if o.IAM != nil {
					ec = ec2.NewFromConfig(cfg)
				}
				e, err := stackcfg.FindEIP(ctx, t, a.outputs(ctx, stack), ec)
				o.EIP, o.EIPSource, o.EIPErr = e.IP, e.Source, err
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
	f.StringVar(&eip, "eip", "", "the stack's EIP (default: stack output eip, else the EIP tagged for the stack, else agentkeys:eipAddress)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printReport(a *app, rep verify.Report) {
	rows := make([][]string, 0, len(rep.Checks))
	var fixes []string
	for _, c := range rep.Checks {
		st := strings.ToUpper(string(c.Status))
		if c.Status == verify.OK {
			st = "ok"
		}
		rows = append(rows, []string{st, c.Check, c.Target, c.Detail})
		if c.Fix != "" {
			fixes = append(fixes, fmt.Sprintf("%s %s %s: %s", st, c.Check, c.Target, c.Fix))
		}
	}
	_ = table.Write(a.out, []string{"STATUS", "CHECK", "TARGET", "DETAIL"}, rows)
	if len(fixes) > 0 {
		fmt.Fprintln(a.out, "\nfixes:")
		for _, f := range fixes {
			fmt.Fprintln(a.out, "  "+f)
		}
	}
	fmt.Fprintf(a.out, "\n%s: %d/%d checks passed, %d warnings (attempts %d, %s)\n", rep.Stack, len(rep.Checks)-rep.Failed(), len(rep.Checks), rep.Warned(), rep.Attempts, rep.Elapsed.Round(time.Millisecond))
}
