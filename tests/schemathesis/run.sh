#!/usr/bin/env bash
# Property-based tests of the management API from its own OpenAPI document
# (/openapi.json) with schemathesis: no request may get a 5xx, and every
# response must match the schema the document gives for it. The document
# is also checked to place each parameter where the API reads it.
#
#   tests/schemathesis/run.sh [SCHEMATHESIS RUN ARGS…]
#
# Builds nothing: the binary is $KEYWARD_BIN (default target/debug/keyward;
# scripts/test builds it). Installs schemathesis (pinned below) into a
# virtualenv in ${XDG_CACHE_HOME:-$HOME/.cache}/keyward/venvs/schemathesis,
# starts `keyward serve` on a free port with a fresh data directory
# (SQLite, or a fresh PostgreSQL database when KEYWARD_TEST_DATABASE_URL is
# set, dropped afterwards), creates an operator and its admin key, and runs
# `schemathesis run` with that key for at most SCHEMATHESIS_MAX_TIME seconds
# (default 90; an outer `timeout` stops it for good 120 s later). Exits
# non-zero on any finding; the server's log is printed then.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

schemathesis_version=4.32.5
psycopg_version=3.3.9
max_time="${SCHEMATHESIS_MAX_TIME:-90}"

target="${CARGO_TARGET_DIR:-$root/target}"
bin="${KEYWARD_BIN:-$target/debug/keyward}"
if [ ! -x "$bin" ]; then
  echo "error: no keyward binary at $bin; build it first (cargo build --bin keyward) or set KEYWARD_BIN" >&2
  exit 2
fi

venv="${XDG_CACHE_HOME:-$HOME/.cache}/keyward/venvs/schemathesis"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "schemathesis==$schemathesis_version" "psycopg[binary]==$psycopg_version"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if declare -F drop_db >/dev/null; then drop_db; fi
  rm -rf "$work"
}
trap cleanup EXIT

# With KEYWARD_TEST_DATABASE_URL=postgres://…/db, a fresh database is
# created there for this run and dropped afterwards; else SQLite.
db_env=(-u KEYWARD_DATABASE_URL)
if [ -n "${KEYWARD_TEST_DATABASE_URL:-}" ]; then
  db_name="kw_schemathesis_$(date +%s)_$$"
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

# GitHub secret scanning on (it answers 503 while unconfigured), with a
# public key whose private half was thrown away: every report is refused
# by signature, after the parsing schemathesis is here to exercise.
cat > "$work/github-keys.json" <<'JSON'
{"public_keys": [{"key_identifier": "schemathesis", "is_current": true,
  "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbk79yIWzedK7uQ/yVmM4Zp/O2NRM\nzTOvtNFUG/GtimwB7Gva3bVjhBVeXwMiYL7bYdiFMfuerdge+Muo0qPR1Q==\n-----END PUBLIC KEY-----\n"}]}
JSON
: > "$work/keyward.toml"
env "${db_env[@]}" KEYWARD_LOCAL_MODEL__ENABLED=false RUST_LOG=info \
  KEYWARD_GITHUB_PUBLIC_KEYS_FILE="$work/github-keys.json" KEYWARD_SECRET_SCANNING__GITHUB_PUBLIC_KEYS_URL= \
  "$bin" serve --listen 127.0.0.1:0 --config "$work/keyward.toml" --data-dir "$work/data" \
  2> "$work/keyward.log" &
server_pid=$!
base=""
for _ in $(seq 1 300); do
  base="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/keyward.log" | head -n1)"
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "error: keyward did not start; its log:" >&2
  cat "$work/keyward.log" >&2
  exit 1
fi

admin_key="$(printf 'correct horse battery staple\n' |
  env -u RUST_LOG "${db_env[@]}" KEYWARD_DATA_DIR="$work/data" \
    "$bin" admin create --email owner@example.com --password-stdin)"
case "$admin_key" in
  sk-kwadmin-*) ;;
  *) echo "error: keyward admin create gave no admin key" >&2; exit 1 ;;
esac

# The document itself: a parameter it places in the path must be in the
# path's template. One that is not (a query parameter documented as `in:
# path`) is a finding; schemathesis then gets a copy with such parameters
# moved to the query, optional, so that it still exercises them.
doc_status=0
"$venv/bin/python" - "$base/openapi.json" "$work/openapi.json" <<'PY' || doc_status=1
import json, re, sys, urllib.request

doc = json.load(urllib.request.urlopen(sys.argv[1], timeout=30))
findings = []
for path, item in doc.get("paths", {}).items():
    in_template = set(re.findall(r"\{([^}]+)\}", path))
    for method, op in item.items():
        if not isinstance(op, dict):
            continue
        for param in op.get("parameters", []):
            if param.get("in") == "path" and param.get("name") not in in_template:
                findings.append(f"{method.upper()} {path}: parameter `{param['name']}` is documented in the path, which has no {{{param['name']}}}")
                param["in"] = "query"
                param["required"] = False
with open(sys.argv[2], "w") as f:
    json.dump(doc, f)
if findings:
    print(f"error: /openapi.json documents {len(findings)} parameters in the wrong place:", file=sys.stderr)
    for line in findings:
        print(f"  {line}", file=sys.stderr)
    sys.exit(1)
PY

# Checks: no 5xx, and responses as the document describes them (schema and
# content type of the statuses it documents). It runs in $work, so that
# its reports and caches (.schemathesis/) never land in the tree. One
# worker: with two, Python 3.11's ast module (which hypothesis uses to
# describe strategies) can fail with "AST constructor recursion depth
# mismatch", a runtime error of the tool, not a finding.
(cd "$work" && exec timeout --kill-after=10 "$((max_time + 120))" \
  "$venv/bin/schemathesis" run "$work/openapi.json" --url "$base" \
  --header "Authorization: Bearer $admin_key" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-time "$max_time" \
  --max-examples 50 \
  --request-timeout 10 \
  --max-response-time 5 \
  --workers 1 \
  --generation-database none \
  --report-dir "$work/report" \
  --no-color \
  "$@") || st_status=$?
if [ "${st_status:-0}" -ne 0 ]; then
  [ "$st_status" -eq 124 ] && echo "error: schemathesis ran past its time bound" >&2
  echo "== keyward log (panics and errors) ==" >&2
  grep -E 'panicked|ERROR' "$work/keyward.log" | tail -n 40 >&2 || true
fi
if [ "$doc_status" -ne 0 ]; then
  echo "error: /openapi.json puts parameters where the API does not read them (listed before schemathesis' run)" >&2
fi
[ "${st_status:-0}" -eq 0 ] && [ "$doc_status" -eq 0 ]
