#!/usr/bin/env bash
# Scanner throughput: `keyward scan DIR` against ripgrep with the published
# key regex on the same ~1 GB text corpus, page cache warm, timed together by
# hyperfine. Prints and writes bench/scan/results.md.
#
#   bash bench/scan/run.sh
#
#   CORPUS_MB  corpus size in MB (default 1000)
#   RUNS       timed runs per command (default 10)
#   OUT        where to write the results (default bench/scan/results.md)
#
# The corpus is generated once, by gen_corpus.py, under target/bench-data/
# (never committed) and reused. Before timing, the script checks that
# keyward reports exactly the planted keys (file, line and hash) and that
# both tools search the same files and bytes; it stops if not.
#
# Fairness: both tools get the same directory, search every file in it
# (ripgrep with --no-ignore --hidden, as keyward ignores no ignore files),
# use one thread per core, and write to a pipe (hyperfine --output=pipe, so
# neither can notice /dev/null and stop early). ripgrep only matches the
# regex; keyward also checks each candidate's boundaries and checksum and
# numbers the lines of the keys it reports. Two ripgrep runs are timed:
# `rg -c` (counts matching lines, the least work ripgrep can do for this
# search; the ratio is taken against it) and `rg -n` (prints each matching
# line with its number, closer to what keyward prints).
set -euo pipefail
cd "$(dirname "$0")/../.."

corpus_mb="${CORPUS_MB:-1000}"
runs="${RUNS:-10}"
out="${OUT:-bench/scan/results.md}"
data="target/bench-data/scan-corpus-${corpus_mb}mb"
planted="$data.planted.tsv"
cores=$(nproc)

# The regex Keyward publishes for other scanners (docs/key-format.md).
pattern=$(sed -n 's/^pub const PATTERN: &str = r"\(.*\)";$/\1/p' crates/keyward-core/src/key.rs)
[ -n "$pattern" ] || { echo "error: cannot read key::PATTERN from crates/keyward-core/src/key.rs" >&2; exit 1; }

install() { # command, Debian package
  command -v "$1" >/dev/null && return
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y "$2" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
}
install rg ripgrep
install hyperfine hyperfine

if [ ! -d "$data" ] || [ ! -f "$planted" ]; then
  echo "Generating a ${corpus_mb} MB corpus in $data (once; reused afterwards)" >&2
  rm -rf "$data" "$data.tmp" "$planted"
  mkdir -p "$data.tmp"
  python3 bench/scan/gen_corpus.py "$data.tmp" "$corpus_mb" > "$planted.tmp"
  mv "$data.tmp" "$data"
  mv "$planted.tmp" "$planted"
fi
files=$(find "$data" -type f | wc -l)
bytes=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if [ $((available_kb * 1024)) -lt $((bytes * 3 / 2)) ]; then
  echo "warning: $((available_kb / 1024)) MB of memory available for a $((bytes / 1000000)) MB corpus:" \
    "the page cache may not hold it, and the figures would measure the disk" >&2
fi

# The in-process chat model (feature local-model, llama.cpp) plays no part
# in scanning and takes long to build, so it is left out.
echo "Building keyward (release; the first build takes minutes)" >&2
cargo build --release -p keyward-server --no-default-features
keyward="${CARGO_TARGET_DIR:-target}/release/keyward"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "Warming the page cache" >&2
find "$data" -type f -exec cat {} + > /dev/null

# The figures mean something only if keyward finds exactly the planted keys
# and both tools read the same input.
echo "Checking what both tools find" >&2
status=0
"$keyward" scan --json "$data" > "$tmp/found.json" 2> "$tmp/scan.err" || status=$?
if [ "$status" != 1 ]; then
  cat "$tmp/scan.err" >&2
  echo "error: keyward scan exited $status; 1 (keys found) was expected" >&2
  exit 1
fi
python3 - "$tmp/found.json" "$planted" "$data" <<'PY'
import json, os, sys
found_path, planted_path, data = sys.argv[1:]
found = {(os.path.relpath(f["file"], data), f["line"], f["token_hash"])
         for f in json.load(open(found_path))}
planted = set()
for row in open(planted_path):
    if not row.startswith("#"):
        rel, line, sha = row.rstrip("\n").split("\t")
        planted.add((rel, int(line), sha))
if found != planted:
    print(f"error: keyward scan reported {len(found)} keys, {len(planted)} were planted;",
          f"{len(found - planted)} reported but not planted, {len(planted - found)} missed",
          file=sys.stderr)
    sys.exit(1)
PY
keyward_files=$(sed -n 's/^Searched \([0-9]*\) files.*/\1/p' "$tmp/scan.err")

