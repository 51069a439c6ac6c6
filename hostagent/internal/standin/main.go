// Command standin stands in for an AgentKeys service in host agent tests: it
// answers /healthz and, when BROKER_OIDC_ISSUER is set, the broker's OIDC
// discovery and JWKS documents from its keypair file. Standard library only,
// so tests can build it from a bare checkout with the spec's build command.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	addr := os.Getenv("STANDIN_ADDR")
	if addr == "" {
		log.Fatal("STANDIN_ADDR is not set")
	}
	name := os.Getenv("STANDIN_NAME")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "ok %s\n", name)
	})
	if iss := os.Getenv("BROKER_OIDC_ISSUER"); iss != "" {
		mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{
				"issuer": iss, "jwks_uri": iss + "/.well-known/jwks.json",
				"id_token_signing_alg_values_supported": []string{"ES256"},
			})
		})
		mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
			p := os.Getenv("BROKER_OIDC_KEYPAIR_PATH")
			if r := os.Getenv("AGENTKEYS_SANDBOX_ROOT"); r != "" {
				p = filepath.Join(r, p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			var k map[string]any
			if err := json.Unmarshal(b, &k); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			delete(k, "d") // publish the public half only
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{k}})
		})
	}
	log.Fatal(http.ListenAndServe(addr, mux))
}
