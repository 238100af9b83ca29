#!/usr/bin/env bash
# Gateway under load (issue 3): the same small chat request, driven by wrk,
# sent directly to nginx (a fixed chat completion), through nginx itself as
# an auth proxy (a `map` on the bearer key, kept-alive upstream), through a
# bare axum + reqwest proxy (crates/keyward-gateway/examples/bare_proxy.rs),
# through Keyward (key check, rate limits, budget and ledger all on) and
# through LiteLLM's proxy (master-key mode, one worker), in one run on one
# machine.
#
#   bash bench/gateway/run.sh
#
# Environment (all optional):
#   KEYWARD_BIN      a built `keyward` (default: builds target/release/keyward
#                    without the in-process model, which the bench does not use)
#   DURATION         seconds measured per run (default 20)
#   ROUNDS           rounds over all targets (default 3); the report gives
#                    medians, and ratios taken within each round
#   WARMUP           seconds of warm-up per target (default 5)
#   CONNECTIONS      connections of the throughput run (default 32)
#   SKIP_LITELLM=1   leave LiteLLM out
#   SERVER_CPUS      CPUs for nginx and the proxy under test (default: all)
#   CLIENT_CPUS      CPUs for wrk (default: all)
#   OUT              where the results table is written
#                    (default target/bench-gateway/results.md)
#   PERF_DATA        a file: record a perf profile of Keyward during its
#                    throughput run there (needs `perf`, Debian's linux-perf)
#   BENCH_NEW_TEXT=1 every request's message is new (numbered), so a proxy
#                    cannot reuse an earlier request's prompt token count
#
# By default nothing is pinned: wrk, nginx and the proxy share every CPU, as
# in the reference points of ARCHITECTURE.md (SERVER_CPUS=0 CLIENT_CPUS=1
# gives the servers one core and wrk the other). Installs what is missing: nginx-light and wrk (apt), LiteLLM's
# proxy into a virtualenv in target/litellm-venv (pip).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/gateway"
cd "$root"

DURATION="${DURATION:-20}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench-gateway"
OUT="${OUT:-$work/results.md}"
ncpu="$(nproc)"
SERVER_CPUS="${SERVER_CPUS:-0-$((ncpu - 1))}"
CLIENT_CPUS="${CLIENT_CPUS:-0-$((ncpu - 1))}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

venv="$target/litellm-venv"
if [ -z "${SKIP_LITELLM:-}" ] && [ ! -x "$venv/bin/litellm" ]; then
  log "installing litellm[proxy] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]'
fi

if [ -z "${KEYWARD_BIN:-}" ]; then
  log "building keyward (release, without the in-process model)"
  cargo build --release --quiet -p keyward-server --no-default-features
  KEYWARD_BIN="$target/release/keyward"
fi
[ -x "$KEYWARD_BIN" ] || die "no keyward binary at $KEYWARD_BIN"
log "building the bare reference proxy (release)"
cargo build --release --quiet -p keyward-gateway --example bare_proxy
BARE_BIN="$target/release/examples/bare_proxy"

# ---------------------------------------------------------------- setup
mkdir -p "$work"
tmp="$(mktemp -d "$work/run.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url [header]
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null ${2:+-H "$2"} "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# Background servers are started through an array, not a function, so
# that $! is the server's own pid (taskset and env exec it).
pin_server=(taskset -c "$SERVER_CPUS")

# nginx, the upstream
nginx_port="$(free_port)"
mkdir -p "$tmp/nginx"
sed -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@PORT@|$nginx_port|g" "$here/nginx.conf.in" >"$tmp/nginx/nginx.conf"
"${pin_server[@]}" "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
nginx_pid=$!
pids+=($nginx_pid)
upstream="http://127.0.0.1:$nginx_port/v1"
wait_http "$upstream/models" || die "nginx did not start (see $tmp/nginx/error.log)"
log "nginx on $upstream"

# nginx as an auth proxy, the other reference.
auth_port="$(free_port)"
auth_key="sk-bench-nginx-reference"
mkdir -p "$tmp/nginx-auth"
sed -e "s|@PREFIX@|$tmp/nginx-auth|g" -e "s|@PORT@|$auth_port|g" -e "s|@UPSTREAM_PORT@|$nginx_port|g" \
  -e "s|@KEY@|$auth_key|g" "$here/nginx-auth-proxy.conf.in" >"$tmp/nginx-auth/nginx.conf"
"${pin_server[@]}" "$NGINX" -p "$tmp/nginx-auth" -c "$tmp/nginx-auth/nginx.conf" -e "$tmp/nginx-auth/error.log" &
auth_pid=$!
pids+=($auth_pid)
auth="http://127.0.0.1:$auth_port"