rg_flags="--no-ignore --hidden --threads $cores"
# shellcheck disable=SC2086 # rg_flags is a list of flags
rg $rg_flags --stats -c "$pattern" "$data" > "$tmp/rg.out"
rg_lines=$(sed -n 's/^\([0-9]*\) matched lines$/\1/p' "$tmp/rg.out")
rg_files=$(sed -n 's/^\([0-9]*\) files searched$/\1/p' "$tmp/rg.out")
rg_bytes=$(sed -n 's/^\([0-9]*\) bytes searched$/\1/p' "$tmp/rg.out")
regex_lines=$(awk -F'\t' '$1 == "# regex-lines" {print $2}' "$planted")
lookalikes=$(awk -F'\t' '$1 == "# lookalikes" {print $2}' "$planted")
keys=$(grep -vc '^#' "$planted")
if [ "$keyward_files" != "$files" ] || [ "$rg_files" != "$files" ] || [ "$rg_bytes" != "$bytes" ] \
  || [ "$rg_lines" != "$regex_lines" ]; then
  echo "error: the corpus has $files files, $bytes bytes and $regex_lines lines matching the regex;" \
    "keyward searched $keyward_files files, ripgrep $rg_files files, $rg_bytes bytes and matched $rg_lines lines" >&2
  exit 1
fi
echo "OK: keyward reports exactly the $keys planted keys; ripgrep matches the $regex_lines lines expected; both search $files files, $bytes bytes" >&2

load=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine --warmup 2 --runs "$runs" --output=pipe -i --export-json "$tmp/times.json" \
  -n "keyward scan" "$keyward scan $data" \
  -n "rg -c" "rg $rg_flags -c '$pattern' $data" \
  -n "rg -n" "rg $rg_flags -n '$pattern' $data"

python3 - "$tmp/times.json" "$bytes" "$files" "$keys" "$lookalikes" "$regex_lines" \
  "$data" "$pattern" "$keyward" "$rg_flags" "$load" > "$out" <<'PY'
import datetime, json, statistics, subprocess, sys
(path, size, files, keys, lookalikes, regex_lines, data, pattern, keyward,
 rg_flags, load) = sys.argv[1:]
size = int(size)
res = {r["command"]: r for r in json.load(open(path))["results"]}

def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
mem = sh("free -g | awk '/^Mem:/ {print $2}'")
mbs = lambda secs: size / 1e6 / secs
kw, rg = res["keyward scan"], res["rg -c"]
ratio_mean = mbs(kw["mean"]) / mbs(rg["mean"])
ratio_best = mbs(kw["min"]) / mbs(rg["min"])
commands = {
    "keyward scan": f"{keyward} scan {data}",
    "rg -c": f"rg {rg_flags} -c '{pattern}' {data}",
    "rg -n": f"rg {rg_flags} -n '{pattern}' {data}",
}
rows = "\n".join(
    f"| `{commands[name]}` | {r['mean']:.3f} ± {r['stddev']:.3f} s | {r['min']:.3f} s "
    f"| {statistics.median(r['times']):.3f} s | {r['user'] + r['system']:.3f} s "
    f"| **{mbs(r['mean']):,.0f}** | {mbs(r['min']):,.0f} |"
    for name, r in res.items()
)
print(f"""# Key scanner throughput

`bash bench/scan/run.sh`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.

- Machine: {sh('nproc')} cores ({cpu}), {mem} GiB memory, {sh('uname -sr')};
  load average {load} when timing started (the machine may be shared).
- Tools: {sh('rg --version | head -1')}, {sh('hyperfine --version')},
  keyward release build (`cargo build --release -p keyward-server --no-default-features`).
- Corpus: `{data}`, {size / 1e6:,.0f} MB ({size:,} bytes) of source-like text in
  {files} files (`bench/scan/gen_corpus.py`), page cache warm: {keys} real keys and
  {int(lookalikes):,} lookalikes, on {int(regex_lines):,} lines the regex matches.
  keyward reports exactly the {keys} keys (file, line, hash: checked first);
  both tools search the same {files} files and bytes.
- hyperfine `--warmup 2 --runs {len(kw['times'])} --output=pipe -i` (keyward exits 1: keys found),
  both tools on all {sh('nproc')} cores.

| command | mean | best | median | CPU (user + sys) per run | MB/s (mean) | MB/s (best) |
|---|---|---|---|---|---|---|
{rows}

keyward scan / `rg -c` throughput: **{ratio_mean:.2f}** by mean time, {ratio_best:.2f} by best
time (target: at least 0.5).

ripgrep only matches the regex; keyward also checks every candidate's
boundaries and checksum and numbers the lines of the keys it reports.""")
PY
cat "$out"
