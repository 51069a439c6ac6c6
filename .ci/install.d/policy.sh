#!/usr/bin/env bash
# Installs what the policy tests need: moto_server (IAM/S3 syntax) and node
# with @cloud-copilot/iam-simulate (isolation matrix). Idempotent; run as root
# from the repo root after apt-get update.
set -euo pipefail

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi
if [ ! -f test/iamsim/node_modules/@cloud-copilot/iam-simulate/package.json ]; then
  npm ci --prefix test/iamsim --no-audit --no-fund
fi

if ! command -v moto_server >/dev/null 2>&1; then
  if ! command -v pip3 >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pip python3-venv
  fi
  python3 -m venv /opt/moto
  /opt/moto/bin/pip install --quiet 'moto[server]==5.2.1'
  ln -sf /opt/moto/bin/moto_server /usr/local/bin/moto_server
fi
