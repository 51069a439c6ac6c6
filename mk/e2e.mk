# Real-component tests and the host agent benchmark (nginx, pebble,
# pebble-challtestsrv; installed by .ci/install.d/e2e.sh).
E2E_PKGS ?= ./hostagent/e2e/...
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin

.PHONY: test-e2e bench-hostagent

## test-e2e: real-component tests; a missing component fails (AGENTKEYS_E2E=1)
test-e2e:
	PATH="$(GOBIN_DIR):$$PATH" AGENTKEYS_E2E=1 $(GO) test -count=1 -timeout 15m -skip '^TestEngine' $(E2E_PKGS)

## bench-hostagent: sandbox host with 9 services/hostnames; figures are the last lines
bench-hostagent:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	PATH="$(GOBIN_DIR):$$PATH" AGENTKEYS_E2E=1 AGENTKEYS_BENCH=1 AGENTKEYS_BENCH_OUT=$$out \
	  $(GO) test -count=1 -timeout 20m -run '^TestBenchHostagent$$' -v ./hostagent/e2e/ >&2 \
	  && cat $$out
