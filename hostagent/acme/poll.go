package acme

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ChallengePoll is the interval lego first waits before it polls an
// authorization again when the CA gave no Retry-After with the challenge
// (Boulder, pebble): lego's default is 5 s, randomised to 2.5-7.5 s, which
// is most of an order's time, and, with every hostname ordered at once, the
// slowest of nine such draws. Validation takes about a second; lego's
// backoff still grows to ten times this between later polls.
const ChallengePoll = time.Second

// pollHint adds Retry-After: ChallengePoll to a challenge object the CA
// returns without one (only that: a 2xx JSON body with a type and a token).
type pollHint struct{ base http.RoundTripper }

func (p pollHint) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || resp.StatusCode/100 != 2 || resp.Header.Get("Retry-After") != "" ||
		!strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil // lego reads what was read and reports the rest
	}
	var c struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(body, &c) == nil && strings.HasSuffix(c.Type, "-01") && c.Token != "" {
		resp.Header.Set("Retry-After", strconv.Itoa(int(ChallengePoll/time.Second)))
	}
	return resp, nil
}

// withPollHint wraps c's transport in a copy of c.
func withPollHint(c *http.Client) *http.Client {
	hc := *c
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = pollHint{base: base}
	return &hc
}