# The bare reference proxy.
bare_port="$(free_port)"
bare_key="sk-bench-bare-reference"
"${pin_server[@]}" "$BARE_BIN" "127.0.0.1:$bare_port" "$upstream" "$bare_key" &
bare_pid=$!
pids+=($bare_pid)
bare="http://127.0.0.1:$bare_port"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$bare_port") 2>/dev/null && break; sleep 0.1; done

# Keyward: a temp data dir, nginx as its upstream, one priced model, and a
# key whose limits (and its project's) are far above the load, so every
# request runs the limit and budget code without being refused.
kw_port="$(free_port)"
kw_data="$tmp/keyward"
mkdir -p "$kw_data"
cat >"$kw_data/keyward.toml" <<EOF
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
kw_env=(env -u KEYWARD_DATABASE_URL KEYWARD_LOCAL_MODEL__ENABLED=false)
kw_args=(--data-dir "$kw_data" --config "$kw_data/keyward.toml")
admin_key="$(echo "bench password 1234" | "${kw_env[@]}" "$KEYWARD_BIN" admin create \
  --email bench@example.com --password-stdin "${kw_args[@]}" 2>/dev/null)"
"${pin_server[@]}" "${kw_env[@]}" "$KEYWARD_BIN" serve "${kw_args[@]}" --listen "127.0.0.1:$kw_port" \
  2>"$tmp/keyward.log" &
kw_pid=$!
pids+=($kw_pid)
kw="http://127.0.0.1:$kw_port"
wait_http "$kw/healthz" || die "keyward did not start: $(tail -20 "$tmp/keyward.log")"
api() { # method path [json]
  curl -fsS -X "$1" -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$kw$2"
}
project="$(api GET /v1/organization/projects | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')"
limits='"rate_limits":{"requests_per_minute":1000000000,"tokens_per_minute":1000000000,"max_concurrent_requests":100000},"monthly_budget_usd":1000000'
api POST "/v1/organization/projects/$project" "{$limits}" >/dev/null
kw_key="$(api POST "/v1/organization/projects/$project/api_keys" "{\"name\":\"bench\",$limits}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')"
log "keyward on $kw (key with RPM/TPM/concurrency limits and a budget, project likewise)"

# LiteLLM's proxy, one worker, master-key mode, the same upstream.
if [ -z "${SKIP_LITELLM:-}" ]; then
  ll_port="$(free_port)"
  sed -e "s|@UPSTREAM@|$upstream|g" "$here/litellm.yaml.in" >"$tmp/litellm.yaml"
  ll_key="sk-litellm-bench-master-key"
  (cd "$tmp" && exec "${pin_server[@]}" env LITELLM_LOG=ERROR LITELLM_TELEMETRY=False \
    "$venv/bin/litellm" --config "$tmp/litellm.yaml" --host 127.0.0.1 --port "$ll_port" \
    --num_workers 1 >"$tmp/litellm.log" 2>&1) &
  ll_pid=$!
  pids+=($ll_pid)
  ll="http://127.0.0.1:$ll_port"
  wait_http "$ll/health/liveliness" || die "litellm did not start: $(tail -20 "$tmp/litellm.log")"
  log "litellm on $ll"
fi

# ---------------------------------------------------------------- load
# Each target answers one request correctly before it is measured.
check() { # base key
  local body
  body="$(curl -fsS -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    --data '{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}' "$1/v1/chat/completions")" \
    || die "a test request to $1 failed"
  case "$body" in *'"usage"'*) ;; *) die "no usage in the answer of $1: $body" ;; esac
}

run_wrk() { # base key connections seconds [--latency]
  BENCH_KEY="$2" taskset -c "$CLIENT_CPUS" wrk -t1 -c"$3" -d"$4s" --timeout 10s \
    -s "$here/chat.lua" "$1/v1/chat/completions" | grep '^RESULT'
}

# CPU time (clock ticks) used so far by a process and its descendants.
tree_ticks() { # pid
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    if [ "$p" = "$1" ]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    else
      total=$((total + $(tree_ticks "$p")))
    fi
  done
  echo "$total"
}
hz="$(getconf CLK_TCK)"

field() { # result-line name
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

declare -A R
targets=(nginx nginx_auth bare keyward)
[ -z "${SKIP_LITELLM:-}" ] && targets+=(litellm)
target_of() { # name: sets base, key, proxy_pid
  case "$1" in
    nginx) base="http://127.0.0.1:$nginx_port"; key=none; proxy_pid="" ;;
    nginx_auth) base="$auth"; key="$auth_key"; proxy_pid="$auth_pid" ;;
    bare) base="$bare"; key="$bare_key"; proxy_pid="$bare_pid" ;;
    keyward) base="$kw"; key="$kw_key"; proxy_pid="$kw_pid" ;;
    litellm) base="$ll"; key="$ll_key"; proxy_pid="$ll_pid" ;;
  esac
}

