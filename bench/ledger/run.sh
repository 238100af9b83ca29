#!/usr/bin/env bash
# The usage ledger under the gateway's peak load (issue 19), on SQLite and
# on PostgreSQL, in one run on one machine:
#
#   1. the writer alone: rows per second it sustains (cargo bench
#      -p keyward-gateway --bench ledger_writer), to compare with
#   2. the gateway's throughput over SUSTAIN seconds (wrk -t1 -c32 against
#      Keyward in front of nginx answering a fixed completion), with the
#      ledger's queue depth and Keyward's RSS sampled every second (a
#      throughput counts only if the queue stayed bounded), and every
#      answered call checked to be in the ledger afterwards;
#   3. what the crash spool costs on the request path: SPOOL_ROUNDS rounds,
#      each SPOOL_SECONDS of the same load with the spool on, then off
#      (`ledger.spool = false`), alternating so that the machine's drift
#      falls on both; the median of the rounds' on/off ratios;
#   4. a crash: `kill -9` after CRASH_AFTER seconds of the same load, then a
#      restart on the same data (which stores what the spool held), then
#      answered calls (wrk's count) against stored rows, the difference in
#      milliseconds of traffic; the rows stored before the restart show
#      what the database alone had.
#
#   bash bench/ledger/run.sh
#
# Environment (all optional):
#   KEYWARD_BIN    a built `keyward` (default: builds target/release/keyward
#                  without the in-process model)
#   SUSTAIN        seconds of the sustained run (default 60)
#   CRASH_AFTER    seconds of load before the kill (default 5)
#   CONNECTIONS    wrk connections (default 32)
#   SPOOL_ROUNDS   rounds of the spool's on/off comparison (default 3)
#   SPOOL_SECONDS  seconds of each half of a round (default 15)
#   PG_URL         a PostgreSQL server to create databases in
#                  (default postgres://postgres@127.0.0.1:5432/test; set
#                  PG_URL=none to measure SQLite only)
#   OUT            the results table (default target/bench-ledger/results.md)
# Installs what is missing: nginx-light and wrk (apt).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

SUSTAIN="${SUSTAIN:-60}"
CRASH_AFTER="${CRASH_AFTER:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
SPOOL_ROUNDS="${SPOOL_ROUNDS:-3}"
SPOOL_SECONDS="${SPOOL_SECONDS:-15}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench-ledger"
OUT="${OUT:-$work/results.md}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v curl >/dev/null || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ -z "${KEYWARD_BIN:-}" ]; then
  log "building keyward (release, without the in-process model)"
  cargo build --release --quiet -p keyward-server --no-default-features
  KEYWARD_BIN="$target/release/keyward"
fi
[ -x "$KEYWARD_BIN" ] || die "no keyward binary at $KEYWARD_BIN"

mkdir -p "$work"
tmp="$(mktemp -d "$work/run.XXXXXX")"
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# nginx answers a fixed chat completion (the gateway benchmark's).
nginx_port="$(free_port)"
mkdir -p "$tmp/nginx"
sed -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@PORT@|$nginx_port|g" bench/gateway/nginx.conf.in >"$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
pids+=($!)
upstream="http://127.0.0.1:$nginx_port/v1"
wait_http "$upstream/models" || die "nginx did not start"

