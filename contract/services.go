package contract

import (
	"strconv"
	"strings"
)

// Scope is which paths a service's public vhost proxies.
type Scope string

const (
	// ScopeAll proxies every path.
	ScopeAll Scope = "all"
	// ScopeSigner proxies /dev/ and /healthz only; everything else is 404,
	// as the setup script's signer site does.
	ScopeSigner Scope = "signer"
)

// Health is a service's liveness probe and the body a healthy one returns.
type Health struct {
	Path string
	// JSON: the body is a JSON object with "ok": true; otherwise exactly "ok".
	JSON bool
}

// AWSCall is an AWS API call a service makes with the host's instance
// profile (its SDK default chain on EC2).
type AWSCall struct {
	Action   string // IAM action
	Resource string // symbolic: "sender-identity", "mail-identities", "vault-bucket"
	Prefix   string // s3:prefix condition for list calls
	Why      string
	Src      Ref
}

// Service is one binary's runtime contract and its place on the host.
type Service struct {
	Name     string // contract key: broker, backend, signer, audit, email, creds, memory, config, classify
	Unit     string
	Package  string // cargo package
	Binary   string // binary name, installed at BinDir/Binary
	Features []string
	// Port is where it listens; BindAll when it binds 0.0.0.0 and has no
	// flag to narrow it (the backend).
	Port    int
	BindAll bool
	// Host is the naming label of its public hostname (broker, signer,
	// audit, ..., cred for the creds worker); "" when nginx does not front it.
	Host  string
	Site  string // nginx site name
	Scope Scope
	// EnvFile is the managed env file ("" none); secrets in it are carried
	// over, never regenerated.
	EnvFile string
	// Restart policy: the broker exits 0 after 24 h by design (brokerMain),
	// so it restarts always; the others exit only on failure.
	Restart string
	// After lists units this one is ordered after (Wants= + After=).
	After      []string
	WritePaths []string
	Health     Health
	Ready      string // readiness path ("" none)
	// Reads is every environment variable the binary reads.
	Reads []Var
	AWS   []AWSCall
	Src   []Ref
}

// InboxPrefix is the s3:prefix the email worker lists under: bots/<actor
// omni>/inbound/, the omni being 64 lowercase hex (emailState); 64 single-
// character wildcards keep "*"'s match of "/" out of the actor segment.
var InboxPrefix = "bots/" + strings.Repeat("?", 64) + "/inbound/*"

// Ports. The script's (8090-8092, 9092-9096); classify has none there.
const (
	PortBackend = 8090
	PortBroker  = 8091
	PortSigner  = 8092
	PortAudit   = 9092
	PortEmail   = 9093
	PortCreds   = 9094
	PortMemory  = 9095
	PortConfig  = 9096
	// Decision: the setup script that deploys classify is not in the index;
	// its code default is 8085 (clsMain). 9097 continues the script's
	// 909x worker range.
	PortClassify = 9097
)

// Decision: creds, memory and config reject requests that carry no caller
// STS credentials (AGENTKEYS_WORKER_REQUIRE_STS=1, awsCreds) instead of
// falling back to the instance profile, which would bypass the per-actor
// PrincipalTag scoping of the data buckets; the host role has no data
// bucket grant. Set to "" to restore the fallback (then grant it in policy).
const RequireSTS = "1"

// Decision: RUST_LOG=info for every service. Five workers log only errors
// when it is unset (their "listening" line included); the broker's default
// is already info.
const RustLog = "info"

const restartAlways, restartOnFailure = "always", "on-failure"

func unit(name string) string { return name + ".service" }

var (
	unitBackend = unit("agentkeys-backend")
	unitBroker  = unit("agentkeys-broker")
	unitSigner  = unit("agentkeys-signer")
)

func rustLog(src Ref) Var {
	return Var{Name: "RUST_LOG", Default: "error (workers) / info (broker)", Format: "tracing EnvFilter", Src: src}
}

