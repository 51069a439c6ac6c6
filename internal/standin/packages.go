package standin

import (
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
)

// Cargo package (= binary) names of the services.
const (
	PkgBroker   = "agentkeys-broker-server"
	PkgMock     = "agentkeys-mock-server"
	PkgAudit    = "agentkeys-worker-audit"
	PkgEmail    = "agentkeys-worker-email"
	PkgCreds    = "agentkeys-worker-creds"
	PkgMemory   = "agentkeys-worker-memory"
	PkgConfig   = "agentkeys-worker-config"
	PkgClassify = "agentkeys-worker-classify"
)

// Package is a cargo package of the AgentKeys workspace as its Cargo.toml
// declares it: version, default features and every feature with the
// features it enables.
type Package struct {
	Name     string
	Version  string
	Default  []string
	Features map[string][]string
}

// Packages are the packages the host runs. The broker's feature table is its
// Cargo.toml's (brokerCargo, litentry/agent-terrier
// crates/agentkeys-broker-server/Cargo.toml @de70863f): optional
// dependencies dropped, feature-to-feature edges kept. The others declare
// no features (mockCargo, the workers' Cargo.toml); all are version 0.1.0.
var Packages = []Package{
	{Name: PkgBroker, Version: "0.1.0",
		Default: []string{"auth-wallet-sig", "wallet-keystore", "audit-sqlite"},
		Features: map[string][]string{
			"auth-wallet-sig": nil, "auth-email-link": nil,
			"auth-oauth2": nil, "auth-oauth2-google": {"auth-oauth2"},
			"auth-oauth2-github": {"auth-oauth2"}, "auth-oauth2-apple": {"auth-oauth2"},
			"wallet-keystore": nil, "audit-sqlite": nil, "audit-evm": nil, "audit-solana": nil,
			"test-stub": nil,
		}},
	{Name: PkgMock, Version: "0.1.0"},
	{Name: PkgAudit, Version: "0.1.0"},
	{Name: PkgEmail, Version: "0.1.0"},
	{Name: PkgCreds, Version: "0.1.0"},
	{Name: PkgMemory, Version: "0.1.0"},
	{Name: PkgConfig, Version: "0.1.0"},
	{Name: PkgClassify, Version: "0.1.0"},
}

// LookupPackage returns the package named name.
func LookupPackage(name string) (Package, bool) {
	for _, p := range Packages {
		if p.Name == name {
			return p, true
		}
	}
	return Package{}, false
}

// Closure is the set of features enabled by asking for want, as cargo
// resolves it (each feature enables the ones it lists). Unknown names are
// returned in unknown.
func (p Package) Closure(want []string) (on map[string]bool, unknown []string) {
	on = map[string]bool{}
	var add func(string)
	add = func(f string) {
		if on[f] {
			return
		}
		if _, ok := p.Features[f]; !ok {
			unknown = append(unknown, f)
			return
		}
		on[f] = true
		for _, g := range p.Features[f] {
			add(g)
		}
	}
	for _, f := range want {
		if f = strings.TrimSpace(f); f != "" {
			add(f)
		}
	}
	return on, unknown
}

// DeployedFeatures are the features the deployment builds p with: its
// defaults plus contract.Service.Features.
func DeployedFeatures(p Package) map[string]bool {
	want := append([]string(nil), p.Default...)
	for _, s := range contract.Catalog("heima") {
		if s.Package == p.Name {
			want = append(want, s.Features...)
		}
	}
	on, _ := p.Closure(want)
	return on
}

func featureList(on map[string]bool) string {
	var l []string
	for f := range on {
		l = append(l, f)
	}
	sort.Strings(l)
	return strings.Join(l, ",")
}
