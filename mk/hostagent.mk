# The host agent binary and its own tests (sandbox root; systemd-analyze and
# git are real, installed by .ci/install.d/hostagent.sh).
HOSTAGENT_PKGS ?= ./hostagent/agent/... ./hostagent/fsx/... ./hostagent/steps/... ./hostagent/spec/... ./hostagent/acme/... ./hostagent/nginx/... ./hostagent/cmd/...

.PHONY: hostagent test-hostagent

## hostagent: static linux/amd64 agent at bin/agentkeys-hostagent
hostagent:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/agentkeys-hostagent ./hostagent/cmd/agentkeys-hostagent

## test-hostagent: the agent's framework, steps, certificates, nginx, crash-safety and CLI tests
test-hostagent:
	AGENTKEYS_E2E=1 $(GO) test -count=1 -timeout 10m $(HOSTAGENT_PKGS)
