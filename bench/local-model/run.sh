#!/usr/bin/env bash
# Local model throughput: SmolLM2-135M-Instruct (Q4_1) through Keyward's
# HTTP API — one stream, then 4 and 8 concurrent streams — beside the same
# model decoded by llama.cpp alone (crates/keyward-llm/examples/engine_alone.rs,
# llama-cpp-2 with no HTTP), in one run. Prints JSON lines and a summary.
#
#   TOKENS   tokens per answer (default 256)
#   ROUNDS   rounds per concurrency level, best kept (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."

tokens="${TOKENS:-256}"
rounds="${ROUNDS:-3}"

cargo build --release -q -p keyward-server -p keyward-llm --bin keyward --example engine_alone
keyward=target/release/keyward
engine=target/release/examples/engine_alone

model="${KEYWARD_TEST_MODEL_PATH:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
KEYWARD_MODEL_PATH="$model" "$keyward" model pull --data-dir "$work" >&2
python3 -c "import httpx" 2>/dev/null || python3 -m pip install -q httpx

# The reference: one sequence, and the engine's own ceiling for batched
# decoding (the same prompt as 4 and 8 sequences in one batch per step).
for n in 1 4 8; do
  echo "== llama.cpp alone (llama-cpp-2, no HTTP), $n sequence(s), $tokens tokens each ==" >&2
  for _ in $(seq "$rounds"); do
    "$engine" "$model" "$tokens" "$(nproc)" "$n"
  done
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo 'a long passphrase here' | "$keyward" admin create --data-dir "$work" --email bench@example.com --password-stdin >/dev/null
key=$("$keyward" keys create --data-dir "$work" --name bench)
KEYWARD_MODEL_PATH="$model" RUST_LOG=warn "$keyward" serve --data-dir "$work" --listen "127.0.0.1:$port" 2>"$work/serve.log" &
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done

for n in 1 4 8; do
  echo "== Keyward HTTP API, $n concurrent stream(s) ==" >&2
  python3 bench/local-model/streams.py "http://127.0.0.1:$port" "$key" "$n" "$tokens" "$rounds"
done
