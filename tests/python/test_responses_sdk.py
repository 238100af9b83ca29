"""The Responses API (`/v1/responses`) through Keyward, with the official
OpenAI Python SDK (and the Node SDK, driven from here) against the
`api_gateway` fixture (conftest.py):

- model `resp-test` goes to fake_upstream.py's own `/v1/responses`
  (`responses = "native"`): Keyward passes bodies and events through;
- model `resp-chat` goes to the same fake marked `responses = "translate"`:
  Keyward turns the call into a chat completion and the answer back into a
  Response (text, instructions, function tools and calls, streamed events,
  usage), and stores it for retrieve / input_items / previous_response_id.

The fake's rules (fake_upstream.py's docstring) make every reply and usage
predictable; the ledger rows must carry what each answer reported:
prompt_tokens = input_tokens, completion_tokens = output_tokens, and the
cost from the model's input, cached-input and output prices.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import openai
import pytest

from conftest import UPSTREAM_KEY, token_cost_micros

NODE_DIR = Path(__file__).resolve().parent.parent / "node"

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True,
}


def words(text):
    return len(str(text).split())


def native_usage(input_words, reply):
    """(input, cached, output, reasoning) as the fake's /v1/responses counts."""
    return input_words, input_words // 2, words(reply) + 2, 2


def usage_tuple(u):
    return (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens,
            u.output_tokens_details.reasoning_tokens)


def content_text(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if isinstance(p, dict))


def assert_ledger(gw, request_id, model, usage, key_id=None):
    """The ledger row of `request_id` has endpoint responses and the tokens
    and cost of `usage` (the SDK's Response usage)."""
    row = gw.ledger_rows([request_id]).get(request_id)
    assert row is not None, f"no ledger row for {request_id}"
    assert (row["model"], row["endpoint"], row["status"]) == (model, "responses", 200), row
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.input_tokens, usage.output_tokens), row
    cached = usage.input_tokens_details.cached_tokens
    assert row["cost_micros"] == token_cost_micros(model, usage.input_tokens, usage.output_tokens, cached), row
    if key_id:
        assert row["key_id"] == key_id
    return row


# ---------------------------------------------------------------- native passthrough


def test_plain_response_is_passed_through_and_metered(api_gateway, api, upstream):
    mark = upstream.mark()
    raw = api.responses.with_raw_response.create(model="resp-test", input="hello there world", instructions="be brief")
    r = raw.parse()
    assert r.status == "completed"
    assert r.id.startswith("resp_fake")
    assert r.output_text == "echo: hello there world"
    assert usage_tuple(r.usage) == native_usage(5, r.output_text)
    assert r.usage.input_tokens_details.cached_tokens > 0, "the cached price must be exercised"

    sent = upstream.since(mark)
    assert [(s["method"], s["path"]) for s in sent] == [("POST", "/v1/responses")]
    assert sent[0]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent[0]["body"]["input"] == "hello there world"
    assert sent[0]["body"]["instructions"] == "be brief"

    assert_ledger(api_gateway, raw.headers["x-request-id"], "resp-test", r.usage)


def test_streamed_response_events_and_ledger(api_gateway, api):
    # The SDK's stream helper: it insists on response.created first and a
    # terminal event, and gives the final Response.
    with api.responses.stream(model="resp-test", input="one two three four") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: one two three four"
    assert final.status == "completed" and final.output_text == "echo: one two three four"
    assert usage_tuple(final.usage) == native_usage(4, final.output_text)

    # create(stream=True): every event, numbered from 0 without gaps.
    raw = api.responses.with_raw_response.create(model="resp-test", input="five six seven", stream=True)
    events = list(raw.parse())
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events].count("response.output_text.delta") == words("echo: five six seven")
    completed = events[-1].response
    assert usage_tuple(completed.usage) == native_usage(3, "echo: five six seven")
    assert_ledger(api_gateway, raw.headers["x-request-id"], "resp-test", completed.usage)


