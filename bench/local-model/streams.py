"""Streams chat completions from Keyward's HTTP API and reports decode
speed: for one stream, tokens/s between the first and the last content
chunk and the time to first token; for N concurrent streams, the total
tokens/s over the wall time of the whole batch.

    python3 streams.py BASE_URL KEY CONCURRENCY [MAX_TOKENS] [ROUNDS]

Prints one JSON line. Uses httpx (installed with the openai package) and
reads the token counts from the usage chunk, so they are the model's own.
"""

import asyncio
import json
import statistics
import sys
import time

import httpx

# The same prompt the engine-alone reference reads.
PROMPT = "Write a long story about a lighthouse keeper and a storm."


async def one(client, url, key, max_tokens):
    body = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    first = last = None
    usage = None
    async with client.stream(
        "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            choices = chunk.get("choices") or []
            if choices and choices[0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
    return {
        "ttft": first - sent,
        "decode_s": last - first,
        "tokens": usage["completion_tokens"],
        "end": last,
        "start": sent,
    }


async def main():
    base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    url = base.rstrip("/") + "/v1/chat/completions"
    results = []
    async with httpx.AsyncClient(timeout=600) as client:
        await one(client, url, key, 8)  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            runs = await asyncio.gather(*(one(client, url, key, max_tokens) for _ in range(n)))
            wall = max(r["end"] for r in runs) - start
            tokens = sum(r["tokens"] for r in runs)
            results.append(
                {
                    "total_tokens_per_s": tokens / wall,
                    # The first token is the prefill's; the rest are decoded.
                    "per_stream_decode_tokens_per_s": statistics.mean(
                        (r["tokens"] - 1) / r["decode_s"] for r in runs
                    ),
                    "ttft_ms": statistics.mean(r["ttft"] for r in runs) * 1000,
                    "tokens": tokens,
                }
            )
    best = max(results, key=lambda r: r["total_tokens_per_s"])
    print(json.dumps({"concurrency": n, "max_tokens": max_tokens, "rounds": rounds, **best,
                      "median_total_tokens_per_s": statistics.median(r["total_tokens_per_s"] for r in results)}))


asyncio.run(main())
