package contract

import "path"

// Host layout: the setup script's (SrcSetupScript), so the runbook's
// commands and operators' systemctl/journalctl habits keep working.
const (
	ServiceUser = "agentkeys" // useradd --system --home StateDir
	LoginUser   = "agentkey"  // EC2 Instance Connect login (ec2:osuser)
	StateDir    = "/var/lib/agentkeys"
	EnvDir      = "/etc/agentkeys"
	BinDir      = "/usr/local/bin"
	UnitDir     = "/etc/systemd/system"
	CheckoutDir = "/home/agentkey/agentKeys"

	// HOME of the broker: its keypair and sqlite defaults hang off it
	// (brokerConfig: $HOME/.agentkeys/broker/...).
	BrokerHome = StateDir
	KeyDir     = BrokerHome + "/.agentkeys/broker"

	OIDCKeypairPath    = KeyDir + "/oidc-keypair.json"
	SessionKeypairPath = KeyDir + "/session-keypair.json"
	// SessionPubPEMPath is where the broker exports the session public key
	// (--export-session-pubkey-to) and the signer reads it
	// (--broker-session-pubkey-path default, mockMain).
	SessionPubPEMPath = KeyDir + "/session-keypair.pub.pem"

	// AuditLeavesDir holds the audit worker's Merkle batches; the worker
	// never creates it and loses a batch when it is missing (auditState).
	AuditLeavesDir = StateDir + "/audit-leaves"

	// MasterSecretFile is the dev_key_service master secret's home, the
	// EnvironmentFile of backend and signer (setup script step 4b).
	MasterSecretFile = EnvDir + "/dev-key-service.env"

	// PubKeyEnvFile carries BROKER_CAP_PUBKEY_PEM, a multi-line PEM, as one
	// double-quoted value (systemd's EnvironmentFile grammar keeps the
	// newlines). Decision: the script instead wraps each ExecStart in
	// /bin/sh -c 'export BROKER_CAP_PUBKEY_PEM="$(cat ...)"'; the agent
	// writes the key itself from the session keypair before any unit
	// starts, so no worker races the broker's first boot.
	PubKeyEnvFile = EnvDir + "/broker-cap-pubkey.env"

	// NginxSitesDir/NginxEnabledDir: the script's sites-available plus a
	// symlink in sites-enabled per site.
	NginxSitesDir   = "/etc/nginx/sites-available"
	NginxEnabledDir = "/etc/nginx/sites-enabled"
	Webroot         = "/var/www/certbot"
)

// UnitPath is the host path of a unit file.
func UnitPath(unit string) string { return path.Join(UnitDir, unit) }

// InstallPath is the host path a binary is installed at.
func InstallPath(binary string) string { return path.Join(BinDir, binary) }

// Loopback is the address nginx proxies to: an IP, never a name, so a DNS
// failure cannot break nginx's config load.
const Loopback = "127.0.0.1"
