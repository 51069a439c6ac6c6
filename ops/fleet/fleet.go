// Package fleet is fleet-status.sh as code: one row per stack of the
// project, the account stack included, with the broker EC2's state, the EIP
// and its drift, every endpoint, TLS days left, DNS drift against the EIP,
// CI slot occupancy and the last deploy. It reads the Pulumi state only
// through `pulumi ... --stack X` (stackcfg.Pulumi): the operator's selected
// stack is never changed.
package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/ses"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/verify"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// Row is one stack's status. Each column is "-" when its source is not
// available (no AWS credentials, no pulumi CLI).
type Row struct {
	Stack      string `json:"stack"`
	Kind       string `json:"kind"`
	EC2        string `json:"ec2"`       // instance state and id
	EIP        string `json:"eip"`       // the stack's address
	EIPDrift   string `json:"eip_drift"` // "ok" or what disagrees
	DNS        string `json:"dns"`       // A records against the EIP (DoH)
	TLS        string `json:"tls"`       // fewest days left, or what fails
	Endpoints  string `json:"endpoints"` // health paths, /readyz, OIDC
	CI         string `json:"ci"`        // who holds the stack's Pulumi lock
	LastDeploy string `json:"last_deploy"`
	// OK: nothing above failed (warnings allowed).
	OK bool `json:"ok"`
	// Checks are the verify rows behind DNS, TLS and Endpoints.
	Checks []verify.Check `json:"checks,omitempty"`
}

// Options says where to look.
type Options struct {
	ProjectDir string
	// AWS is the SDK config; each stack is looked at in its own aws:region.
	// nil: EC2 and EIP come from config only.
	AWS *aws.Config
	// Pulumi reads outputs and history without selecting a stack; nil: "-".
	Pulumi *stackcfg.Pulumi
	// Backend is the Pulumi backend URL whose locks tell CI occupancy
	// (file:// or s3://); "" means BackendURL's discovery.
	Backend  string
	Resolver verify.Resolver // DNS checks (DoH by default)
	Connect  map[string]string
	RootCAs  *x509.CertPool
	Timeout  time.Duration // per network operation; 0 means 5s
	Stacks   []string      // only these stacks (default: every stack file)
}

// Collect builds the table: the account stack first, then the broker
// stacks in name order.
func Collect(ctx context.Context, o Options) ([]Row, error) {
	names, err := stackcfg.Stacks(o.ProjectDir)
	if err != nil {
		return nil, err
	}
	if _, err := config.ReadStackFile(o.ProjectDir, naming.AccountStack); err == nil {
		names = append([]string{naming.AccountStack}, names...)
	}
	if len(o.Stacks) > 0 {
		have := map[string]bool{}
		for _, n := range names {
			have[n] = true
		}
		for _, s := range o.Stacks {
			if !have[s] {
				return nil, fmt.Errorf("--stack %s: no Pulumi.%s.yaml in %s", s, s, o.ProjectDir)
			}
		}
		names = o.Stacks
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no Pulumi.<stack>.yaml in %s: pass --project-dir", o.ProjectDir)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Resolver == nil {
		o.Resolver = verify.DoH{URL: verify.DefaultDoHURL}
	}
	if o.Backend == "" {
		o.Backend = BackendURL()
	}
	rows := make([]Row, len(names))
	var wg sync.WaitGroup
	for i, s := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s == naming.AccountStack {
				rows[i] = o.account(ctx)
			} else {
				rows[i] = o.broker(ctx, s)
			}
		}()
	}
	wg.Wait()
	return rows, nil
}

func newRow(stack string) Row {
	return Row{Stack: stack, EC2: "-", EIP: "-", EIPDrift: "-", DNS: "-", TLS: "-", Endpoints: "-", CI: "-", LastDeploy: "-", OK: true}
}

func (o Options) common(ctx context.Context, r *Row) {
	if o.Pulumi != nil {
		switch u, ok, err := o.Pulumi.LastUpdate(ctx, r.Stack); {
		case err != nil:
			r.LastDeploy = "? " + cliMsg(err)
		case ok:
			r.LastDeploy = fmt.Sprintf("%s %s %s", u.Kind, u.Result, u.End.UTC().Format("2006-01-02 15:04Z"))
		default:
			r.LastDeploy = "never"
		}
	}
	r.CI = o.occupancy(ctx, r.Stack)
}

