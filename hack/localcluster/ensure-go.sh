#!/usr/bin/env bash
# Make sure a Go toolchain is on PATH. Debian's golang-go is older than Kubernetes
# needs, so GOTOOLCHAIN=auto then fetches the release go.mod asks for from the Go
# module proxy on first use.
set -euo pipefail
if command -v go >/dev/null 2>&1; then exit 0; fi
echo "==> no Go toolchain found: installing Debian's golang-go (GOTOOLCHAIN=auto upgrades it)"
if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
else sudo apt-get update -qq && sudo apt-get install -y -qq golang-go >/dev/null; fi
