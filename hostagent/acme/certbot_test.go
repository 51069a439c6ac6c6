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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

// certbotLive writes a certbot live dir for host under root (symlinks into
// ../../archive, as certbot keeps them).
func certbotLive(t *testing.T, root, host string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(89 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	archive, live := filepath.Join(root, "etc/letsencrypt/archive", host), filepath.Join(root, "etc/letsencrypt/live", host)
	require.NoError(t, os.MkdirAll(archive, 0o755))
	require.NoError(t, os.MkdirAll(live, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(archive, "fullchain1.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(archive, "privkey1.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600))
	require.NoError(t, os.Symlink("../../archive/"+host+"/fullchain1.pem", filepath.Join(live, "fullchain.pem")))
	require.NoError(t, os.Symlink("../../archive/"+host+"/privkey1.pem", filepath.Join(live, "privkey.pem")))
}

// systemctlCalls lists the recorded systemctl calls on certbot.timer.
func systemctlCalls(t *testing.T, sb *agent.Sandbox) []string {
	t.Helper()
	calls, err := sb.Calls()
	require.NoError(t, err)
	var out []string
	for _, c := range calls {
		if c.Op == "systemctl" && strings.Contains(strings.Join(c.Args, " "), CertbotTimer) {
			out = append(out, strings.Join(c.Args, " "))
		}
	}
	return out
}

// certbotHost is a sandbox host with the distro's certbot.timer enabled and
// running, as on a host the old scripts set up with certbot.
func certbotHost(t *testing.T, live bool, timer bool) (*agent.Env, *agent.Sandbox, string) {
	t.Helper()
	s := sandboxtest.Spec(t, &sandboxtest.Repo{Bare: "/nonexistent/agentKeys.git"}, "broker")
	host := s.Services[0].Hostname
	root := t.TempDir()
	sb := agent.NewSandbox(root)
	if live {
		s.ACME.CertbotLive = "/etc/letsencrypt/live"
		certbotLive(t, root, host)
	}
	if timer {
		ctx := context.Background()
		require.NoError(t, sb.Systemctl(ctx, "enable", CertbotTimer))
		require.NoError(t, sb.Systemctl(ctx, "start", CertbotTimer))
	}
	return &agent.Env{Spec: s, Root: root, Sys: sb, Counters: &agent.Counters{}, Report: &agent.Report{}}, sb, host
}

func TestAdoptingCertbotCertificatesDisablesCertbotTimerOnce(t *testing.T) {
	ctx := context.Background()
	env, sb, host := certbotHost(t, true, true)
	setup := len(systemctlCalls(t, sb))

	// plan says what it would do and does nothing.
	env.DryRun = true
	res, err := (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.Contains(t, strings.Join(res.Changes, "\n"), "would disable and stop "+CertbotTimer)
	assert.Len(t, systemctlCalls(t, sb), setup)
	env.DryRun = false

	res, err = (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, []string{host}, res.Detail["adopted"])
	assert.Equal(t, agent.Changed, res.Status)
	assert.Contains(t, res.Changes, "disabled and stopped "+CertbotTimer+" (the agent renews the adopted certificates)")
	assert.Equal(t, []string{"disable --now " + CertbotTimer}, systemctlCalls(t, sb)[setup:])
	on, _ := sb.IsEnabled(ctx, CertbotTimer)
	active, _ := sb.IsActive(ctx, CertbotTimer)
	assert.False(t, on, "certbot.timer still enabled")
	assert.False(t, active, "certbot.timer still running")

	// Converged: the timer is never touched again.
	env.Counters = &agent.Counters{}
	res, err = (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.Equal(t, agent.OK, res.Status, "%v", res.Changes)
	assert.Empty(t, res.Changes)
	assert.Len(t, systemctlCalls(t, sb), setup+1, "second run called systemctl on certbot.timer")
}

func TestCertbotTimerLeftAloneWithoutAdoption(t *testing.T) {
	ctx := context.Background()
	// No certbot certificate to adopt: the timer is not the agent's business.
	env, sb, host := certbotHost(t, false, true)
	setup := len(systemctlCalls(t, sb))
	res, err := (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.Contains(t, res.Detail["skipped"], host)
	assert.Len(t, systemctlCalls(t, sb), setup)
	on, _ := sb.IsEnabled(ctx, CertbotTimer)
	assert.True(t, on)

	// Adoption on a host without certbot.timer: nothing to disable.
	env, sb, _ = certbotHost(t, true, false)
	res, err = (&Step{}).Run(ctx, env)
	require.NoError(t, err)
	assert.NotContains(t, strings.Join(res.Changes, "\n"), CertbotTimer)
	assert.Empty(t, systemctlCalls(t, sb))
}
