package contract

import "strings"

// Need says what a binary does without a variable.
type Need uint8

const (
	// Optional: the binary runs with its default.
	Optional Need = iota
	// Required: the binary refuses to start (exits) when it is unset.
	Required
	// Feature: the binary starts, but a feature this deployment uses fails
	// at request time (the Var says how).
	Feature
	// Unset: the deployment must leave it unset (VE-only, dev-only or a
	// feature this deployment does not run); writing it is a defect.
	Unset
)

func (n Need) String() string {
	return [...]string{"optional", "required", "feature", "unset"}[n]
}

// Var is one environment variable a binary reads.
type Var struct {
	Name    string
	Need    Need
	Default string             // the binary's own default ("" none)
	Format  string             // what the binary accepts
	Check   func(string) error // rejects what the binary rejects; nil: not validated by it
	OnBad   string             // what the binary does when it is missing or malformed
	Secret  bool
	Src     Ref
}

// Variable names referenced outside the catalog.
const (
	VarIssuer       = "BROKER_OIDC_ISSUER"
	VarMasterSecret = "DEV_KEY_SERVICE_MASTER_SECRET"
	VarCapPubKey    = "BROKER_CAP_PUBKEY_PEM"
	VarHome         = "HOME"
	// The broker's keypair paths: unset by the deployment (HOME decides),
	// read from a host the old scripts configured when adopting its keys.
	VarOIDCKeypairPath    = "BROKER_OIDC_KEYPAIR_PATH"
	VarSessionKeypairPath = "BROKER_SESSION_KEYPAIR_PATH"
)

// ChainSuffix is the env-profile suffix of chain: upper case, '-' -> '_'
// (brokerCap, credsState profile_env).
func ChainSuffix(chain string) string {
	return strings.ReplaceAll(strings.ToUpper(chain), "-", "_")
}

// Contract address variables (no unsuffixed fallback).
const (
	AddrSidecarRegistry = "SIDECAR_REGISTRY_ADDRESS"
	AddrScopeContract   = "SCOPE_CONTRACT_ADDRESS"
	AddrK3EpochCounter  = "K3_EPOCH_COUNTER_ADDRESS"
)

// ContractNames are the contract keys of the agentkeys:contracts config map,
// each the stem of its chain-suffixed address variable.
var ContractNames = []string{AddrSidecarRegistry, AddrScopeContract, AddrK3EpochCounter}

// ChainRPCDefaults are the chain profiles' rpc.http endpoints. Neither the
// broker nor the workers read the profiles (brokerCap, credsState), so the
// deployment always writes one.
var ChainRPCDefaults = map[string]string{
	"heima": "https://rpc.heima-parachain.heima.network", // heimaJSON, and the setup script's default
	"base":  "https://mainnet.base.org",                  // baseJSON
}

// chainVars are what the broker (per request) and the cap-checking workers
// (at startup, presence only) read for chain checks.
func chainVars(chain string, need Need, src Ref) []Var {
	p := ChainSuffix(chain)
	onBad := "unset: exit 1 at startup (presence only; a malformed value fails each chain check with 502 chain_rpc)"
	if need == Feature {
		onBad = "unset: every cap mint returns 502 chain_rpc_error"
	}
	addr := func(stem string) Var {
		return Var{Name: stem + "_" + p, Need: need, Format: "0x-prefixed 20-byte address; empty until the chain's contracts are deployed (chain-degraded)",
			Check: CheckAddressOrEmpty, OnBad: onBad, Src: src}
	}
	return []Var{
		{Name: "AGENTKEYS_CHAIN", Default: "heima", Format: "chain profile name; decides the suffix _" + p, Src: src},
		{Name: "AGENTKEYS_CHAIN_RPC_HTTP", Need: need, Format: "http(s) JSON-RPC URL (first of AGENTKEYS_CHAIN_RPC_HTTP, CHAIN_RPC_HTTP_" + p + ", HEIMA_RPC_HTTP)",
			Check: CheckHTTPURL, OnBad: onBad, Src: src},
		{Name: "CHAIN_RPC_HTTP_" + p, Need: Optional, Format: "fallback RPC URL; not written (AGENTKEYS_CHAIN_RPC_HTTP wins)", Src: src},
		{Name: "HEIMA_RPC_HTTP", Need: Optional, Format: "last fallback RPC URL, even for other chains; not written", Src: src},
		addr(AddrSidecarRegistry), addr(AddrScopeContract), addr(AddrK3EpochCounter),
	}
}
