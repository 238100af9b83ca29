#!/usr/bin/env bash
# The Node SDK tests (node --test), against a Keyward someone else started:
#   KEYWARD_URL=http://127.0.0.1:PORT/v1 KEYWARD_KEY=sk-kw-… KEYWARD_MODEL=… tests/node/run.sh
# Installs the pinned packages (npm ci) when node_modules is missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
exec node --test "$@"
