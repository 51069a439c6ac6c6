package contract

import "fmt"

// Ref cites a source file: repository, path, commit and the search-index
// id it was read under.
type Ref struct {
	Repo   string
	Path   string
	Commit string // short commit; "" when the index did not expose it
	ID     int64  // search-index id
}

func (r Ref) String() string {
	c := ""
	if r.Commit != "" {
		c = "@" + r.Commit
	}
	return fmt.Sprintf("%s %s%s (index %d)", r.Repo, r.Path, c, r.ID)
}

const (
	terrier = "litentry/agent-terrier"
	joker   = "joker4002/agentKeys"
)

func lt(path, commit string, id int64) Ref { return Ref{terrier, path, commit, id} }

// Sources read for the contract.
var (
	// The runbook's deploy script: layout, units, env files, sites, secrets.
	SrcSetupScript = Ref{joker, "scripts/setup-broker-host.sh", "765af13d", 66996365433}
	SrcSSHBroker   = Ref{joker, "scripts/ssh-broker.sh", "0880c3c2", 66643428069}

	brokerMain     = lt("crates/agentkeys-broker-server/src/main.rs", "16ea3a47", 55618637539)
	brokerConfig   = lt("crates/agentkeys-broker-server/src/config.rs", "3ff7a2d6", 55741680614)
	brokerEnvDoc   = lt("crates/agentkeys-broker-server/src/env.rs", "3ff7a2d6", 56067500342)
	brokerBoot     = lt("crates/agentkeys-broker-server/src/boot.rs", "3ff7a2d6", 55751351361)
	brokerOIDC     = lt("crates/agentkeys-broker-server/src/oidc.rs", "ca077e5a", 55592533850)
	brokerSession  = lt("crates/agentkeys-broker-server/src/jwt/session.rs", "ca077e5a", 55776151017)
	brokerPurpose  = lt("crates/agentkeys-broker-server/src/jwt/mod.rs", "5f79a9f6", 55707275359)
	brokerOIDCJWT  = lt("crates/agentkeys-broker-server/src/handlers/oidc.rs", "08cb8cdd", 55703340519)
	brokerStatus   = lt("crates/agentkeys-broker-server/src/handlers/broker_status.rs", "223352cb", 55587359822)
	brokerEmail    = lt("crates/agentkeys-broker-server/src/plugins/auth/email_link.rs", "e5d54260", 55626427427)
	brokerSTS      = lt("crates/agentkeys-broker-server/src/sts.rs", "43fd2398", 55793370072)
	brokerCap      = lt("crates/agentkeys-broker-server/src/handlers/cap.rs", "", 55659838511)
	brokerCanon    = lt("crates/agentkeys-broker-server/src/handlers/canonical_sts.rs", "120a4ac6", 55980088941)
	brokerCargo    = lt("crates/agentkeys-broker-server/Cargo.toml", "de70863f", 55586718875)
	provisionerJWT = lt("crates/agentkeys-provisioner (assume_role_with_jwt)", "", 55599074505)
	omniAccount    = lt("crates/agentkeys-broker-server/src/identity/omni_account.rs", "5f79a9f6", 55777049576)

	mockMain   = lt("crates/agentkeys-mock-server/src/main.rs", "f59e6ac9", 55807127038)
	mockLib    = lt("crates/agentkeys-mock-server/src/lib.rs", "0b799d97", 55952018752)
	devKeySvc  = lt("crates/agentkeys-mock-server/src/dev_key_service.rs", "0b799d97", 55802167340)
	devKeys    = lt("crates/agentkeys-mock-server/src/handlers/dev_keys.rs", "32744bab", 55736580054)
	signSTS    = lt("crates/agentkeys-mock-server/src/handlers/sign_sts.rs", "120a4ac6", 55585839268)
	mockInbox  = lt("crates/agentkeys-mock-server/src/handlers/inbox.rs", "769c9f2d", 55698173146)
	mockCargo  = lt("crates/agentkeys-mock-server/Cargo.toml", "120a4ac6", 55964576107)
	auditMain  = lt("crates/agentkeys-worker-audit/src/main.rs", "deb37995", 55593776395)
	auditState = lt("crates/agentkeys-worker-audit/src/state.rs", "4bf7dd84", 55974839438)
	emailMain  = lt("crates/agentkeys-worker-email/src/main.rs", "ca077e5a", 55622494130)
	emailState = lt("crates/agentkeys-worker-email/src/state.rs", "627797cd", 55669166337)
	credsMain  = lt("crates/agentkeys-worker-creds/src/main.rs", "27ff90a8", 55727400487)
	credsState = lt("crates/agentkeys-worker-creds/src/state.rs", "4bf7dd84", 55716559237)
	awsCreds   = lt("crates/agentkeys-worker-creds/src/aws_creds.rs", "", 68995172399)
	capVerify  = lt("crates/agentkeys-worker-creds/src/verify.rs", "", 55610666453)
	auditEmit  = lt("crates/agentkeys-worker-creds/src/audit.rs", "41aa291f", 55708962786)
	memMain    = lt("crates/agentkeys-worker-memory/src/main.rs", "27ff90a8", 55600682824)
	memState   = lt("crates/agentkeys-worker-memory/src/state.rs", "81034859", 55684071685)
	cfgMain    = lt("crates/agentkeys-worker-config/src/main.rs", "ca7ec87e", 55880246789)
	cfgState   = lt("crates/agentkeys-worker-config/src/state.rs", "0aece327", 55669661810)
	clsMain    = lt("crates/agentkeys-worker-classify/src/main.rs", "77cd244e", 56043303850)
	clsState   = lt("crates/agentkeys-worker-classify/src/state.rs", "66482513", 55903180169)
	chanState  = lt("crates/agentkeys-worker-channel/src/state.rs", "3f21c5ca", 69073190677)
	s3Endpoint = lt("crates/agentkeys-core/src/s3_endpoint.rs", "b67f9113", 55711637912)
	heimaJSON  = lt("crates/agentkeys-core/chain-profiles/heima.json", "52565ff6", 55594347415)
	baseJSON   = lt("crates/agentkeys-core/chain-profiles/base.json", "bd05e162", 55649287068)
)