func (o Options) regional(region string) aws.Config {
	cfg := o.AWS.Copy()
	cfg.Region = region
	return cfg
}

func (o Options) broker(ctx context.Context, stack string) Row {
	r := newRow(stack)
	t, err := stackcfg.Load(o.ProjectDir, stack)
	if err != nil {
		r.Kind, r.Endpoints, r.OK = "?", "config: "+firstLine(err.Error()), false
		return r
	}
	n := t.Names
	r.Kind = string(n.Stack.Kind)
	o.common(ctx, &r)

	var outs stackcfg.Outputs
	stateKnown := false
	if o.Pulumi != nil {
		if outs, err = o.Pulumi.Outputs(ctx, stack); err == nil {
			stateKnown = true
		}
	}
	var tagged []ec2types.Address
	var ec *ec2.Client
	if o.AWS != nil {
		ec = ec2.NewFromConfig(o.regional(n.Region))
		r.EC2 = o.ec2State(ctx, ec, t.InstanceID)
		out, err := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{n.EIPTag}}}})
		if err != nil {
			r.EIPDrift, r.OK = "error: "+shortAWS(err), false
		} else {
			tagged = out.Addresses
		}
	} else if t.InstanceID != "" {
		r.EC2 = "? " + t.InstanceID
	}
	ip, drift := eipDrift(t, outs, stateKnown, tagged, o.AWS != nil)
	if ip != "" {
		r.EIP = ip
	}
	if r.EIPDrift == "-" {
		r.EIPDrift = drift
	}
	if drift != "ok" && drift != "-" {
		r.OK = false
	}

	rep := verify.Run(ctx, verify.Options{
		Names: n, Resolver: o.Resolver, EIP: ip, EIPSource: "fleet",
		Connect: o.Connect, RootCAs: o.RootCAs, Timeout: o.Timeout,
		IAMErr: fmt.Errorf("not checked by fleet (agentkeys verify does)"),
	})
	for _, c := range rep.Checks {
		if c.Check != "iam-oidc-provider" && c.Check != "eip" {
			r.Checks = append(r.Checks, c)
		}
	}
	r.DNS = summarizeDNS(r.Checks)
	r.TLS = summarizeTLS(r.Checks)
	r.Endpoints = summarizeEndpoints(r.Checks)
	for _, c := range r.Checks {
		if c.Status == verify.Fail {
			r.OK = false
		}
	}
	if strings.HasPrefix(r.EC2, "missing") || (r.EC2 != "-" && !strings.HasPrefix(r.EC2, "running") && !strings.HasPrefix(r.EC2, "?")) {
		r.OK = false
	}
	return r
}

func (o Options) ec2State(ctx context.Context, ec *ec2.Client, id string) string {
	if id == "" {
		return "no agentkeys:instanceId"
	}
	out, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if strings.HasPrefix(awsCode(err), "InvalidInstanceID") {
			return "missing " + id
		}
		return "error: " + shortAWS(err)
	}
	for _, rv := range out.Reservations {
		for _, in := range rv.Instances {
			if in.State != nil {
				return string(in.State.Name) + " " + id
			}
		}
	}
	return "missing " + id
}

