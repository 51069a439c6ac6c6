package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// TestRenewalReRegistersWhenTheCAForgotTheAccount restarts pebble (a new
// process, same config), which forgets every account, then renews: the
// agent must notice accountDoesNotExist, register the same key again,
// persist the new account URL and renew, instead of skipping the host on
// every run from then on.
func TestRenewalReRegistersWhenTheCAForgotTheAccount(t *testing.T) {
	r := newRig(t, []string{"broker", "signer"})
	hosts := Hostnames()
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	certs := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client}
	env := r.env(t)
	if _, res := converge(t, r, env, ng, certs); len(res.Detail["issued"].([]string)) != 2 {
		t.Fatalf("setup: issued %v", res.Detail)
	}
	accFile := filepath.Join(r.root, "var/lib/agentkeys/acme/accounts.json")
	keyFile := filepath.Join(r.root, "var/lib/agentkeys/acme/account.key")
	readAcc := func() string {
		var accs map[string]string
		if err := json.Unmarshal(readFile(t, accFile), &accs); err != nil {
			t.Fatal(err)
		}
		return accs[r.spec.ACME.Directory]
	}
	acc1, key1 := readAcc(), string(readFile(t, keyFile))
	old := servedLeaf(t, hosts["broker"], r.httpsPort)

	if err := r.ca.RestartPebble(); err != nil {
		t.Fatal(err)
	}
	renew := &acme.Step{Nginx: ng, HTTPClient: r.ca.Client, RenewOnly: true,
		Now: func() time.Time { return time.Now().Add(61 * 24 * time.Hour) }}
	env2 := r.env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := renew.Run(ctx, env2)
	if err != nil {
		t.Fatalf("renew: %v\npebble log:\n%s", err, r.ca.PebbleLog())
	}
	if s := res.Detail["skipped"].(map[string]string); len(s) > 0 {
		t.Fatalf("renewal after the CA forgot the account skipped hosts: %v", s)
	}
	if got := res.Detail["issued"].([]string); len(got) != 2 {
		t.Errorf("renewed %v, want both hosts", got)
	}
	acc2 := readAcc()
	if acc2 == "" || acc2 == acc1 {
		t.Errorf("account URL %q after re-registration, was %q: the new account must be saved", acc2, acc1)
	}
	if string(readFile(t, keyFile)) != key1 {
		t.Error("the account key changed; re-registration keeps the same key")
	}
	if !strings.Contains(strings.Join(res.Changes, "\n"), "re-registered") {
		t.Errorf("changes %v do not report the re-registration", res.Changes)
	}
	for _, name := range []string{"broker", "signer"} {
		if body, err := FetchTLS(ctx, r.ca.Roots, hosts[name], r.httpsPort, "/healthz?who"); err != nil || !strings.HasPrefix(body, name+" ok") {
			t.Errorf("%s not served with a certificate from the restarted CA: %q %v", name, body, err)
		}
	}
	if cur := servedLeaf(t, hosts["broker"], r.httpsPort); cur.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("nginx still serves the certificate from before the renewal")
	}

	// The saved account is the live one: a further order registers nothing.
	env3 := r.env(t)
	r3, err := (&acme.Step{Nginx: ng, HTTPClient: r.ca.Client, RenewOnly: true,
		Now: func() time.Time { return time.Now().Add(122 * 24 * time.Hour) }}).Run(ctx, env3)
	if err != nil || len(r3.Detail["issued"].([]string)) != 2 {
		t.Fatalf("second renewal: %v %v", err, r3.Detail)
	}
	if readAcc() != acc2 || strings.Contains(strings.Join(r3.Changes, "\n"), "re-registered") {
		t.Errorf("second renewal re-registered again: %v", r3.Changes)
	}
}
