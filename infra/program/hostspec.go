package program

import (
	"strconv"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Host layout on the broker EC2. Ports are loopback-only; nginx fronts them.
const (
	CheckoutDir = "/home/agentkey/agentKeys"
	StateDir    = "/var/lib/agentkeys"
	brokerPort  = 8090
	signerPort  = 8091
	mockPort    = 8092
	workerPort0 = 8101 // audit; the other workers follow in naming.Workers order
)

// HostSpec builds the host agent's spec from values the program owns, so it is
// identical on every run for the same config and public address.
func HostSpec(cfg *config.Config, publicIP string) *spec.HostSpec {
	n := cfg.Names()
	st := cfg.Stack
	keys := StateDir + "/keys"
	common := func(extra map[string]string) map[string]string {
		m := map[string]string{
			"AGENTKEYS_CHAIN":    st.Chain,
			"AGENTKEYS_STACK":    st.Name,
			"AWS_REGION":         n.Region,
			"BROKER_AWS_REGION":  n.Region,
			"ACCOUNT_ID":         n.Fork.AccountID,
			"BROKER_OIDC_ISSUER": n.Issuer,
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	svcs := []spec.Service{
		{
			Name: "broker", Package: "agentkeys-broker-server", Features: []string{"auth-email-link"},
			Binary: "target/release/agentkeys-broker-server", Port: brokerPort, Hostname: n.BrokerHost,
			EnvFile: n.BrokerEnvFile, Health: "/healthz",
			Env: common(map[string]string{
				"BROKER_LISTEN":               "127.0.0.1:" + strconv.Itoa(brokerPort),
				"BROKER_DATA_ROLE_ARN":        n.DataRoleARN,
				"BROKER_OIDC_KEYPAIR_PATH":    keys + "/oidc-keypair.json",
				"BROKER_SESSION_KEYPAIR_PATH": keys + "/session-keypair.json",
				"BROKER_AUTH_METHODS":         "wallet_sig,email_link",
				"BROKER_AUDIT_ANCHORS":        "sqlite",
				"BROKER_EMAIL_SENDER":         "ses",
				"BROKER_EMAIL_FROM_ADDRESS":   n.Sender,
				"MAIL_BUCKET":                 n.MailBucket,
			}),
		},
		{
			Name: "signer", Package: "agentkeys-signer", Binary: "target/release/agentkeys-signer",
			Port: signerPort, Hostname: n.SignerHost, EnvFile: n.SignerEnvFile, Health: "/healthz",
			MasterSecret: true,
			Env:          common(map[string]string{"SIGNER_LISTEN": "127.0.0.1:" + strconv.Itoa(signerPort)}),
		},
		{
			Name: "mock-server", Package: "agentkeys-mock-server", Binary: "target/release/agentkeys-mock-server",
			Port: mockPort, EnvFile: n.MockServerEnvFile, Health: "/healthz",
			Env: common(map[string]string{"MOCK_SERVER_LISTEN": "127.0.0.1:" + strconv.Itoa(mockPort)}),
		},
	}
	for i, w := range naming.Workers {
		port := workerPort0 + i
		env := common(map[string]string{
			"WORKER_NAME":   w,
			"WORKER_LISTEN": "127.0.0.1:" + strconv.Itoa(port),
		})
		for _, c := range naming.DataClasses {
			up := strings.ToUpper(c.Name)
			env[up+"_BUCKET"] = n.DataBuckets[c.Name]
			env[up+"_ROLE_ARN"] = n.ClassRoleARNs[c.Name]
		}
		svcs = append(svcs, spec.Service{
			Name: w, Package: "agentkeys-worker-" + w, Binary: "target/release/agentkeys-worker-" + w,
			Port: port, Hostname: n.WorkerHosts[w], EnvFile: n.WorkerEnvFiles[w], Health: "/healthz", Env: env,
		})
	}
	contracts := map[string]string{}
	for k, v := range cfg.Contracts {
		contracts[k] = v
	}
	buckets := map[string]string{"mail": n.MailBucket}
	for _, c := range naming.DataClasses {
		buckets[c.Name] = n.DataBuckets[c.Name]
	}
	return &spec.HostSpec{
		Version: spec.Version, Stack: st.Name, Issuer: n.Issuer, Zone: n.Fork.Zone, PublicIP: publicIP,
		Account: n.Fork.AccountID, Region: n.Region, Chain: st.Chain, BrokerHostOverride: n.Fork.BrokerHost,
		Source: spec.Source{Repo: cfg.Repo, Ref: cfg.Ref, Dir: CheckoutDir,
			AdoptFrom: []string{"/home/ubuntu/agentKeys", "/root/agentKeys"}},
		Build:    spec.Build{Sccache: true},
		Services: svcs,
		ACME: spec.ACME{Directory: cfg.ACMEDir, Email: cfg.ACMEEmail, Resolver: cfg.DNSResolver,
			ProbeBase: "http://127.0.0.1:80", CertbotLive: "/etc/letsencrypt/live"},
		Nginx:       spec.Nginx{HTTPPort: 80, HTTPSPort: 443, Webroot: "/var/www/certbot", ConfDir: "/etc/nginx/conf.d"},
		DataRoleARN: n.DataRoleARN, ClassRoleARNs: n.ClassRoleARNs, Buckets: buckets,
		MailDomain: n.MailDomain, Sender: n.Sender, Contracts: contracts, RPCURL: cfg.RPCURL,
		LoginUser: "agentkey", ServiceUser: "agentkeys", StateDir: StateDir,
	}
}