// eipDrift picks the stack's address and says where its sources disagree:
// the Pulumi state, the EC2 Name tag the program writes, the instance it
// is attached to, and the config.
func eipDrift(t stackcfg.Target, outs stackcfg.Outputs, stateKnown bool, tagged []ec2types.Address, awsKnown bool) (string, string) {
	state := outs.String("eip")
	var notes []string
	ip := state
	switch {
	case len(tagged) > 1:
		var ips []string
		for _, a := range tagged {
			ips = append(ips, aws.ToString(a.PublicIp))
		}
		notes = append(notes, fmt.Sprintf("%d EIPs tagged %s (%s)", len(tagged), t.Names.EIPTag, strings.Join(ips, ",")))
	case len(tagged) == 1:
		a := tagged[0]
		tip, on := aws.ToString(a.PublicIp), aws.ToString(a.InstanceId)
		if ip == "" {
			ip = tip
		}
		if state != "" && state != tip {
			notes = append(notes, "state says "+state+", EC2 tag is on "+tip)
		}
		switch {
		case on == "":
			notes = append(notes, "not associated with any instance")
		case t.InstanceID != "" && on != t.InstanceID:
			notes = append(notes, "on "+on+", config says "+t.InstanceID)
		}
		if stateKnown && state == "" {
			notes = append(notes, "not in the stack's outputs (retained by a destroy, or not deployed): release it with aws ec2 release-address --allocation-id "+aws.ToString(a.AllocationId)+" once nothing needs it")
		}
	case awsKnown && state != "":
		notes = append(notes, "state says "+state+" but no EIP carries the tag "+t.Names.EIPTag)
	case awsKnown:
		notes = append(notes, "no EIP tagged "+t.Names.EIPTag)
	}
	if ip == "" {
		ip = t.EIP
	}
	if t.EIP != "" && ip != "" && t.EIP != ip {
		notes = append(notes, "config agentkeys:eipAddress is "+t.EIP)
	}
	if len(notes) == 0 {
		if !awsKnown && !stateKnown {
			return ip, "-"
		}
		return ip, "ok"
	}
	return ip, strings.Join(notes, "; ")
}

func label(host string) string {
	if i := strings.IndexByte(host, '.'); i > 0 {
		return host[:i]
	}
	return host
}

// fault is one hostname's problem, for a compact summary.
type fault struct{ host, why string }

// compact lists faults shortly: "all: why" when every one of total shares
// a reason, "why: a, b" when the faults do, else "a why, b why", at most
// three then "+N more".
func compact(fs []fault, total int) string {
	if len(fs) == 0 {
		return ""
	}
	same := len(fs) > 1
	for _, f := range fs {
		same = same && f.why == fs[0].why
	}
	if same && len(fs) == total && total > 1 {
		return "all " + fs[0].why
	}
	var items []string
	for i, f := range fs {
		if i == 3 {
			items = append(items, fmt.Sprintf("+%d more", len(fs)-3))
			break
		}
		if same {
			items = append(items, f.host)
		} else {
			items = append(items, f.host+" "+f.why)
		}
	}
	if same {
		return fs[0].why + ": " + strings.Join(items, ", ")
	}
	return strings.Join(items, ", ")
}

// reason is the tail of an error detail ("dial tcp ...: connection refused").
func reason(d string) string {
	if strings.HasPrefix(d, "HTTP ") {
		return strings.SplitN(d, ",", 2)[0]
	}
	if i := strings.LastIndex(d, ": "); i > 0 {
		return d[i+2:]
	}
	return d
}

func summarizeDNS(cs []verify.Check) string {
	total := 0
	var bad []fault
	for _, c := range cs {
		if c.Check != "dns" {
			continue
		}
		total++
		if c.Status == verify.Fail {
			d := strings.TrimPrefix(c.Detail, "A ")
			if i := strings.Index(d, ", want"); i > 0 {
				d = d[:i]
			}
			if i := strings.Index(d, " (no fallback"); i > 0 {
				d = d[:i]
			}
			bad = append(bad, fault{label(c.Target), reason(d)})
		}
	}
	if total == 0 {
		return "-"
	}
	if len(bad) == 0 {
		return fmt.Sprintf("%d/%d = EIP", total, total)
	}
	return fmt.Sprintf("drift %d/%d: %s", len(bad), total, compact(bad, total))
}

func summarizeTLS(cs []verify.Check) string {
	min, minHost, total := -1, "", 0
	var bad []fault
	for _, c := range cs {
		if c.Check != "tls" {
			continue
		}
		total++
		var days int
		if _, err := fmt.Sscanf(c.Detail, "%d days left", &days); err == nil {
			if min < 0 || days < min {
				min, minHost = days, label(c.Target)
			}
			if c.Status != verify.OK {
				bad = append(bad, fault{label(c.Target), fmt.Sprintf("%dd", days)})
			}
			continue
		}
		bad = append(bad, fault{label(c.Target), reason(c.Detail)})
	}
	switch {
	case total == 0:
		return "-"
	case len(bad) > 0:
		return "! " + compact(bad, total)
	}
	return fmt.Sprintf("min %dd (%s)", min, minHost)
}

