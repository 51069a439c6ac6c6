# The program under the real Pulumi engine (issue 14): bin/pulumi, the real
# pulumi-command provider and the moto-backed stand-ins for pulumi-aws and
# pulumi-tls, all installed by .ci/install.d/engine.sh into .pulumi-home.
ENGINE_PKGS ?= ./test/providers/... ./test/e2e/engine/...
# Where the engine tests find the CLI and the plugins (make deps puts them here).
export AGENTKEYS_PULUMI_HOME ?= $(CURDIR)/.pulumi-home

.PHONY: test-engine

## test-engine: stand-in provider tests + agentkeys deploy through the real engine; figures are the last lines
test-engine:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	AGENTKEYS_E2E=1 AGENTKEYS_ENGINE_FIGURES=$$out $(GO) test -count=1 -timeout 40m $(ENGINE_PKGS) \
	  && cat $$out