def test_native_function_tool_and_previous_response_id(api_gateway, api, upstream):
    first = api.responses.create(model="resp-test", input="Paris", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}

    mark = upstream.mark()
    raw = api.responses.with_raw_response.create(
        model="resp-test", previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    second = raw.parse()
    assert second.output_text == "tool said: sunny"
    assert second.previous_response_id == first.id
    # The fake bills the history again; Keyward meters what it reported.
    assert second.usage.input_tokens == 1 + first.usage.input_tokens + first.usage.output_tokens
    assert upstream.since(mark)[0]["body"]["previous_response_id"] == first.id
    assert_ledger(api_gateway, raw.headers["x-request-id"], "resp-test", second.usage)

    # Streamed, the call's arguments arrive as deltas.
    with api.responses.stream(model="resp-test", input="Rome", tools=[WEATHER]) as stream:
        args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert json.loads(args) == {"city": "Rome"}
    assert final.output[0].type == "function_call"


def test_retrieve_input_items_delete(api_gateway, api, upstream):
    r = api.responses.create(model="resp-test", input=[
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ])
    got = api.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == "echo: second"
    assert usage_tuple(got.usage) == usage_tuple(r.usage)

    items = list(api.responses.input_items.list(r.id))
    assert [i.content[0].text for i in items] == ["second", "answer", "first"]
    asc = list(api.responses.input_items.list(r.id, order="asc", limit=1))  # three pages
    assert [i.content[0].text for i in asc] == ["first", "answer", "second"]

    api.responses.delete(r.id)
    assert [(s["method"], s["path"]) for s in upstream.requests()[-1:]] == [("DELETE", f"/v1/responses/{r.id}")]
    mark = upstream.mark()
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        api.responses.create(model="resp-test", input="more", previous_response_id=r.id)
    assert upstream.since(mark) == [], "a deleted response is refused by Keyward itself"


def test_store_false_is_not_retrievable_and_not_asked_upstream(api, upstream):
    r = api.responses.create(model="resp-test", input="forget me", store=False)
    assert r.output_text == "echo: forget me"
    mark = upstream.mark()
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(r.id)
    assert upstream.since(mark) == [], "Keyward owns no row for a store:false response, so it answers itself"


def test_background_response_cancel(api):
    bg = api.responses.create(model="resp-test", input="later", background=True)
    assert bg.status == "queued"
    cancelled = api.responses.cancel(bg.id)
    assert cancelled.id == bg.id and cancelled.status == "cancelled"
    assert api.responses.retrieve(bg.id).status == "cancelled"

    sync = api.responses.create(model="resp-test", input="now")
    with pytest.raises(openai.BadRequestError):
        api.responses.cancel(sync.id)  # the upstream's 400, passed through


# ---------------------------------------------------------------- translated (chat-only upstream)


def test_translated_plain_and_streamed(api_gateway, api, upstream):
    mark = upstream.mark()
    raw = api.responses.with_raw_response.create(model="resp-chat", input="hello translated world", instructions="be brief")
    r = raw.parse()
    assert r.object == "response" and r.status == "completed"
    assert r.id.startswith("resp_") and not r.id.startswith("resp_fake"), "Keyward mints translated ids"
    assert r.output_text == "echo: hello translated world"
    # Chat usage: prompt = words of the system and user messages.
    assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 4)
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.usage.total_tokens == 9

    sent = upstream.since(mark)
    assert [s["path"] for s in sent] == ["/v1/chat/completions"]
    msgs = sent[0]["body"]["messages"]
    assert [(m["role"], content_text(m["content"])) for m in msgs] == [
        ("system", "be brief"), ("user", "hello translated world")
    ] or [(m["role"], content_text(m["content"])) for m in msgs] == [
        ("developer", "be brief"), ("user", "hello translated world")
    ]
    assert_ledger(api_gateway, raw.headers["x-request-id"], "resp-chat", r.usage)

    mark = upstream.mark()
    raw = api.responses.with_raw_response.create(model="resp-chat", input="streamed through chat", stream=True)
    events = list(raw.parse())
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: streamed through chat"
    final = events[-1].response
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    body = upstream.since(mark)[0]["body"]
    assert body["stream"] is True and body["stream_options"]["include_usage"] is True
    assert_ledger(api_gateway, raw.headers["x-request-id"], "resp-chat", final.usage)

    with api.responses.stream(model="resp-chat", input="helper too") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: helper too"


