"""The fake upstream (fake_upstream.py) speaks OpenAI's wire format: the
official OpenAI Python SDK, pointed straight at the fake with no Keyward in
between, parses every answer and its streaming helpers accept every event
stream. This guards the stand-in the gateway tests rely on; it needs no
Keyward binary.
"""

import base64
import json

import openai
import pytest
from openai import OpenAI

from conftest import UPSTREAM_KEY


@pytest.fixture
def direct(upstream):
    c = OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY, max_retries=0, timeout=30)
    yield c
    c.close()


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}


# ---------------------------------------------------------------- responses


def test_responses_create_plain(direct):
    r = direct.responses.create(model="gpt-test", input="hello fake world", instructions="be brief")
    assert r.object == "response" and r.status == "completed"
    assert r.id.startswith("resp_")
    assert r.output_text == "echo: hello fake world"
    assert r.usage.input_tokens == 5
    assert r.usage.input_tokens_details.cached_tokens == 2
    assert r.usage.output_tokens_details.reasoning_tokens == 2
    assert r.usage.output_tokens == 4 + 2
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_responses_stream_helper_and_raw_events(direct):
    with direct.responses.stream(model="gpt-test", input="one two three") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: one two three"
    assert final.status == "completed" and final.output_text == "echo: one two three"
    assert final.usage.input_tokens == 3

    events = list(direct.responses.create(model="gpt-test", input="a b", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.usage is None
    assert events[-1].response.usage.output_tokens == 3 + 2


def test_responses_function_call_then_output(direct):
    r = direct.responses.create(model="gpt-test", input="Paris", tools=[WEATHER_TOOL])
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}

    r2 = direct.responses.create(
        model="gpt-test",
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert r2.output_text == "tool said: sunny"
    assert r2.previous_response_id == r.id
    # The history is billed again as input.
    assert r2.usage.input_tokens == 1 + r.usage.input_tokens + r.usage.output_tokens

    with direct.responses.stream(model="gpt-test", input="Rome", tools=[WEATHER_TOOL]) as stream:
        args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert json.loads(args) == {"city": "Rome"}
    assert final.output[0].type == "function_call"


def test_responses_retrieve_input_items_delete(direct):
    r = direct.responses.create(model="gpt-test", input=[
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ])
    got = direct.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == "echo: second"

    items = list(direct.responses.input_items.list(r.id))
    assert [i.content[0].text for i in items] == ["second", "answer", "first"]  # newest first
    asc = list(direct.responses.input_items.list(r.id, order="asc", limit=1))
    assert [i.content[0].text for i in asc] == ["first", "answer", "second"]  # auto-paginated

    direct.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        direct.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        direct.responses.create(model="gpt-test", input="x", previous_response_id=r.id)
    assert e.value.code == "previous_response_not_found"


def test_responses_store_false_and_background_cancel(direct):
    r = direct.responses.create(model="gpt-test", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        direct.responses.retrieve(r.id)

    bg = direct.responses.create(model="gpt-test", input="later", background=True)
    assert bg.status == "queued" and bg.usage is None
    assert direct.responses.cancel(bg.id).status == "cancelled"

    bg = direct.responses.create(model="gpt-test", input="later please", background=True)
    assert direct.responses.retrieve(bg.id).status == "in_progress"
    done = direct.responses.retrieve(bg.id)
    assert done.status == "completed" and done.output_text == "echo: later please"
    assert done.usage.input_tokens == 2
    with pytest.raises(openai.BadRequestError):
        direct.responses.cancel(bg.id)
    with pytest.raises(openai.BadRequestError):
        direct.responses.cancel(direct.responses.create(model="gpt-test", input="sync").id)


# ---------------------------------------------------------------- chat tools


def test_chat_tool_call_plain_and_streamed(direct):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL["parameters"]}}]
    messages = [{"role": "user", "content": "Oslo"}]
    c = direct.chat.completions.create(model="gpt-test", messages=messages, tools=tools)
    call = c.choices[0].message.tool_calls[0]
    assert c.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}

    chunks = list(direct.chat.completions.create(model="gpt-test", messages=messages, tools=tools, stream=True,
                                                 stream_options={"include_usage": True}))
    args = "".join(tc.function.arguments or "" for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or [])
    assert json.loads(args) == {"city": "Oslo"}
    assert chunks[-1].usage.prompt_tokens == 1

    follow = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "rainy"},
    ]
    c = direct.chat.completions.create(model="gpt-test", messages=follow, tools=tools)
    assert c.choices[0].message.content == "tool said: rainy"
    # Plain chat is unchanged.
    c = direct.chat.completions.create(model="gpt-test", messages=messages)
    assert c.choices[0].message.content == "echo: Oslo"


