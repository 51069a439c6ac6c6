package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
)

// loadStack reads and validates --stack's config, or fails with a usage error.
func (a *app) loadStack(stack string) (stackcfg.Target, error) {
	if stack == "" {
		return stackcfg.Target{}, fail(exitUsage, "--stack is required (prod, test, test-N, base)")
	}
	t, err := stackcfg.Load(a.projectDir, stack)
	if err != nil {
		return t, fail(exitUsage, "%v", err)
	}
	return t, nil
}

// parseConnect reads --connect host=ip:port overrides (host may be *).
func parseConnect(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		h, addr, ok := strings.Cut(kv, "=")
		if !ok || h == "" || !strings.Contains(addr, ":") {
			return nil, fail(exitUsage, "--connect %q: want host=ip:port (host may be *)", kv)
		}
		out[h] = addr
	}
	return out, nil
}

// loadCA reads --ca: extra roots to trust (a test CA); nil when unset.
func loadCA(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fail(exitUsage, "--ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fail(exitUsage, "--ca %s: no PEM certificate in the file", file)
	}
	return pool, nil
}

// outputs reads a stack's outputs without selecting it; nil when the pulumi
// CLI or the stack's state is not available (callers fall back to config).
func (a *app) outputs(ctx context.Context, stack string) stackcfg.Outputs {
	p := a.deps.pulumi
	if p == nil {
		var err error
		if p, err = stackcfg.FindPulumi(a.projectDir); err != nil {
			return nil
		}
	}
	o, err := p.Outputs(ctx, stack)
	if err != nil {
		fmt.Fprintf(a.errOut, "agentkeys: stack outputs of %s unavailable (%v); using config and AWS\n", stack, firstLine(err.Error()))
		return nil
	}
	return o
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