func region(src Ref) []Var {
	return []Var{
		{Name: "AWS_REGION", Default: "AWS_DEFAULT_REGION, else us-east-1", Format: "AWS region", Src: src},
		{Name: "AWS_DEFAULT_REGION", Format: "AWS region (fallback)", Src: src},
	}
}

func auditVars(src Ref) []Var {
	return []Var{
		{Name: "AGENTKEYS_AUDIT_WORKER_URL", Default: "http://127.0.0.1:9092", Format: "base URL of the audit worker (POST /v1/audit/append/v2)", Src: src},
		{Name: "AGENTKEYS_WORKER_REQUIRE_AUDIT", Default: "off", Format: "1 or true: an audit emit failure fails the request (502)", Src: src},
	}
}

func capVars(chain string, src Ref) []Var {
	vs := []Var{
		{Name: VarCapPubKey, Need: Required, Format: "SPKI \"PUBLIC KEY\" PEM of the broker session key (multi-line)",
			Check: CheckSPKIP256, OnBad: "unset: exit 1; malformed: every cap request 403 broker_sig_invalid while /healthz stays 200", Src: src},
		{Name: "AGENTKEYS_WORKER_REQUIRE_CAP_POP", Default: "off", Format: "1, true or yes", Src: capVerify},
	}
	return append(vs, chainVars(chain, Required, src)...)
}

func kekVar(name string, need Need, src Ref) Var {
	return Var{Name: name, Need: need, Secret: true, Format: "64 hex characters (no 0x), not one byte repeated",
		Check: CheckKEK, OnBad: "exit 1", Src: src}
}

func workerBind(port int, src Ref) Var {
	return Var{Name: "WORKER_BIND", Default: "127.0.0.1:<code default>", Format: "IP:port (clap SocketAddr)",
		Check: CheckSocketAddr, OnBad: "not IP:port: exit 2", Src: src}
}

// Catalog is every service the host runs, for chain.
func Catalog(chain string) []Service {
	return []Service{
		broker(chain), backend(), signer(),
		audit(), email(), creds(chain), memory(chain), config(chain), classify(chain),
	}
}

