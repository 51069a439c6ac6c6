package e2e

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	hostagente2e "github.com/agentkeys/agentkeys-infra/hostagent/e2e"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
)

// getTLS fetches path from host through the host's nginx on 443 (inside its
// namespace, on loopback where the sandboxed agent makes nginx listen), verifying the certificate against roots; it returns the
// response and the chain nginx served.
func getTLS(t *testing.T, h *host, name, path string, roots *x509.CertPool) (int, string, []*x509.Certificate) {
	t.Helper()
	c, err := hostagente2e.DialInNetns(h.NetNS, "127.0.0.1:443", 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	tc := tls.Client(c, &tls.Config{ServerName: name, RootCAs: roots})
	require.NoError(t, tc.Handshake(), "TLS to %s", name)
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, name)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), tc.ConnectionState().PeerCertificates
}

// TestDeclaredBringUpOverSSHIssuesCertificatesAndFederates is the TLS half of
// the bring-up: every name resolves to the host's EIP through the declared
// resolver, a real ACME CA (pebble, in the host's namespace) validates
// HTTP-01 against the host's nginx, and the agent's summary turns the stack
// federated with the thumbprint of the chain the host really serves. The
// sandboxed agent makes nginx listen on loopback only, so the CA's own DNS
// maps every name to 127.0.0.1 of the namespace.
func TestDeclaredBringUpOverSSHIssuesCertificatesAndFederates(t *testing.T) {
	f := newFixtureAt(t, hostAddr)
	for _, tool := range hostagente2e.Tools {
		if _, err := hostagente2e.LookTool(tool); err != nil {
			if os.Getenv("AGENTKEYS_E2E") == "1" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	caDNS := "127.0.0.1:5353"
	startDNS(t, f.h.NetNS, caDNS, &dnsServer{A: "127.0.0.1"})
	ca, err := hostagente2e.StartCAWith(t.TempDir(), 80, hostagente2e.CAOptions{Netns: f.h.NetNS, DNS: caDNS})
	require.NoError(t, err)
	t.Cleanup(ca.Close)
	// The agent trusts the directory's listener through the host's system
	// roots (the namespace's /etc is the test's copy), as it would a public CA.
	lc, err := ca.ListenerCert()
	require.NoError(t, err)
	bundle := filepath.Join(f.h.Etc, "ssl", "certs", "ca-certificates.crt")
	b, err := os.ReadFile(bundle)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(bundle), 0o755))
	// Replace, not write through: the copy may be a symlink into the machine's tree.
	_ = os.Remove(bundle)
	require.NoError(t, os.WriteFile(bundle, append(b, lc...), 0o644))

	vals := f.config(t, "test-2")
	vals["agentkeys:acmeDirectory"] = ca.Directory
	cfg, err := config.Parse("test-2", vals)
	require.NoError(t, err)
	n := cfg.Names()

	steps := bringUpSteps(t, declare(t, "test-2", vals, ""))
	sp := declaredSpec(t, steps)
	require.Equal(t, ca.Directory, sp.ACME.Directory, "the declared spec names the configured CA")
	pushWorkspace(t, f.bare, sp)

	start := time.Now()
	first := mustSucceed(t, replay(t, f.h, steps, 10*time.Minute))
	t.Logf("ssh_converge_tls_s: %.2f (with copies: %.2f)", first.Took.Seconds(), time.Since(start).Seconds())
	sum := summaryOf(t, first)
	st := stepStatus(sum)
	for name, r := range st {
		assert.NotEqual(t, agent.Failed, r.Status, "step %s: %s", name, r.Reason)
	}
	assert.Equal(t, agent.Changed, st["certificates"].Status, st["certificates"].Reason)
	want := append([]string(nil), n.TLSHostnames()...)
	sort.Strings(want)
	issued := append([]string(nil), sum.Hosts.Issued...)
	sort.Strings(issued)
	assert.Equal(t, want, issued, "every TLS hostname issued")
	assert.Empty(t, sum.Hosts.Skipped)
	assert.Equal(t, len(want), sum.Counters.ACMEOrders, "one order per hostname")
	for name, hc := range sum.Health {
		assert.True(t, hc.OK, "health %s (%s): %s", name, hc.URL, hc.Detail)
	}
	assert.True(t, sum.Health[agent.HealthBrokerTLS].OK, "the agent fetched the discovery through nginx over TLS")

	// Each hostname over TLS through the host's nginx, trusted via the CA's root.
	for _, svc := range sp.Services {
		if svc.Hostname == "" {
			continue
		}
		code, body, _ := getTLS(t, f.h, svc.Hostname, "/healthz", ca.Roots)
		assert.Equal(t, 200, code, "%s /healthz", svc.Hostname)
		// The real bodies: "ok", or {"ok":true,...} for the data workers.
		if svc.HealthJSON {
			assert.Contains(t, body, `"ok":true`, "%s answers through nginx", svc.Hostname)
		} else {
			assert.Equal(t, "ok", body, "%s answers through nginx", svc.Hostname)
		}
	}
	code, body, chain := getTLS(t, f.h, n.BrokerHost, "/.well-known/openid-configuration", ca.Roots)
	require.Equal(t, 200, code)
	var disc struct{ Issuer string }
	require.NoError(t, json.Unmarshal([]byte(body), &disc))
	assert.Equal(t, n.Issuer, disc.Issuer, "discovery over TLS names the stack's issuer")

	// What AWS must pin: the top intermediate of the served chain.
	var inter *x509.Certificate
	for _, c := range chain {
		if c.IsCA {
			inter = c
		}
	}
	require.NotNil(t, inter, "nginx serves the intermediate with the leaf")
	sum1 := sha1.Sum(inter.Raw)
	wantThumb := hex.EncodeToString(sum1[:])

	// The summary goes back into the program, with the chain answered live.
	var asked []string
	p := declareWith(t, "test-2", vals, first.Stdout, map[string]plan.Answer{
		"tls:index/getCertificate:getCertificate": func(args resource.PropertyMap) (resource.PropertyMap, error) {
			url := args["url"].StringValue()
			asked = append(asked, url)
			host := strings.TrimPrefix(url, "https://")
			_, _, served := getTLS(t, f.h, host, "/healthz", ca.Roots)
			var certs []any
			for _, c := range served {
				s := sha1.Sum(c.Raw)
				certs = append(certs, map[string]any{
					"certPem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
					"isCa":    c.IsCA, "subject": c.Subject.String(), "issuer": c.Issuer.String(),
					"sha1Fingerprint": hex.EncodeToString(s[:]),
				})
			}
			return resource.NewPropertyMapFromMap(map[string]any{"id": url, "url": url, "certificates": certs}), nil
		},
	})
	assert.Equal(t, []string{"https://" + n.BrokerHost}, asked, "the thumbprint is read from the broker host only")
	assert.Equal(t, "healthy", p.Outputs["hostBringUp"].Value)
	assert.Equal(t, "active: roles trust only "+n.OIDCProviderARN, p.Outputs["federation"].Value)
	states, _ := json.Marshal(p.Outputs["hostnames"].Value)
	var hs map[string]string
	require.NoError(t, json.Unmarshal(states, &hs))
	for _, h := range n.Hostnames() {
		if h == n.MCPHost {
			assert.Equal(t, "dns-only", hs[h])
		} else {
			assert.Equal(t, "tls", hs[h], h)
		}
	}
	providers := p.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
	require.Len(t, providers, 1)
	thumbs := plain(providers[0].Raw()["thumbprintLists"])
	require.True(t, thumbs.IsArray(), "thumbprints known: %v", thumbs)
	require.Len(t, thumbs.ArrayValue(), 1)
	assert.Equal(t, wantThumb, plain(thumbs.ArrayValue()[0]).StringValue(), "provider pins the served intermediate")
	assert.Equal(t, n.Issuer, str(providers[0].Raw(), "url"))
	for _, r := range p.Find("aws:iam/role:Role", "") {
		name := str(r.Raw(), "name")
		if name != n.DataRole && !isClassRole(n.DataClassRoles, name) {
			continue
		}
		trust := str(r.Raw(), "assumeRolePolicy")
		assert.Contains(t, trust, "sts:AssumeRoleWithWebIdentity", "%s trusts the provider", name)
		assert.Contains(t, trust, n.OIDCProviderARN, name)
		assert.NotContains(t, trust, ":user/"+n.DaemonUser, "%s no longer trusts the daemon user", name)
	}

	// The same declared commands again: nothing re-ordered, nothing written.
	again := summaryOf(t, mustSucceed(t, replay(t, f.h, steps, 5*time.Minute)))
	for _, r := range again.Steps {
		assert.Equal(t, agent.OK, r.Status, "re-run: step %s %s %v", r.Step, r.Reason, r.Changes)
	}
	assert.Equal(t, agent.Counters{}, again.Counters, "re-run orders, writes, restarts and reloads nothing")
}

func isClassRole(roles map[string]string, name string) bool {
	for _, r := range roles {
		if r == name {
			return true
		}
	}
	return false
}