# ---------------------------------------------------------------- other endpoints


def test_moderations(direct):
    m = direct.moderations.create(model="omni-moderation-latest", input=["a violent act", "a kind act"])
    assert m.id.startswith("modr-")
    assert [r.flagged for r in m.results] == [True, False]
    assert m.results[0].categories.violence is True


def test_images(direct):
    g = direct.images.generate(model="gpt-image-1", prompt="a red cube", n=2)
    assert len(g.data) == 2
    assert base64.b64decode(g.data[0].b64_json).startswith(b"\x89PNG")
    assert (g.usage.input_tokens, g.usage.output_tokens) == (3, 20)

    g = direct.images.generate(model="dall-e-2", prompt="a red cube", response_format="b64_json")
    assert len(g.data) == 1 and g.usage is None

    e = direct.images.edit(model="gpt-image-1", image=("a.png", b"\x89PNGxx", "image/png"), prompt="make it blue", n=1)
    assert len(e.data) == 1 and e.usage.input_tokens == 3 + 5

    v = direct.images.create_variation(model="dall-e-2", image=("a.png", b"\x89PNGxx", "image/png"), n=3)
    assert len(v.data) == 3


def test_audio(direct):
    speech = direct.audio.speech.create(model="tts-1", voice="alloy", input="say these words")
    assert speech.read() == b"FAKE-AUDIO:say these words"

    t = direct.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"x" * 4500, "audio/wav"))
    assert t.text == "fake transcription of a.wav"
    assert t.usage.type == "duration" and t.usage.seconds == 4.5

    t = direct.audio.translations.create(model="whisper-1", file=("b.wav", b"x" * 2000, "audio/wav"),
                                         response_format="verbose_json")
    assert t.duration == 2.0 and t.text == "fake translation of b.wav"


def test_files_and_batches(direct, upstream):
    jsonl = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "gpt-test", "messages": [{"role": "user", "content": f"line {i} here"}]}}) + "\n"
                    for i in range(3))
    f = direct.files.create(file=("in.jsonl", jsonl.encode()), purpose="batch")
    assert f.id.startswith("file-") and f.bytes == len(jsonl) and f.purpose == "batch"
    sent = upstream.requests()[-1]
    assert sent["method"] == "POST" and sent["body"]["purpose"] == "batch"
    assert sent["body"]["file"]["bytes"] == len(jsonl)

    others = [direct.files.create(file=(f"o{i}.txt", b"hi"), purpose="user_data") for i in range(3)]
    assert direct.files.retrieve(f.id).filename == "in.jsonl"
    assert direct.files.content(f.id).read() == jsonl.encode()
    listed = [x.id for x in direct.files.list(purpose="user_data", limit=2)]  # auto-paginated
    assert listed[:3] == [o.id for o in reversed(others)]

    b = direct.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.status == "validating" and b.usage is None
    assert direct.batches.retrieve(b.id).status == "in_progress"
    done = direct.batches.retrieve(b.id)
    assert done.status == "completed"
    assert done.request_counts.total == 3
    assert (done.usage.input_tokens, done.usage.output_tokens) == (9, 12)
    assert done.model == "gpt-test"
    out = direct.files.content(done.output_file_id).read().decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in out] == ["r0", "r1", "r2"]
    assert b.id in [x.id for x in direct.batches.list(limit=1)] or b.id in [x.id for x in direct.batches.list()]

    b2 = direct.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert direct.batches.cancel(b2.id).status == "cancelling"
    assert direct.batches.retrieve(b2.id).status == "cancelled"

    assert direct.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        direct.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        direct.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
