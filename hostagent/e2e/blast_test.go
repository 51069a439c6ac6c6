package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/acme"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// stallOrder holds the new-order request for one hostname until release
// is closed, then fails it, as a CA that hangs and then refuses one name
// would.
type stallOrder struct {
	base    http.RoundTripper
	host    string
	release chan struct{}
}

func (s stallOrder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		var jws struct{ Payload string }
		_ = json.Unmarshal(b, &jws)
		payload, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
		var order struct{ Identifiers []struct{ Value string } }
		if json.Unmarshal(payload, &order) == nil && len(order.Identifiers) == 1 && order.Identifiers[0].Value == s.host {
			<-s.release
			return nil, errors.New("stand-in CA failure for " + s.host)
		}
	}
	return s.base.RoundTrip(req)
}

// Every hostname is ordered at once, each on its own: one name whose order
// hangs and fails holds none of the others, which are issued and stored
// while it still hangs (it is released only once they are on disk), and it
// alone is skipped.
func TestOneFailingNameDoesNotHoldTheOthers(t *testing.T) {
	r := newRig(t, benchNames)
	hosts := Hostnames()
	bad := hosts["audit"] // ordered first: a queue would hold every other name behind it
	release := make(chan struct{})
	client := *r.ca.Client
	client.Transport = stallOrder{base: r.ca.Client.Transport, host: bad, release: release}
	env := r.env(t)
	var others []string
	for _, n := range benchNames {
		if hosts[n] != bad {
			others = append(others, hosts[n])
		}
	}
	stored := make(chan bool, 1)
	go func() {
		defer close(release)
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			n := 0
			for _, h := range others {
				if fc, _ := nginx.CertFiles(h); fileExists(env.Path(fc)) {
					n++
				}
			}
			if n == len(others) {
				stored <- true
				return
			}
		}
		stored <- false
	}()
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	_, res := converge(t, r, env, ng, &acme.Step{Nginx: ng, HTTPClient: &client})
	if !<-stored {
		t.Fatalf("the other hostnames were not all stored while the order of %s hung: %v", bad, res.Detail)
	}
	issued := res.Detail["issued"].([]string)
	if len(issued) != len(others) || strings.Contains(strings.Join(issued, ","), bad) {
		t.Fatalf("issued %v, want every hostname but %s", issued, bad)
	}
	if skip := res.Detail["skipped"].(map[string]string)[bad]; !strings.Contains(skip, "stand-in CA failure") {
		t.Errorf("%s skipped with %q, want its own failure", bad, skip)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
