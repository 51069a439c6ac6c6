package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// installCert stores a certificate for host valid from notBefore to
// notAfter, as an order from the spec's directory would.
func installCert(t *testing.T, env *agent.Env, host string, notBefore, notAfter time.Time) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	require.NoError(t, (&Step{}).store(env, host,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}),
		meta{Source: "acme", Directory: env.Spec.ACME.Directory}))
}

// A due certificate whose renewal fails (here: the DNS check) still serves
// until it expires: the host counts as issued, the failure is reported in
// the step's reason, and the host is not skipped (a skip would make health
// leave out broker-tls and the Pulumi program withdraw federation).
func TestFailedRenewalOfAValidCertificateIsNotASkip(t *testing.T) {
	ctx := context.Background()
	s := sandboxtest.Spec(t, &sandboxtest.Repo{Bare: "/nonexistent/agentKeys.git"}, "broker", "signer")
	s.ACME.Resolver = "127.0.0.1:1" // nothing answers: the DNS check fails
	s.Services[1].Hostname = "signer-test-2.example.org"
	require.NoError(t, s.Validate())
	broker, signer := s.Services[0].Hostname, s.Services[1].Hostname
	root := t.TempDir()
	newEnv := func(dry bool) *agent.Env {
		return &agent.Env{Spec: s, Root: root, Sys: agent.NewSandbox(root), Counters: &agent.Counters{}, Report: &agent.Report{}, DryRun: dry}
	}
	now := time.Now()
	notAfter := now.Add(10 * 24 * time.Hour) // 10 of 90 days left: due
	installCert(t, newEnv(false), broker, notAfter.Add(-90*24*time.Hour), notAfter)
	installCert(t, newEnv(false), signer, now.Add(-91*24*time.Hour), now.Add(-time.Hour)) // expired

	env := newEnv(false)
	res, err := (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	hosts := env.Report.Hosts()
	assert.Equal(t, []string{broker}, hosts.Issued, "the broker's certificate still serves")
	assert.NotContains(t, hosts.Skipped, broker)
	assert.Contains(t, hosts.Skipped, signer, "an expired certificate whose renewal failed is a skip")
	assert.NotContains(t, hosts.Issued, signer)
	assert.Equal(t, agent.OK, res.Status)
	validUntil := "current certificate valid until " + notAfter.UTC().Format(time.RFC3339)
	assert.Contains(t, res.Reason, "renewal of "+broker+" failed: DNS A query for "+broker)
	assert.Contains(t, res.Reason, validUntil)
	assert.Contains(t, res.Reason, "1 of 2 hosts skipped: "+signer+": DNS A query")
	assert.Contains(t, res.Detail["renewalFailed"].(map[string]string)[broker], validUntil)
	assert.NotContains(t, res.Detail["skipped"], broker)
	for _, c := range res.Changes {
		assert.False(t, strings.HasPrefix(c, "skipped "+broker), "change %q", c)
	}

	// plan says the same, changing nothing.
	env = newEnv(true)
	res, err = (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.Contains(t, res.Reason, "renewal of "+broker+" would fail: DNS A query")
	assert.NotContains(t, res.Detail["skipped"], broker)
}

// A renew run killed after storing a certificate and before reloading nginx
// leaves the reload owed: the next renew, which finds the certificate valid
// and orders nothing, still reloads nginx so that it serves it.
func TestRenewCarriesOutAnOwedNginxReload(t *testing.T) {
	ctx := context.Background()
	s := sandboxtest.Spec(t, &sandboxtest.Repo{Bare: "/nonexistent/agentKeys.git"}, "broker")
	root := t.TempDir()
	env := &agent.Env{Spec: s, Root: root, Sys: agent.NewSandbox(root), Counters: &agent.Counters{}, Report: &agent.Report{}}
	ng := &nginx.Step{}
	_, err := ng.Run(ctx, env) // nginx serves Phase A
	require.NoError(t, err)
	// The renewal stored the certificate, then the process died.
	installCert(t, env, s.Services[0].Hostname, time.Now().Add(-time.Hour), time.Now().Add(89*24*time.Hour))
	owed, err := env.IsPending(agent.ActionReloadNginx)
	require.NoError(t, err)
	require.True(t, owed, "storing a certificate owes nginx a reload")

	env.Counters = &agent.Counters{}
	res, err := (&Step{Nginx: ng, RenewOnly: true}).Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, 0, env.Counters.ACMEOrders)
	assert.Equal(t, 1, env.Counters.Reloads, "%v", res.Changes)
	assert.Contains(t, strings.Join(res.Changes, "\n"), "nginx: nginx -t passed; reloaded nginx")
	owed, err = env.IsPending(agent.ActionReloadNginx)
	require.NoError(t, err)
	assert.False(t, owed)
	conf, err := os.ReadFile(env.Path(nginx.SitePath(s, s.Services[0].Site)))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "Phase B")

	// Nothing owed any more: the next renew leaves nginx alone.
	env.Counters = &agent.Counters{}
	_, err = (&Step{Nginx: ng, RenewOnly: true}).Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, agent.Counters{}, *env.Counters)
}

// renew fails (non-zero exit, so the timer's unit shows failed) when a due
// renewal failed, and the outcome is recorded: plan (status) says why.
func TestRenewFailsWhenADueRenewalFailed(t *testing.T) {
	ctx := context.Background()
	s := sandboxtest.Spec(t, &sandboxtest.Repo{Bare: "/nonexistent/agentKeys.git"}, "broker")
	s.ACME.Resolver = "127.0.0.1:1" // nothing answers: the DNS check fails
	broker := s.Services[0].Hostname
	root := t.TempDir()
	newEnv := func(dry bool) *agent.Env {
		return &agent.Env{Spec: s, Root: root, Sys: agent.NewSandbox(root), Counters: &agent.Counters{}, Report: &agent.Report{}, DryRun: dry}
	}
	// Nothing due: renew passes and records nothing.
	installCert(t, newEnv(false), broker, time.Now().Add(-time.Hour), time.Now().Add(89*24*time.Hour))
	_, err := (&Step{RenewOnly: true}).Run(ctx, newEnv(false))
	require.NoError(t, err)
	assert.NoFileExists(t, newEnv(false).Path(RenewalRecord(s.StateDir)))

	notAfter := time.Now().Add(10 * 24 * time.Hour)
	installCert(t, newEnv(false), broker, notAfter.Add(-90*24*time.Hour), notAfter)
	_, err = (&Step{RenewOnly: true}).Run(ctx, newEnv(false))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 due renewals failed")
	assert.Contains(t, err.Error(), broker+": renewal of "+broker+" failed: DNS A query")

	// apply keeps serving the certificate and passes, as before.
	_, err = (&Step{}).Run(ctx, newEnv(false))
	require.NoError(t, err)

	res, err := (&Step{}).Run(ctx, newEnv(true))
	require.NoError(t, err)
	assert.Regexp(t, `the last renewal \(apply at [0-9T:Z-]+\) failed for 1 hosts: `+broker+`: renewal of `+broker+` failed: DNS A query`, res.Reason)
}
