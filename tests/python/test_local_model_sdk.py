"""The in-process model (SmolLM2-135M-Instruct, real weights) through the
gateway, with the official OpenAI SDK and a Keyward key: plain and
streamed chat, text completions, the Responses API (translated to the
model's chat by Keyward), errors as SDK exceptions, and the ledger matching
what the client was told."""

import os
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import Keyward

MODEL = "smollm2-135m-instruct"


def cached_weights():
    """The pinned GGUF in the user's cache (scripts/test fetches it with
    `keyward model pull`; this fetches it if that was skipped)."""
    path = os.environ.get("KEYWARD_TEST_MODEL_PATH") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "keyward" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    return path


@pytest.fixture(scope="module")
def local(binary, upstream, tmp_path_factory):
    kw = Keyward(binary, upstream, tmp_path_factory.mktemp("keyward-local"),
                 os.environ.get("KEYWARD_TEST_DATABASE_URL"))
    path = cached_weights()
    kw.env.update({
        "KEYWARD_LOCAL_MODEL__ENABLED": "true",
        "KEYWARD_MODEL_PATH": path,
        "KEYWARD_LOCAL_MODEL__THREADS": "1",
        "KEYWARD_LOCAL_MODEL__MAX_SEQUENCES": "4",
        "KEYWARD_LOCAL_MODEL__QUEUE": "1",
    })
    try:
        kw.cli("model", "pull")
        kw.create_operator()
        kw.start()
        yield kw
    finally:
        kw.close()


def ask(client, question, **kw):
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=kw.pop("max_tokens", 16),
        **kw,
    )


def test_models_list_offers_the_local_model(local):
    client = local.client(local.create_key()["value"])
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_plain_and_streamed_agree_and_are_billed(local):
    key = local.create_key(name="sdk local")
    client = local.client(key["value"])

    plain = ask(client, "What is the capital of France?")
    assert plain.object == "chat.completion"
    assert plain.model == MODEL
    assert "Paris" in plain.choices[0].message.content
    assert plain.choices[0].finish_reason in ("stop", "length")
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    chunks = list(ask(client, "What is the capital of France?", stream=True,
                      stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens

    # Without include_usage the SDK sees no usage chunk (Keyward still meters).
    chunks = list(ask(client, "What is the capital of France?", stream=True))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text

    # The ledger holds the three calls with exactly those counts, at price 0.
    deadline = time.time() + 5
    while True:
        rows = [r for r in local.ledger() if r["key_id"] == key["id"]]
        if len(rows) == 3 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 3, rows
    for r in rows:
        assert r["model"] == MODEL and r["status"] == 200
        assert r["prompt_tokens"] == plain.usage.prompt_tokens
        assert r["completion_tokens"] == plain.usage.completion_tokens
        assert r["cost_micros"] == 0


def ledger_rows_of(kw, key_id, n, timeout=5):
    deadline = time.time() + timeout
    while True:
        rows = [r for r in kw.ledger() if r["key_id"] == key_id]
        if len(rows) >= n or time.time() > deadline:
            return rows
        time.sleep(0.1)


def test_responses_plain_and_streamed_are_answered_and_billed(local):
    key = local.create_key(name="responses local")
    client = local.client(key["value"])

    plain = client.responses.create(model=MODEL, input="What is the capital of France?",
                                    temperature=0, max_output_tokens=16)
    assert plain.object == "response" and plain.model == MODEL
    assert plain.status in ("completed", "incomplete")
    assert plain.output[0].type == "message"
    assert plain.output_text.strip()
    assert "Paris" in plain.output_text
    assert plain.usage.input_tokens > 0 and 0 < plain.usage.output_tokens <= 16
    assert plain.usage.total_tokens == plain.usage.input_tokens + plain.usage.output_tokens

    with client.responses.stream(model=MODEL, input="What is the capital of France?",
                                 temperature=0, max_output_tokens=16) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert deltas == final.output_text == plain.output_text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (plain.usage.input_tokens, plain.usage.output_tokens)

    # Stored by Keyward: retrieve gives the same answer.
    assert client.responses.retrieve(plain.id).output_text == plain.output_text

    rows = ledger_rows_of(local, key["id"], 2)
    assert len(rows) == 2, rows
    for r in rows:
        assert (r["model"], r["endpoint"], r["status"]) == (MODEL, "responses", 200)
        assert (r["prompt_tokens"], r["completion_tokens"]) == (plain.usage.input_tokens, plain.usage.output_tokens)
        assert r["cost_micros"] == 0


def test_responses_instructions_and_previous_response_id(local):
    client = local.client(local.create_key()["value"])
    first = client.responses.create(model=MODEL, input="My name is Ada.", instructions="Be brief.",
                                    temperature=0, max_output_tokens=8)
    assert first.instructions == "Be brief."
    second = client.responses.create(model=MODEL, input="Say hello.", previous_response_id=first.id,
                                     temperature=0, max_output_tokens=8)
    assert second.previous_response_id == first.id and second.output_text.strip()
    # The history is input again: more input tokens than the new turn alone.
    alone = client.responses.create(model=MODEL, input="Say hello.", temperature=0, max_output_tokens=8)
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens


def test_text_completion(local):
    client = local.client(local.create_key()["value"])
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=6, temperature=0)
    assert r.object == "text_completion"
    assert "6" in r.choices[0].text
    assert r.usage.completion_tokens <= 6


def test_errors_are_sdk_exceptions_with_request_ids(local):
    client = local.client(local.create_key()["value"])
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "Hi", n=2)
    assert e.value.body["param"] == "n"
    assert e.value.request_id.startswith("req_")

    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "word " * 3000)
    assert e.value.code == "context_length_exceeded"

    with pytest.raises(openai.AuthenticationError) as e:
        ask(local.client("sk-kw-" + "a" * 46), "Hi")
    assert e.value.code == "invalid_api_key"


def test_a_busy_model_says_429_and_frees_sequences_of_clients_that_leave(local):
    """Four sequences and a queue of one: with four long answers being
    decoded and a fifth waiting, a sixth request is refused with 429
    model_busy and Retry-After; once those clients hang up, the model
    answers again."""
    client = local.client(local.create_key()["value"], timeout=120)
    stop = threading.Event()

    def long_answer(answering):
        stream = ask(client, "Write a very long story about the sea.", max_tokens=600, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                answering.set()
            if stop.is_set():
                stream.close()
                return
        answering.set()

    threads = []
    try:
        for n in range(5):
            answering = threading.Event()
            t = threading.Thread(target=long_answer, args=(answering,))
            t.start()
            threads.append(t)
            if n < 4:
                # Decoding: it holds a sequence.
                assert answering.wait(30), f"answer {n} did not start"
        time.sleep(0.5)  # the fifth is queued
        with pytest.raises(openai.RateLimitError) as e:
            ask(client, "Hi")
        assert e.value.code == "model_busy"
        assert e.value.response.headers["retry-after"] == "1"
        assert e.value.request_id.startswith("req_")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    # The hung-up streams free their sequences: the model answers again.
    deadline = time.time() + 10
    while True:
        try:
            assert ask(client, "Hi", max_tokens=4).choices[0].message.content is not None
            break
        except openai.RateLimitError:
            assert time.time() < deadline, "sequences were not freed"
            time.sleep(0.2)
