// Package spec is the host spec: the typed contract between the Pulumi
// program, which renders it to JSON, and the host agent, which converges a
// broker host from it. Decode rejects unknown fields and validates before the
// agent changes anything.
package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// Version is the schema version the agent understands.
const Version = 1

// Where the bring-up installs the agent and its spec on the broker host; the
// agent's commands default to DefaultPath.
const (
	DefaultPath = "/etc/agentkeys/hostspec.json"
	AgentPath   = "/usr/local/bin/agentkeys-hostagent"
)

// HostSpec is everything the host agent needs to converge one broker host.
type HostSpec struct {
	Version  int    `json:"version"`
	Stack    string `json:"stack"`    // stack name: prod, test, test-N, base
	Issuer   string `json:"issuer"`   // https://<broker host>, BROKER_OIDC_ISSUER
	Zone     string `json:"zone"`     // every hostname must be inside it
	PublicIP string `json:"publicIp"` // the stack's EIP; DNS must point here before a cert is ordered
	Account  string `json:"account"`
	Region   string `json:"region"`
	Chain    string `json:"chain"` // heima, base, ...
	// BrokerHostOverride is the agentkeys:brokerHost config key, when set.
	BrokerHostOverride string `json:"brokerHostOverride,omitempty"`

	Source   Source    `json:"source"`
	Build    Build     `json:"build"`
	Services []Service `json:"services"`
	ACME     ACME      `json:"acme"`
	Nginx    Nginx     `json:"nginx"`

	// Cloud identifiers the services read from their env files.
	DataRoleARN   string            `json:"dataRoleArn"`
	ClassRoleARNs map[string]string `json:"classRoleArns"` // vault, memory, config
	Buckets       map[string]string `json:"buckets"`       // mail, vault, memory, config
	MailDomain    string            `json:"mailDomain"`
	Sender        string            `json:"sender"`
	Contracts     map[string]string `json:"contracts"` // contract name (REGISTRY, ...) -> 0x address
	RPCURL        string            `json:"rpcUrl,omitempty"`

	// LoginUser is the SSH login user wired to EC2 Instance Connect (agentkey).
	LoginUser string `json:"loginUser"`
	// ServiceUser is the system user the services run as (agentkeys).
	ServiceUser string `json:"serviceUser"`
	// StateDir holds keys, the master secret and the agent's state.
	StateDir string `json:"stateDir"`
	// HealthTimeoutSeconds bounds the health step's wait (default 60).
	HealthTimeoutSeconds int `json:"healthTimeoutSeconds,omitempty"`
}

// Source is where the AgentKeys services come from.
type Source struct {
	Repo string `json:"repo"` // git URL (or a local path in tests)
	Ref  string `json:"ref"`  // branch, tag or commit
	Dir  string `json:"dir"`  // steady-state checkout, /home/agentkey/agentKeys
	// AdoptFrom lists checkouts the old scripts may have left, moved into Dir.
	AdoptFrom []string `json:"adoptFrom,omitempty"`
}

// Build says how the services are built.
type Build struct {
	// Command is run in Source.Dir; the default is cargo build --release for
	// each service's package. Tests use a small stand-in command.
	Command          []string          `json:"command,omitempty"`
	Env              map[string]string `json:"env,omitempty"`
	Sccache          bool              `json:"sccache"`
	ReclaimToolchain bool              `json:"reclaimToolchain"`
}

// Service is one long-running process on the host.
type Service struct {
	Name     string   `json:"name"`               // broker, signer, mock-server, audit, ...
	Package  string   `json:"package"`            // cargo package
	Features []string `json:"features,omitempty"` // cargo features
	Binary   string   `json:"binary"`             // path of the built binary relative to Source.Dir
	Port     int      `json:"port"`               // 127.0.0.1 port
	Hostname string   `json:"hostname,omitempty"` // public vhost; empty for internal services
	EnvFile  string   `json:"envFile"`            // /etc/agentkeys/<x>.env
	Health   string   `json:"health"`             // /healthz
	// Env is the service's environment, written to EnvFile.
	Env map[string]string `json:"env"`
	// MasterSecret hands the dev_key_service master secret to the service
	// through systemd LoadCredential (the signer).
	MasterSecret bool `json:"masterSecret,omitempty"`
}

// ACME configures certificate issuance.
type ACME struct {
	Directory string `json:"directory"` // ACME directory URL
	Email     string `json:"email,omitempty"`
	Resolver  string `json:"resolver,omitempty"` // host:port of the DNS resolver used for the A-record check
	// ProbeBase is how the agent reaches its own nginx for the challenge self-probe.
	ProbeBase string `json:"probeBase,omitempty"` // http://127.0.0.1:80
	// Certbot is where an adopted host's certbot certificates live.
	CertbotLive string `json:"certbotLive,omitempty"` // /etc/letsencrypt/live
}

