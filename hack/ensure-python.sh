#!/usr/bin/env bash
# Create the project's virtualenv, installing Debian's venv support first if the
# interpreter lacks it (a fresh Debian/Ubuntu machine ships python3 without ensurepip).
set -euo pipefail
python=${1:-python3}; venv=${2:-.venv}
if ! command -v "$python" >/dev/null; then
  echo "==> $python not found: installing python3 from Debian's packages"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
"$python" - <<'PY' || { echo "error: Python >= 3.11 is required, found $("$python" --version)" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating the virtualenv $venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    echo "==> installing python3-venv from Debian's packages"
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$venv"
  fi
fi
