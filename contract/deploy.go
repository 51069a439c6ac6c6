package contract

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// Stack is what a deployment of the services needs to know about its stack.
type Stack struct {
	Name          string
	Chain         string
	Issuer        string // https://<broker host>
	Region        string
	DataRoleARN   string
	MemoryRoleARN string // the memory class role: canonical-sts and inbox-sts mint against it
	Audience      string // aud of the broker's STS JWTs, pinned by the trust policies
	Sender        string // SES-verified FROM address
	VaultBucket   string
	MemoryBucket  string
	ConfigBucket  string
	RPCURL        string            // "" = the chain profile's default
	Contracts     map[string]string // ContractNames -> address ("" = not deployed yet)
	Hostnames     map[string]string // Service.Host label -> public hostname
	// Ports overrides the contract's ports by service name (tests run
	// several hosts on one machine); nil keeps them.
	Ports map[string]int
}

func (st Stack) port(svc Service) int {
	if p, ok := st.Ports[svc.Name]; ok {
		return p
	}
	return svc.Port
}

// SecretKind says how a secret comes to exist.
type SecretKind string

const (
	// Minted once (32 random bytes, hex) when absent, never rotated.
	Minted SecretKind = "minted"
	// CarriedOver is never minted: kept when a host already has it.
	CarriedOver SecretKind = "carried-over"
)

// Secret is one secret value the host keeps: the line Var=<value> in File.
type Secret struct {
	ID   string
	Var  string
	File string
	Kind SecretKind
	// Own: File holds only this secret (never rewritten); otherwise File is
	// a service's managed env file and the value is carried into it.
	Own    bool
	Format SecretFormat
	Src    Ref
}

// SecretFormat names the check a secret's readers apply.
type SecretFormat string

const (
	FormatMasterSecret SecretFormat = "master-secret"
	FormatKEK          SecretFormat = "kek"
	FormatAny          SecretFormat = "any"
)

// Valid reports whether f is a known format.
func (f SecretFormat) Valid() bool {
	return f == FormatMasterSecret || f == FormatKEK || f == FormatAny
}

// Check applies the format's check; an unknown format is an error.
func (f SecretFormat) Check(v string) error {
	switch f {
	case FormatMasterSecret:
		return CheckMasterSecret(v)
	case FormatKEK:
		return CheckKEK(v)
	case FormatAny:
		return CheckNonEmpty(v)
	}
	return fmt.Errorf("unknown secret format %q", f)
}

// Keypair is one of the broker's ES256 keypairs, in its own file format
// (keypair.go).
type Keypair struct {
	Purpose   string // oidc or session
	Path      string
	PublicPEM string // where the SPKI public key is exported ("" none)
}

// Dir is a directory the services need, owned by the service user.
type Dir struct {
	Path string
	Mode uint32
}

// Deployed is a service as this stack runs it.
type Deployed struct {
	Service
	Args     []string
	Hostname string
	// Env is written to EnvFile (or, without one, as Environment= lines).
	Env map[string]string
	// Secrets are the ids of secrets whose Var line is carried into EnvFile.
	Secrets []string
	// EnvFiles are further EnvironmentFile= sources, in order.
	EnvFiles []string
}

// Deployment is everything the host runs for one stack.
type Deployment struct {
	Services []Deployed
	Secrets  []Secret
	Keypairs []Keypair
	Dirs     []Dir
	// PubKeyEnv is the env file carrying VarCapPubKey (PubKeyEnvFile).
	PubKeyEnv string
}