// Nginx configures the vhosts.
type Nginx struct {
	HTTPPort  int    `json:"httpPort"`  // 80
	HTTPSPort int    `json:"httpsPort"` // 443
	Webroot   string `json:"webroot"`   // /var/www/certbot
	ConfDir   string `json:"confDir"`   // /etc/nginx/conf.d
}

// Decode reads a spec, rejecting unknown fields, and validates it.
func Decode(r io.Reader) (*HostSpec, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var s HostSpec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("host spec: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("host spec: trailing data after the JSON document")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Load reads and validates the spec file at path.
func Load(path string) (*HostSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host spec %s: %w", path, err)
	}
	s, err := Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Encode renders the spec as stable, indented JSON (map keys sorted by encoding/json).
func (s *HostSpec) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

var (
	addrRe  = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
	nameRe  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	envKeRe = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// Validate checks the spec against the stack identity and itself.
func (s *HostSpec) Validate() error {
	fail := func(field, format string, a ...any) error {
		return fmt.Errorf("host spec field %s: %s", field, fmt.Sprintf(format, a...))
	}
	if s.Version != Version {
		return fail("version", "is %d, this agent understands %d; rebuild the agent and the spec together", s.Version, Version)
	}
	st, err := naming.ParseStack(s.Stack)
	if err != nil {
		return fail("stack", "%v", err)
	}
	if s.Chain != st.Chain {
		return fail("chain", "is %q but stack %s runs chain %q", s.Chain, s.Stack, st.Chain)
	}
	if s.Zone == "" || strings.Contains(s.Zone, "/") {
		return fail("zone", "must be a DNS zone such as example.org")
	}
	u, err := url.Parse(s.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
		return fail("issuer", "%q must be https://<broker host> with no path", s.Issuer)
	}
	want := naming.Derive(st, naming.Fork{Zone: s.Zone, BrokerHost: s.BrokerHostOverride}).BrokerHost
	if u.Host != want {
		if other, ok := naming.StackForBrokerHost(u.Host, s.Zone); ok {
			return fail("issuer", "%s is the issuer of stack %s, not of stack %s (%s); fix the stack's config", s.Issuer, other, s.Stack, "https://"+want)
		}
		return fail("issuer", "%s does not match stack %s, whose issuer is https://%s", s.Issuer, s.Stack, want)
	}
	if ip := net.ParseIP(s.PublicIP); ip == nil || ip.To4() == nil {
		return fail("publicIp", "%q is not an IPv4 address", s.PublicIP)
	}
	if !naming.IsAccountID(s.Account) {
		return fail("account", "%q must be 12 digits", s.Account)
	}
	if s.Source.Repo == "" || s.Source.Ref == "" || !strings.HasPrefix(s.Source.Dir, "/") {
		return fail("source", "repo, ref and an absolute dir are required")
	}
	if s.ACME.Directory == "" {
		return fail("acme.directory", "is required (for example https://acme-v02.api.letsencrypt.org/directory)")
	}
	if !naming.IsACMEDirectory(s.ACME.Directory) {
		return fail("acme.directory", "%q must be an absolute https:// URL of an ACME directory, such as https://acme-v02.api.letsencrypt.org/directory", s.ACME.Directory)
	}
	if r := s.ACME.Resolver; r != "" {
		if !naming.IsResolver(r) {
			return fail("acme.resolver", "%q must be host:port of a DNS resolver, such as 8.8.8.8:53 or [2001:4860:4860::8888]:53 (or empty for the system resolver)", r)
		}
	}
	for _, p := range []struct {
		f string
		v int
	}{{"nginx.httpPort", s.Nginx.HTTPPort}, {"nginx.httpsPort", s.Nginx.HTTPSPort}} {
		if p.v < 1 || p.v > 65535 {
			return fail(p.f, "%d is not a TCP port; use 1..65535 (80 for HTTP, 443 for HTTPS)", p.v)
		}
	}
	if s.Nginx.HTTPPort == s.Nginx.HTTPSPort {
		return fail("nginx.httpsPort", "%d is also nginx.httpPort; give HTTP and HTTPS distinct ports", s.Nginx.HTTPSPort)
	}
	for _, p := range []struct{ f, v string }{{"stateDir", s.StateDir}, {"nginx.webroot", s.Nginx.Webroot}, {"nginx.confDir", s.Nginx.ConfDir}} {
		if !strings.HasPrefix(p.v, "/") {
			return fail(p.f, "%q must be an absolute path", p.v)
		}
	}
	if s.HealthTimeoutSeconds < 0 || s.HealthTimeoutSeconds > 3600 {
		return fail("healthTimeoutSeconds", "%d must be between 0 (default 60) and 3600", s.HealthTimeoutSeconds)
	}
	if !nameRe.MatchString(s.ServiceUser) || !nameRe.MatchString(s.LoginUser) {
		return fail("serviceUser/loginUser", "must be lowercase user names")
	}
	ports := map[int]string{s.Nginx.HTTPPort: "nginx.httpPort", s.Nginx.HTTPSPort: "nginx.httpsPort"}
	names := map[string]bool{}
	hosts := map[string]string{}
	envFiles := map[string]string{}
	if len(s.Services) == 0 {
		return fail("services", "at least the broker service is required")
	}
	for i, svc := range s.Services {
		f := fmt.Sprintf("services[%d]", i)
		if !nameRe.MatchString(svc.Name) {
			return fail(f+".name", "%q must be lowercase letters, digits and dashes", svc.Name)
		}
		if names[svc.Name] {
			return fail(f+".name", "service %q is listed twice", svc.Name)
		}
		names[svc.Name] = true
		if svc.Port < 1 || svc.Port > 65535 {
			return fail(f+".port", "%d is not a TCP port; use a free port in 1..65535", svc.Port)
		}
		if other, ok := ports[svc.Port]; ok {
			return fail(f+".port", "port %d of %s clashes with %s", svc.Port, svc.Name, other)
		}
		ports[svc.Port] = f + ".port (" + svc.Name + ")"
		if svc.Hostname != "" {
			if !inZone(svc.Hostname, s.Zone) {
				return fail(f+".hostname", "%q is outside zone %s", svc.Hostname, s.Zone)
			}
			if other, ok := hosts[svc.Hostname]; ok {
				return fail(f+".hostname", "%q is also the hostname of %s", svc.Hostname, other)
			}
			hosts[svc.Hostname] = svc.Name
		}
		if svc.Binary == "" || strings.HasPrefix(svc.Binary, "/") || strings.Contains(svc.Binary, "..") {
			return fail(f+".binary", "%q must be a path inside the checkout", svc.Binary)
		}
		if !strings.HasPrefix(svc.EnvFile, "/") {
			return fail(f+".envFile", "%q must be an absolute path", svc.EnvFile)
		}
		if other, ok := envFiles[path.Clean(svc.EnvFile)]; ok {
			return fail(f+".envFile", "%q is also the envFile of %s; give each service its own env file (one would overwrite the other)", svc.EnvFile, other)
		}
		envFiles[path.Clean(svc.EnvFile)] = fmt.Sprintf("services[%d] (%s)", i, svc.Name)
		if !strings.HasPrefix(svc.Health, "/") {
			return fail(f+".health", "%q must be a path such as /healthz", svc.Health)
		}
		for k, v := range svc.Env {
			if !envKeRe.MatchString(k) {
				return fail(f+".env", "key %q is not an environment variable name", k)
			}
			if strings.ContainsAny(v, "\n\r") {
				return fail(f+".env."+k, "value must be one line")
			}
		}
	}
	b := s.Broker()
	if b == nil {
		return fail("services", "no service named broker")
	}
	if b.Hostname != u.Host {
		return fail("services[broker].hostname", "%q must equal the issuer host %q", b.Hostname, u.Host)
	}
	if iss := b.Env["BROKER_OIDC_ISSUER"]; iss != s.Issuer {
		return fail("services[broker].env.BROKER_OIDC_ISSUER", "%q must equal issuer %q", iss, s.Issuer)
	}
	for k, v := range s.Contracts {
		if v != "" && !addrRe.MatchString(v) {
			return fail("contracts."+k, "%q is not a 0x-prefixed 20-byte address", v)
		}
	}
	return nil
}

func inZone(h, zone string) bool {
	return strings.HasSuffix(h, "."+zone) && nameRe.MatchString(strings.ReplaceAll(strings.TrimSuffix(h, "."+zone), ".", "-"))
}

// Broker returns the broker service, or nil.
func (s *HostSpec) Broker() *Service {
	for i := range s.Services {
		if s.Services[i].Name == "broker" {
			return &s.Services[i]
		}
	}
	return nil
}

// Hostnames lists the public hostnames served by nginx, sorted.
func (s *HostSpec) Hostnames() []string {
	var out []string
	for _, svc := range s.Services {
		if svc.Hostname != "" {
			out = append(out, svc.Hostname)
		}
	}
	sort.Strings(out)
	return out
}
