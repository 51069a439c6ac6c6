// Package spec is the host spec: the typed contract between the Pulumi
// program, which renders it from the services' runtime contract (package
// contract) and the stack's names, and the host agent, which converges a
// broker host from it. Decode rejects unknown fields and validates before
// the agent changes anything, including every service variable against
// what its binary accepts.
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

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Version is the schema version the agent understands. Version 2 is the
// first generated from the services' contract.
const Version = 2

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
	Secrets  []Secret  `json:"secrets"`
	Keypairs []Keypair `json:"keypairs"`
	Dirs     []Dir     `json:"dirs"`
	// PubKeyEnv is the env file the agent writes BROKER_CAP_PUBKEY_PEM to,
	// from the session keypair.
	PubKeyEnv string `json:"pubKeyEnv"`
	ACME      ACME   `json:"acme"`
	Nginx     Nginx  `json:"nginx"`

	// LoginUser is the SSH login user wired to EC2 Instance Connect (agentkey).
	LoginUser string `json:"loginUser"`
	// ServiceUser is the system user the services run as (agentkeys).
	ServiceUser string `json:"serviceUser"`
	// StateDir is the service user's home; the agent keeps its own state in
	// a root-only directory under it.
	StateDir string `json:"stateDir"`
	// HealthTimeoutSeconds bounds each health check's wait (default 60).
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
	// Command replaces the cargo builds (tests); the default is one
	// `cargo build --release --locked` per distinct package and feature set.
	Command          []string          `json:"command,omitempty"`
	Env              map[string]string `json:"env,omitempty"`
	Sccache          bool              `json:"sccache"`
	ReclaimToolchain bool              `json:"reclaimToolchain"`
}

// Service is one long-running process on the host (contract.Deployed).
type Service struct {
	Name     string   `json:"name"` // contract key: broker, backend, signer, audit, ...
	Unit     string   `json:"unit"` // agentkeys-broker.service
	Package  string   `json:"package"`
	Features []string `json:"features,omitempty"`
	// Binary is the build's output, relative to the checkout; Install is
	// where it is installed (/usr/local/bin/<name>).
	Binary  string   `json:"binary"`
	Install string   `json:"install"`
	Args    []string `json:"args,omitempty"`
	Port    int      `json:"port"`              // where it listens (nginx's upstream)
	BindAll bool     `json:"bindAll,omitempty"` // listens on 0.0.0.0: confined to loopback by the unit
	// Hostname, Site and Scope: its public vhost ("" when none).
	Hostname string `json:"hostname,omitempty"`
	Site     string `json:"site,omitempty"`
	Scope    string `json:"scope,omitempty"`
	// EnvFile is the managed env file ("" none: Env becomes Environment=
	// lines); Secrets are the ids of secrets carried into it.
	EnvFile  string            `json:"envFile,omitempty"`
	Env      map[string]string `json:"env"`
	Secrets  []string          `json:"secrets,omitempty"`
	EnvFiles []string          `json:"envFiles,omitempty"` // further EnvironmentFile= sources
	Restart  string            `json:"restart"`
	After    []string          `json:"after,omitempty"`
	// WritePaths are the paths the hardened unit may write.
	WritePaths []string `json:"writePaths,omitempty"`
	Health     string   `json:"health"`
	HealthJSON bool     `json:"healthJson,omitempty"`
	Ready      string   `json:"ready,omitempty"`
}

// Secret is one secret value kept on the host (contract.Secret).
type Secret struct {
	ID   string `json:"id"`
	Var  string `json:"var"`
	File string `json:"file"`
	Kind string `json:"kind"` // minted | carried-over
	// Own: File holds only this secret and is never rewritten.
	Own    bool   `json:"own,omitempty"`
	Format string `json:"format"` // master-secret | kek | any
}

// Keypair is one of the broker's keypairs (contract.Keypair).
type Keypair struct {
	Purpose   string `json:"purpose"`
	Path      string `json:"path"`
	PublicPEM string `json:"publicPem,omitempty"`
}

// Dir is a directory the services need, owned by the service user.
type Dir struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
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

// Nginx configures the vhosts: one file per site in SitesDir, enabled by a
// symlink in EnabledDir (Debian's layout, the setup script's), or in ConfDir
// as <site>.conf where the host's nginx has no EnabledDir.
type Nginx struct {
	HTTPPort   int    `json:"httpPort"`  // 80
	HTTPSPort  int    `json:"httpsPort"` // 443
	Webroot    string `json:"webroot"`   // /var/www/certbot
	SitesDir   string `json:"sitesDir"`  // /etc/nginx/sites-available
	EnabledDir string `json:"enabledDir"`
	ConfDir    string `json:"confDir"` // /etc/nginx/conf.d
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
	nameRe   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	envKeyRe = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	unitRe   = regexp.MustCompile(`^agentkeys-[a-z0-9-]+\.service$`)
	siteRe   = regexp.MustCompile(`^agentkeys-[a-z0-9-]+$`)
)