for t in "${targets[@]}"; do
  target_of "$t"
  check "$base" "$key"
  log "$t: warm-up ${WARMUP}s"
  R[$t.warm]="$(run_wrk "$base" "$key" "$CONNECTIONS" "$WARMUP")"
done

# Each round measures every target once, one after the other, so that a
# target and the reference it is compared with are measured minutes apart
# at most; ratios are taken within a round, and the report gives their
# median. A shared VM's speed drifts over a run.
for round in $(seq 1 "$ROUNDS"); do
  for t in "${targets[@]}"; do
    target_of "$t"
    log "round $round, $t: ${CONNECTIONS} connections, ${DURATION}s"
    perf_pid=""
    if [ "$t" = keyward ] && [ "$round" = 1 ] && [ -n "${PERF_DATA:-}" ]; then
      # Where Keyward's time goes under load: `perf report -i $PERF_DATA`.
      perf record -q -F 1999 -g -p "$kw_pid" -o "$PERF_DATA" -- sleep "$DURATION" 2>/dev/null &
      perf_pid=$!
    fi
    nginx_before="$(tree_ticks "$nginx_pid")"
    proxy_before="$([ -n "$proxy_pid" ] && tree_ticks "$proxy_pid" || echo 0)"
    c32="$(run_wrk "$base" "$key" "$CONNECTIONS" "$DURATION")"
    # CPU time per request on the server side, which a busy machine
    # disturbs far less than requests/s: the proxy's own, and nginx's.
    requests="$(field "$c32" requests)"
    nginx_cpu="$(( ($(tree_ticks "$nginx_pid") - nginx_before) * 1000000 / hz / requests ))"
    proxy_cpu="$([ -n "$proxy_pid" ] && echo $(( ($(tree_ticks "$proxy_pid") - proxy_before) * 1000000 / hz / requests )) || echo 0)"
    c32+=" nginx_cpu_us=$nginx_cpu proxy_cpu_us=$proxy_cpu"
    if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
    log "  $c32"
    log "round $round, $t: 1 connection, ${DURATION}s"
    c1="$(run_wrk "$base" "$key" 1 "$DURATION")"
    log "  $c1"
    for m in "$c32" "$c1"; do
      [ "$(field "$m" errors)" = 0 ] || die "$t had errors in round $round: $m"
    done
    # Rounds are kept apart by '|'.
    R[$t.c32]+="${R[$t.c32]:+|}$c32"
    R[$t.c1]+="${R[$t.c1]:+|}$c1"
  done
done

# What Keyward recorded: every request wrk saw answered is in the ledger
# (a few more may be: those in flight when wrk stopped). SIGTERM drains it.
kill -TERM "$kw_pid"
wait "$kw_pid" || true
answered=1
while read -r line; do
  answered=$((answered + $(field "$line" requests)))
done < <(printf '%s\n' "${R[keyward.warm]}" "${R[keyward.c32]}" "${R[keyward.c1]}" | tr '|' '\n')
ledger_rows="$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM usage_ledger").fetchone()[0])' "$kw_data/keyward.db")"
log "keyward ledger: $ledger_rows rows for $answered requests answered to wrk and the check"
[ "$ledger_rows" -ge "$answered" ] || die "the ledger is missing requests"

# ---------------------------------------------------------------- report
python3 - "$OUT" "$ncpu" "$SERVER_CPUS" "$CLIENT_CPUS" "$DURATION" "$CONNECTIONS" "$ledger_rows" "$answered" "$ROUNDS" \
  "${R[nginx.c32]}" "${R[nginx.c1]}" "${R[nginx_auth.c32]}" "${R[nginx_auth.c1]}" "${R[bare.c32]}" "${R[bare.c1]}" "${R[keyward.c32]}" "${R[keyward.c1]}" \
  "${R[litellm.c32]:-}" "${R[litellm.c1]:-}" <<'PY'
import datetime, os, platform, statistics, sys

out, ncpu, scpu, ccpu, duration, conns, ledger_rows, answered, rounds = sys.argv[1:10]
raw = sys.argv[10:]