# Starts Keyward on store $1 (sqlite | postgres) in a fresh data dir (and
# database), with extra environment $2…; sets kw, kw_pid, kw_key, kw_db (a
# command printing the ledger's row count), kw_env and kw_args.
start_keyward() {
  local store="$1" data admin project
  shift
  data="$(mktemp -d "$tmp/keyward.XXXXXX")"
  cat >"$data/keyward.toml" <<EOF
[[upstreams]]
name = "nginx"
base_url = "$upstream"
api_key = "sk-upstream-bench"
timeout = "30s"

[[models]]
id = "bench-model"
upstream = "nginx"
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0
EOF
  local env=(env -u KEYWARD_DATABASE_URL KEYWARD_LOCAL_MODEL__ENABLED=false "$@")
  if [ "$store" = postgres ]; then
    local name="kw_bench_ledger_$RANDOM$RANDOM"
    psql -q "$PG_URL" -c "CREATE DATABASE $name" >/dev/null
    dbs+=("$name")
    local url="${PG_URL%/*}/$name"
    env+=(KEYWARD_DATABASE_URL="$url")
    kw_db=(psql -qtA "$url" -c "SELECT COUNT(*) FROM usage_ledger")
  else
    kw_db=(sqlite3 "$data/keyward.db" "SELECT COUNT(*) FROM usage_ledger")
  fi
  kw_args=(--data-dir "$data" --config "$data/keyward.toml")
  kw_env=("${env[@]}")
  admin="$(echo "bench password 1234" | "${env[@]}" "$KEYWARD_BIN" admin create \
    --email bench@example.com --password-stdin "${kw_args[@]}" 2>/dev/null)"
  serve_keyward
  api() {
    curl -fsS -X "$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
      ${3:+--data "$3"} "$kw$2"
  }
  project="$(api GET /v1/organization/projects | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')"
  local limits='"rate_limits":{"requests_per_minute":1000000000,"tokens_per_minute":1000000000,"max_concurrent_requests":100000},"monthly_budget_usd":1000000'
  api POST "/v1/organization/projects/$project" "{$limits}" >/dev/null
  kw_key="$(api POST "/v1/organization/projects/$project/api_keys" "{\"name\":\"bench\",$limits}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')"
}

# Starts (or starts again) the Keyward that start_keyward set up.
serve_keyward() {
  local port
  port="$(free_port)"
  "${kw_env[@]}" "$KEYWARD_BIN" serve "${kw_args[@]}" --listen "127.0.0.1:$port" 2>>"${kw_args[1]}/keyward.log" &
  kw_pid=$!
  pids+=($kw_pid)
  kw="http://127.0.0.1:$port"
  wait_http "$kw/healthz" || die "keyward did not start: $(tail -20 "${kw_args[1]}/keyward.log")"
}

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
depth() { curl -fsS "$kw/readyz" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["ledger_queue_depth"])' 2>/dev/null || echo "?"; }
load() { # seconds -> prints wrk's RESULT line
  BENCH_KEY="$kw_key" wrk -t1 -c"$CONNECTIONS" -d"${1}s" -s bench/gateway/chat.lua "$kw/v1/chat/completions" \
    | grep '^RESULT'
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

stores=(sqlite)
[ "$PG_URL" != none ] && stores+=(postgres)
rows=()
for store in "${stores[@]}"; do
  # 1. The writer alone.
  if [ "$store" = postgres ]; then
    writer="$(KEYWARD_TEST_DATABASE_URL="$PG_URL" cargo bench -q -p keyward-gateway --bench ledger_writer 2>/dev/null | grep 'rows/s')"
  else
    writer="$(env -u KEYWARD_TEST_DATABASE_URL cargo bench -q -p keyward-gateway --bench ledger_writer 2>/dev/null | grep 'rows/s')"
  fi
  writer_rps="$(sed -n 's/.*= \([0-9]*\) rows\/s.*/\1/p' <<<"$writer")"
  log "$store writer: $writer"

  # 2. Sustained load, queue depth and RSS sampled each second.
  start_keyward "$store"
  rss0="$(rss_mb "$kw_pid")"
  (for _ in $(seq 1 "$SUSTAIN"); do sleep 1; echo "$(depth) $(rss_mb "$kw_pid")"; done) >"$tmp/samples" &
  sampler=$!
  result="$(load "$SUSTAIN")"
  wait "$sampler" || true
  gw_rps="$(field rps "$result")"
  answered="$(field requests "$result")"
  max_depth="$(awk '$1 != "?" && $1 > m {m = $1} END {print m + 0}' "$tmp/samples")"
  last_depth="$(tail -n1 "$tmp/samples" | awk '{print $1}')"
  max_rss="$(awk '$2 > m {m = $2} END {print m + 0}' "$tmp/samples")"
  for _ in $(seq 1 50); do [ "$(depth)" = 0 ] && break; sleep 0.2; done
  stored="$("${kw_db[@]}")"
  log "$store sustained: $result; queue max $max_depth, last $last_depth; RSS $rss0 -> $max_rss MB; stored $stored of $answered"
  kill "$kw_pid"; wait "$kw_pid" 2>/dev/null || true

  # 3. The spool on, then off, alternating.
  ratios=()
  offs=()
  for round in $(seq 1 "$SPOOL_ROUNDS"); do
    start_keyward "$store"
    on="$(field rps "$(load "$SPOOL_SECONDS")")"
    kill "$kw_pid"; wait "$kw_pid" 2>/dev/null || true
    start_keyward "$store" KEYWARD_LEDGER__SPOOL=false
    off="$(field rps "$(load "$SPOOL_SECONDS")")"
    kill "$kw_pid"; wait "$kw_pid" 2>/dev/null || true
    ratios+=("$(python3 -c "print(f'{$on / $off:.3f}')")")
    offs+=("$off")
    log "$store spool round $round: on $on req/s, off $off req/s"
  done
  spool_ratio="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  unspooled_rps="$(printf '%s\n' "${offs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"

  # 4. kill -9 under the same load, then a restart that stores the spool.
  start_keyward "$store"
  load $((CRASH_AFTER + 3)) >"$tmp/crash-result" &
  wrk_pid=$!
  sleep "$CRASH_AFTER"
  kill -9 "$kw_pid"
  wait "$kw_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  crash="$(cat "$tmp/crash-result")"
  crash_answered="$(field requests "$crash")"
  db_alone="$("${kw_db[@]}")"
  serve_keyward
  crash_stored="$("${kw_db[@]}")"
  kill "$kw_pid"; wait "$kw_pid" 2>/dev/null || true
  lost=$((crash_answered - crash_stored))
  # wrk's rate is over its whole run; the calls were answered in CRASH_AFTER s.
  lost_ms="$(python3 -c "print(f'{max($lost, 0) / ($crash_answered / $CRASH_AFTER) * 1000:.1f}')")"
  log "$store crash: answered $crash_answered, in the database at the kill $db_alone, stored after the restart $crash_stored, lost $lost = $lost_ms ms of traffic"

  rows+=("| $store | $writer_rps | $gw_rps | $(python3 -c "print(f'{$writer_rps / $gw_rps:.2f}')") | $unspooled_rps | $spool_ratio (${ratios[*]}) | $max_depth | $last_depth | $rss0 → $max_rss | $answered / $stored | $crash_answered / $db_alone / $crash_stored | $lost ($lost_ms ms) |")
done

{
  echo "Ledger under load, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), commit $(git rev-parse --short HEAD)"
  echo "\`SUSTAIN=$SUSTAIN CRASH_AFTER=$CRASH_AFTER CONNECTIONS=$CONNECTIONS bash bench/ledger/run.sh\`"
  echo
  echo "| store | writer rows/s | gateway req/s (${SUSTAIN} s) | writer / gateway | without spool req/s (median) | spool on / off (median; each round) | queue max | queue at end | RSS MB | answered / stored | crash: answered / in db at kill / stored after restart | lost to kill -9 |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT"
