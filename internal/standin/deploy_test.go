package standin_test

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/internal/standin"
	"github.com/stretchr/testify/require"
)

// The deployment the agent writes starts every stand-in, each listening
// where the real binary listens and answering its real health body.
func TestDeploymentStartsEveryService(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// The broker first: it rewrites the session public key the signer reads.
	os.Remove(f.host(contract.SessionPubPEMPath))
	f.up("broker", f.env("broker"))
	b, err := os.ReadFile(f.host(contract.SessionPubPEMPath))
	require.NoError(t, err, "the broker exports the session public key on boot")
	require.Equal(t, f.pubPEM, string(b))
	st, err := os.Stat(f.host(contract.SessionPubPEMPath))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	for _, s := range f.dep.Services[1:] {
		f.up(s.Name, f.env(s.Name))
	}
}

var exitIn = regexp.MustCompile(`exit (\d+)`)

// requiredExit is the exit code the binary gives without v: the one its
// OnBad names, else the catalog is missing a fact.
func requiredExit(svc string, v contract.Var) (int, bool) {
	// HOME has no OnBad of its own: without it the broker looks for its
	// keypairs under ./.agentkeys and refuses to boot (brokerConfig).
	if svc == "broker" && v.Name == contract.VarHome {
		return 1, true
	}
	m := exitIn.FindStringSubmatch(v.OnBad)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	return n, true
}

// Every variable the catalog marks Required, removed from the deployed
// environment: the stand-in exits with the code the catalog names and
// never listens.
func TestRequiredVariables(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	n := 0
	for _, s := range f.dep.Services {
		for _, v := range s.Reads {
			if v.Need != contract.Required {
				continue
			}
			n++
			t.Run(s.Name+"/"+v.Name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				code, ok := requiredExit(s.Name, v)
				require.True(t, ok, "%s %s: the catalog names no exit code (OnBad %q)", s.Name, v.Name, v.OnBad)
				says := map[string]string{
					contract.VarHome:         "BOOT_FAIL: BROKER_OIDC_KEYPAIR_PATH",
					"AGENTKEYS_VAULT_BUCKET": "--inbox-bucket <INBOX_BUCKET>", // clap names the flag
				}[v.Name]
				if says == "" {
					says = v.Name
				}
				p := f.start(s.Package, f.args(s.Name), without(f.env(s.Name), v.Name))
				f.refuses(p, s.Name, code, says)
			})
		}
	}
	require.Greater(t, n, 20, "the catalog's required variables")
}

// Feature variables are not startup requirements: removed, the service
// still starts (what fails is a request; see the per-service tests).
func TestFeatureVariablesAreNotRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, s := range f.dep.Services {
		for _, v := range s.Reads {
			if v.Need != contract.Feature {
				continue
			}
			t.Run(s.Name+"/"+v.Name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				f.up(s.Name, without(f.env(s.Name), v.Name))
			})
		}
	}
}

// The workers check presence only (std::env::var): an empty value starts,
// except where the value itself is validated at startup.
func TestEmptyValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		svc, v string
		code   int // 0: starts
		says   string
	}{
		{"creds", contract.VarCapPubKey, 0, ""},
		{"creds", "AGENTKEYS_CHAIN_RPC_HTTP", 0, ""},
		{"creds", "SIDECAR_REGISTRY_ADDRESS_HEIMA", 0, ""},
		{"creds", "VAULT_BUCKET", 0, ""},
		{"memory", "MEMORY_BUCKET", 0, ""},
		{"classify", "K3_EPOCH_COUNTER_ADDRESS_HEIMA", 0, ""},
		{"email", "AGENTKEYS_VAULT_BUCKET", 0, ""},
		{"creds", "AGENTKEYS_WORKER_KEK_HEX", 1, "is 0 characters"},
		{"memory", "AGENTKEYS_MEMORY_KEK_HEX", 1, "is 0 characters"},
		{"config", "AGENTKEYS_CONFIG_KEK_HEX", 0, ""}, // optional: blank = v3-only mode
		{"broker", contract.VarIssuer, 1, "BOOT_FAIL: BROKER_OIDC_ISSUER"},
		{"broker", "BROKER_DATA_ROLE_ARN", 0, ""},
		{"creds", "WORKER_BIND", 2, "invalid socket address syntax"},
		{"audit", "AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", 2, "cannot parse integer from empty string"},
	}
	for _, c := range cases {
		t.Run(c.svc+"/"+c.v, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			env := with(f.env(c.svc), c.v, "")
			if c.code == 0 {
				f.up(c.svc, env)
				return
			}
			f.refuses(f.start(f.svc(c.svc).Package, f.args(c.svc), env), c.svc, c.code, c.says)
		})
	}
}

// The RPC URL falls back to CHAIN_RPC_HTTP_<P>, then HEIMA_RPC_HTTP, even
// on another chain (credsState).
func TestRPCFallbacks(t *testing.T) {
	t.Parallel()
	for _, fb := range []string{"CHAIN_RPC_HTTP_HEIMA", "HEIMA_RPC_HTTP"} {
		t.Run(fb, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.up("classify", with(without(f.env("classify"), "AGENTKEYS_CHAIN_RPC_HTTP"), fb, "http://127.0.0.1:1"))
		})
	}
	t.Run("base chain reads its own suffix", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		env := with(f.env("classify"), "AGENTKEYS_CHAIN", "base")
		p := f.start(f.svc("classify").Package, f.args("classify"), env)
		f.refuses(p, "classify", 1, "SIDECAR_REGISTRY_ADDRESS_BASE must be set")
		for k, v := range f.env("classify") {
			if s, ok := strings.CutSuffix(k, "_HEIMA"); ok {
				env[s+"_BASE"] = v
			}
		}
		f.up("classify", env)
	})
}

// A port already taken: the Rust mains return the bind error (exit 1); the
// mock server unwraps it (a panic, exit 101).
func TestBindInUse(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"broker", "backend", "signer", "audit", "creds"} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			l, err := net.Listen("tcp4", f.wantBind(s))
			require.NoError(t, err)
			defer l.Close()
			code := 1
			if f.svc(s).Package == standin.PkgMock {
				code = 101
			}
			p := f.start(f.svc(s).Package, f.args(s), f.env(s))
			require.Equal(t, code, p.exit(), p.out.String())
			require.Contains(t, p.out.String(), "Address already in use (os error 98)")
		})
	}
}
