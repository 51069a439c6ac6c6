// Package config is the typed stack configuration: the `agentkeys:` keys of
// Pulumi.<stack>.yaml plus aws:region, validated before any resource is
// declared. Every error names the key, the stack and a valid example.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Namespace is the project's config namespace.
const Namespace = "agentkeys"

// Defaults for optional keys.
const (
	DefaultRegion        = "us-east-1"
	DefaultRepo          = "https://github.com/litentry/agentKeys.git"
	DefaultRef           = "main"
	DefaultSSHUser       = "ubuntu"
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultDNSResolver   = "8.8.8.8:53"
)

// Secret holds a secret config value; it never prints itself.
type Secret struct{ value string }

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the plaintext, for the one place that must pass it on.
func (s Secret) Reveal() string { return s.value }

// Set reports whether the secret has a value.
func (s Secret) Set() bool { return s.value != "" }

func (s Secret) String() string { return "[secret]" }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return "[secret]" }

// MarshalJSON keeps JSON output from printing the value.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal("[secret]") }

// Config is one stack's validated configuration.
type Config struct {
	Stack naming.Stack
	Fork  naming.Fork

	InstanceID      string
	EIPAllocationID string // optional: adopt this allocation
	EIPAddress      string // optional: adopt this address

	SSHUser       string
	SSHPrivateKey Secret // optional until the host is brought up
	SSHHostKey    string // optional: pin the host key ("ssh-ed25519 AAAA...")
	HostArch      string // the broker EC2's CPU: amd64 or arm64 (Graviton)

	Repo string
	Ref  string

	Contracts   map[string]string // contract name (REGISTRY, ...) -> 0x address; "" = not deployed yet
	RPCURL      string
	ACMEDir     string
	ACMEEmail   string
	DNSResolver string
	Redeploy    string // change to force the host bring-up to run again
}

// Names derives every identifier of the stack.
func (c *Config) Names() naming.Names { return naming.Derive(c.Stack, c.Fork) }

// key describes one config key: its example and its parser.
type key struct {
	name     string
	required bool
	example  string
	check    func(c *Config, v string) error
}

// exampleFor is k's example on stack st. The chain key has one valid value
// per stack (the stack name decides it: naming.Chains, else
// naming.DefaultChain), so its example is that value.
func (k key) exampleFor(st naming.Stack) string {
	if k.name == "chain" {
		return st.Chain
	}
	return k.example
}

var (
	zoneIDRe   = regexp.MustCompile(`^Z[0-9A-Z]{5,31}$`)
	instanceRe = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	allocRe    = regexp.MustCompile(`^eipalloc-([0-9a-f]{8}|[0-9a-f]{17})$`)
	userRe     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	refRe      = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
)

func check(ok func(string) bool, what string) func(string) error {
	return func(v string) error {
		if !ok(v) {
			return fmt.Errorf("%q is not %s", v, what)
		}
		return nil
	}
}

func match(re *regexp.Regexp, what string) func(string) error {
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("%q is not %s", v, what)
		}
		return nil
	}
}