func broker(chain string) Service {
	reads := []Var{
		{Name: VarIssuer, Need: Required, Format: "https://<broker host>, no trailing slash (not stripped: it would reach jwks_uri)",
			Check: CheckIssuer, OnBad: "unset: exit 1; http(s) mismatch: BOOT_FAIL oidc-issuer, exit 1", Src: brokerConfig},
		{Name: "BROKER_DATA_ROLE_ARN", Need: Optional, Default: "BROKER_AGENT_ROLE_ARN, else arn:aws:iam::$ACCOUNT_ID:role/agentkeys-data-role",
			Format: "role ARN (not validated)", OnBad: "all three unset: exit 1", Src: brokerConfig},
		{Name: "BROKER_AGENT_ROLE_ARN", Format: "legacy alias of BROKER_DATA_ROLE_ARN; not written", Src: brokerConfig},
		{Name: "ACCOUNT_ID", Format: "account id, used only to derive the data role ARN (not validated)", Src: brokerConfig},
		{Name: "BROKER_AWS_REGION", Default: "REGION, else us-east-1", Format: "AWS region; the SES region reads only this one", Src: brokerBoot},
		{Name: "REGION", Format: "AWS region (fallback)", Src: brokerConfig},
		{Name: VarHome, Need: Required, Default: ".", Format: "base of every default path ($HOME/.agentkeys/broker)",
			OnBad: "unset: the keypairs are looked for under ./.agentkeys: BOOT_FAIL oidc-keypair, exit 1", Src: brokerConfig},
		{Name: VarOIDCKeypairPath, Default: "$HOME/.agentkeys/broker/oidc-keypair.json", Format: "path", OnBad: "file missing: BOOT_FAIL oidc-keypair, exit 1", Src: brokerConfig},
		{Name: VarSessionKeypairPath, Default: "$HOME/.agentkeys/broker/session-keypair.json", Format: "path", OnBad: "file missing: BOOT_FAIL session-keypair, exit 1", Src: brokerBoot},
		{Name: "BROKER_AUDIT_DB_PATH", Default: "$HOME/.agentkeys/broker/audit.sqlite", Format: "path; its directory holds every sqlite file", Src: brokerConfig},
		{Name: "BROKER_DATA_DIR", Default: "directory of the audit DB", Format: "path (ses-verify.json)", Src: brokerBoot},
		{Name: "BROKER_AUTH_METHODS", Default: "wallet_sig", Format: "comma list of wallet_sig, email_link, oauth2_google",
			Check: CheckAuthMethods, OnBad: "unknown or not compiled in: BOOT_FAIL, exit 1", Src: brokerBoot},
		{Name: "BROKER_EMAIL_FROM_ADDRESS", Need: Required, Format: "SES-verified sender address (required with email_link)",
			Check: CheckNonEmpty, OnBad: "unset with email_link: BOOT_FAIL email-from-address, exit 1", Src: brokerBoot},
		{Name: "BROKER_EMAIL_SENDER", Default: "stub", Format: "stub or ses", Check: CheckOneOf("stub", "ses"), OnBad: "BOOT_FAIL email-sender-backend, exit 1", Src: brokerBoot},
		{Name: "BROKER_EMAIL_RATE_LIMIT_PER_EMAIL_HOURLY", Default: "5", Format: "integer (malformed: the default)", Src: brokerBoot},
		{Name: "BROKER_EMAIL_RATE_LIMIT_PER_IP_MINUTELY", Default: "30", Format: "integer (malformed: the default)", Src: brokerBoot},
		{Name: "BROKER_EMAIL_LANDING_URL_BASE", Default: "the issuer", Format: "URL", Src: brokerEnvDoc},
		{Name: "BROKER_DEV_MODE", Need: Unset, Default: "false", Format: "exactly true enables http issuers; never on a public host", Src: brokerConfig},
		{Name: "BROKER_REFUSE_TO_BOOT_STRICT", Default: "false", Format: "exactly true: a failed SES probe exits 1", Src: brokerConfig},
		{Name: "AGENTKEYS_CLIENT_ID", Default: "agentkeys", Format: "one token, no whitespace or quotes", OnBad: "exit 1", Src: brokerConfig},
		{Name: "MEMORY_ROLE_ARN", Need: Feature, Format: "role ARN for /v1/cap/canonical-sts and /v1/cap/inbox-sts",
			Check: CheckNonEmpty, OnBad: "empty: both return 500 not configured", Src: brokerConfig},
		{Name: "SPEECH_ROLE_ARN", Format: "role ARN for /v1/cap/speech-sts; the stack has no speech role: not written (500 not configured)", Src: brokerConfig},
		{Name: "CHANNEL_ROLE_ARN", Format: "role ARN for /v1/cap/channel-sts (500 not configured without it); no channel worker is deployed: carried over when a host has one", Src: brokerConfig},
		{Name: "AGENTKEYS_CHANNEL_STS_TOKEN", Secret: true, Format: "64-hex bearer shared with the channel worker; carried over when a host has one", Src: brokerConfig},
		{Name: "BROKER_STS_AUDIENCE", Default: "sts.amazonaws.com", Format: "aud of the JWTs the broker mints for STS; the trust policies pin the same value",
			Check: CheckNonEmpty, Src: brokerConfig},
		{Name: "BROKER_OIDC_JWT_TTL_SECONDS", Default: "300", Format: "60..3600", OnBad: "exit 1", Src: brokerConfig},
		{Name: "BROKER_SESSION_JWT_TTL_SECONDS", Default: "18000", Format: "integer (malformed: the default)", Src: brokerEnvDoc},
		{Name: "BROKER_SESSION_DURATION_SECONDS", Default: "3600", Format: "900..43200", OnBad: "exit 1", Src: brokerConfig},
		{Name: "BROKER_SHUTDOWN_GRACE_SECONDS", Default: "30", Format: "seconds it keeps serving after SIGTERM", OnBad: "exit 1", Src: brokerConfig},
		{Name: "BROKER_AUDIT_ANCHORS", Default: "sqlite", Format: "sqlite (evm_testnet needs feature audit-evm)", Src: brokerConfig},
		{Name: "BROKER_AUDIT_POLICY", Default: "dual_strict", Format: "dual_strict, sqlite_primary or evm_primary", Src: brokerBoot},
		{Name: "BROKER_WALLET_PROVISIONER", Default: "client_keystore", Format: "client_keystore", Src: brokerBoot},
		{Name: "BROKER_REQUEST_BODY_LIMIT_BYTES", Default: "1048576", Format: "integer", Src: brokerBoot},
		{Name: "AWS_PROFILE", Need: Unset, Format: "the script's --cred-mode profile; on EC2 the instance profile is used", Src: SrcSetupScript},
		{Name: "AGENTKEYS_STS_PROVIDER", Need: Unset, Format: "VE only; AWS is the default", Src: brokerSTS},
		rustLog(brokerMain),
	}
	reads = append(reads, chainVars(chain, Feature, brokerCap)...)
	return Service{
		Name: "broker", Unit: unitBroker, Package: "agentkeys-broker-server", Binary: "agentkeys-broker-server",
		// Without auth-email-link, BROKER_AUTH_METHODS=email_link is a
		// BOOT_FAIL (brokerCargo); the script builds it in its own cargo call.
		Features: []string{"auth-email-link"},
		Port:     PortBroker, Host: "broker", Site: "agentkeys-broker", Scope: ScopeAll,
		EnvFile: EnvDir + "/broker.env", Restart: restartAlways,
		After:      []string{unitBackend},
		WritePaths: []string{StateDir},
		Health:     Health{Path: "/healthz"}, Ready: "/readyz",
		Reads: reads,
		AWS: []AWSCall{
			{Action: "ses:GetEmailIdentity", Resource: "sender-identity", Why: "readiness probe tier2/ses on the exact FROM address (no domain fallback)", Src: brokerEmail},
			{Action: "ses:SendEmail", Resource: "sender-identity", Why: "magic-link mail", Src: brokerEmail},
		},
		Src: []Ref{brokerMain, brokerConfig, brokerBoot, brokerEnvDoc, brokerOIDC, brokerSession, brokerStatus, brokerEmail, brokerSTS, provisionerJWT, SrcSetupScript},
	}
}