func summarizeEndpoints(cs []verify.Check) string {
	up, total := 0, 0
	var bad []fault
	var tiers, warn []string
	ready := ""
	for _, c := range cs {
		switch c.Check {
		case "health":
			total++
			if c.Status == verify.OK {
				up++
				continue
			}
			bad = append(bad, fault{label(strings.TrimPrefix(c.Target, "https://")), reason(c.Detail)})
		case "readyz":
			if c.Status == verify.OK {
				if i := strings.Index(c.Detail, "status "); i >= 0 {
					ready = strings.Fields(c.Detail[i+len("status "):])[0]
				}
			} else {
				ready = "readyz " + reason(c.Detail)
			}
		case "ready":
			switch c.Status {
			case verify.Fail:
				tiers = append(tiers, c.Target+" unready")
			case verify.Warn:
				warn = append(warn, c.Target+" degraded")
			}
		case "oidc-discovery", "oidc-jwks":
			if c.Status != verify.OK && ready == "" {
				tiers = append(tiers, c.Check+" failed")
			}
		}
	}
	if total == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d/%d up", up, total)
	if ready != "" {
		s += ", " + ready
	}
	if len(bad) > 0 {
		s += "; " + compact(bad, total)
	}
	for _, l := range [][]string{tiers, warn} {
		if len(l) > 0 {
			s += "; " + strings.Join(l, ", ")
		}
	}
	return s
}

// account is the account stack's row: the shared resources every broker
// stack relies on.
func (o Options) account(ctx context.Context) Row {
	r := newRow(naming.AccountStack)
	r.Kind = "account"
	o.common(ctx, &r)
	a, err := config.LoadAccountFile(o.ProjectDir)
	if err != nil {
		r.Endpoints, r.OK = "config: "+firstLine(err.Error()), false
		return r
	}
	if o.AWS == nil {
		return r
	}
	cfg := o.regional(a.Fork.Region)
	im := iam.NewFromConfig(cfg)
	var parts []string
	check := func(what string, err error) {
		switch {
		case err == nil:
			parts = append(parts, what+" ok")
		case awsCode(err) == "NoSuchEntity":
			parts = append(parts, what+" MISSING")
			r.OK = false
		default:
			parts = append(parts, what+" error: "+shortAWS(err))
			r.OK = false
		}
	}
	out, err := ses.NewFromConfig(cfg).DescribeActiveReceiptRuleSet(ctx, &ses.DescribeActiveReceiptRuleSetInput{})
	switch {
	case err != nil:
		parts = append(parts, "rule set error: "+shortAWS(err))
		r.OK = false
	case out.Metadata == nil || aws.ToString(out.Metadata.Name) != naming.SharedRuleSet:
		active := "none"
		if out.Metadata != nil {
			active = aws.ToString(out.Metadata.Name)
		}
		parts = append(parts, fmt.Sprintf("active rule set %s, want %s (inbound mail of every stack)", active, naming.SharedRuleSet))
		r.OK = false
	default:
		parts = append(parts, fmt.Sprintf("rule set %s active (%d rules)", naming.SharedRuleSet, len(out.Rules)))
	}
	_, err = im.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(policy.GitHubProviderARN(a.Fork.AccountID))})
	check("GitHub OIDC", err)
	_, err = im.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(naming.CIDeployRole)})
	check("CI role", err)
	_, err = im.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(policy.TestBoundaryARN(a.Fork.AccountID))})
	check("test boundary", err)
	r.Endpoints = strings.Join(parts, "; ")
	return r
}

// Sort orders rows: account first, then by stack name.
func Sort(rows []Row) {
	sort.SliceStable(rows, func(i, j int) bool {
		if (rows[i].Stack == naming.AccountStack) != (rows[j].Stack == naming.AccountStack) {
			return rows[i].Stack == naming.AccountStack
		}
		return rows[i].Stack < rows[j].Stack
	})
}

// cliMsg is what the pulumi CLI said, without the command.
func cliMsg(err error) string {
	var ce *stackcfg.CLIError
	if errors.As(err, &ce) {
		return ce.Msg
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
