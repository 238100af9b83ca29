#!/usr/bin/env bash
# README's quick start, followed literally: the shell commands of the ```sh
# blocks under "## Quick start" in README.md are read from the README
# (nothing here repeats them), run one after another in one bash, as a new
# user pasting them would, in a fresh copy of the repository, and each
# one's documented result is checked right after it runs.
#
#   tests/readme/quickstart.sh            (./scripts/test runs it)
#
# The copy is the working tree as a clone would have it (tracked files and
# new ones git does not ignore; no keyward-data, no admin.key), made afresh
# in target/readme-quickstart/clone. Its `target` is a link to this tree's
# target directory, so README's `cargo build --release` reuses what is
# already built there (llama.cpp above all) instead of spending 15 to 20 minutes
# on a cold build each run. Everything else the commands make stays in the
# copy. The environment is a newcomer's: no KEYWARD_* variables, no
# CARGO_TARGET_DIR, no RUST_LOG; two departures, both announced when taken:
#   - port 8080 (README's) is used when it is free; when it is taken, a free
#     port is exported as KEYWARD_LISTEN and put in place of 8080 in the
#     commands' URLs, as README says to do;
#   - when the local model's weights are already in the test cache
#     (KEYWARD_TEST_MODEL_PATH, or ~/.cache/keyward/models/, where
#     ./scripts/test fetches them), KEYWARD_MODEL_PATH points at them instead
#     of fetching the same 98 MB into the copy.
# `curl` is wrapped to record each response's headers (its output is
# untouched), so that the checks can read the status. A command this script
# has no check for is a failure: a README change must come with its check.
#
#   QUICKSTART_TIMEOUT   seconds for the whole run (default 3600; a cold
#                        release build takes 15 to 20 minutes on 2 cores)
#   QUICKSTART_README    the markdown to take the commands from (default
#                        README.md; to try this script on a variant)
# Logs: target/readme-quickstart/logs/ (each command's stdout, stderr,
# headers; the server's log is the stderr of `keyward serve &`).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
readme="${QUICKSTART_README:-$root/README.md}"
mkdir -p "${CARGO_TARGET_DIR:-$root/target}"
target="$(cd "${CARGO_TARGET_DIR:-$root/target}" && pwd)"
work="$target/readme-quickstart"
clone="$work/clone"
logs="$work/logs"