// BrokerArgs are the broker's flags: loopback, and the session public key
// exported for the signer on every boot.
func BrokerArgs(port int) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", Loopback, "--export-session-pubkey-to", SessionPubPEMPath}
}

func backend() Service {
	return Service{
		Name: "backend", Unit: unitBackend, Package: "agentkeys-mock-server", Binary: "agentkeys-mock-server",
		// No --bind flag: it listens on 0.0.0.0:<port> (mockMain). The unit
		// confines it to loopback with IPAddressDeny/IPAddressAllow, since
		// it serves /dev/* without a JWT in this mode (devKeys).
		Port: PortBackend, BindAll: true, Restart: restartOnFailure,
		Health: Health{Path: "/healthz"},
		Reads: []Var{
			{Name: VarMasterSecret, Need: Feature, Secret: true, Format: "64 hex (optional lowercase 0x), 32 bytes, no whitespace",
				Check: CheckMasterSecret, OnBad: "malformed: exit 2; unset: /dev/* 503 signer_disabled", Src: devKeySvc},
			{Name: "AGENTKEYS_EMAIL_DOMAIN", Default: "agentkeys-email.io", Format: "mock inbox domain", Src: mockInbox},
			rustLog(mockMain),
		},
		Src: []Ref{mockMain, mockLib, devKeySvc, devKeys, mockCargo, SrcSetupScript},
	}
}

