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

// stallOrder fails the new-order request for one hostname after a delay,
// as a CA that hangs and then refuses one name would.
type stallOrder struct {
	base  http.RoundTripper
	host  string
	delay time.Duration
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
			time.Sleep(s.delay)
			return nil, errors.New("stand-in CA failure for " + s.host)
		}
	}
	return s.base.RoundTrip(req)
}

// Every hostname is ordered at once, each on its own: one name whose order
// hangs and fails holds none of the others, which are issued and stored
// while it still hangs, and it alone is skipped.
func TestOneFailingNameDoesNotHoldTheOthers(t *testing.T) {
	r := newRig(t, benchNames)
	hosts := Hostnames()
	bad := hosts["audit"] // ordered first: a queue would hold every other name behind it
	delay := 8 * time.Second
	client := *r.ca.Client
	client.Transport = stallOrder{base: r.ca.Client.Transport, host: bad, delay: delay}
	env := r.env(t)
	ng := &nginx.Step{ListenAddr: "127.0.0.1"}
	start := time.Now()
	_, res := converge(t, r, env, ng, &acme.Step{Nginx: ng, HTTPClient: &client})
	issued := res.Detail["issued"].([]string)
	if len(issued) != len(benchNames)-1 || strings.Contains(strings.Join(issued, ","), bad) {
		t.Fatalf("issued %v, want every hostname but %s", issued, bad)
	}
	if skip := res.Detail["skipped"].(map[string]string)[bad]; !strings.Contains(skip, "stand-in CA failure") {
		t.Errorf("%s skipped with %q, want its own failure", bad, skip)
	}
	// The others were stored while the bad order still hung.
	for _, h := range issued {
		fc, _ := nginx.CertFiles(h)
		st, err := os.Stat(env.Path(fc))
		if err != nil {
			t.Fatal(err)
		}
		if at := st.ModTime().Sub(start); at >= delay {
			t.Errorf("%s stored %s after the start, not before the stalled order of %s failed (%s)", h, at, bad, delay)
		}
	}
}