// Validate checks the spec against the stack identity, itself, and the
// services' contract: every variable written must be one its binary reads
// and must pass the binary's own check.
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
	for _, p := range []struct{ f, v string }{
		{"stateDir", s.StateDir}, {"nginx.webroot", s.Nginx.Webroot}, {"nginx.sitesDir", s.Nginx.SitesDir},
		{"nginx.enabledDir", s.Nginx.EnabledDir}, {"nginx.confDir", s.Nginx.ConfDir}, {"pubKeyEnv", s.PubKeyEnv},
	} {
		if !abs(p.v) {
			return fail(p.f, "%q must be an absolute path", p.v)
		}
	}
	if s.HealthTimeoutSeconds < 0 || s.HealthTimeoutSeconds > 3600 {
		return fail("healthTimeoutSeconds", "%d must be between 0 (default 60) and 3600", s.HealthTimeoutSeconds)
	}
	if !nameRe.MatchString(s.ServiceUser) || !nameRe.MatchString(s.LoginUser) {
		return fail("serviceUser/loginUser", "must be lowercase user names")
	}
	if err := s.validateSecrets(fail); err != nil {
		return err
	}
	if err := s.validateServices(fail); err != nil {
		return err
	}
	b := s.Broker()
	if b == nil {
		return fail("services", "no service named broker")
	}
	if b.Hostname != u.Host {
		return fail("services[broker].hostname", "%q must equal the issuer host %q", b.Hostname, u.Host)
	}
	if iss := b.Env[contract.VarIssuer]; iss != s.Issuer {
		return fail("services[broker].env."+contract.VarIssuer, "%q must equal issuer %q", iss, s.Issuer)
	}
	return nil
}

func abs(p string) bool { return strings.HasPrefix(p, "/") && path.Clean(p) == p }

func (s *HostSpec) validateSecrets(fail func(string, string, ...any) error) error {
	ids := map[string]bool{}
	for i, sec := range s.Secrets {
		f := fmt.Sprintf("secrets[%d]", i)
		if !nameRe.MatchString(sec.ID) || ids[sec.ID] {
			return fail(f+".id", "%q must be a unique lowercase name", sec.ID)
		}
		ids[sec.ID] = true
		if !envKeyRe.MatchString(sec.Var) {
			return fail(f+".var", "%q is not an environment variable name", sec.Var)
		}
		if !abs(sec.File) {
			return fail(f+".file", "%q must be an absolute path", sec.File)
		}
		if sec.Kind != string(contract.Minted) && sec.Kind != string(contract.CarriedOver) {
			return fail(f+".kind", "%q is not minted or carried-over", sec.Kind)
		}
		if !contract.SecretFormat(sec.Format).Valid() {
			return fail(f+".format", "%q is not master-secret, kek or any", sec.Format)
		}
	}
	for i, k := range s.Keypairs {
		f := fmt.Sprintf("keypairs[%d]", i)
		if k.Purpose != "oidc" && k.Purpose != "session" {
			return fail(f+".purpose", "%q is not oidc or session", k.Purpose)
		}
		if !abs(k.Path) || (k.PublicPEM != "" && !abs(k.PublicPEM)) {
			return fail(f, "paths must be absolute")
		}
	}
	for i, d := range s.Dirs {
		if !abs(d.Path) || d.Mode > 0o7777 {
			return fail(fmt.Sprintf("dirs[%d]", i), "%q must be an absolute path with a mode", d.Path)
		}
	}
	return nil
}