var keys = []key{
	{"accountId", true, "123456789012", func(c *Config, v string) error {
		c.Fork.AccountID = v
		return check(naming.IsAccountID, "a 12-digit AWS account id")(v)
	}},
	{"zone", true, "example.org", func(c *Config, v string) error {
		c.Fork.Zone = v
		return check(naming.IsZone, "a lowercase DNS zone without a trailing dot")(v)
	}},
	{"parentZoneId", true, "Z09723983CFJOHAE3VC65", func(c *Config, v string) error {
		c.Fork.ParentZoneID = v
		if strings.HasPrefix(v, "/hostedzone/") {
			return fmt.Errorf("%q has the /hostedzone/ prefix; give only the id", v)
		}
		return match(zoneIDRe, "a Route 53 hosted zone id")(v)
	}},
	{"brokerHost", false, "broker.example.org", func(c *Config, v string) error {
		c.Fork.BrokerHost = v
		return nil // checked against the zone below
	}},
	{"mailDomain", false, "bots.example.org", func(c *Config, v string) error {
		c.Fork.MailDomain = v
		return nil
	}},
	{"instanceId", true, "i-0123456789abcdef0", func(c *Config, v string) error {
		c.InstanceID = v
		return match(instanceRe, "an EC2 instance id (i- and 8 or 17 hex digits)")(v)
	}},
	{"eipAllocationId", false, "eipalloc-0123456789abcdef0", func(c *Config, v string) error {
		c.EIPAllocationID = v
		return match(allocRe, "an EIP allocation id")(v)
	}},
	{"eipAddress", false, "203.0.113.10", func(c *Config, v string) error {
		c.EIPAddress = v
		if ip := net.ParseIP(v); ip == nil || ip.To4() == nil {
			return fmt.Errorf("%q is not an IPv4 address", v)
		}
		return nil
	}},
	{"sshUser", false, "ubuntu", func(c *Config, v string) error {
		c.SSHUser = v
		return match(userRe, "a Unix user name")(v)
	}},
	{"sshPrivateKey", false, "(pulumi config set --secret agentkeys:sshPrivateKey < broker.pem)", func(c *Config, v string) error {
		c.SSHPrivateKey = NewSecret(v)
		if v != Encrypted && !strings.Contains(v, "PRIVATE KEY-----") {
			return errors.New("is not a PEM or OpenSSH private key")
		}
		return nil
	}},
	{"sshHostKey", false, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...", func(c *Config, v string) error {
		c.SSHHostKey = v
		if f := strings.Fields(v); len(f) < 2 || !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") {
			return fmt.Errorf("%q is not an authorized_keys-style public key", v)
		}
		return nil
	}},
	{"agentkeysRepo", false, DefaultRepo, func(c *Config, v string) error {
		c.Repo = v
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "ssh" && u.Scheme != "file") {
			return fmt.Errorf("%q is not an https, ssh or file URL", v)
		}
		return nil
	}},
	{"agentkeysRef", false, "main", func(c *Config, v string) error {
		c.Ref = v
		if strings.HasPrefix(v, "-") || strings.Contains(v, "..") {
			return fmt.Errorf("%q is not a git ref", v)
		}
		return match(refRe, "a git branch, tag or commit")(v)
	}},
	{"chain", false, naming.DefaultChain, func(c *Config, v string) error {
		if v != c.Stack.Chain {
			return fmt.Errorf("says %q but stack %s runs chain %q; the stack name decides the chain: remove the key or use the stack of that chain", v, c.Stack.Name, c.Stack.Chain)
		}
		return nil
	}},
	{"contracts", false, `{"SIDECAR_REGISTRY_ADDRESS": "0x1ac62f1c2d828476a5d784e850a700dc1f17e0be"}`, func(c *Config, v string) error {
		m := map[string]string{}
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			return errors.New("must be a map of contract name to address")
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if strings.HasSuffix(k, "_"+contract.ChainSuffix(c.Stack.Chain)) {
				return fmt.Errorf("contract name %q carries the chain suffix; write %s, the host agent adds _%s", k, strings.TrimSuffix(k, "_"+contract.ChainSuffix(c.Stack.Chain)), contract.ChainSuffix(c.Stack.Chain))
			}
			if !slices.Contains(contract.ContractNames, k) {
				return fmt.Errorf("contract name %q is not one the services read; use %s (each gets the chain suffix on the host)", k, strings.Join(contract.ContractNames, ", "))
			}
			if err := contract.CheckAddressOrEmpty(m[k]); err != nil {
				return fmt.Errorf("contract %s: %v (leave it empty until deployed)", k, err)
			}
		}
		c.Contracts = m
		return nil
	}},
	{"rpcUrl", false, "https://rpc.example.org", func(c *Config, v string) error {
		c.RPCURL = v
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%q is not an http(s) URL: the services call the chain's JSON-RPC over HTTP (AGENTKEYS_CHAIN_RPC_HTTP); a wss:// endpoint fails every chain check", v)
		}
		if u.User != nil {
			// The URL reaches the host spec, the state and the bring-up's log.
			return fmt.Errorf("embeds credentials (user:password@), which would be stored in plain text in the host spec and the state; use an endpoint without them")
		}
		return nil
	}},
	{"acmeDirectory", false, DefaultACMEDirectory, func(c *Config, v string) error {
		c.ACMEDir = v
		if !naming.IsACMEDirectory(v) {
			return fmt.Errorf("%q is not an absolute https ACME directory URL without credentials", v)
		}
		return nil
	}},
	{"acmeEmail", false, "ops@example.org", func(c *Config, v string) error {
		c.ACMEEmail = v
		if !strings.Contains(v, "@") {
			return fmt.Errorf("%q is not an email address", v)
		}
		return nil
	}},
	{"dnsResolver", false, DefaultDNSResolver, func(c *Config, v string) error {
		c.DNSResolver = v
		if !naming.IsResolver(v) {
			return fmt.Errorf("%q is not host:port with a numeric port", v)
		}
		return nil
	}},
	{"hostArch", false, "arm64", func(c *Config, v string) error {
		c.HostArch = v
		if v != "amd64" && v != "arm64" {
			return fmt.Errorf("%q is not amd64 or arm64 (the broker instance type's CPU)", v)
		}
		return nil
	}},
	{"redeploy", false, "2026-11-28", func(c *Config, v string) error {
		c.Redeploy = v
		return nil
	}},
}

