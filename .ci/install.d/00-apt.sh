#!/usr/bin/env bash
# Refreshes the apt package lists when they are missing or older than a day,
# so the other install scripts can apt-get install on a fresh machine.
set -euo pipefail
command -v apt-get >/dev/null || exit 0
lists=/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