func signer() Service {
	return Service{
		Name: "signer", Unit: unitSigner, Package: "agentkeys-mock-server", Binary: "agentkeys-mock-server",
		Port: PortSigner, Host: "signer", Site: "agentkeys-signer", Scope: ScopeSigner, Restart: restartOnFailure,
		After:  []string{unitBroker},
		Health: Health{Path: "/healthz"},
		Reads: []Var{
			{Name: VarMasterSecret, Need: Feature, Secret: true, Format: "64 hex (optional lowercase 0x), 32 bytes, no whitespace",
				Check: CheckMasterSecret, OnBad: "malformed: exit 2; unset: /dev/* 503 signer_disabled", Src: devKeySvc},
			{Name: "AGENTKEYS_SIGNER_STS_PROVIDER", Need: Unset, Format: "ve only; any other non-empty value exits 2", Src: signSTS},
			{Name: "AGENTKEYS_SIGNER_REQUIRE_CHAIN_GRANT", Need: Unset, Format: "VE sign-sts only", Src: signSTS},
			rustLog(mockMain),
		},
		Src: []Ref{mockMain, mockLib, devKeySvc, devKeys, signSTS, SrcSetupScript},
	}
}

// SignerArgs are the signer's flags; it reads the session public key once
// at boot and exits 2 when it is missing or does not parse (mockMain).
func SignerArgs(port int) []string {
	return []string{"--signer-only", "--port", strconv.Itoa(port), "--broker-session-pubkey-path", SessionPubPEMPath}
}

// BackendArgs are the backend's flags.
func BackendArgs(port int) []string { return []string{"--port", strconv.Itoa(port)} }

func audit() Service {
	return Service{
		Name: "audit", Unit: unit("agentkeys-worker-audit"), Package: "agentkeys-worker-audit", Binary: "agentkeys-worker-audit",
		Port: PortAudit, Host: "audit", Site: "agentkeys-worker-audit", Scope: ScopeAll,
		EnvFile: EnvDir + "/worker-audit.env", Restart: restartOnFailure,
		WritePaths: []string{AuditLeavesDir},
		Health:     Health{Path: "/healthz"},
		Reads: []Var{
			{Name: "AGENTKEYS_WORKER_AUDIT_BIND", Default: "127.0.0.1:9092", Format: "host:port", Check: CheckHostPort, OnBad: "bind failure: exit 1", Src: auditMain},
			{Name: "AGENTKEYS_WORKER_AUDIT_LEAVES_DIR", Default: "/tmp", Format: "existing writable directory (never created; a flush into a missing one loses the batch)", Check: CheckNonEmpty, Src: auditMain},
			{Name: "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", Default: "300", Format: "seconds; 0 turns the timer off", Check: CheckUint, OnBad: "non-numeric: exit 2", Src: auditMain},
			rustLog(auditMain),
		},
		Src: []Ref{auditMain, auditState, SrcSetupScript},
	}
}

func email() Service {
	reads := []Var{
		{Name: "AGENTKEYS_WORKER_EMAIL_BIND", Default: "127.0.0.1:9093", Format: "host:port", Check: CheckHostPort, OnBad: "bind failure: exit 1", Src: emailMain},
		// Decision: the inbox bucket is the vault bucket, as in the script
		// (--inbox-bucket ${AGENTKEYS_VAULT_BUCKET}); the flag's env
		// fallback carries it, so ExecStart needs no flag.
		{Name: "AGENTKEYS_VAULT_BUCKET", Need: Required, Format: "bucket name (--inbox-bucket)", Check: CheckNonEmpty, OnBad: "unset: exit 2", Src: emailMain},
		{Name: "AWS_REGION", Need: Feature, Format: "AWS region (SDK chain only, no us-east-1 fallback)", Check: CheckNonEmpty, OnBad: "unset: SES and S3 calls fail with 500", Src: emailState},
		rustLog(emailMain),
	}
	return Service{
		Name: "email", Unit: unit("agentkeys-worker-email"), Package: "agentkeys-worker-email", Binary: "agentkeys-worker-email",
		Port: PortEmail, Host: "email", Site: "agentkeys-worker-email", Scope: ScopeAll,
		EnvFile: EnvDir + "/worker-email.env", Restart: restartOnFailure,
		Health: Health{Path: "/healthz"},
		Reads:  reads,
		AWS: []AWSCall{
			{Action: "ses:SendEmail", Resource: "mail-identities", Why: "POST /v1/email/send", Src: emailState},
			{Action: "s3:ListBucket", Resource: "vault-bucket", Prefix: InboxPrefix, Why: "GET /v1/email/inbox/<omni> lists bots/<omni>/inbound/", Src: emailState},
		},
		Src: []Ref{emailMain, emailState, SrcSetupScript},
	}
}

