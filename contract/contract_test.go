package contract

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testStack(chain string) Stack {
	sfx := "-test-2"
	if chain == "base" {
		sfx = "-base"
	}
	hosts := map[string]string{}
	for _, h := range []string{"broker", "signer", "audit", "email", "cred", "memory", "config", "classify"} {
		hosts[h] = h + sfx + ".example.org"
	}
	return Stack{
		Name: "test-2", Chain: chain, Issuer: "https://broker" + sfx + ".example.org", Region: "us-east-1",
		DataRoleARN:   "arn:aws:iam::123456789012:role/agentkeys-data-role" + sfx,
		MemoryRoleARN: "arn:aws:iam::123456789012:role/agentkeys-memory-role" + sfx,
		Audience:      "sts.amazonaws.com", Sender: "noreply" + sfx + "@bots" + sfx + ".example.org",
		VaultBucket: "agentkeys-vault" + sfx + "-123456789012", MemoryBucket: "agentkeys-memory" + sfx + "-123456789012",
		ConfigBucket: "agentkeys-config" + sfx + "-123456789012",
		Contracts: map[string]string{
			AddrSidecarRegistry: "0x8B50b673A479ddd084890f8D666ECAA6c9aFd172",
			AddrScopeContract:   "0xbB608CDD7374D625839D2B8793422C10A4Cff99e",
			AddrK3EpochCounter:  "0x1Af7af89D7d69Ce88f42e73eb34bC2E3798D9aD9",
		},
		Hostnames: hosts,
	}
}

func service(t *testing.T, d *Deployment, name string) Deployed {
	t.Helper()
	for _, s := range d.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s", name)
	return Deployed{}
}

func TestDeployWritesWhatEachBinaryRequires(t *testing.T) {
	d, err := Deploy(testStack("heima"))
	require.NoError(t, err)
	assert.Len(t, d.Services, 9)
	for _, dep := range d.Services {
		w := d.Written(dep)
		for _, v := range dep.Reads {
			if v.Need == Required || v.Need == Feature {
				assert.Contains(t, w, v.Name, "%s requires %s", dep.Name, v.Name)
			}
		}
	}
	b := service(t, d, "broker")
	assert.Equal(t, "/var/lib/agentkeys", b.Env["HOME"])
	assert.Equal(t, "wallet_sig,email_link", b.Env["BROKER_AUTH_METHODS"])
	assert.Equal(t, "arn:aws:iam::123456789012:role/agentkeys-data-role-test-2", b.Env["BROKER_DATA_ROLE_ARN"], "the ACCOUNT_ID fallback would name prod's role")
	assert.Equal(t, []string{"--port", "8091", "--bind", "127.0.0.1", "--export-session-pubkey-to", "/var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem"}, b.Args)
	assert.Equal(t, "always", b.Restart, "the broker exits 0 after 24 h")
	assert.Equal(t, []string{"auth-email-link"}, b.Features)
	s := service(t, d, "signer")
	assert.Equal(t, "agentkeys-mock-server", s.Package)
	assert.Equal(t, []string{"--signer-only", "--port", "8092", "--broker-session-pubkey-path", SessionPubPEMPath}, s.Args)
	assert.Equal(t, []string{MasterSecretFile}, s.EnvFiles)
	c := service(t, d, "creds")
	assert.Equal(t, "agentkeys-worker-creds", c.Package)
	assert.Equal(t, "127.0.0.1:9094", c.Env["WORKER_BIND"])
	assert.Equal(t, "https://rpc.heima-parachain.heima.network", c.Env["AGENTKEYS_CHAIN_RPC_HTTP"])
	assert.Equal(t, "0x8B50b673A479ddd084890f8D666ECAA6c9aFd172", c.Env["SIDECAR_REGISTRY_ADDRESS_HEIMA"])
	assert.Equal(t, []string{"kek-creds"}, c.Secrets)
	assert.Equal(t, "cred-test-2.example.org", c.Hostname)
	assert.Equal(t, "agentkeys-worker-cred", c.Site)
	assert.Equal(t, "agentkeys-worker-creds.service", c.Unit)
	assert.Equal(t, "/etc/agentkeys/worker-creds.env", c.EnvFile)
	assert.Equal(t, "http://127.0.0.1:8091", service(t, d, "memory").Env["BROKER_URL"])
	assert.Equal(t, "agentkeys-vault-test-2-123456789012", service(t, d, "email").Env["AGENTKEYS_VAULT_BUCKET"])
}

