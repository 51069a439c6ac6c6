#!/usr/bin/env bash
# Installs what the workflow test (policy/ciworkflow_test.go) needs:
# actionlint (GitHub Actions workflow checker, into bin/) and shellcheck,
# which actionlint runs on every run: script. Idempotent; run from the repo
# root (apt-get needs root when shellcheck is missing).
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
v=v1.7.12
if [ -x bin/actionlint ] && [ "$(bin/actionlint -version | head -n1)" = "$v" ]; then
  echo "ci: actionlint $v present"
else
  GOBIN="$(pwd)/bin" GOFLAGS=-buildvcs=false go install "github.com/rhysd/actionlint/cmd/actionlint@$v"
  echo "ci: installed bin/actionlint $v"
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck
fi
