// Package nginx is the host agent's vhost step: one file per public hostname,
// Phase A (HTTP, ACME webroot, 503 elsewhere) until the host's certificate is
// on disk, then Phase B (TLS, proxy to the service on 127.0.0.1).
package nginx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path"
	"sort"
	"strings"
	"text/template"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// CertDir is where the agent keeps each hostname's certificate
// (<CertDir>/<host>/fullchain.pem and privkey.pem); the acme step fills it,
// this step serves it. Certbot's /etc/letsencrypt/live is only read, to adopt.
const CertDir = "/etc/agentkeys/tls"

// SitePrefix marks the sites this step owns (the old scripts' names:
// agentkeys-broker, agentkeys-signer, agentkeys-worker-<x>); stale ones are
// removed.
const SitePrefix = "agentkeys-"

// CertFiles returns the host paths of host's certificate chain and key.
func CertFiles(host string) (fullchain, privkey string) {
	d := path.Join(CertDir, host)
	return path.Join(d, "fullchain.pem"), path.Join(d, "privkey.pem")
}

// SitePath is the host path of a site's file.
func SitePath(s *spec.HostSpec, site string) string { return path.Join(s.Nginx.SitesDir, site) }

// HasCert reports whether host's certificate and key under root load as a
// pair, which is what nginx -t will check: only then is Phase B rendered.
func HasCert(root, host string) bool {
	c, k := CertFiles(host)
	_, err := tls.LoadX509KeyPair(fsx.HostPath(root, c), fsx.HostPath(root, k))
	return err == nil
}

// InstalledCert returns the leaf of host's certificate under root when its
// chain and key load as a pair and the leaf names host (it may have expired).
func InstalledCert(root, host string) (*x509.Certificate, error) {
	c, k := CertFiles(host)
	pair, err := tls.LoadX509KeyPair(fsx.HostPath(root, c), fsx.HostPath(root, k))
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return nil, err
	}
	return leaf, nil
}

// Vhost is one rendered server file.
type Vhost struct {
	Host  string
	Site  string
	Phase string // "A" or "B"
	Path  string // host path of the file
	Data  []byte
}

type vhostData struct {
	Host       string
	Listen     string // address prefix for listen ("" or "127.0.0.1:")
	HTTPPort   int
	HTTPSPort  int
	Webroot    string
	Fullchain  string
	Privkey    string
	Upstream   string
	HTTPSSufix string // ":<port>" in redirects when not 443
	Signer     bool   // the signer's scope: /dev/ and /healthz only
}

// acmeLocation serves HTTP-01 tokens in both phases; ^~ keeps regex
// locations from taking the path over.
const acmeLocation = `    location ^~ /.well-known/acme-challenge/ {
        root {{.Webroot}};
        default_type text/plain;
        try_files $uri =404;
    }
`

// proxy is the setup script's proxy block: Host, the scheme, the client
// address as nginx saw it (never a client-supplied chain), and the bearer
// the signer and workers check.
const proxy = `        proxy_pass http://{{.Upstream}};
        proxy_http_version 1.1;
        proxy_set_header Host              $host;
        proxy_set_header Authorization     $http_authorization;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For   $remote_addr;
        proxy_set_header Connection        "";
        proxy_read_timeout 30s;
`

var tmplA = template.Must(template.New("A").Parse(`# Managed by agentkeys-hostagent; edits are overwritten.
# Phase A: no certificate yet for {{.Host}}; serve only the ACME challenge.
server {
    listen {{.Listen}}{{.HTTPPort}};
    server_name {{.Host}};

` + acmeLocation + `
    location / {
        default_type text/plain;
        return 503 "TLS cert not yet issued\n";
    }
}
`))

var tmplB = template.Must(template.New("B").Parse(`# Managed by agentkeys-hostagent; edits are overwritten.
# Phase B: {{.Host}} over TLS, proxied to {{.Upstream}}{{if .Signer}} (/dev/ and /healthz only){{end}}.
server {
    listen {{.Listen}}{{.HTTPPort}};
    server_name {{.Host}};

` + acmeLocation + `
    location / {
        return 301 https://$host{{.HTTPSSufix}}$request_uri;
    }
}

server {
    listen {{.Listen}}{{.HTTPSPort}} ssl http2;
    server_name {{.Host}};

    ssl_certificate     {{.Fullchain}};
    ssl_certificate_key {{.Privkey}};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:agentkeys_ssl:1m;
{{if .Signer}}
    location /dev/ {
` + proxy + `    }
    location = /healthz {
` + proxy + `    }
    location / {
        return 404;
    }
{{else}}
    location / {
` + proxy + `    }
{{end}}}
`))

// Render renders every vhost of s. root maps host paths (webroot, certs) the
// way nginx will open them; listenAddr ("" = all addresses) prefixes listen.
func Render(s *spec.HostSpec, root, listenAddr string) ([]Vhost, error) {
	var out []Vhost
	svcs := append([]spec.Service(nil), s.Services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Hostname < svcs[j].Hostname })
	for _, svc := range svcs {
		if svc.Hostname == "" {
			continue
		}
		if strings.ContainsAny(svc.Hostname, " ;{}\"'\n\t$") {
			return nil, fmt.Errorf("services[%s].hostname %q cannot go into an nginx config", svc.Name, svc.Hostname)
		}
		if !IsSiteName(svc.Site) {
			return nil, fmt.Errorf("services[%s].site %q is not an agentkeys-* site name", svc.Name, svc.Site)
		}
		fc, pk := CertFiles(svc.Hostname)
		d := vhostData{
			Host:      svc.Hostname,
			HTTPPort:  s.Nginx.HTTPPort,
			HTTPSPort: s.Nginx.HTTPSPort,
			Webroot:   fsx.HostPath(root, s.Nginx.Webroot),
			Fullchain: fsx.HostPath(root, fc),
			Privkey:   fsx.HostPath(root, pk),
			// An IP, never a hostname: a DNS failure would break the config load.
			Upstream: fmt.Sprintf("127.0.0.1:%d", svc.Port),
			Signer:   svc.Scope == string(contract.ScopeSigner),
		}
		if listenAddr != "" {
			d.Listen = listenAddr + ":"
		}
		if s.Nginx.HTTPSPort != 443 {
			d.HTTPSSufix = fmt.Sprintf(":%d", s.Nginx.HTTPSPort)
		}
		v := Vhost{Host: svc.Hostname, Site: svc.Site, Phase: "A", Path: SitePath(s, svc.Site)}
		t := tmplA
		if HasCert(root, svc.Hostname) {
			v.Phase, t = "B", tmplB
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return nil, err
		}
		v.Data = b.Bytes()
		out = append(out, v)
	}
	return out, nil
}

// IsSiteName reports whether name is a site this step may own.
func IsSiteName(name string) bool {
	if !strings.HasPrefix(name, SitePrefix) || len(name) == len(SitePrefix) {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
