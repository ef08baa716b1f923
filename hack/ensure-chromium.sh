#!/usr/bin/env bash
# Make sure a headless Chromium is on PATH for the web view test (tests/integration/test_commerce.py
# loads the controller's page in it): Debian's chromium-headless-shell, installed when missing.
set -euo pipefail
if command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; then exit 0; fi
echo "==> no headless Chromium found: installing Debian's chromium-headless-shell"
if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium-headless-shell >/dev/null
else sudo apt-get update -qq && sudo apt-get install -y -qq chromium-headless-shell >/dev/null; fi
