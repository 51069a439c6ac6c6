package spec

import (
	"maps"
	"net"
	"path"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Input is what a host spec is generated from: the stack's names and the
// values the program owns.
type Input struct {
	Names     naming.Names
	PublicIP  string
	Source    Source
	Build     Build
	ACME      ACME
	Contracts map[string]string // contract.ContractNames -> address
	RPCURL    string            // "" = the chain profile's default
	// Tests only: service ports and nginx ports other than the contract's.
	Ports               map[string]int
	HTTPPort, HTTPSPort int
}

// Generate renders the host spec of a stack from the services' contract.
func Generate(in Input) (*HostSpec, error) {
	n := in.Names
	st := contract.StackOf(n, in.Contracts, in.RPCURL)
	st.Ports = in.Ports
	d, err := contract.Deploy(st)
	if err != nil {
		return nil, err
	}
	s := &HostSpec{
		Version: Version, Stack: n.Stack.Name, Issuer: n.Issuer, Zone: n.Fork.Zone, PublicIP: in.PublicIP,
		Account: n.Fork.AccountID, Region: n.Region, Chain: n.Stack.Chain, BrokerHostOverride: n.Fork.BrokerHost,
		Source: in.Source, Build: in.Build, ACME: in.ACME, PubKeyEnv: d.PubKeyEnv,
		Nginx: Nginx{HTTPPort: 80, HTTPSPort: 443, Webroot: contract.Webroot, SitesDir: contract.NginxSitesDir,
			EnabledDir: contract.NginxEnabledDir, ConfDir: "/etc/nginx/conf.d"},
		LoginUser: contract.LoginUser, ServiceUser: contract.ServiceUser, StateDir: contract.StateDir,
	}
	if in.HTTPPort != 0 {
		s.Nginx.HTTPPort, s.Nginx.HTTPSPort = in.HTTPPort, in.HTTPSPort
	}
	for _, sec := range d.Secrets {
		s.Secrets = append(s.Secrets, Secret{ID: sec.ID, Var: sec.Var, File: sec.File, Kind: string(sec.Kind), Own: sec.Own, Format: string(sec.Format)})
	}
	for _, k := range d.Keypairs {
		s.Keypairs = append(s.Keypairs, Keypair{Purpose: k.Purpose, Path: k.Path, PublicPEM: k.PublicPEM})
	}
	for _, dir := range d.Dirs {
		s.Dirs = append(s.Dirs, Dir{Path: dir.Path, Mode: dir.Mode})
	}
	for _, dep := range d.Services {
		svc := Service{
			Name: dep.Name, Unit: dep.Unit, Package: dep.Package, Features: dep.Features,
			Binary: path.Join("target/release", dep.Binary), Install: contract.InstallPath(dep.Binary),
			Args: dep.Args, Port: dep.Port, BindAll: dep.BindAll,
			EnvFile: dep.EnvFile, Env: maps.Clone(dep.Env), Secrets: dep.Secrets, EnvFiles: dep.EnvFiles,
			Restart: dep.Restart, After: dep.After, WritePaths: dep.WritePaths,
			Health: dep.Health.Path, HealthJSON: dep.Health.JSON, Ready: dep.Ready,
		}
		if dep.Hostname != "" {
			svc.Hostname, svc.Site, svc.Scope = dep.Hostname, dep.Site, string(dep.Scope)
		}
		s.Services = append(s.Services, svc)
	}
	if net.ParseIP(in.PublicIP) == nil {
		// The offline plan renders the spec before the EIP exists; the
		// agent validates what it receives.
		return s, nil
	}
	return s, s.Validate()
}