def parse(lines):
    """A target's measurement: one dict of fields per round."""
    if not lines:
        return None
    return [
        {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        for line in lines.split("|")
    ]

def median(values):
    return statistics.median(values)

def typical(runs):
    """The median of every field over the rounds."""
    return {k: median([r[k] for r in runs]) for k in runs[0]}

def per_round(f, *measurements):
    """f of the rounds' values, one per round, and their median."""
    values = [f(*rs) for rs in zip(*measurements)]
    return median(values), values

def within(x, y, field="rps"):
    """The median over the rounds of x's field / y's."""
    return per_round(lambda a, b: a[field] / max(b[field], 1), x, y)[0]

def added(x, y):
    """The median over the rounds of x's p50 - y's."""
    return per_round(lambda a, b: a["p50_us"] - b["p50_us"], x, y)[0]

def spread(values, fmt):
    return ", ".join(fmt.format(v) for v in values)

measured = list(map(parse, raw))
N32, N1, A32, A1, B32, B1, K32, K1, L32, L1 = measured
n32, n1, a32, a1, b32, b1, k32, k1 = map(typical, measured[:8])
l32, l1 = (typical(L32), typical(L1)) if L32 else (None, None)
load = open("/proc/loadavg").read().split()[:3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = [
    ("direct to nginx", n32, n1),
    ("through nginx as an auth proxy (reference)", a32, a1),
    ("through the bare axum + reqwest proxy (reference)", b32, b1),
    ("through Keyward", k32, k1),
]
if l32:
    rows.append(("through LiteLLM proxy", l32, l1))
lines = [
    f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {ncpu} CPUs ({cpu}), "
    f"servers on CPU {scpu}, wrk on CPU {ccpu}; {rounds} rounds of {duration} s per measurement "
    f"(medians over the rounds; ratios taken within each round); "
    f"load average at the end {' '.join(load)}.",
    "",
    f"| target | req/s at {conns} conns | p50 at 1 conn | p99 at 1 conn | req/s at 1 conn "
    f"| CPU per request at {conns} conns: proxy + nginx |",
    "|---|---|---|---|---|---|",
]
for name, a, b in rows:
    cpu = f"{a['nginx_cpu_us']:.0f} µs" if a["proxy_cpu_us"] == 0 else (
        f"{a['proxy_cpu_us']:.0f} + {a['nginx_cpu_us']:.0f} µs"
    )
    lines.append(
        f"| {name} | {a['rps']:,.0f} | {b['p50_us']:.0f} µs | {b['p99_us']:.0f} µs | {b['rps']:,.0f} | {cpu} |"
    )
ratio, ratios = per_round(lambda k, n: k["rps"] / n["rps"], K32, N32)
added_p50, added_p50s = per_round(lambda k, n: k["p50_us"] - n["p50_us"], K1, N1)
added_p99, _ = per_round(lambda k, n: k["p99_us"] - n["p99_us"], K1, N1)
lines += [
    "",
    "| target | measured | goal | |",
    "|---|---|---|---|",
    f"| Keyward throughput / direct nginx | {ratio:.3f} | ≥ 0.30 | {'met' if ratio >= 0.30 else 'missed'} (rounds: {spread(ratios, '{:.3f}')}) |",
    f"| Keyward added p50 latency, 1 conn | {added_p50:.0f} µs | ≤ 150 µs | {'met' if added_p50 <= 150 else 'missed'} (rounds: {spread(added_p50s, '{:.0f}')}) |",
    f"| Keyward added p99 latency, 1 conn | {added_p99:.0f} µs | | |",
    f"| nginx auth proxy throughput / direct nginx | {within(A32, N32):.2f} | | |",
    f"| nginx auth proxy added p50 latency, 1 conn | {added(A1, N1):.0f} µs | | |",
    f"| Keyward throughput / nginx auth proxy | {within(K32, A32):.2f} | | |",
    f"| bare proxy throughput / direct nginx | {within(B32, N32):.2f} | | |",
    f"| bare proxy added p50 latency, 1 conn | {added(B1, N1):.0f} µs | | |",
    f"| Keyward throughput / bare proxy | {within(K32, B32):.2f} | | |",
    f"| Keyward CPU per request / bare proxy's | {within(K32, B32, 'proxy_cpu_us'):.1f}× | | |",
]
if l32:
    x, xs = per_round(lambda k, l: k["rps"] / l["rps"], K32, L32)
    lines.append(
        f"| Keyward throughput / LiteLLM | {x:.0f}× | ≥ 100× | {'met' if x >= 100 else 'missed'} (rounds: {spread(xs, '{:.0f}×')}) |"
    )
    lines.append(
        f"| LiteLLM added p50 latency, 1 conn | {added(L1, N1):.0f} µs | | |"
    )
lines += [
    "",
    f"Keyward's ledger held {int(ledger_rows):,} rows for the {int(answered):,} requests "
    "answered to wrk (a few more can be in flight when wrk stops).",
]
text = "\n".join(lines) + "\n"
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
open(out, "w").write(text)
print(text)
PY
log "results in $OUT"
