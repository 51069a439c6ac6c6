package acme

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Only a challenge object without a Retry-After gets the poll hint; the
// body reaches lego unchanged.
func TestPollHintOnlyOnChallenges(t *testing.T) {
	bodies := map[string]string{
		"/chal":      `{"type":"http-01","url":"x","status":"pending","token":"tok"}`,
		"/chal-hint": `{"type":"http-01","url":"x","status":"pending","token":"tok"}`,
		"/order":     `{"status":"pending","identifiers":[{"type":"dns","value":"a.example"}]}`,
		"/authz":     `{"identifier":{"type":"dns","value":"a"},"challenges":[{"type":"http-01","token":"t"}]}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/chal-hint" {
			w.Header().Set("Retry-After", "7")
		}
		fmt.Fprint(w, bodies[r.URL.Path])
	}))
	defer srv.Close()
	c := withPollHint(srv.Client())
	for path, want := range map[string]string{"/chal": "1", "/chal-hint": "7", "/order": "", "/authz": ""} {
		resp, err := c.Post(srv.URL+path, "application/jose+json", strings.NewReader("{}"))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.Header.Get("Retry-After"), path)
		assert.Equal(t, bodies[path], string(b), path)
	}
}
