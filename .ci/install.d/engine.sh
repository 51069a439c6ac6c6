#!/usr/bin/env bash
# Installs what the real-engine tests (make test-engine) and `agentkeys deploy`
# need, with nothing ever downloaded at run time:
#   bin/pulumi      the Pulumi CLI at go.mod's SDK version, built from the Go
#                   module proxy (tools/pulumi), the version linked in; or the
#                   CLI named by AGENTKEYS_PULUMI (then nothing is built)
#   .pulumi-home/   a project-local PULUMI_HOME whose plugins/ holds
#                   resource-command-v1.2.1  the real pulumi-command provider,
#                                            from ../shared/third_party (else
#                                            `pulumi plugin install`)
#                   resource-aws-v6.83.4     test stand-in (test/providers/aws)
#                   resource-tls-v5.3.0      test stand-in (test/providers/tls)
# Cached: a second run builds nothing (version and source-hash stamps).
# Run from the repository root.
set -euo pipefail
root=$(pwd)
export PATH="/usr/local/go/bin:$PATH"
# This repository's GOFLAGS must not leak into the separate modules built here.
export GOFLAGS=-buildvcs=false

modver() { awk -v m="$1" '$1 == m { print $2; exit }' "$2"; }
sdk=$(modver github.com/pulumi/pulumi/sdk/v3 go.mod)
tools_pkg=$(modver github.com/pulumi/pulumi/pkg/v3 tools/pulumi/go.mod)
tools_sdk=$(modver github.com/pulumi/pulumi/sdk/v3 tools/pulumi/go.mod)
if [ "$tools_pkg" != "$sdk" ] || [ "$tools_sdk" != "$sdk" ]; then
  echo "engine.sh: go.mod has pulumi sdk $sdk but tools/pulumi/go.mod has pkg $tools_pkg / sdk $tools_sdk;" >&2
  echo "  run: (cd tools/pulumi && go get github.com/pulumi/pulumi/pkg/v3@$sdk github.com/pulumi/pulumi/sdk/v3@$sdk && go mod tidy)" >&2
  exit 1
fi

# --- the CLI
if [ -n "${AGENTKEYS_PULUMI:-}" ]; then
  v=$("$AGENTKEYS_PULUMI" version) || { echo "engine.sh: AGENTKEYS_PULUMI=$AGENTKEYS_PULUMI does not run" >&2; exit 1; }
  echo "engine: using the CLI $AGENTKEYS_PULUMI ($v); the SDK is $sdk"
  cli=$AGENTKEYS_PULUMI
else
  cli=$root/bin/pulumi
  if [ -x "$cli" ] && [ "$("$cli" version 2>/dev/null)" = "$sdk" ]; then
    echo "engine: bin/pulumi $sdk present"
  else
    mkdir -p bin
    t0=$(date +%s)
    echo "engine: building the Pulumi CLI $sdk from the module proxy (about 5 min on 2 cores)"
    (cd tools/pulumi && go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$sdk" \
      -o "$root/bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    mv bin/pulumi.tmp bin/pulumi
    echo "engine: built bin/pulumi $sdk in $(( $(date +%s) - t0 ))s"
  fi
fi

# --- the plugins
export PULUMI_HOME=$root/.pulumi-home
plugins=$PULUMI_HOME/plugins
mkdir -p "$plugins"

# install NAME VERSION BINARY: the layout the CLI's plugin loader reads
# (plugins/resource-NAME-vVERSION/pulumi-resource-NAME).
install_plugin() {
  local dir=$plugins/resource-$1-v$2
  mkdir -p "$dir"
  mv "$3" "$dir/pulumi-resource-$1"
  rm -f "$dir.partial"
}

cmd_ver=$(modver github.com/pulumi/pulumi-command/sdk go.mod); cmd_ver=${cmd_ver#v}
if [ -x "$plugins/resource-command-v$cmd_ver/pulumi-resource-command" ]; then
  echo "engine: plugin command $cmd_ver present"
else
  t0=$(date +%s)
  src=${AGENTKEYS_THIRD_PARTY:-$root/../shared/third_party}/pulumi-command-v$cmd_ver/provider
  if [ -d "$src" ]; then
    out=$(mktemp -d)
    ldflags="-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$cmd_ver"
    # The source is read-only: build in place, else from a copy if go wants
    # to write go.sum.
    if ! (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$out/pulumi-resource-command" ./cmd/pulumi-resource-command); then
      cp -r "$src/.." "$out/src" && chmod -R u+w "$out/src"
      (cd "$out/src/provider" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/pulumi-resource-command" ./cmd/pulumi-resource-command)
    fi
    install_plugin command "$cmd_ver" "$out/pulumi-resource-command"
    rm -rf "$out"
  else
    "$cli" plugin install resource command "$cmd_ver"
  fi
  echo "engine: installed plugin command $cmd_ver in $(( $(date +%s) - t0 ))s"
fi

# The stand-ins rebuild when their sources or the module's dependencies change.
standin_hash=$(cat go.mod go.sum $(find test/providers -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
aws_ver=$(modver github.com/pulumi/pulumi-aws/sdk/v6 go.mod); aws_ver=${aws_ver#v}
tls_ver=$(modver github.com/pulumi/pulumi-tls/sdk/v5 go.mod); tls_ver=${tls_ver#v}
for p in aws:$aws_ver tls:$tls_ver; do
  name=${p%%:*} ver=${p#*:}
  dir=$plugins/resource-$name-v$ver
  if [ -x "$dir/pulumi-resource-$name" ] && [ "$(cat "$dir/.agentkeys-standin" 2>/dev/null)" = "$standin_hash" ]; then
    echo "engine: stand-in plugin $name $ver present"
    continue
  fi
  t0=$(date +%s)
  out=$(mktemp -d)
  CGO_ENABLED=0 go build -trimpath -o "$out/pulumi-resource-$name" "./test/providers/$name/cmd/pulumi-resource-$name"
  install_plugin "$name" "$ver" "$out/pulumi-resource-$name"
  echo "$standin_hash" > "$dir/.agentkeys-standin"
  rm -rf "$out"
  echo "engine: built stand-in plugin $name $ver in $(( $(date +%s) - t0 ))s"
done
