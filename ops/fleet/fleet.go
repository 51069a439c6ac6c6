// Package fleet is fleet-status.sh as code: one row per stack of the project
// with its EIP, broker health and last deploy.
package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
)

// Row is one stack's status.
type Row struct {
	Stack      string `json:"stack"`
	Kind       string `json:"kind"`
	EIP        string `json:"eip"`
	Instance   string `json:"instance"`
	Health     string `json:"health"`
	LastDeploy string `json:"last_deploy"`
}

// Options says where to look.
type Options struct {
	ProjectDir string
	// AWS is the SDK config EIPs are looked up with, in each stack's own
	// aws:region; nil: EIPs from config only.
	AWS     *aws.Config
	Engine  deploy.Engine // nil: last deploy "-"
	Connect map[string]string
	RootCAs *x509.CertPool
	Timeout time.Duration // per health probe; 0 means 3s
	Stacks  []string      // only these stacks (default: every stack file)
}

// Collect builds the table, stacks in name order.
func Collect(ctx context.Context, o Options) ([]Row, error) {
	names, err := stackcfg.Stacks(o.ProjectDir)
	if err != nil {
		return nil, err
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
		o.Timeout = 3 * time.Second
	}
	rows := make([]Row, len(names))
	var wg sync.WaitGroup
	for i, s := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i] = o.row(ctx, s)
		}()
	}
	wg.Wait()
	return rows, nil
}

func (o Options) row(ctx context.Context, stack string) Row {
	r := Row{Stack: stack, EIP: "-", Instance: "-", Health: "-", LastDeploy: "-"}
	t, err := stackcfg.Load(o.ProjectDir, stack)
	if err != nil {
		r.Kind, r.Health = "?", "config: "+firstLine(err.Error())
		return r
	}
	r.Kind = string(t.Names.Stack.Kind)
	if t.InstanceID != "" {
		r.Instance = t.InstanceID
	}
	if t.EIP != "" {
		r.EIP = t.EIP
	}
	if o.AWS != nil {
		cfg := o.AWS.Copy()
		cfg.Region = t.Names.Fork.Region
		out, err := ec2.NewFromConfig(cfg).DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{t.Names.EIPTag}}}})
		switch {
		case err != nil:
			r.EIP = "error: " + firstLine(err.Error())
		case len(out.Addresses) == 1:
			r.EIP = aws.ToString(out.Addresses[0].PublicIp)
			if id := aws.ToString(out.Addresses[0].InstanceId); id != "" {
				r.Instance = id
			}
		case len(out.Addresses) > 1:
			r.EIP = fmt.Sprintf("%d EIPs tagged %s", len(out.Addresses), t.Names.EIPTag)
		}
	}
	r.Health = o.health(ctx, t.Names.BrokerHost, r.EIP)
	if o.Engine != nil {
		if ld, ok, err := o.Engine.LastDeploy(ctx, stack); err == nil && ok {
			r.LastDeploy = fmt.Sprintf("%s %s %s", ld.Kind, ld.Result, ld.End.UTC().Format("2006-01-02 15:04Z"))
		}
	}
	return r
}

// health probes https://<broker>/healthz, dialling the EIP when known so a
// rewriting local resolver cannot mislead it.
func (o Options) health(ctx context.Context, host, eip string) string {
	target := ""
	if a, ok := o.Connect[host]; ok {
		target = a
	} else if a, ok := o.Connect["*"]; ok {
		target = a
	} else if net.ParseIP(eip) != nil {
		target = net.JoinHostPort(eip, "443")
	}
	client := &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if target != "" {
					addr = target
				}
				d := net.Dialer{Timeout: o.Timeout}
				return d.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/healthz", nil)
	if err != nil {
		return "down: " + err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "down: " + shortErr(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("down: HTTP %d", resp.StatusCode)
	}
	return "healthy"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// shortErr drops the URL prefix net/http puts on errors.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "Get ") {
		s = s[i+2:]
	}
	return s
}
