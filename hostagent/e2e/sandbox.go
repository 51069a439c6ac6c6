package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// System is the framework's sandbox with nginx calls going to the real
// sandbox nginx: -t with its error log under the root, and a reload that
// returns only once the new workers serve (so a test never reads the old
// config, and a count of reloads is a count of real reloads).
type System struct {
	*sandbox
	Nginx *Nginx
}

// sandbox names the embedded field so that its Sandbox method is promoted.
type sandbox = agent.Sandbox

// NewSystem returns the sandbox System rooted at n.Root with real nginx.
func NewSystem(n *Nginx) *System { return &System{sandbox: agent.NewSandbox(n.Root), Nginx: n} }

func (s *System) nginxArgs(extra ...string) []string {
	return append([]string{"-e", filepath.Join(s.Nginx.Root, "var/log/nginx/error.log"), "-c", s.Nginx.Conf}, extra...)
}

// NginxTest runs nginx -t on the sandbox config.
func (s *System) NginxTest(ctx context.Context) error {
	bin, err := LookTool("nginx")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bin, s.nginxArgs("-t", "-q")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -t: %v: %s", err, out)
	}
	return nil
}

// NginxReload HUPs the sandbox master and waits for the new workers.
func (s *System) NginxReload(ctx context.Context) error {
	bin, err := LookTool("nginx")
	if err != nil {
		return err
	}
	if s.Nginx.Pid() == 0 {
		return s.Nginx.Start()
	}
	old := s.Nginx.Workers()
	if out, err := exec.CommandContext(ctx, bin, s.nginxArgs("-s", "reload")...).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -s reload: %v: %s", err, out)
	}
	return s.Nginx.WaitWorkersGone(ctx, old)
}

// Zone is the sandbox's DNS zone; stack test-2's hostnames live in it.
const Zone = "agentkeys.test"

// Hostnames returns stack test-2's nine hostnames by contract service name
// (broker, signer, the six workers; creds serves cred-<sfx>) and mcp.
func Hostnames() map[string]string { return HostnamesIn(Zone) }

// HostnamesIn is Hostnames for another zone.
func HostnamesIn(zone string) map[string]string {
	st, err := naming.ParseStack("test-2")
	if err != nil {
		panic(err)
	}
	n := naming.Derive(st, naming.Fork{AccountID: "123456789012", Zone: zone})
	out := map[string]string{"broker": n.BrokerHost, "signer": n.SignerHost, "mcp": n.MCPHost}
	for w, h := range n.WorkerHosts {
		if w == "cred" {
			w = "creds"
		}
		out[w] = h
	}
	return out
}

// Spec builds the generated host spec of stack test-2 in Zone, its services
// the contract stand-ins on the given ports (all the contract's services
// when ports is nil: free ports), served by a sandbox nginx on httpPort and
// httpsPort; names listed in internal get no hostname.
func Spec(t testing.TB, ca *CA, ports map[string]int, httpPort, httpsPort int, internal ...string) *spec.HostSpec {
	t.Helper()
	all := sandboxtest.ServicePorts(t)
	var keep []string
	for n, p := range ports {
		all[n] = p
		keep = append(keep, n)
	}
	s := sandboxtest.Generate(t, sandboxtest.Options{
		Zone: Zone, Ports: all, HTTPPort: httpPort, HTTPSPort: httpsPort, PublicIP: "127.0.0.1",
		ACME: spec.ACME{Directory: ca.Directory, Resolver: ca.DNS, ProbeBase: fmt.Sprintf("http://127.0.0.1:%d", httpPort)},
	})
	sandboxtest.Keep(s, keep...)
	for i := range s.Services {
		if slices.Contains(internal, s.Services[i].Name) {
			s.Services[i].Hostname, s.Services[i].Site, s.Services[i].Scope = "", "", ""
		}
	}
	return s
}
