// Package stacktest stands up a local stand-in for a deployed stack: one TLS
// listener on loopback serving every hostname with certificates from a test
// CA, /healthz, OIDC discovery and an ES256 JWKS, plus a DoH JSON server.
package stacktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// Faults breaks chosen parts of the stand-in.
type Faults struct {
	CertFor     map[string]string // host -> the (wrong) name its certificate carries
	Unhealthy   map[string]int    // host -> /healthz status
	Issuer      string            // served issuer; "" serves the correct one
	JWKSAlg     string            // "RS256" serves only an RSA key
	HealthAfter int               // /healthz answers 503 to the first N requests per host
}

// Stack is a running stand-in.
type Stack struct {
	Names  naming.Names
	Addr   string // host:port of the TLS listener
	CAFile string
	CAPool *x509.CertPool

	mu      sync.Mutex
	faults  Faults
	hits    map[string]*atomic.Int64
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	certs   map[string]*tls.Certificate
	jwks    []byte
	healthN map[string]int
}

// SetFaults replaces the faults.
func (s *Stack) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.certs = map[string]*tls.Certificate{}
	s.healthN = map[string]int{}
}

// Start serves n's TLS hostnames on a loopback port until the test ends.
func Start(t testing.TB, n naming.Names, f Faults) *Stack {
	t.Helper()
	s := &Stack{Names: n}
	s.SetFaults(f)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "agentkeys test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	s.ca, _ = x509.ParseCertificate(der)
	s.caKey = caKey
	s.CAPool = x509.NewCertPool()
	s.CAPool.AddCert(s.ca)
	s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}

	oidcKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s.jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &oidcKey.PublicKey, KeyID: "oidc-1", Algorithm: "ES256", Use: "sig"}}})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		TLSConfig:         &tls.Config{GetCertificate: s.getCert},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // rejected handshakes are the point of some tests
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *Stack) getCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := hello.ServerName
	if w, ok := s.faults.CertFor[name]; ok {
		name = w
	}
	if c, ok := s.certs[name]; ok {
		return c, nil
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour * 60),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	s.certs[name] = c
	return c, nil
}

func (s *Stack) serve(w http.ResponseWriter, r *http.Request) {
	host := r.TLS.ServerName
	s.mu.Lock()
	f := s.faults
	s.healthN[host]++
	seen := s.healthN[host]
	s.mu.Unlock()
	switch {
	case r.URL.Path == "/healthz":
		if code, ok := f.Unhealthy[host]; ok {
			w.WriteHeader(code)
			return
		}
		if seen <= f.HealthAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	case host == s.Names.BrokerHost && r.URL.Path == "/.well-known/openid-configuration":
		iss := s.Names.Issuer
		if f.Issuer != "" {
			iss = f.Issuer
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "jwks_uri": s.Names.Issuer + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	case host == s.Names.BrokerHost && r.URL.Path == "/.well-known/jwks.json":
		if f.JWKSAlg == "RS256" {
			_, _ = w.Write([]byte(`{"keys":[{"kty":"RSA","alg":"RS256","kid":"r","n":"` + strings.Repeat("A", 342) + `w","e":"AQAB"}]}`))
			return
		}
		_, _ = w.Write(s.jwks)
	default:
		http.NotFound(w, r)
	}
}

// DoH serves the dns.google JSON API from a host -> IPv4 map.
func DoH(t testing.TB, records map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSuffix(r.URL.Query().Get("name"), ".")
		ip, ok := records[name]
		if !ok || r.URL.Query().Get("type") != "A" {
			_ = json.NewEncoder(w).Encode(map[string]any{"Status": 3})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Status": 0, "Answer": []map[string]any{{"name": name + ".", "type": 1, "TTL": 300, "data": ip}}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/resolve"
}

// Records maps every hostname of n to ip.
func Records(n naming.Names, ip string) map[string]string {
	m := map[string]string{}
	for _, h := range n.Hostnames() {
		m[h] = ip
	}
	return m
}