say() { echo "quickstart: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- The commands, out of README's text ------------------------------------
# A command is a line of a ```sh (or bash, shell) block in the section, with
# the lines that a trailing backslash continues; blank and comment-only
# lines are skipped.
commands=()
in_section=0 in_block=0 current=""
while IFS= read -r line || [ -n "$line" ]; do
  if [ "$in_block" = 0 ]; then
    if [[ "$line" =~ ^##[[:space:]]+Quick[[:space:]]+start[[:space:]]*$ ]]; then
      in_section=1
    elif [[ "$line" =~ ^#{1,2}[[:space:]] ]] && [ "$in_section" = 1 ]; then
      break
    elif [ "$in_section" = 1 ] && [[ "$line" =~ ^\`\`\`(sh|bash|shell)[[:space:]]*$ ]]; then
      in_block=1
    fi
    continue
  fi
  if [[ "$line" =~ ^\`\`\`[[:space:]]*$ ]]; then
    [ -z "$current" ] || die "README.md's quick start: a line ends with '\\' at the end of a block: $current"
    in_block=0
    continue
  fi
  if [ -z "$current" ]; then
    trimmed="${line#"${line%%[![:space:]]*}"}"
    { [ -z "$trimmed" ] || [[ "$trimmed" == '#'* ]]; } && continue
    current="$line"
  else
    current+=$'\n'"$line"
  fi
  [[ "$line" == *'\' ]] && continue
  commands+=("$current")
  current=""
done < "$readme"
[ "${#commands[@]}" -gt 0 ] || die "no \`\`\`sh block found under '## Quick start' in $readme"

# --- Port -------------------------------------------------------------------
port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
port=8080
listen_env=()
if ! port_free 8080; then
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  say "port 8080 is taken here: running with KEYWARD_LISTEN=127.0.0.1:$port and :$port in place of :8080 in the URLs (as README says to do)"
  listen_env=(KEYWARD_LISTEN="127.0.0.1:$port")
  for i in "${!commands[@]}"; do
    c="${commands[$i]}"
    c="${c//localhost:8080/localhost:$port}"
    c="${c//127.0.0.1:8080/127.0.0.1:$port}"
    commands[$i]="$c"
  done
fi

# --- The fresh copy -----------------------------------------------------------
rm -rf "$work"
mkdir -p "$clone" "$logs"
# Modification times are kept, so that cargo finds the copy's crates built
# by the previous run (same path, same times) fresh.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
    tar --null --no-recursion -T - -cf -) | tar -xpf - -C "$clone"
  # Directories too (a build script that watches one, as keyward-store's
  # watches its migrations, would see a new one as changed).
  (cd "$clone" && find . -mindepth 1 -type d -print0) |
    while IFS= read -r -d '' d; do [ -d "$root/$d" ] && touch -r "$root/$d" "$clone/$d"; done
else
  (cd "$root" && tar --exclude=./target --exclude=./keyward-data --exclude=./.git -cf - .) | tar -xpf - -C "$clone"
fi
ln -s "$target" "$clone/target"

model_env=()
cached="${KEYWARD_TEST_MODEL_PATH:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ -f "$cached" ]; then
  say "the local model's weights are cached at $cached: KEYWARD_MODEL_PATH points there instead of fetching them again"
  model_env=(KEYWARD_MODEL_PATH="$cached")
fi

# --- The checks (these functions run inside the quick start's bash) ---------
kw_fail() {
  local i="$kw_i"
  {
    echo "quickstart: FAILED: README's quick start, command $i of $KW_TOTAL:"
    sed 's/^/    /' "$KW_LOGS/$i.cmd"
    echo "  $*"
    echo "  exit status: ${kw_rc:-?}"
    echo "  -- stdout (last 20 lines) --"; tail -n 20 "$KW_LOGS/$i.out" 2>/dev/null | sed 's/^/    /'
    echo "  -- stderr (last 20 lines) --"; tail -n 20 "$KW_LOGS/$i.err" 2>/dev/null | sed 's/^/    /'
    if [ -n "${kw_server_log:-}" ] && [ "$kw_server_log" != "$KW_LOGS/$i.err" ]; then
      echo "  -- keyward serve's log (last 20 lines) --"; tail -n 20 "$kw_server_log" | sed 's/^/    /'
    fi
    echo "  (logs: $KW_LOGS)"
  } >&9
  exit 1
}

# Records each response's headers beside the command's output; stops the
# run when the server the quick start started has died meanwhile.
curl() {
  if [ -n "${kw_server:-}" ] && ! kill -0 "$kw_server" 2>/dev/null; then
    kw_fail "keyward serve has exited, so this would wait for ever"
  fi
  command curl -D "$KW_LOGS/$kw_i.headers.$(date +%s%N)" "$@"
}

# The status of the last response the command got.
kw_status() {
  local last
  last="$(ls "$KW_LOGS/$kw_i".headers.* 2>/dev/null | sort | tail -n1)"
  [ -n "$last" ] || { echo none; return; }
  sed -n 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$last" | tail -n1
}

# kw_json FILE PYTHON-EXPRESSION: the file holds JSON `d` for which the
# expression is true.
kw_json() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    print(f"not JSON: {e}", file=sys.stderr)
    sys.exit(1)
env = os.environ
if not eval(sys.argv[2]):
    print(f"JSON without {sys.argv[2]}", file=sys.stderr)
    sys.exit(1)
PY
}

# The status /v1/models answers with a secret (after rotation and revocation).
kw_models_status() {
  command curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$KW_PORT/v1/models" -H "Authorization: Bearer $1"
}

kw_before() {
  kw_i="$1"
  kw_rc="(still running)"
  kw_started="$(date +%s)"
  echo "quickstart: [$kw_i/$KW_TOTAL] $(head -n1 "$KW_LOGS/$kw_i.cmd")" >&2
}

kw_after() {
  kw_rc="$1"
  local i="$kw_i" out="$KW_LOGS/$kw_i.out" err="$KW_LOGS/$kw_i.err" cmd bare
  cmd="$(cat "$KW_LOGS/$i.cmd")"
  # The command without its trailing comment, to tell commands apart.
  bare="$(printf '%s' "$cmd" | sed -E 's/[[:space:]]+#[[:space:]].*$//')"
  local secret_re='^sk-kw-[0-9A-Za-z]{46}$'
  case "$bare" in
    'cargo build --release'*)
      [ "$kw_rc" = 0 ] || kw_fail "cargo build failed"
      [ -x target/release/keyward ] || kw_fail "no target/release/keyward after the build"
      ;;
    'export PATH='*)
      [ "$(command -v keyward)" = "$PWD/target/release/keyward" ] ||
        kw_fail "\`keyward\` is $(command -v keyward || echo 'not found'), not the binary just built"
      ;;
    *'keyward admin create'*'> admin.key')
      [ "$kw_rc" = 0 ] || kw_fail "admin create failed"
      [[ "$(cat admin.key)" =~ ^sk-kwadmin-[0-9A-Za-z]{46}$ ]] || kw_fail "admin.key does not hold an sk-kwadmin- key: $(head -c 80 admin.key)"
      [ "$(wc -l < admin.key)" = 1 ] || kw_fail "admin.key holds more than the key"
      ;;
    'keyward serve'*'&')
      [ "$!" != "${kw_last_bg:-}" ] || kw_fail "nothing was started in the background"
      kw_server="$!"
      kw_server_log="$err"
      sleep 0.5
      kill -0 "$kw_server" 2>/dev/null || kw_fail "keyward serve exited at once"
      ;;
    'until curl'*'/readyz'*)
      [ "$kw_rc" = 0 ] || kw_fail "the wait for /readyz failed"
      [ "$(kw_status)" = 200 ] || kw_fail "/readyz answered $(kw_status), not 200"
      grep -q "keyward listening on http://127.0.0.1:$KW_PORT" "$kw_server_log" ||
        kw_fail "the server's log does not say it listens on http://127.0.0.1:$KW_PORT"
      ;;
    'KEY=$(keyward keys create'*)
      [ "$kw_rc" = 0 ] || kw_fail "keys create failed"
      [[ "${KEY:-}" =~ $secret_re ]] || kw_fail "\$KEY is not an sk-kw- key: ${KEY:-<empty>}"
      grep -q '^Created key key_' "$err" || kw_fail "keys create did not name the new key on stderr"
      kw_first_secret="$KEY"
      ;;
    'curl -s '*'/v1/chat/completions'*)
      [ "$kw_rc" = 0 ] || kw_fail "curl failed"
      [ "$(kw_status)" = 200 ] || kw_fail "the chat completion answered $(kw_status), not 200"
      kw_json "$out" 'd["object"] == "chat.completion" and isinstance(d["choices"][0]["message"]["content"], str) and d["usage"]["total_tokens"] > 0' ||
        kw_fail "not a chat completion"
      ;;
    'keyward keys list')
      [ "$kw_rc" = 0 ] || kw_fail "keys list failed"
      local redacted="${kw_first_secret:0:10}...${kw_first_secret: -4}"
      grep -q -- "$redacted" "$out" || kw_fail "the list does not show the key redacted as $redacted"
      ! grep -q -- "$kw_first_secret" "$out" || kw_fail "the list shows the whole secret"
      ;;
    'KEY_ID=$(keyward keys list'*)
      [ "$kw_rc" = 0 ] || kw_fail "keys list failed"
      [[ "${KEY_ID:-}" =~ ^key_[0-9A-Za-z]+$ ]] || kw_fail "\$KEY_ID is not a key id: ${KEY_ID:-<empty>}"
      keyward keys list | grep "^$KEY_ID " | grep -q 'billing service' ||
        kw_fail "\$KEY_ID ($KEY_ID) is not the key named \"billing service\""
      ;;
    'keyward keys rotate '*)
      [ "$kw_rc" = 0 ] || kw_fail "keys rotate failed"
      kw_rotated="$(cat "$out")"
      [[ "$kw_rotated" =~ $secret_re ]] || kw_fail "rotate did not print a new sk-kw- secret"
      [ "$kw_rotated" != "$kw_first_secret" ] || kw_fail "rotate printed the old secret"
      [ "$(kw_models_status "$kw_rotated")" = 200 ] || kw_fail "the new secret does not work"
      [ "$(kw_models_status "$kw_first_secret")" = 200 ] || kw_fail "the old secret stopped working within its grace period"
      ;;
    'keyward keys revoke '*)
      [ "$kw_rc" = 0 ] || kw_fail "keys revoke failed"
      grep -q "^Revoked $KEY_ID" "$err" || kw_fail "revoke did not say it revoked $KEY_ID"
      # The server follows revocations made elsewhere within 250 ms.
      local n old new
      for n in $(seq 1 30); do
        old="$(kw_models_status "$kw_first_secret")"; new="$(kw_models_status "$kw_rotated")"
        [ "$old" = 401 ] && [ "$new" = 401 ] && break
        sleep 0.1
      done
      [ "$old" = 401 ] && [ "$new" = 401 ] || kw_fail "after revoke the secrets get $old (old) and $new (rotated), not 401"
      ;;
    'ADMIN=$(cat admin.key)')
      [ "${ADMIN:-}" = "$(cat admin.key)" ] || kw_fail "\$ADMIN is not the admin key"
      ;;
    'curl -s '*'/v1/organization/projects -H '*)
      [ "$kw_rc" = 0 ] || kw_fail "curl failed"
      [ "$(kw_status)" = 200 ] || kw_fail "listing projects answered $(kw_status), not 200"
      kw_json "$out" 'd["object"] == "list" and d["data"][0]["object"] == "organization.project" and d["data"][0]["name"] == "Default project"' ||
        kw_fail "not the list of projects with the Default project"
      kw_projects="$out"
      ;;
    'PROJECT=$(curl'*)
      [ "$kw_rc" = 0 ] || kw_fail "the command failed"
      PROJECT="$PROJECT" kw_json "$kw_projects" 'd["data"][0]["id"] == env["PROJECT"]' ||
        kw_fail "\$PROJECT (${PROJECT:-<empty>}) is not the Default project's id"
      ;;
    'curl -s '*'/api_keys'*)
      [ "$kw_rc" = 0 ] || kw_fail "curl failed"
      [ "$(kw_status)" = 200 ] || kw_fail "creating a key answered $(kw_status), not 200"
      PROJECT="$PROJECT" kw_json "$out" 'd["object"] == "organization.project.api_key" and d["name"] == "ci" and d["permissions"]["mode"] == "read_only" and d["project_id"] == env["PROJECT"] and __import__("re").fullmatch(r"sk-kw-[0-9A-Za-z]{46}", d["value"])' ||
        kw_fail "not a new read-only key \"ci\" with its secret in \"value\""
      ;;
    'kill %1')
      [ "$kw_rc" = 0 ] || kw_fail "kill failed"
      local n
      for n in $(seq 1 400); do kill -0 "$kw_server" 2>/dev/null || break; sleep 0.1; done
      ! kill -0 "$kw_server" 2>/dev/null || kw_fail "keyward serve is still running 40 s after kill"
      wait "$kw_server" && kw_rc=0 || kw_rc=$?
      [ "$kw_rc" = 0 ] || kw_fail "keyward serve exited with status $kw_rc"
      grep -q 'keyward stopped' "$kw_server_log" || kw_fail "the server's log does not end with 'keyward stopped'"
      kw_server=""
      ;;
    *)
      kw_fail "tests/readme/quickstart.sh has no check for this command: add what it should do to kw_after"
      ;;
  esac
  kw_last_bg="$!"
  echo "quickstart:        ok ($(( $(date +%s) - kw_started )) s)" >&2
}

# --- The run ------------------------------------------------------------------
driver="$work/driver.sh"
{
  echo "# Generated by tests/readme/quickstart.sh from README.md's quick start."
  printf 'KW_LOGS=%q KW_TOTAL=%q KW_PORT=%q\n' "$logs" "${#commands[@]}" "$port"
  # fd 9: the terminal's stderr, for failures found while a command's own
  # stderr goes to its log (the curl wrapper's).
  echo 'exec 9>&2'
  declare -f kw_fail curl kw_status kw_json kw_models_status kw_before kw_after
  # The process group (timeout's, under setsid), to stop it all at the end.
  printf 'cut -d" " -f5 /proc/$$/stat > %q\n' "$work/driver.pgid"
  printf 'cd %q || exit 1\n' "$clone"
  for i in "${!commands[@]}"; do
    n=$((i + 1))
    printf '%s\n' "${commands[$i]}" > "$logs/$n.cmd"
    printf 'kw_before %d\n' "$n"
    if [[ "${commands[$i]}" == cargo* ]]; then
      # cargo's progress goes to the terminal too: a first build is long.
      printf '{ . %q; } > %q 2> >(tee %q >&2)\n' "$logs/$n.cmd" "$logs/$n.out" "$logs/$n.err"
    else
      printf '{ . %q; } > %q 2> %q\n' "$logs/$n.cmd" "$logs/$n.out" "$logs/$n.err"
    fi
    printf 'kw_after $?\n'
  done
  printf 'if [ -n "${kw_server:-}" ]; then kw_fail "the quick start left keyward serve running: it should end by stopping it"; fi\n'
} > "$driver"

unset_env=()
for v in $(compgen -e); do
  case "$v" in KEYWARD_*|CARGO_TARGET_DIR|RUST_LOG) unset_env+=(-u "$v") ;; esac
done

cleanup() {
  local pgid
  pgid="$(cat "$work/driver.pgid" 2>/dev/null || true)"
  # Never this script's own group (setsid gives the run a group of its own).
  if [ -n "$pgid" ] && [ "$pgid" != "$(cut -d" " -f5 /proc/$$/stat)" ] && kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

say "running README.md's quick start (${#commands[@]} commands) in $clone"
started="$(date +%s)"
status=0
# setsid: the commands and whatever they leave running form one process
# group, stopped as a whole at the end.
env "${unset_env[@]}" "${listen_env[@]}" "${model_env[@]}" \
  setsid timeout --kill-after=10 "${QUICKSTART_TIMEOUT:-3600}" bash "$driver" || status=$?
if [ "$status" = 124 ]; then
  say "error: the quick start ran past QUICKSTART_TIMEOUT (${QUICKSTART_TIMEOUT:-3600} s); logs in $logs"
elif [ "$status" = 0 ]; then
  say "README.md's quick start works as written (${#commands[@]} commands, $(( $(date +%s) - started )) s)"
fi
exit "$status"
