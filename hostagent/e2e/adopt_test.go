package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// writeCertbotLive lays out a certbot-style live dir (symlinks into
// ../../archive) for host under root and returns the certificate DER.
func writeCertbotLive(t *testing.T, root, host string) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(89 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	archive := filepath.Join(root, "etc/letsencrypt/archive", host)
	live := filepath.Join(root, "etc/letsencrypt/live", host)
	for _, d := range []string{archive, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(archive, "fullchain1.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(archive, "privkey1.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	os.Symlink("../../archive/"+host+"/fullchain1.pem", filepath.Join(live, "fullchain.pem"))
	os.Symlink("../../archive/"+host+"/privkey1.pem", filepath.Join(live, "privkey.pem"))
	return der
}

func TestAdoptsCertbotCertificatesWithoutOrdering(t *testing.T) {
	r := newRig(t, []string{"broker", "signer"})
	hosts := Hostnames()
	r.spec.ACME.CertbotLive = "/etc/letsencrypt/live"
	der := writeCertbotLive(t, r.root, hosts["broker"])
	// The signer has no certificate and its DNS points elsewhere: skipped.
	if err := r.ca.PointElsewhere(hosts["signer"], "192.0.2.20"); err != nil {
		t.Fatal(err)
	}
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	certs := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client}
	env := r.env(t)
	_, res := converge(t, r, env, ng, certs)
	if got := res.Detail["adopted"].([]string); len(got) != 1 || got[0] != hosts["broker"] {
		t.Errorf("adopted %v, want the broker", got)
	}
	if env.Counters.ACMEOrders != 0 {
		t.Errorf("%d ACME orders; an adopted certificate must not be re-issued", env.Counters.ACMEOrders)
	}
	if !strings.Contains(res.Detail["skipped"].(map[string]string)[hosts["signer"]], "192.0.2.20") {
		t.Errorf("signer not skipped for its DNS: %v", res.Detail["skipped"])
	}
	if leaf := servedLeaf(t, hosts["broker"], r.httpsPort); !bytes.Equal(leaf.Raw, der) {
		t.Error("nginx does not serve the adopted certbot certificate")
	}
	st, err := os.Stat(filepath.Join(r.root, "etc/agentkeys/tls", hosts["broker"], "privkey.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("adopted key: %v %v, want a 0600 copy", err, st)
	}

	env2 := r.env(t)
	_, res = converge(t, r, env2, ng, certs)
	if res.Status != agent.OK || *env2.Counters != (agent.Counters{}) {
		t.Errorf("second run: %s %+v, want ok and nothing done", res.Status, *env2.Counters)
	}
}
