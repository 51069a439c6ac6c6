#!/usr/bin/env bash
# Installs what the real-host tests need (internal/testkit/realhost):
# systemd-nspawn, debootstrap with the Debian archive keyring, nftables for
# the containers' NAT, iproute2 and util-linux (nsenter). Idempotent; runs as
# root after apt-get update. The Debian root itself is built by the first
# test that boots a container (~80 s once, cached in
# /var/cache/agentkeys-realhost). The host agent's real-host tests also use
# pebble and pebble-challtestsrv (e2e.sh) and git (hostagent.sh); inside the
# containers, apt fetches nginx, git, the build tools and Debian's cargo
# from the same mirror through the NAT.
set -euo pipefail
need=()
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
