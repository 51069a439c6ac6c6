package acme

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// certInfo is what the agent knows about a certificate on disk.
type certInfo struct {
	NotBefore, NotAfter time.Time
}

// due reports whether less than a third of the lifetime is left.
func (c certInfo) due(now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < life/3
}

// readCert loads fullchain+privkey, checks they pair and cover host.
func readCert(fullchain, privkey, host string) (certInfo, error) {
	pair, err := tls.LoadX509KeyPair(fullchain, privkey)
	if err != nil {
		return certInfo{}, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return certInfo{}, err
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return certInfo{}, err
	}
	return certInfo{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}

// readCertDir is readCert on the files of a certificate directory.
func readCertDir(dir, host string) (certInfo, error) {
	return readCert(filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), host)
}

// meta records where a certificate came from: a certificate from another ACME
// directory (staging, a test CA) is re-ordered when the directory changes.
type meta struct {
	Directory string `json:"directory,omitempty"`
	Source    string `json:"source"` // "acme" or "certbot"
}

func metaFile(certDir string) string { return path.Join(certDir, "meta.json") }

// accepts is the rule by which a certificate on disk is the spec's: adopted
// from certbot, or issued by the spec's ACME directory. Any other (a staging
// or test CA's, or one without meta.json) is re-ordered, never kept.
func (m meta) accepts(directory string) bool {
	return m.Source == "certbot" || (m.Directory != "" && m.Directory == directory)
}

// Accepted reports whether host's certificate under root is one the
// certificates step keeps, by its meta.json (see meta.accepts); it does not
// read the certificate itself. directory is the spec's ACME directory.
func Accepted(root, host, directory string) bool {
	fc, _ := nginx.CertFiles(host)
	return readMeta(fsx.HostPath(root, metaFile(path.Dir(fc)))).accepts(directory)
}

// Source describes where host's certificate under root came from, by its
// meta.json ("" when it has none).
func Source(root, host string) string {
	fc, _ := nginx.CertFiles(host)
	m := readMeta(fsx.HostPath(root, metaFile(path.Dir(fc))))
	if m.Source == "acme" && m.Directory != "" {
		return m.Directory
	}
	return m.Source
}

func readMeta(p string) meta {
	var m meta
	if b, err := os.ReadFile(p); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

// certbotPair returns certbot's files for host. certbot keeps symlinks into
// ../../archive; they are followed (reading, never writing them).
func certbotPair(liveDir, host string) (string, string) {
	d := filepath.Join(liveDir, host)
	return filepath.Join(d, "fullchain.pem"), filepath.Join(d, "privkey.pem")
}

func describe(c certInfo) string {
	return fmt.Sprintf("valid until %s", c.NotAfter.UTC().Format(time.RFC3339))
}