func TestDeployNothingUnread(t *testing.T) {
	for _, chain := range []string{"heima", "base"} {
		d, err := Deploy(testStack(chain))
		require.NoError(t, err)
		for _, dep := range d.Services {
			reads := map[string]bool{}
			for _, v := range dep.Reads {
				reads[v.Name] = v.Need != Unset
			}
			for k := range d.Written(dep) {
				assert.True(t, reads[k], "%s: %s is written but the binary does not read it", dep.Name, k)
			}
		}
	}
}

func TestCheckCatchesABrokenDeployment(t *testing.T) {
	d, err := Deploy(testStack("heima"))
	require.NoError(t, err)
	c := &d.Services[4] // email
	require.Equal(t, "email", c.Name)
	delete(c.Env, "AGENTKEYS_VAULT_BUCKET")
	assert.ErrorContains(t, d.Check(), "email needs AGENTKEYS_VAULT_BUCKET")
	c.Env["AGENTKEYS_VAULT_BUCKET"] = "b"
	c.Env["WORKER_LISTEN"] = "127.0.0.1:1"
	assert.ErrorContains(t, d.Check(), "WORKER_LISTEN is written for email, which never reads it")
	delete(c.Env, "WORKER_LISTEN")
	c.Env["AGENTKEYS_TOS_ENDPOINT"] = "x"
	assert.ErrorContains(t, d.Check(), "never reads it", "email does not read AGENTKEYS_TOS_ENDPOINT at all")
	delete(c.Env, "AGENTKEYS_TOS_ENDPOINT")
	cr := &d.Services[5]
	cr.Env["AGENTKEYS_TOS_ENDPOINT"] = "https://tos"
	assert.ErrorContains(t, d.Check(), "must not get it")
}

func TestDeployBaseChain(t *testing.T) {
	st := testStack("base")
	st.Contracts = map[string]string{} // not deployed yet: chain-degraded, healthz green
	d, err := Deploy(st)
	require.NoError(t, err)
	c := service(t, d, "classify")
	assert.Equal(t, "base", c.Env["AGENTKEYS_CHAIN"])
	assert.Equal(t, "https://mainnet.base.org", c.Env["AGENTKEYS_CHAIN_RPC_HTTP"])
	v, ok := c.Env["K3_EPOCH_COUNTER_ADDRESS_BASE"]
	assert.True(t, ok, "present even when empty: the workers only check presence")
	assert.Empty(t, v)
	assert.NotContains(t, c.Env, "K3_EPOCH_COUNTER_ADDRESS_HEIMA")
	assert.Equal(t, "HEIMA_PASEO", ChainSuffix("heima-paseo"))
}

func TestDeployRefusesBadStacks(t *testing.T) {
	st := testStack("heima")
	st.RPCURL = "wss://rpc.heima-parachain.heima.network"
	_, err := Deploy(st)
	assert.ErrorContains(t, err, "not an http(s) URL")
	st = testStack("heima")
	st.Contracts["REGISTRY"] = "0x1111111111111111111111111111111111111111"
	_, err = Deploy(st)
	assert.ErrorContains(t, err, `unknown contract "REGISTRY"`)
	st = testStack("heima")
	st.Issuer += "/"
	_, err = Deploy(st)
	assert.ErrorContains(t, err, "trailing slash")
	st = testStack("heima")
	delete(st.Hostnames, "signer")
	_, err = Deploy(st)
	assert.ErrorContains(t, err, "no hostname for signer")
}

func TestLayoutIsUnique(t *testing.T) {
	d, err := Deploy(testStack("heima"))
	require.NoError(t, err)
	seen := map[string]string{}
	uniq := func(kind, v, who string) {
		if v == "" {
			return
		}
		k := kind + ":" + v
		if o, ok := seen[k]; ok {
			t.Errorf("%s %s of %s is also %s's", kind, v, who, o)
		}
		seen[k] = who
	}
	for _, s := range d.Services {
		uniq("port", strings.Repeat("x", s.Port), s.Name)
		uniq("unit", s.Unit, s.Name)
		uniq("envfile", s.EnvFile, s.Name)
		uniq("site", s.Site, s.Name)
		uniq("host", s.Hostname, s.Name)
	}
	assert.Equal(t, 8, len(d.Services)-1, "every service but the backend is fronted by nginx")
}

