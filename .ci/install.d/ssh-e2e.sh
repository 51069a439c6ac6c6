#!/usr/bin/env bash
# Components of the SSH bring-up test (infra/e2e): Debian openssh-server,
# sudo, util-linux (unshare) and iproute2 (ip) for the host's namespaces, git,
# nginx (the sandbox's), and a Rust toolchain for the stand-in workspace
# (Debian's cargo when no rustup toolchain is present). Idempotent.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sudo >/dev/null || need+=(sudo)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v git >/dev/null || need+=(git)
command -v nginx >/dev/null || need+=(nginx)
if ! command -v cargo >/dev/null && [ ! -x /root/.cargo/bin/cargo ]; then need+=(cargo); fi
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