// Deploy computes the deployment of every catalog service for st.
func Deploy(st Stack) (*Deployment, error) {
	if err := st.validate(); err != nil {
		return nil, err
	}
	rpc := st.RPCURL
	if rpc == "" {
		rpc = ChainRPCDefaults[st.Chain]
	}
	chain := func(m map[string]string) {
		m["AGENTKEYS_CHAIN"] = st.Chain
		m["AGENTKEYS_CHAIN_RPC_HTTP"] = rpc
		for _, c := range ContractNames {
			m[c+"_"+ChainSuffix(st.Chain)] = st.Contracts[c]
		}
	}
	loop := func(port int) string { return Loopback + ":" + strconv.Itoa(port) }
	local := func(port int) string { return "http://" + loop(port) }
	d := &Deployment{
		PubKeyEnv: PubKeyEnvFile,
		Secrets: []Secret{
			{ID: "master-secret", Var: VarMasterSecret, File: MasterSecretFile, Kind: Minted, Own: true, Format: FormatMasterSecret, Src: devKeySvc},
			{ID: "kek-creds", Var: "AGENTKEYS_WORKER_KEK_HEX", File: EnvDir + "/worker-creds.env", Kind: Minted, Format: FormatKEK, Src: credsState},
			{ID: "kek-memory", Var: "AGENTKEYS_MEMORY_KEK_HEX", File: EnvDir + "/worker-memory.env", Kind: Minted, Format: FormatKEK, Src: memState},
			{ID: "kek-config", Var: "AGENTKEYS_CONFIG_KEK_HEX", File: EnvDir + "/worker-config.env", Kind: Minted, Format: FormatKEK, Src: cfgState},
			// A host whose newer script deployed a channel worker keeps the
			// token the broker and that worker share.
			{ID: "channel-sts-token", Var: "AGENTKEYS_CHANNEL_STS_TOKEN", File: EnvDir + "/broker.env", Kind: CarriedOver, Format: FormatAny, Src: brokerConfig},
			{ID: "channel-role-arn", Var: "CHANNEL_ROLE_ARN", File: EnvDir + "/broker.env", Kind: CarriedOver, Format: FormatAny, Src: brokerConfig},
		},
		Keypairs: []Keypair{
			{Purpose: "oidc", Path: OIDCKeypairPath},
			{Purpose: "session", Path: SessionKeypairPath, PublicPEM: SessionPubPEMPath},
		},
		Dirs: []Dir{{StateDir, 0o700}, {BrokerHome + "/.agentkeys", 0o700}, {KeyDir, 0o700}, {AuditLeavesDir, 0o750}},
	}
	ports := map[string]int{}
	for _, svc := range Catalog(st.Chain) {
		ports[svc.Name] = st.port(svc)
	}
	for _, svc := range Catalog(st.Chain) {
		svc.Port = ports[svc.Name]
		dep := Deployed{Service: svc, Env: map[string]string{"RUST_LOG": RustLog}, Hostname: st.Hostnames[svc.Host]}
		env := dep.Env
		switch svc.Name {
		case "broker":
			dep.Args = BrokerArgs(svc.Port)
			env[VarHome] = BrokerHome
			env[VarIssuer] = st.Issuer
			env["BROKER_DATA_ROLE_ARN"] = st.DataRoleARN
			env["BROKER_AWS_REGION"] = st.Region
			env["BROKER_AUTH_METHODS"] = "wallet_sig,email_link"
			env["BROKER_EMAIL_SENDER"] = "ses"
			env["BROKER_EMAIL_FROM_ADDRESS"] = st.Sender
			env["BROKER_STS_AUDIENCE"] = st.Audience
			env["MEMORY_ROLE_ARN"] = st.MemoryRoleARN
			chain(env)
			dep.Secrets = []string{"channel-sts-token", "channel-role-arn"}
		case "backend":
			dep.Args = BackendArgs(svc.Port)
			dep.EnvFiles = []string{MasterSecretFile}
		case "signer":
			dep.Args = SignerArgs(svc.Port)
			dep.EnvFiles = []string{MasterSecretFile}
		case "audit":
			env["AGENTKEYS_WORKER_AUDIT_BIND"] = loop(svc.Port)
			env["AGENTKEYS_WORKER_AUDIT_LEAVES_DIR"] = AuditLeavesDir
			env["AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS"] = "300"
		case "email":
			env["AGENTKEYS_WORKER_EMAIL_BIND"] = loop(svc.Port)
			env["AGENTKEYS_VAULT_BUCKET"] = st.VaultBucket
			env["AWS_REGION"] = st.Region
		case "creds", "memory", "config":
			env["WORKER_BIND"] = loop(svc.Port)
			env["AWS_REGION"] = st.Region
			env["AGENTKEYS_AUDIT_WORKER_URL"] = local(ports["audit"])
			env["AGENTKEYS_WORKER_REQUIRE_STS"] = RequireSTS
			chain(env)
			dep.EnvFiles = []string{PubKeyEnvFile}
			switch svc.Name {
			case "creds":
				env["VAULT_BUCKET"] = st.VaultBucket
				dep.Secrets = []string{"kek-creds"}
			case "memory":
				env["MEMORY_BUCKET"] = st.MemoryBucket
				// Decision: loopback, not the public issuer: no TLS hairpin
				// through nginx for a call that never leaves the host.
				env["BROKER_URL"] = local(ports["broker"])
				dep.Secrets = []string{"kek-memory"}
			case "config":
				env["CONFIG_BUCKET"] = st.ConfigBucket
				dep.Secrets = []string{"kek-config"}
			}
		case "classify":
			env["WORKER_BIND"] = loop(svc.Port)
			chain(env)
			dep.EnvFiles = []string{PubKeyEnvFile}
		default:
			return nil, fmt.Errorf("contract: no deployment for service %s", svc.Name)
		}
		if svc.Host != "" && dep.Hostname == "" {
			return nil, fmt.Errorf("contract: stack %s has no hostname for %s (label %q)", st.Name, svc.Name, svc.Host)
		}
		d.Services = append(d.Services, dep)
	}
	if err := d.Check(); err != nil {
		return nil, err
	}
	return d, nil
}