func TestSecretChecks(t *testing.T) {
	good := strings.Repeat("ab", 32)
	assert.NoError(t, CheckMasterSecret(good))
	assert.NoError(t, CheckMasterSecret("0x"+good))
	assert.Error(t, CheckMasterSecret("0X"+good))
	assert.Error(t, CheckMasterSecret(good+"\n"))
	assert.Error(t, CheckMasterSecret(good[:62]))
	assert.Error(t, CheckMasterSecret(""))

	assert.NoError(t, CheckKEK(good[:62]+"cd"))
	assert.Error(t, CheckKEK(good), "one byte repeated")
	assert.Error(t, CheckKEK(strings.Repeat("0", 64)))
	assert.Error(t, CheckKEK(strings.Repeat("01", 32)), "0x01 repeated, though the hex characters alternate")
	assert.Error(t, CheckKEK("0x"+good[:62]), "0x fails the length check")
	assert.Error(t, CheckKEK(strings.Repeat("zz", 32)))

	assert.NoError(t, CheckSocketAddr("127.0.0.1:9094"))
	assert.Error(t, CheckSocketAddr("127.0.0.1:99999"), "out of range: clap exits 2")
	assert.Error(t, CheckHostPort(":9092"))
	assert.NoError(t, CheckMasterSecret("0x0x"+good), "every 0x prefix is stripped, as trim_start_matches does")
	assert.Error(t, CheckSocketAddr("localhost:9094"), "clap SocketAddr takes no hostname")
	assert.NoError(t, CheckAddressOrEmpty(""))
	assert.Error(t, CheckAddressOrEmpty("0x123"))
	assert.NoError(t, CheckAuthMethods("wallet_sig,email_link"))
	assert.Error(t, CheckAuthMethods("wallet_sig,oauth2_google"), "not compiled in")
	assert.Error(t, CheckAuthMethods(","))
}

func TestKeypairFormat(t *testing.T) {
	now := time.Unix(1764000000, 0)
	for _, purpose := range []string{"oidc", "session"} {
		b, err := MintKeypair(purpose, now)
		require.NoError(t, err)
		var f map[string]string
		require.NoError(t, json.Unmarshal(b, &f))
		assert.Equal(t, map[string]string{"oidc": "v1-1764000000", "session": "ak-session-1764000000"}[purpose], f["kid"])
		assert.Equal(t, purpose, f["purpose"])
		assert.True(t, strings.HasPrefix(f["private_key_pem"], "-----BEGIN PRIVATE KEY-----\n"))
		assert.True(t, strings.HasPrefix(string(b), "{\n  \"kid\": "), "serde_json pretty: field order kid, private_key_pem, purpose")
		assert.False(t, strings.HasSuffix(string(b), "\n"))
		k, err := ParseKeypair(purpose, b)
		require.NoError(t, err)
		assert.Equal(t, elliptic.P256(), k.Key.Curve)
		other := map[string]string{"oidc": "session", "session": "oidc"}[purpose]
		_, err = ParseKeypair(other, b)
		assert.ErrorContains(t, err, "has purpose")
	}
	// The oidc loader defaults a missing purpose; the session loader refuses it.
	b, _ := MintKeypair("oidc", now)
	var f map[string]any
	json.Unmarshal(b, &f)
	delete(f, "purpose")
	np, _ := json.Marshal(f)
	_, err := ParseKeypair("oidc", np)
	assert.NoError(t, err)
	_, err = ParseKeypair("session", np)
	assert.ErrorContains(t, err, "no \"purpose\"")
	// SEC1 is refused, as by SigningKey::from_pkcs8_pem.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(k)
	f["purpose"] = "oidc"
	f["private_key_pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	bad, _ := json.Marshal(f)
	_, err = ParseKeypair("oidc", bad)
	assert.ErrorContains(t, err, "PKCS#8")
	// A JWK (what earlier agents minted) is not a broker keypair.
	_, err = ParseKeypair("oidc", []byte(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"k"}`))
	assert.Error(t, err)

	sb, _ := MintKeypair("session", now)
	sk, _ := ParseKeypair("session", sb)
	pub, err := PublicPEM(&sk.Key.PublicKey)
	require.NoError(t, err)
	assert.NoError(t, CheckSPKIP256(string(pub)))
	assert.Error(t, CheckSPKIP256(strings.ReplaceAll(string(pub), "\n", "")), "one line is not PEM")
}
