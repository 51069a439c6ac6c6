#!/usr/bin/env bash
# Installs what the host agent's own tests need: git (source step, fixture
# repos) and systemd-analyze (verify + security --offline on every unit).
# Idempotent; runs as root after apt-get update.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
