package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
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

// Hostnames returns stack test-2's nine hostnames by service name: broker,
// mcp, signer and the six workers.
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
		out[w] = h
	}
	return out
}

// Spec builds a valid host spec for stack test-2 whose services are the
// stand-ins (name -> port); names listed in internal get no hostname.
func Spec(ca *CA, ports map[string]int, httpPort, httpsPort int, internal ...string) *spec.HostSpec {
	hosts := Hostnames()
	noHost := map[string]bool{}
	for _, n := range internal {
		noHost[n] = true
	}
	s := &spec.HostSpec{
		Version:  spec.Version,
		Stack:    "test-2",
		Issuer:   "https://" + hosts["broker"],
		Zone:     Zone,
		PublicIP: "127.0.0.1",
		Account:  "123456789012",
		Region:   "us-east-1",
		Chain:    "heima",
		Source:   spec.Source{Repo: "/nonexistent/repo", Ref: "main", Dir: "/home/agentkey/agentKeys"},
		ACME: spec.ACME{
			Directory: ca.Directory,
			Resolver:  ca.DNS,
			ProbeBase: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		},
		Nginx:       spec.Nginx{HTTPPort: httpPort, HTTPSPort: httpsPort, Webroot: "/var/www/certbot", ConfDir: "/etc/nginx/conf.d"},
		LoginUser:   "agentkey",
		ServiceUser: "agentkeys",
		StateDir:    "/var/lib/agentkeys",
	}
	var names []string
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc := spec.Service{
			Name: n, Package: "agentkeys-" + n, Binary: "target/release/" + n,
			Port: ports[n], EnvFile: "/etc/agentkeys/" + n + ".env", Health: "/healthz",
			Env: map[string]string{},
		}
		if !noHost[n] {
			svc.Hostname = hosts[n]
		}
		if n == "broker" {
			svc.Env["BROKER_OIDC_ISSUER"] = s.Issuer
		}
		s.Services = append(s.Services, svc)
	}
	return s
}
