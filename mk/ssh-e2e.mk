# Real SSH test of the declared host bring-up (infra/e2e): Debian sshd in a
# private network/mount namespace, sudo, cargo; installed by
# .ci/install.d/ssh-e2e.sh. mk/e2e.mk (included first) defines E2E_PKGS.
E2E_PKGS += ./infra/e2e/...

.PHONY: test-ssh-e2e

## test-ssh-e2e: only the SSH bring-up test, verbose (prints ssh_converge_s, ssh_noop_rerun_s)
test-ssh-e2e:
	AGENTKEYS_E2E=1 $(GO) test -count=1 -timeout 15m -skip '^TestEngine' -v ./infra/e2e/...