def test_translated_function_tool(api_gateway, api, upstream):
    mark = upstream.mark()
    first = api.responses.create(model="resp-chat", input="Oslo", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert call.call_id.startswith("call_fake")  # the chat tool call's id
    sent = upstream.since(mark)[0]["body"]
    assert sent["tools"][0]["type"] == "function"
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["parameters"]

    # The history resent as items (what the Agents SDK does).
    mark = upstream.mark()
    second = api.responses.create(model="resp-chat", tools=[WEATHER], input=[
        {"role": "user", "content": "Oslo"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"},
    ])
    assert second.output_text == "tool said: rainy"
    msgs = upstream.since(mark)[0]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    assert msgs[1]["tool_calls"][0]["id"] == call.call_id
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert msgs[2]["tool_call_id"] == call.call_id and content_text(msgs[2]["content"]) == "rainy"

    # Streamed: the chat tool-call deltas become function-call events.
    with api.responses.stream(model="resp-chat", input="Lima", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Lima"}
    assert [e.type for e in events if e.type.startswith("response.output_item")] == [
        "response.output_item.added", "response.output_item.done"]
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {"city": "Lima"}
    assert final.usage.input_tokens == 1


def test_translated_previous_response_id_retrieve_and_delete(api_gateway, api, upstream):
    first = api.responses.create(model="resp-chat", input="first question")
    mark = upstream.mark()
    second = api.responses.create(model="resp-chat", input="second question", previous_response_id=first.id)
    assert second.output_text == "echo: second question"
    msgs = upstream.since(mark)[0]["body"]["messages"]
    assert [(m["role"], content_text(m["content"])) for m in msgs] == [
        ("user", "first question"), ("assistant", "echo: first question"), ("user", "second question")]
    assert second.usage.input_tokens == 2 + 3 + 2

    # Keyward stores translated responses itself: no upstream call.
    mark = upstream.mark()
    got = api.responses.retrieve(second.id)
    assert got.output_text == "echo: second question" and got.previous_response_id == first.id
    items = list(api.responses.input_items.list(second.id))
    assert [content_text([p.model_dump() for p in i.content]) for i in items] == ["second question"]
    api.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(second.id)
    assert upstream.since(mark) == []


# ---------------------------------------------------------------- permissions


def test_restricted_keys_name_the_missing_scope(api_gateway, upstream):
    writer = api_gateway.create_key(name="responses writer", permissions={"mode": "restricted", "responses": "write"})
    reader = api_gateway.create_key(name="responses reader", permissions={"mode": "restricted", "responses": "read"})
    chat_only = api_gateway.create_key(name="chat only", permissions={"mode": "restricted", "chat_completions": "write"})

    w = api_gateway.client(writer["value"])
    r = w.responses.create(model="resp-test", input="allowed")
    assert r.output_text == "echo: allowed"

    mark = upstream.mark()
    rd = api_gateway.client(reader["value"])
    assert rd.responses.retrieve(r.id).id == r.id  # read covers retrieve
    with pytest.raises(openai.AuthenticationError) as e:
        rd.responses.create(model="resp-test", input="refused")
    assert e.value.status_code == 401 and "responses.write" in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:
        rd.responses.delete(r.id)
    assert "responses.write" in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:
        api_gateway.client(chat_only["value"]).responses.create(model="resp-test", input="refused")
    assert "responses.write" in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:
        api_gateway.client(chat_only["value"]).responses.retrieve(r.id)
    assert "responses.read" in e.value.message
    assert [s["method"] for s in upstream.since(mark)] == ["GET"], "only the allowed retrieve reached the upstream"


# ---------------------------------------------------------------- the Node SDK


def test_node_sdk_responses_stream(api_gateway, upstream):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK test (tests/node) cannot run")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       capture_output=True, text=True, timeout=300)
    key = api_gateway.create_key(name="node")
    for model, expect in [("resp-test", "echo: hello from node"), ("resp-chat", "echo: hello from node")]:
        env = dict(os.environ, KEYWARD_URL=f"{api_gateway.base}/v1", KEYWARD_KEY=key["value"],
                   KEYWARD_MODEL=model, KEYWARD_INPUT="hello from node", KEYWARD_EXPECT=expect)
        r = subprocess.run([node, "--test"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"node --test failed for {model}:\n{r.stdout}\n{r.stderr}"
        assert "# pass 1" in r.stdout, r.stdout
    deadline = time.time() + 5
    while True:
        rows = [x for x in api_gateway.ledger() if x["key_id"] == key["id"]]
        if len(rows) >= 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert sorted(x["model"] for x in rows) == ["resp-chat", "resp-test"]
    assert all(x["endpoint"] == "responses" and x["completion_tokens"] > 0 for x in rows)