func (st Stack) validate() error {
	if _, ok := ChainRPCDefaults[st.Chain]; !ok && st.RPCURL == "" {
		return fmt.Errorf("contract: chain %q has no default RPC endpoint; set agentkeys:rpcUrl", st.Chain)
	}
	for k := range st.Contracts {
		known := false
		for _, c := range ContractNames {
			known = known || k == c
		}
		if !known {
			return fmt.Errorf("contract: unknown contract %q; the services read %v", k, ContractNames)
		}
	}
	return nil
}

// Secret returns the secret with id.
func (d *Deployment) Secret(id string) (Secret, bool) {
	for _, s := range d.Secrets {
		if s.ID == id {
			return s, true
		}
	}
	return Secret{}, false
}

// Written lists every variable a deployed service receives: its Env, its
// secrets and what its extra env files carry.
func (d *Deployment) Written(dep Deployed) map[string]string {
	out := map[string]string{}
	for k, v := range dep.Env {
		out[k] = v
	}
	for _, id := range dep.Secrets {
		if s, ok := d.Secret(id); ok {
			out[s.Var] = "(secret " + id + ")"
		}
	}
	for _, f := range dep.EnvFiles {
		switch f {
		case MasterSecretFile:
			out[VarMasterSecret] = "(secret master-secret)"
		case d.PubKeyEnv:
			out[VarCapPubKey] = "(session public key)"
		}
	}
	return out
}

// Check holds the deployment to the catalog: every variable written is one
// the binary reads and not one it must not get, every value passes the
// binary's own check, and every required variable is written.
func (d *Deployment) Check() error {
	for _, dep := range d.Services {
		reads := map[string]Var{}
		for _, v := range dep.Reads {
			reads[v.Name] = v
		}
		w := d.Written(dep)
		names := make([]string, 0, len(w))
		for k := range w {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v, ok := reads[k]
			switch {
			case !ok:
				return fmt.Errorf("contract: %s is written for %s, which never reads it", k, dep.Name)
			case v.Need == Unset:
				return fmt.Errorf("contract: %s is written for %s, which must not get it (%s)", k, dep.Name, v.Format)
			case v.Check != nil && !v.Secret && k != VarCapPubKey:
				if err := v.Check(w[k]); err != nil {
					return fmt.Errorf("contract: %s for %s %v", k, dep.Name, err)
				}
			}
		}
		for _, v := range dep.Reads {
			if v.Need != Required && v.Need != Feature {
				continue
			}
			if _, ok := w[v.Name]; ok {
				continue
			}
			// Optional KEKs are still minted (Secret kinds decide); a
			// required one must be among the service's secrets.
			return fmt.Errorf("contract: %s needs %s (%s) but the deployment does not write it", dep.Name, v.Name, v.OnBad)
		}
	}
	return nil
}

// StackOf is the deployment input of a stack's derived names.
func StackOf(n naming.Names, contracts map[string]string, rpcURL string) Stack {
	hosts := map[string]string{"broker": n.BrokerHost, "signer": n.SignerHost}
	for w, h := range n.WorkerHosts {
		hosts[w] = h
	}
	c := map[string]string{}
	for k, v := range contracts {
		c[k] = v
	}
	return Stack{
		Name: n.Stack.Name, Chain: n.Stack.Chain, Issuer: n.Issuer, Region: n.Region,
		DataRoleARN: n.DataRoleARN, MemoryRoleARN: n.ClassRoleARNs["memory"], Audience: naming.OIDCAudience,
		Sender: n.Sender, VaultBucket: n.DataBuckets["vault"], MemoryBucket: n.DataBuckets["memory"],
		ConfigBucket: n.DataBuckets["config"], RPCURL: rpcURL, Contracts: c, Hostnames: hosts,
	}
}
