# A real Debian host with systemd as PID 1 (systemd-nspawn), for humans and
# for the tests that need real systemd, apt, users and sshd
# (internal/testkit/realhost; installed by .ci/install.d/realhost.sh).
REALHOST_PKGS ?= ./internal/testkit/realhost/... ./hostagent/realhost/...

.PHONY: realhost test-realhost

## realhost: boot one throwaway host, print the ssh command; Ctrl-C tears it down (root)
realhost:
	@CGO_ENABLED=0 $(GO) build -o bin/realhost ./internal/testkit/realhost/cmd/realhost
	@bin/realhost $(REALHOST_ARGS)

# The figures the issue asks for, printed last in this order.
REALHOST_FIGURES := realhost_boot_s realhost_cold_apply_s realhost_noop_apply_s realhost_units_active \
	realhost_units_expected realhost_noop_changes realhost_takeover_secrets_changed

## test-realhost: the real-host tests (full bring-up, re-run, reboot, kills, takeover, renewal); figures are the last lines
test-realhost:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; start=$$(date +%s); \
	PATH="$(GOBIN_DIR):$$PATH" AGENTKEYS_E2E=1 AGENTKEYS_REALHOST_FIGURES=$$out $(GO) test -count=1 -timeout 60m $(REALHOST_PKGS); rc=$$?; \
	echo "realhost_wall_s: $$(( $$(date +%s) - start ))" >> $$out; \
	grep -v -E "^($$(echo $(REALHOST_FIGURES) | tr ' ' '|')):" $$out | sort -u; \
	for k in $(REALHOST_FIGURES); do grep -m1 "^$$k:" $$out || echo "$$k: (not measured: its test failed or did not run)"; done; \
	exit $$rc
