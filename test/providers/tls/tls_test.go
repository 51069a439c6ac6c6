package tls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin/standintest"
	tlsstandin "github.com/agentkeys/agentkeys-infra/test/providers/tls"
	pulumitls "github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
)

type cert struct {
	c   *x509.Certificate
	der []byte
	key *ecdsa.PrivateKey
}

func issue(t *testing.T, tmpl *x509.Certificate, parent *cert) *cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.c
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &cert{c: c, der: der, key: key}
}

// chain serves https on loopback with leaf + intermediate, signed by a root
// it writes to a PEM file.
func chain(t *testing.T) (url, rootPEM string, root, inter, leaf *cert) {
	t.Helper()
	now := time.Now()
	root = issue(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
	inter = issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Intermediate"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, root)
	leaf = issue(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, inter)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.der, inter.der}, PrivateKey: leaf.key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rootPEM = filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), rootPEM, root, inter, leaf
}

func TestGetCertificate(t *testing.T) {
	url, rootPEM, _, inter, leaf := chain(t)
	h := standintest.Harness{T: t, P: tlsstandin.New()}
	const tok = "tls:index/getCertificate:getCertificate"
	get := func(verify bool) (standin.Props, error) {
		return h.Invoke(tok, standin.M(map[string]any{"url": url, "verifyChain": verify}))
	}

	t.Setenv(tlsstandin.ExtraCAEnv, "")
	if _, err := get(true); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("verifyChain against the system roots: %v", err)
	}
	res, err := get(false)
	if err != nil {
		t.Fatal(err)
	}
	certs := res["certificates"].ArrayValue()
	if len(certs) != 2 {
		t.Fatalf("%d certificates, want the served leaf + intermediate", len(certs))
	}
	// Root of the chain first: the intermediate, then the leaf.
	first, last := certs[0].ObjectValue(), certs[1].ObjectValue()
	if first["subject"].StringValue() != "CN=Test Intermediate" || !first["isCa"].BoolValue() || last["subject"].StringValue() != "CN=localhost" {
		t.Fatalf("order: %v then %v", first["subject"], last["subject"])
	}
	if got, want := first["sha1Fingerprint"].StringValue(), fmt.Sprintf("%x", sha1.Sum(inter.der)); got != want {
		t.Fatalf("fingerprint %s, want %s", got, want)
	}
	if last["serialNumber"].StringValue() != leaf.c.SerialNumber.String() || last["issuer"].StringValue() != "CN=Test Intermediate" {
		t.Fatalf("leaf fields %v", last)
	}

	t.Setenv(tlsstandin.ExtraCAEnv, rootPEM)
	if _, err := get(true); err != nil {
		t.Fatalf("verifyChain with the test CA trusted: %v", err)
	}

	// The program's thumbprint of this chain is the intermediate's SHA-1.
	var gc []pulumitls.GetCertificateCertificate
	for _, c := range certs {
		gc = append(gc, pulumitls.GetCertificateCertificate{CertPem: c.ObjectValue()["certPem"].StringValue(), Subject: c.ObjectValue()["subject"].StringValue()})
	}
	if th, err := components.TopIntermediateThumbprint(gc); err != nil || th != fmt.Sprintf("%x", sha1.Sum(inter.der)) {
		t.Fatalf("thumbprint %s %v", th, err)
	}

	if _, err := h.Invoke(tok, standin.M(map[string]any{"url": "http://localhost:1"})); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("http URL: %v", err)
	}
	if _, err := h.Invoke(tok, standin.M(map[string]any{"url": "https://127.0.0.1:1"})); err == nil || !strings.Contains(err.Error(), "TLS connection") {
		t.Fatalf("closed port: %v", err)
	}
	content := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.der}))
	res, err = h.Invoke(tok, standin.M(map[string]any{"content": content}))
	if err != nil || len(res["certificates"].ArrayValue()) != 1 || res["content"].StringValue() != content {
		t.Fatalf("content: %v %v", err, res)
	}
	if _, ok := res[resource.PropertyKey("id")]; !ok {
		t.Fatal("no id")
	}
	info, _ := h.P.GetPluginInfo(t.Context())
	if info.Version.String() != "5.3.0" {
		t.Fatalf("version %s", info.Version)
	}
}
