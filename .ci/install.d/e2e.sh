#!/usr/bin/env bash
# Installs what the host agent's real-component tests need: Debian nginx and
# the pebble ACME CA with pebble-challtestsrv. Idempotent; runs as root from
# the repo root after apt-get update.
set -euo pipefail

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx
fi
# The tests run their own nginx on loopback high ports; a distro nginx that
# was started by the package is not needed.
systemctl stop nginx 2>/dev/null || true

PEBBLE_VERSION=v2.10.3
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
for tool in pebble pebble-challtestsrv; do
  if [ ! -x "$gobin/$tool" ]; then
    # GOFLAGS= so this repository's -mod=readonly/go.mod do not apply.
    GOFLAGS= go install "github.com/letsencrypt/pebble/v2/cmd/$tool@$PEBBLE_VERSION"
  fi
done
