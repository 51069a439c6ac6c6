package program

import (
	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/config"
)

// HostSpec builds the host agent's spec from the services' contract and the
// values the program owns, so it is identical on every run for the same
// config and public address.
func HostSpec(cfg *config.Config, publicIP string) (*spec.HostSpec, error) {
	return spec.Generate(spec.Input{
		Names: cfg.Names(), PublicIP: publicIP,
		Source: spec.Source{Repo: cfg.Repo, Ref: cfg.Ref, Dir: contract.CheckoutDir,
			AdoptFrom: []string{"/home/ubuntu/agentKeys", "/root/agentKeys"}},
		Build: spec.Build{Sccache: true},
		ACME: spec.ACME{Directory: cfg.ACMEDir, Email: cfg.ACMEEmail, Resolver: cfg.DNSResolver,
			ProbeBase: "http://127.0.0.1:80", CertbotLive: "/etc/letsencrypt/live"},
		Contracts: cfg.Contracts, RPCURL: cfg.RPCURL,
	})
}
