# A real Debian host with systemd as PID 1 (systemd-nspawn), for humans and
# for the tests that need real systemd, apt, users and sshd
# (internal/testkit/realhost; installed by .ci/install.d/realhost.sh).
REALHOST_PKGS ?= ./internal/testkit/realhost/... ./hostagent/realhost/...

.PHONY: realhost test-realhost

## realhost: boot one throwaway host, print the ssh command; Ctrl-C tears it down (root)
realhost:
	@CGO_ENABLED=0 $(GO) build -o bin/realhost ./internal/testkit/realhost/cmd/realhost
	@bin/realhost $(REALHOST_ARGS)

## test-realhost: the real-host tests; figures (realhost_boot_s: …) are the last lines
test-realhost:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	AGENTKEYS_E2E=1 AGENTKEYS_REALHOST_FIGURES=$$out $(GO) test -count=1 -timeout 30m $(REALHOST_PKGS); rc=$$?; \
	sort -u $$out; exit $$rc