// Keys lists the accepted agentkeys: keys, for docs and suggestions.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Parse validates raw config values keyed as Pulumi passes them
// ("agentkeys:accountId", "aws:region") for stack name. All problems are
// reported together, each naming the key and a valid example.
func Parse(stackName string, raw map[string]string) (*Config, error) {
	st, err := naming.ParseStack(stackName)
	if err != nil {
		return nil, err
	}
	c := &Config{Stack: st, SSHUser: DefaultSSHUser, HostArch: "amd64", Repo: DefaultRepo, Ref: DefaultRef,
		ACMEDir: DefaultACMEDirectory, DNSResolver: DefaultDNSResolver, Contracts: map[string]string{}}
	var errs []string
	bad := func(k, example string, err error) {
		errs = append(errs, fmt.Sprintf("stack %s: config key %s:%s %v (example: %s)", stackName, Namespace, k, err, example))
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k.name] = true
		ex := k.exampleFor(st)
		v, ok := raw[Namespace+":"+k.name]
		if !ok || strings.TrimSpace(v) == "" {
			if k.required {
				bad(k.name, ex, fmt.Errorf("is required: pulumi config set %s:%s <value> --stack %s", Namespace, k.name, stackName))
			}
			continue
		}
		if err := k.check(c, v); err != nil {
			bad(k.name, ex, err)
		}
	}
	for _, full := range sortedKeys(raw) {
		ns, k, _ := strings.Cut(full, ":")
		if ns == Namespace && !known[k] {
			bad(k, "one of "+strings.Join(Keys(), ", "), fmt.Errorf("is not a known key%s", suggest(k)))
		}
		if NearMissNamespace(ns) {
			want := k
			if !known[k] {
				if best := closestKey(k); best != "" {
					want = best
				}
			}
			errs = append(errs, fmt.Sprintf("stack %s: config key %s is in namespace %q, which the program does not read; did you mean %s:%s? (pulumi config rm %s --stack %s, then set %s:%s)",
				stackName, full, ns, Namespace, want, full, stackName, Namespace, want))
		}
	}
	c.Fork.Region = DefaultRegion
	if r, ok := raw["aws:region"]; ok {
		c.Fork.Region = r
		if !naming.IsRegion(r) {
			errs = append(errs, fmt.Sprintf("stack %s: config key aws:region %q is not an AWS region (example: us-east-1)", stackName, r))
		}
	}
	if c.Fork.Zone != "" && naming.IsZone(c.Fork.Zone) {
		for _, o := range []struct{ k, v, ex string }{{"brokerHost", c.Fork.BrokerHost, "broker.example.org"}, {"mailDomain", c.Fork.MailDomain, "bots.example.org"}} {
			if o.v != "" && (!strings.HasSuffix(o.v, "."+c.Fork.Zone) || !naming.IsZone(o.v)) {
				bad(o.k, strings.Replace(o.ex, "example.org", c.Fork.Zone, 1), fmt.Errorf("%q must be a hostname inside zone %s", o.v, c.Fork.Zone))
			}
		}
		if c.Fork.BrokerHost != "" {
			// An override must not take another stack's issuer: that would share its OIDC provider.
			if other, ok := naming.StackForBrokerHost(c.Fork.BrokerHost, c.Fork.Zone); ok && other != stackName {
				bad("brokerHost", naming.Derive(st, naming.Fork{Zone: c.Fork.Zone}).BrokerHost, fmt.Errorf("%q is the derived broker host of stack %s; each stack needs its own issuer", c.Fork.BrokerHost, other))
			}
		}
	}
	if c.EIPAllocationID != "" && c.EIPAddress != "" {
		errs = append(errs, fmt.Sprintf("stack %s: config keys %s:eipAllocationId and %s:eipAddress are both set; set one of them (or neither to adopt or allocate)", stackName, Namespace, Namespace))
	}
	if len(errs) > 0 {
		return nil, &Error{Problems: errs}
	}
	return c, nil
}

// Error lists every config problem of a stack.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest names the known key closest to a mistyped one.
func suggest(k string) string {
	best := closestKey(k)
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %s:%s?", Namespace, best)
}

// closestKey is the known key within edit distance 3 of k, or "".
func closestKey(k string) string {
	best, bestD := "", 4
	for _, kk := range keys {
		if d := distance(strings.ToLower(k), strings.ToLower(kk.name)); d < bestD {
			best, bestD = kk.name, d
		}
	}
	return best
}

// NearMissNamespace reports whether config namespace ns looks like a
// mistyped agentkeys (edit distance <= 2, or it starts with "agentkey"):
// Pulumi passes such keys on, but nothing reads them, so they would be
// silently ignored. Other namespaces (aws, pulumi, tls, command) are allowed.
func NearMissNamespace(ns string) bool {
	if ns == Namespace {
		return false
	}
	l := strings.ToLower(ns)
	return strings.HasPrefix(l, "agentkey") || distance(l, Namespace) <= 2
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
