"""Rate limits and budgets under overload, with the official OpenAI Python
SDK as the client, checked against what the server recorded.

- Requests per minute: under 10x overload no more than limit + 1 calls are
  accepted in a window (a burst of ceil(limit / 60), then one call per
  60 / limit seconds).
- Budgets: 50 concurrent calls against a small budget may overshoot it by
  at most one request's cost per concurrent request; Keyward's own bound is
  tighter (one call in all), and both are asserted.
"""

import asyncio
import math
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from conftest import expected_cost_micros


def user(text):
    return [{"role": "user", "content": text}]


def async_client(gw, key):
    # No retries: every refusal is seen once. The pool must not queue calls.
    return AsyncOpenAI(
        base_url=f"{gw.base}/v1",
        api_key=key,
        max_retries=0,
        timeout=30,
        http_client=openai.DefaultAsyncHttpxClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200)
        ),
    )


async def call(client, **kw):
    """One chat call: ("ok", raw response) or ("refused", the SDK's error)."""
    try:
        raw = await client.chat.completions.with_raw_response.create(**kw)
        raw.parse()
        return "ok", raw
    except openai.RateLimitError as e:
        return "refused", e


def assert_request_id(e):
    assert e.request_id and e.request_id.startswith("req_"), e.request_id
    assert e.response.headers["x-request-id"] == e.request_id


def ledger_rows(gw, key_id):
    return [r for r in gw.ledger() if r["key_id"] == key_id]


def usage_requests(gw, key_id, expected):
    """num_model_requests of the key from the usage API, once the batched
    ledger writer has caught up with `expected` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        n = _usage_requests(gw, key_id)
        if n == expected or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def _usage_requests(gw, key_id):
    r = gw.admin.get(
        "/v1/organization/usage/completions",
        params={"start_time": int(time.time()) - 600, "bucket_width": "1m", "group_by": "api_key_id"},
    )
    assert r.status_code == 200, r.text
    return sum(
        res["num_model_requests"]
        for bucket in r.json()["data"]
        for res in bucket["results"]
        if res["api_key_id"] == key_id
    )


# ---------------------------------------------------------------- rate limit


def test_requests_per_minute_hold_under_tenfold_overload(fresh_gateway):
    gw = fresh_gateway
    limit = 30  # a burst of 1, then one call every 2 s
    key = gw.create_key(name="rpm", rate_limits={"requests_per_minute": limit})
    offered = 10 * limit  # 10x the limit, all within the window

    async def overload():
        async with async_client(gw, key["value"]) as client:
            started = time.monotonic()
            # 50 calls at once, then the rest in waves of 50: all within a minute.
            results = []
            for wave in range(offered // 50):
                results += await asyncio.gather(
                    *(call(client, model="gpt-test", messages=user(f"call {wave} {i}")) for i in range(50))
                )
            return results, time.monotonic() - started

    results, elapsed = asyncio.run(overload())
    assert elapsed < 50, f"the overload took {elapsed:.1f} s, longer than the window the bound is about"
    ok = [r for kind, r in results if kind == "ok"]
    refused = [e for kind, e in results if kind == "refused"]
    assert len(ok) + len(refused) == offered

    # The bound, per one-minute window, and the GCRA's own bound for
    # the time the overload took: the burst, plus one call per 60/limit s.
    assert 1 <= len(ok) <= limit + 1, f"{len(ok)} of {offered} accepted with a limit of {limit}/min"
    assert len(ok) <= 1 + math.ceil(elapsed * limit / 60), f"{len(ok)} accepted in {elapsed:.1f} s"

    for raw in ok:
        assert raw.headers["x-ratelimit-limit-requests"] == str(limit)
    request_ids = set()
    for e in refused:
        assert e.status_code == 429
        assert e.code == "rate_limit_exceeded"
        assert e.type == "requests"
        assert "on requests per min (RPM): Limit 30" in e.message, e.message
        assert_request_id(e)
        request_ids.add(e.request_id)
        assert e.response.headers["x-ratelimit-limit-requests"] == str(limit)
        assert 1 <= int(e.response.headers["retry-after"]) <= 60
    assert len(request_ids) == len(refused), "every refusal has its own request id"

    # What the server recorded: the accepted calls and nothing else.
    assert usage_requests(gw, key["id"], len(ok)) == len(ok)
    assert gw.stop() == 0
    rows = ledger_rows(gw, key["id"])
    assert sorted(r["request_id"] for r in rows) == sorted(raw.headers["x-request-id"] for raw in ok)
    assert all(r["status"] == 200 for r in rows)
    assert not request_ids & {r["request_id"] for r in rows}, "a refused call reached the ledger"


# ---------------------------------------------------------------- budget


def test_fifty_concurrent_calls_stay_within_the_budget_overshoot_bound(fresh_gateway, upstream):
    gw = fresh_gateway
    # gpt-test: $2.50 in, $10 out per million tokens. The fake upstream
    # counts words: "hi" is 1 prompt token, "echo: hi" 2 completion tokens.
    call_cost = expected_cost_micros("gpt-test", 1, 2)
    assert call_cost == 23
    budget = 500  # micro-dollars: about 21 calls
    key = gw.create_key(name="budget", monthly_budget_usd=budget / 1e6)
    concurrent = 50
    mark = upstream.mark()

    async def burst(n):
        async with async_client(gw, key["value"]) as client:
            return await asyncio.gather(
                *(call(client, model="gpt-test", messages=user("hi"), max_tokens=5) for _ in range(n))
            )

    results = asyncio.run(burst(concurrent))
    ok = [r for kind, r in results if kind == "ok"]
    refused = [e for kind, e in results if kind == "refused"]
    assert ok, "no call fitted a budget that fits about 21"
    for e in refused:
        assert e.status_code == 429
        assert e.code == "insufficient_quota" and e.type == "insufficient_quota"
        assert "monthly budget" in e.message, e.message
        assert_request_id(e)
    # Refused calls never reached the upstream.
    assert len(upstream.since(mark)) == len(ok)
    spent = len(ok) * call_cost
    assert spent <= budget + concurrent * call_cost, "the issue's bound: one call per concurrent call"
    assert spent <= budget + call_cost, "Keyward's bound: one call in all"

    # Calls one at a time use up what is left, then stop.
    async def one_at_a_time():
        n, last = 0, None
        async with async_client(gw, key["value"]) as client:
            for _ in range(100):
                kind, r = await call(client, model="gpt-test", messages=user("hi"), max_tokens=5)
                if kind == "refused":
                    last = r
                    break
                n += 1
        return n, last

    more, last = asyncio.run(one_at_a_time())
    assert last is not None, "the budget never ran out"
    assert last.code == "insufficient_quota"
    assert_request_id(last)
    accepted = len(ok) + more
    assert budget <= accepted * call_cost <= budget + call_cost

    # What the server recorded agrees, call for call and micro-dollar for micro-dollar.
    assert usage_requests(gw, key["id"], accepted) == accepted
    assert gw.stop() == 0
    rows = ledger_rows(gw, key["id"])
    assert len(rows) == accepted
    assert all(r["status"] == 200 and r["cost_micros"] == call_cost for r in rows)
    ledger_spend = sum(r["cost_micros"] for r in rows)
    assert budget <= ledger_spend <= budget + call_cost
    refused_ids = {e.request_id for e in refused} | {last.request_id}
    assert not refused_ids & {r["request_id"] for r in rows}


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    # httpx honours proxy variables; these calls go to loopback only.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
