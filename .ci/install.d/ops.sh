#!/usr/bin/env bash
# Installs what the operator CLI tests (cmd/agentkeys, ops/...) need: an ssh
# client and a real sshd (ssh via Instance Connect and --fallback), and
# moto_server (IAM/S3/EC2/Instance Connect). Idempotent; runs as root after
# apt-get update.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v ssh >/dev/null 2>&1 || [ ! -x /usr/sbin/sshd ]; then
  apt-get install -y -qq --no-install-recommends openssh-client openssh-server >/dev/null
fi
# sshd's privilege separation dir; the tests start their own sshd on loopback.
mkdir -p /run/sshd

if ! command -v moto_server >/dev/null 2>&1; then
  if ! command -v pip3 >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends python3-pip python3-venv >/dev/null
  fi
  python3 -m venv /opt/moto
  /opt/moto/bin/pip install --quiet 'moto[server]==5.2.1'
  ln -sf /opt/moto/bin/moto_server /usr/local/bin/moto_server
fi