func (s *HostSpec) validateServices(fail func(string, string, ...any) error) error {
	if len(s.Services) == 0 {
		return fail("services", "at least the broker service is required")
	}
	catalog := map[string]contract.Service{}
	for _, c := range contract.Catalog(s.Chain) {
		catalog[c.Name] = c
	}
	ports := map[int]string{s.Nginx.HTTPPort: "nginx.httpPort", s.Nginx.HTTPSPort: "nginx.httpsPort"}
	seen := map[string]map[string]string{"name": {}, "unit": {}, "hostname": {}, "site": {}, "envFile": {}}
	uniq := func(f, kind, v, who string) error {
		if v == "" {
			return nil
		}
		if other, ok := seen[kind][v]; ok {
			return fail(f+"."+kind, "%q is also the %s of %s; give each service its own", v, kind, other)
		}
		seen[kind][v] = who
		return nil
	}
	for i, svc := range s.Services {
		f := fmt.Sprintf("services[%d]", i)
		who := fmt.Sprintf("services[%d] (%s)", i, svc.Name)
		c, known := catalog[svc.Name]
		if !known {
			return fail(f+".name", "%q is not a service of the contract", svc.Name)
		}
		if !unitRe.MatchString(svc.Unit) {
			return fail(f+".unit", "%q must be agentkeys-<name>.service", svc.Unit)
		}
		if svc.Site != "" && !siteRe.MatchString(svc.Site) {
			return fail(f+".site", "%q must be agentkeys-<name>", svc.Site)
		}
		for _, u := range []struct{ kind, v string }{{"name", svc.Name}, {"unit", svc.Unit}, {"hostname", svc.Hostname}, {"site", svc.Site}, {"envFile", path.Clean(svc.EnvFile)}} {
			if u.kind == "envFile" && svc.EnvFile == "" {
				continue
			}
			if err := uniq(f, u.kind, u.v, who); err != nil {
				return err
			}
		}
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
			if svc.Site == "" {
				return fail(f+".site", "a service with a hostname needs a site")
			}
			if svc.Scope != string(contract.ScopeAll) && svc.Scope != string(contract.ScopeSigner) {
				return fail(f+".scope", "%q is not all or signer", svc.Scope)
			}
		}
		if svc.Binary == "" || strings.HasPrefix(svc.Binary, "/") || strings.Contains(svc.Binary, "..") {
			return fail(f+".binary", "%q must be a path inside the checkout", svc.Binary)
		}
		if !abs(svc.Install) {
			return fail(f+".install", "%q must be an absolute path", svc.Install)
		}
		if svc.EnvFile != "" && !abs(svc.EnvFile) {
			return fail(f+".envFile", "%q must be an absolute path", svc.EnvFile)
		}
		for _, p := range append(append([]string{}, svc.EnvFiles...), svc.WritePaths...) {
			if !abs(p) {
				return fail(f, "%q must be an absolute path", p)
			}
		}
		if svc.Restart != "always" && svc.Restart != "on-failure" {
			return fail(f+".restart", "%q is not always or on-failure", svc.Restart)
		}
		if !strings.HasPrefix(svc.Health, "/") || (svc.Ready != "" && !strings.HasPrefix(svc.Ready, "/")) {
			return fail(f+".health", "%q must be a path such as /healthz", svc.Health)
		}
		for _, a := range svc.Args {
			if strings.ContainsAny(a, "\n\r\"'\\$%;") {
				return fail(f+".args", "%q cannot go into an ExecStart line", a)
			}
		}
		reads := map[string]contract.Var{}
		for _, v := range c.Reads {
			reads[v.Name] = v
		}
		keys := make([]string, 0, len(svc.Env))
		for k := range svc.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := svc.Env[k]
			if !envKeyRe.MatchString(k) {
				return fail(f+".env", "key %q is not an environment variable name", k)
			}
			if strings.ContainsAny(v, "\n\r") {
				return fail(f+".env."+k, "value must be one line")
			}
			r, ok := reads[k]
			if !ok {
				return fail(f+".env."+k, "%s never reads %s; remove it", c.Binary, k)
			}
			if r.Need == contract.Unset {
				return fail(f+".env."+k, "must not be set for %s (%s)", svc.Name, r.Format)
			}
			if r.Check != nil {
				if err := r.Check(v); err != nil {
					return fail(f+".env."+k, "%v; %s would %s", err, c.Binary, orDefault(r.OnBad, "reject it"))
				}
			}
		}
		for _, id := range svc.Secrets {
			sec, ok := s.Secret(id)
			if !ok {
				return fail(f+".secrets", "names secret %q, which secrets does not define", id)
			}
			if !sec.Own && path.Clean(sec.File) != path.Clean(svc.EnvFile) {
				return fail(f+".secrets", "secret %q lives in %s, not in this service's env file %s", id, sec.File, svc.EnvFile)
			}
		}
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func inZone(h, zone string) bool {
	return strings.HasSuffix(h, "."+zone) && nameRe.MatchString(strings.ReplaceAll(strings.TrimSuffix(h, "."+zone), ".", "-"))
}

// Broker returns the broker service, or nil.
func (s *HostSpec) Broker() *Service { return s.Service("broker") }

// Service returns the service named name, or nil.
func (s *HostSpec) Service(name string) *Service {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i]
		}
	}
	return nil
}

// Secret returns the secret with id.
func (s *HostSpec) Secret(id string) (Secret, bool) {
	for _, sec := range s.Secrets {
		if sec.ID == id {
			return sec, true
		}
	}
	return Secret{}, false
}

// Keypair returns the keypair of purpose.
func (s *HostSpec) Keypair(purpose string) (Keypair, bool) {
	for _, k := range s.Keypairs {
		if k.Purpose == purpose {
			return k, true
		}
	}
	return Keypair{}, false
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
