#!/usr/bin/env bash
# Installs what the account tests need: the aws CLI (scripts/bootstrap-state.sh
# runs against moto_server). moto_server and the IAM evaluator come from
# policy.sh. Idempotent; run as root from the repo root after apt-get update.
set -euo pipefail

if ! command -v aws >/dev/null 2>&1; then
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends awscli; then
    # Debian 13 dropped the awscli package: install the v1 CLI into a venv.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
    python3 -m venv /opt/awscli
    /opt/awscli/bin/pip install --quiet 'awscli==1.45.11'
    ln -sf /opt/awscli/bin/aws /usr/local/bin/aws
  fi
fi
