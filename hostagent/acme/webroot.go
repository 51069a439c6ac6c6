package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/challenge/http01"
)

// webroot is the HTTP-01 provider: it writes the key authorization where
// nginx serves /.well-known/acme-challenge/ for every vhost.
type webroot struct{ dir string } // <webroot>/.well-known/acme-challenge under the root

func (w webroot) file(token string) (string, error) {
	if token == "" || strings.ContainsAny(token, "/\\.") {
		return "", fmt.Errorf("refusing ACME token %q", token)
	}
	return filepath.Join(w.dir, token), nil
}

// Present implements challenge.Provider.
func (w webroot) Present(_ context.Context, _, token, keyAuth string) error {
	p, err := w.file(token)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	// World-readable: nginx workers serve it; a key authorization is public.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(keyAuth), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // the renew unit runs with UMask=0077
		return err
	}
	return os.Rename(tmp, p)
}

// CleanUp implements challenge.Provider.
func (w webroot) CleanUp(_ context.Context, _, token, _ string) error {
	p, err := w.file(token)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// probe proves that nginx, as it runs now, serves host's challenge path from
// the webroot: the CA's validation would fail otherwise, and failures count
// against the CA's rate limits. It retries briefly because a reload is
// asynchronous.
func probe(ctx context.Context, w webroot, base, host string) string {
	var b [18]byte
	rand.Read(b[:])
	token := "agentkeys-probe-" + base64.RawURLEncoding.EncodeToString(b[:])
	want := "probe-" + token
	if err := w.Present(ctx, host, token, want); err != nil {
		return fmt.Sprintf("self-probe: cannot write to the webroot: %v", err)
	}
	defer w.CleanUp(ctx, host, token, want)
	url := strings.TrimSuffix(base, "/") + http01.ChallengePath(token)
	client := &http.Client{
		Timeout:       3 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var last string
	for i := 0; i < 15; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return "self-probe: " + ctx.Err().Error()
			case <-time.After(200 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Sprintf("self-probe: %v", err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == want {
			return ""
		}
		last = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return fmt.Sprintf("self-probe of http://%s%s through nginx (%s) failed: %s; check the vhost and reload nginx", host, http01.ChallengePath("<token>"), base, last)
}
