#!/usr/bin/env bash
# End-to-end tests of the gateway with the official OpenAI Python SDK
# against a real `keyward serve` (see tests/python/conftest.py).
#
#   tests/python/run.sh [PYTEST ARGS…]
#
# Creates a virtualenv in target/pyvenv if missing, installs
# tests/python/requirements.txt into it, builds the binary (unless
# KEYWARD_BIN names one) and runs pytest on tests/python. Runs on SQLite;
# with KEYWARD_TEST_DATABASE_URL=postgres://… every Keyward instance gets a
# fresh PostgreSQL database created there (and dropped afterwards).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/pyvenv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

if [ -z "${KEYWARD_BIN:-}" ]; then
  cargo build --bin keyward
  export KEYWARD_BIN="$target/debug/keyward"
fi

export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest tests/python -o cache_dir="$target/pytest-cache" "$@"
