"""The OpenAI Agents SDK (`openai-agents`) through Keyward: one Agent with
one `@function_tool`, run with `Runner.run` and `Runner.run_streamed`,
on the native Responses route (`resp-test`) and on the translated route
(`resp-chat`, a chat-only upstream), both answered by fake_upstream.py.

The fake calls the first tool with the user's text as every string argument,
then answers "tool said: <the tool's output>", so the final output proves the
tool ran and its result went back through Keyward. The same agent is also run
straight against the fake (no Keyward): that part checks the fake and passes
without the gateway features.

Tracing is off before `agents` is imported: it would send the Keyward key to
OpenAI's trace ingestion otherwise.
"""

import asyncio
import os
import time

os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

import pytest  # noqa: E402
from agents import (  # noqa: E402
    Agent,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI  # noqa: E402

from conftest import UPSTREAM_KEY  # noqa: E402

set_tracing_disabled(True)


def make_agent(model, calls):
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    return Agent(name="weather", instructions="Answer with the weather tool.", model=model, tools=[get_weather])


async def run_both(base_url, api_key, model, api="responses"):
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    set_default_openai_client(client, use_for_tracing=False)
    set_default_openai_api(api)
    try:
        calls = []
        result = await Runner.run(make_agent(model, calls), "Paris")
        plain = (result.final_output, list(calls), result)

        calls = []
        streamed = Runner.run_streamed(make_agent(model, calls), "Tokyo")
        kinds = [event.type async for event in streamed.stream_events()]
        return plain, (streamed.final_output, list(calls), kinds, streamed)
    finally:
        await client.close()


def check(plain, streamed):
    output, calls, result = plain
    assert calls == ["Paris"], "the tool was not called with the model's arguments"
    assert output == "tool said: sunny in Paris"
    assert result.context_wrapper.usage.requests == 2
    assert result.context_wrapper.usage.input_tokens > 0 and result.context_wrapper.usage.output_tokens > 0

    output, calls, kinds, _ = streamed
    assert calls == ["Tokyo"]
    assert output == "tool said: sunny in Tokyo"
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agent_straight_against_the_fake(upstream, api):
    """The fake's Responses side, and its chat side that the translated
    route uses (the Agents SDK's own chat mode drives it the same way)."""
    mark = upstream.mark()
    plain, streamed = asyncio.run(run_both(upstream.base_url, UPSTREAM_KEY, "resp-test", api))
    check(plain, streamed)
    want = "/v1/responses" if api == "responses" else "/v1/chat/completions"
    assert [s["path"] for s in upstream.since(mark)] == [want] * 4


@pytest.mark.parametrize("model", ["resp-test", "resp-chat"])
def test_agent_with_a_function_tool_through_keyward(api_gateway, upstream, model):
    key = api_gateway.create_key(name=f"agents {model}")
    mark = upstream.mark()
    plain, streamed = asyncio.run(run_both(f"{api_gateway.base}/v1", key["value"], model))
    check(plain, streamed)

    sent = upstream.since(mark)
    want = "/v1/responses" if model == "resp-test" else "/v1/chat/completions"
    assert [s["path"] for s in sent] == [want] * 4, [s["path"] for s in sent]
    assert all(s["authorization"] == f"Bearer {UPSTREAM_KEY}" for s in sent)
    assert not any(key["value"] in str(s) for s in sent)

    # Four model calls, four ledger rows with the tokens each answer had.
    rows = []
    deadline = time.time() + 5
    while time.time() < deadline:
        rows = [r for r in api_gateway.ledger() if r["key_id"] == key["id"]]
        if len(rows) == 4:
            break
        time.sleep(0.05)
    assert len(rows) == 4
    assert all(r["endpoint"] == "responses" and r["model"] == model and r["status"] == 200 for r in rows)
    usage = plain[2].context_wrapper.usage
    plain_rows = rows[:2]
    assert sum(r["prompt_tokens"] for r in plain_rows) == usage.input_tokens
    assert sum(r["completion_tokens"] for r in plain_rows) == usage.output_tokens