func dataWorker(name, pkg, host string, port int, bucketVar, kekName string, kekNeed Need, chain string, mainSrc, stateSrc Ref, extra ...Var) Service {
	reads := []Var{
		workerBind(port, mainSrc),
		{Name: bucketVar, Need: Required, Format: "bucket name", Check: CheckNonEmpty, OnBad: "unset: exit 1", Src: stateSrc},
		kekVar(kekName, kekNeed, stateSrc),
		{Name: "AGENTKEYS_WORKER_REQUIRE_STS", Default: "off", Format: "1 or true: requests without X-Aws-* credentials get 401", Src: awsCreds},
		{Name: "AGENTKEYS_TOS_ENDPOINT", Need: Unset, Format: "VE object storage only", Src: s3Endpoint},
		rustLog(mainSrc),
	}
	reads = append(reads, region(stateSrc)...)
	reads = append(reads, auditVars(auditEmit)...)
	reads = append(reads, capVars(chain, stateSrc)...)
	reads = append(reads, extra...)
	return Service{
		Name: name, Unit: unit("agentkeys-worker-" + name), Package: pkg, Binary: pkg,
		Port: port, Host: host, Site: "agentkeys-worker-" + host, Scope: ScopeAll,
		EnvFile: EnvDir + "/worker-" + name + ".env", Restart: restartOnFailure,
		After:  []string{unitBroker},
		Health: Health{Path: "/healthz", JSON: true},
		Reads:  reads,
		Src:    []Ref{mainSrc, stateSrc, awsCreds, capVerify, auditEmit, SrcSetupScript},
	}
}

func creds(chain string) Service {
	return dataWorker("creds", "agentkeys-worker-creds", "cred", PortCreds, "VAULT_BUCKET", "AGENTKEYS_WORKER_KEK_HEX", Required, chain, credsMain, credsState)
}

func memory(chain string) Service {
	return dataWorker("memory", "agentkeys-worker-memory", "memory", PortMemory, "MEMORY_BUCKET", "AGENTKEYS_MEMORY_KEK_HEX", Required, chain, memMain, memState,
		Var{Name: "BROKER_URL", Need: Feature, Format: "broker base URL", Check: CheckNonEmpty,
			OnBad: "empty: /v1/memory/canonical-get and /v1/memory/inbox-append return 500 broker_url_unset", Src: memState})
}

func config(chain string) Service {
	// Optional since #372 (legacy v2 blobs only), but the script mints one
	// and a host that has one must keep it: generated once like the others.
	return dataWorker("config", "agentkeys-worker-config", "config", PortConfig, "CONFIG_BUCKET", "AGENTKEYS_CONFIG_KEK_HEX", Optional, chain, cfgMain, cfgState,
		Var{Name: "AGENTKEYS_CONFIG_REQUIRE_V3", Default: "off", Format: "exactly 1: plaintext puts are refused (403)", Src: cfgState})
}

func classify(chain string) Service {
	reads := []Var{workerBind(PortClassify, clsMain), rustLog(clsMain)}
	reads = append(reads, capVars(chain, clsState)...)
	return Service{
		Name: "classify", Unit: unit("agentkeys-worker-classify"), Package: "agentkeys-worker-classify", Binary: "agentkeys-worker-classify",
		Port: PortClassify, Host: "classify", Site: "agentkeys-worker-classify", Scope: ScopeAll,
		EnvFile: EnvDir + "/worker-classify.env", Restart: restartOnFailure,
		After:  []string{unitBroker},
		Health: Health{Path: "/healthz", JSON: true},
		Reads:  reads,
		Src:    []Ref{clsMain, clsState},
	}
}
