package components

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/stretchr/testify/require"
)

type testCert struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

// issue makes a certificate for cn signed by parent (self-signed when nil).
func issue(t *testing.T, cn string, ca bool, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0),
		IsCA: ca, BasicConstraintsValid: true,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = []string{cn}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCert{cert: c, der: der, key: key}
}

func (c *testCert) tls() tls.GetCertificateCertificate {
	return tls.GetCertificateCertificate{
		CertPem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})),
		IsCa:    c.cert.IsCA, Subject: "CN=" + c.cert.Subject.CommonName, Issuer: "CN=" + c.cert.Issuer.CommonName,
	}
}

func (c *testCert) sha1() string { s := sha1.Sum(c.der); return hex.EncodeToString(s[:]) }

func TestTopIntermediateThumbprint(t *testing.T) {
	root := issue(t, "Root X1", true, nil)
	inter := issue(t, "R11", true, root)
	leaf := issue(t, "broker-test-2.example.org", false, inter)
	cross := issue(t, "Sub CA", true, inter)
	leaf2 := issue(t, "broker.example.org", false, cross)

	got, err := TopIntermediateThumbprint([]tls.GetCertificateCertificate{root.tls(), inter.tls(), leaf.tls()})
	require.NoError(t, err)
	assert.Equal(t, inter.sha1(), got, "root-first chain: the intermediate below the root")
	assert.NotEqual(t, leaf.sha1(), got)

	got, err = TopIntermediateThumbprint([]tls.GetCertificateCertificate{leaf.tls(), inter.tls()})
	require.NoError(t, err)
	assert.Equal(t, inter.sha1(), got, "served chain without the root")

	got, err = TopIntermediateThumbprint([]tls.GetCertificateCertificate{root.tls(), inter.tls(), cross.tls(), leaf2.tls()})
	require.NoError(t, err)
	assert.Equal(t, inter.sha1(), got, "two intermediates: the top one")

	_, err = TopIntermediateThumbprint([]tls.GetCertificateCertificate{root.tls(), leaf.tls()})
	require.Error(t, err, "no intermediate")
	_, err = TopIntermediateThumbprint([]tls.GetCertificateCertificate{{CertPem: "junk", Subject: "x"}})
	require.Error(t, err)
}

func TestOidcFederationPerKind(t *testing.T) {
	for _, stack := range kinds {
		t.Run(stack, func(t *testing.T) {
			n := namesFor(t, stack)
			rec := newRec(stack)
			require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
				// Stands in for the host bring-up that reports healthy TLS.
				gate, err := iam.NewUser(ctx, "host-healthy", &iam.UserArgs{Name: pulumi.String("gate")})
				if err != nil {
					return err
				}
				o, err := NewOidcFederation(ctx, "oidc", &OidcFederationArgs{Names: n, DependsOn: []pulumi.Resource{gate}})
				if err != nil {
					return err
				}
				assert.Equal(t, n.OIDCProviderARN, await(t, ctx, o.ProviderArn).Value)
				return nil
			}))
			p := mustFind(t, rec, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "oidc-provider")
			assert.Equal(t, n.Issuer, p.Str("url"))
			assert.Equal(t, []string{"sts.amazonaws.com"}, strs(p.Inputs["clientIdLists"]))
			_, has := p.Input("thumbprintLists")
			assert.False(t, has, "no thumbprint unless given")
			assert.True(t, p.DependsOn(mustFind(t, rec, "aws:iam/user:User", "host-healthy").URN))
			assert.Equal(t, rec.ByType("agentkeys:index:OidcFederation")[0].URN, p.Parent)
		})
	}
}

func TestOidcFederationLiveThumbprint(t *testing.T) {
	root := issue(t, "Root X1", true, nil)
	inter := issue(t, "R11", true, root)
	leaf := issue(t, "broker-test-2.example.org", false, inter)
	n := namesFor(t, "test-2")
	rec := newRec("test-2")
	rec.Invokes["tls:index/getCertificate:getCertificate"] = func(args resource.PropertyMap) (resource.PropertyMap, error) {
		assert.Equal(t, "https://"+n.BrokerHost, args["url"].StringValue())
		var certs []resource.PropertyValue
		for _, c := range []*testCert{root, inter, leaf} {
			g := c.tls()
			certs = append(certs, resource.NewObjectProperty(resource.PropertyMap{
				"certPem": resource.NewStringProperty(g.CertPem), "isCa": resource.NewBoolProperty(g.IsCa),
				"subject": resource.NewStringProperty(g.Subject), "issuer": resource.NewStringProperty(g.Issuer),
			}))
		}
		return resource.PropertyMap{"certificates": resource.NewArrayProperty(certs), "id": resource.NewStringProperty("x")}, nil
	}
	require.NoError(t, rec.Run(func(ctx *pulumi.Context) error {
		_, err := NewOidcFederation(ctx, "oidc", &OidcFederationArgs{Names: n, Thumbprints: LiveThumbprints(ctx, n.BrokerHost)})
		return err
	}))
	p := mustFind(t, rec, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "oidc-provider")
	assert.Equal(t, []string{inter.sha1()}, strs(p.Inputs["thumbprintLists"]))
}

// Federation follows the agent's TLS check of the broker, and nothing less:
// a certificate on disk or a healthy service port is not enough.
func TestParseHealthWantsDiscoveryOverTLS(t *testing.T) {
	const issuer = "https://broker-test-2.example.org"
	host := issuer[len("https://"):]
	mk := func(issued bool, checks map[string]agent.HealthCheck) string {
		s := agent.Summary{Issuer: issuer, Health: checks, Hosts: agent.HostsSummary{Issued: []string{}, Skipped: map[string]string{}}}
		if issued {
			s.Hosts.Issued = []string{host}
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	local := agent.HealthCheck{URL: "http://127.0.0.1:8090/.well-known/openid-configuration", OK: true}
	cases := []struct {
		name    string
		summary string
		tls     bool
		reason  string
	}{
		{"not JSON", "apply failed", false, "not JSON"},
		{"no certificate", mk(false, map[string]agent.HealthCheck{agent.HealthBrokerDiscovery: local}), false, "no certificate for " + host + " yet"},
		{"certificate, local discovery only", mk(true, map[string]agent.HealthCheck{agent.HealthBrokerDiscovery: local}), false, "no TLS check"},
		{"TLS check failed", mk(true, map[string]agent.HealthCheck{agent.HealthBrokerTLS: {OK: false, Detail: "nginx serves a certificate other than ..."}}), false, "nginx serves a certificate other than"},
		{"TLS check ok", mk(true, map[string]agent.HealthCheck{agent.HealthBrokerTLS: {OK: true}}), true, ""},
	}
	for _, c := range cases {
		h := ParseHealth(c.summary)
		if h.BrokerTLS != c.tls || !strings.Contains(h.Reason, c.reason) {
			t.Errorf("%s: %+v", c.name, h)
		}
	}
}
