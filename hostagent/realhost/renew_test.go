package realhost_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// installDueCert replaces host's certificate with one that is due (10 of
// 90 days left), as if issued by the spec's directory, and has nginx serve
// it. It returns that certificate.
func (st *stack) installDueCert(host string) *x509.Certificate {
	t := st.t
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(10 * 24 * time.Hour)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	fc, pk := nginx.CertFiles(host)
	meta, _ := json.Marshal(map[string]string{"source": "acme", "directory": st.spec.ACME.Directory})
	st.writeRoot(fc, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	st.writeRoot(pk, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	st.writeRoot(path.Join(path.Dir(fc), "meta.json"), append(meta, '\n'), 0o644)
	st.root("systemctl reload nginx")
	c, _ := x509.ParseCertificate(der)
	if !st.servedBecomes(host, c) {
		t.Fatalf("nginx does not serve the due certificate after a reload (serial %s)", st.served(host).SerialNumber)
	}
	return c
}

// served is the leaf nginx serves for host on :443 right now (a reload is
// asynchronous: it waits briefly for a change to show).
func (st *stack) served(host string) *x509.Certificate {
	t := st.t
	t.Helper()
	var last error
	for i := 0; i < 20; i++ {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(st.Addr, "443"), &tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err != nil {
			last = err
			continue
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		return leaf
	}
	t.Fatalf("TLS to %s on %s:443: %v", host, st.Addr, last)
	return nil
}

// servedBecomes waits until nginx serves want for host.
func (st *stack) servedBecomes(host string, want *x509.Certificate) bool {
	for i := 0; i < 50; i++ {
		if st.served(host).Equal(want) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// The renew timer's unit, as the agent installs it, under real systemd:
// a due certificate is renewed from pebble and nginx serves the new one; a
// due renewal that fails makes renew exit non-zero, so the unit shows
// failed, the old certificate keeps serving, and status says why.
func TestRenewal(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{certs: true})
	s := st.spec
	// No build here: nginx, the units (the renew timer's among them) and
	// certificates are what a renewal needs.
	st.root("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null")
	st.applyOK(s, "--only", "users,secrets,units,nginx,certificates")
	broker := s.Broker().Hostname

	due := st.installDueCert(broker)
	if r := st.try("systemctl start " + acme.RenewService); r.Code != 0 {
		t.Fatalf("the renew unit failed to renew a due certificate: %s\n%s", r, st.Journal(acme.RenewService))
	}
	renewed := st.certOnDisk(broker)
	if renewed.Equal(due) {
		t.Fatalf("the renew unit did not replace the due certificate:\n%s", st.Journal(acme.RenewService))
	}
	if !st.servedBecomes(broker, renewed) {
		t.Fatalf("nginx serves serial %s, not the renewed certificate %s:\n%s", st.served(broker).SerialNumber, renewed.SerialNumber, st.Journal(acme.RenewService))
	}
	// Old workers may still take a connection for a moment after a reload.
	var verr error
	for i := 0; i < 50; i++ {
		c, err := tls.Dial("tcp", net.JoinHostPort(st.Addr, "443"), &tls.Config{ServerName: broker, RootCAs: st.ca.Roots})
		if verr = err; err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if verr != nil {
		t.Fatalf("the renewed certificate does not verify against pebble's root: %v", verr)
	}

	// A due renewal that fails: DNS points the broker host elsewhere.
	due = st.installDueCert(broker)
	if err := st.ca.PointElsewhere(broker, "198.18.255.254"); err != nil {
		t.Fatal(err)
	}
	if r := st.try("systemctl start " + acme.RenewService); r.Code == 0 {
		t.Fatalf("systemctl start %s passed although the due renewal of %s failed:\n%s", acme.RenewService, broker, st.Journal(acme.RenewService))
	}
	if got := st.unitState(acme.RenewService); got != "failed/failed" {
		t.Errorf("%s is %s after a failed renewal, want failed", acme.RenewService, got)
	}
	if j := st.Journal(acme.RenewService); !strings.Contains(j, "due renewals failed") || !strings.Contains(j, "resolves to 198.18.255.254") {
		t.Errorf("the renew unit's journal does not say why:\n%s", j)
	}
	if !st.served(broker).Equal(due) {
		t.Errorf("nginx no longer serves the current certificate after a failed renewal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := st.SSH(ctx, "sudo -n agentkeys-hostagent status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Stdout, "the last renewal (renew at ") || !strings.Contains(r.Stdout, broker+": renewal of "+broker+" failed") ||
		!strings.Contains(r.Stdout, "resolves to 198.18.255.254") {
		t.Errorf("status does not say why the renewal failed:\n%s", r)
	}
}
