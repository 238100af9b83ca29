#!/usr/bin/env bash
# Browser end-to-end tests of the dashboard: headless Chromium (Debian's
# /usr/bin/chromium, driven by Playwright for Python) against the real
# `keyward` binary.
#
#   tests/browser/run.sh [PYTEST ARGS…]
#
# Builds nothing: the binary is $KEYWARD_BIN (default target/debug/keyward).
# Starts the fake upstream (tests/python/fake_upstream.py) and `keyward serve` on a free
# port with a fresh data directory (SQLite, or a fresh PostgreSQL database
# when KEYWARD_TEST_DATABASE_URL is set), the in-process model off, then
# runs pytest on tests/browser. Screenshots of every page go to
# target/browser-screenshots/ (a CI artifact, never committed).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

target="${CARGO_TARGET_DIR:-$root/target}"
bin="${KEYWARD_BIN:-$target/debug/keyward}"
if [ ! -x "$bin" ]; then
  echo "error: no keyward binary at $bin; build it first (cargo build --bin keyward) or set KEYWARD_BIN" >&2
  exit 2
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "error: /usr/bin/chromium is missing; install Debian's chromium package (apt-get install chromium)" >&2
  exit 2
fi

venv="$target/browservenv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/browser/requirements.txt

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  if declare -F drop_db >/dev/null; then drop_db; fi
}
trap cleanup EXIT

# The SDK tests' fake upstream (a stand-in for a remote provider) writes
# its port to the file it is given.
"$venv/bin/python" tests/python/fake_upstream.py "$work/upstream.port" 2> "$work/upstream.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$work/upstream.port" ] && break; sleep 0.1; done
upstream_port="$(head -n1 "$work/upstream.port")"

cat > "$work/keyward.toml" <<TOML
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$upstream_port/v1"
api_key = "sk-upstream-browser-tests"

[[models]]
id = "gpt-4o-mini"
upstream = "fake"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[[models]]
id = "gpt-4o"
upstream = "fake"
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0
TOML

# With KEYWARD_TEST_DATABASE_URL=postgres://…/db, a fresh database is
# created there for this run and dropped afterwards; else SQLite.
db_env=(-u KEYWARD_DATABASE_URL)
if [ -n "${KEYWARD_TEST_DATABASE_URL:-}" ]; then
  db_name="kw_browser_$(date +%s)_$$"
  "$venv/bin/python" - "$KEYWARD_TEST_DATABASE_URL" "CREATE DATABASE $db_name" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PY
  drop_db() {
    "$venv/bin/python" - "$KEYWARD_TEST_DATABASE_URL" "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" <<'PY' || true
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PY
  }
  db_env=(KEYWARD_DATABASE_URL="${KEYWARD_TEST_DATABASE_URL%/*}/$db_name")
fi

env "${db_env[@]}" KEYWARD_LOCAL_MODEL__ENABLED=false RUST_LOG=info \
  "$bin" serve --listen 127.0.0.1:0 --config "$work/keyward.toml" --data-dir "$work/data" \
  2> "$work/keyward.log" &
pids+=($!)
base=""
for _ in $(seq 1 300); do
  base="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/keyward.log" | head -n1)"
  [ -n "$base" ] && break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "error: keyward did not start; its log:" >&2
  cat "$work/keyward.log" >&2
  exit 1
fi

export KEYWARD_URL="$base"
export KEYWARD_SCREENSHOTS="$target/browser-screenshots"
mkdir -p "$KEYWARD_SCREENSHOTS"
export PYTHONDONTWRITEBYTECODE=1
status=0
"$venv/bin/python" -m pytest tests/browser -o cache_dir="$target/pytest-cache" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "== keyward log ==" >&2
  tail -n 50 "$work/keyward.log" >&2
fi
exit "$status"
