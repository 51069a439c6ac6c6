# The operator CLI (cmd/agentkeys) and its packages (ops/...). Tests use
# moto_server, a real sshd and local TLS servers (.ci/install.d/ops.sh).
OPS_PKGS ?= ./cmd/agentkeys/... ./ops/...

.PHONY: agentkeys test-ops bench-verify

## agentkeys: the operator CLI at bin/agentkeys
agentkeys:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/agentkeys ./cmd/agentkeys

## test-ops: verify/audit/deploy/ssh/fleet tests; a missing component fails
test-ops:
	AGENTKEYS_E2E=1 $(GO) test -count=1 -timeout 10m $(OPS_PKGS)

## bench-verify: one verify pass (28 checks) on a healthy local stack
bench-verify:
	AGENTKEYS_E2E=1 $(GO) test -count=1 -run '^$$' -bench BenchmarkVerifyHealthyStack -benchtime 50x ./ops/verify/
