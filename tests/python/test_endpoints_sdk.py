"""Moderations, images, audio, files and batches through Keyward, with the
official OpenAI Python SDK against the `api_gateway` fixture (conftest.py),
whose upstream is fake_upstream.py. Each call must reach the fake with the
upstream's credential, come back as the SDK expects, and be metered with the
prices of conftest.API_MODELS:

- moderations: price_per_request; images: images x price_per_image, plus the
  token cost when the answer has usage (gpt-image-1); speech:
  ceil(characters x price_per_mchar / 1e6); transcriptions and translations:
  ceil(seconds x price_per_minute / 60), seconds as the upstream reported
  them (the fake: bytes / 1000);
- files and batch management are not metered; a batch is metered once, with
  request_id = the batch id, when Keyward first sees it completed with usage
  (the fake completes a batch on its second retrieve).

Restricted keys are refused with 401 naming the missing scope, and an
endpoint Keyward does not serve answers 404.
"""

import base64
import json
import math

import httpx
import openai
import pytest

from conftest import UPSTREAM_KEY, api_price, token_cost_micros


def row_of(gw, request_id):
    row = gw.ledger_rows([request_id]).get(request_id)
    assert row is not None, f"no ledger row for {request_id}"
    assert row["status"] == 200, row
    return row


def assert_upstream_saw(upstream, mark, method, path):
    sent = upstream.since(mark)
    assert [(s["method"], s["path"]) for s in sent] == [(method, path)], sent
    assert sent[0]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    return sent[0]


# ---------------------------------------------------------------- moderations


def test_moderations_are_proxied_and_billed_per_request(api_gateway, api, upstream):
    mark = upstream.mark()
    raw = api.moderations.with_raw_response.create(model="omni-moderation-latest", input=["a violent act", "a kind act"])
    m = raw.parse()
    assert [r.flagged for r in m.results] == [True, False]
    assert assert_upstream_saw(upstream, mark, "POST", "/v1/moderations")["body"]["input"] == ["a violent act", "a kind act"]
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("moderations", "omni-moderation-latest")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (0, 0)
    assert row["cost_micros"] == api_price("omni-moderation-latest", "price_per_request") == 1500


# ---------------------------------------------------------------- images


def test_image_generations_billed_per_image_and_tokens(api_gateway, api, upstream):
    mark = upstream.mark()
    raw = api.images.with_raw_response.generate(model="gpt-image-1", prompt="a small red cube", n=2)
    g = raw.parse()
    assert len(g.data) == 2 and base64.b64decode(g.data[1].b64_json).startswith(b"\x89PNG")
    assert (g.usage.input_tokens, g.usage.output_tokens) == (4, 20)
    assert assert_upstream_saw(upstream, mark, "POST", "/v1/images/generations")["body"]["n"] == 2
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("images.generations", "gpt-image-1")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4, 20)
    assert row["cost_micros"] == 2 * api_price("gpt-image-1", "price_per_image") + token_cost_micros("gpt-image-1", 4, 20)

    raw = api.images.with_raw_response.generate(model="dall-e-2", prompt="a cube", n=3, response_format="b64_json")
    assert len(raw.parse().data) == 3 and raw.parse().usage is None
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == ("images.generations", 0, 0)
    assert row["cost_micros"] == 3 * api_price("dall-e-2", "price_per_image")


def test_image_edits_and_variations_are_multipart(api_gateway, api, upstream):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    mark = upstream.mark()
    raw = api.images.with_raw_response.edit(model="gpt-image-1", image=("in.png", png, "image/png"),
                                            prompt="make it blue", n=1)
    e = raw.parse()
    assert len(e.data) == 1 and (e.usage.input_tokens, e.usage.output_tokens) == (3 + 5, 10)
    body = assert_upstream_saw(upstream, mark, "POST", "/v1/images/edits")["body"]
    assert body["image"]["bytes"] == len(png) and body["image"]["filename"] == "in.png"
    assert body["prompt"] == "make it blue" and body["model"] == "gpt-image-1"
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == ("images.edits", 8, 10)
    assert row["cost_micros"] == api_price("gpt-image-1", "price_per_image") + token_cost_micros("gpt-image-1", 8, 10)

    mark = upstream.mark()
    raw = api.images.with_raw_response.create_variation(model="dall-e-2", image=("in.png", png, "image/png"), n=2)
    assert len(raw.parse().data) == 2
    body = assert_upstream_saw(upstream, mark, "POST", "/v1/images/variations")["body"]
    assert body["image"]["bytes"] == len(png) and body["n"] == "2"
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("images.variations", "dall-e-2")
    assert row["cost_micros"] == 2 * api_price("dall-e-2", "price_per_image")


# ---------------------------------------------------------------- audio


def test_speech_is_binary_and_billed_per_character(api_gateway, api, upstream):
    text = "Keyward reads this aloud, twice over."
    mark = upstream.mark()
    raw = api.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=text)
    assert raw.content == b"FAKE-AUDIO:" + text.encode()
    assert raw.headers["content-type"].startswith("audio/")
    assert assert_upstream_saw(upstream, mark, "POST", "/v1/audio/speech")["body"]["input"] == text
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("audio.speech", "tts-1")
    assert row["cost_micros"] == math.ceil(len(text) * api_price("tts-1", "price_per_mchar") / 1_000_000)
    assert row["cost_micros"] > 0


def test_transcription_billed_per_minute_from_reported_seconds(api_gateway, api, upstream):
    audio = b"\x00" * 4501  # the fake: 4.501 s
    mark = upstream.mark()
    raw = api.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("talk.wav", audio, "audio/wav"))
    t = raw.parse()
    assert t.text == "fake transcription of talk.wav"
    assert t.usage.type == "duration" and t.usage.seconds == 4.501
    body = assert_upstream_saw(upstream, mark, "POST", "/v1/audio/transcriptions")["body"]
    assert body["file"]["bytes"] == len(audio) and body["model"] == "whisper-1"
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("audio.transcriptions", "whisper-1")
    assert row["cost_micros"] == math.ceil(4.501 * api_price("whisper-1", "price_per_minute") / 60) == 451


def test_translation_billed_from_verbose_json_duration(api_gateway, api, upstream):
    audio = b"\x01" * 61_000  # the fake: 61 s
    mark = upstream.mark()
    raw = api.audio.translations.with_raw_response.create(model="whisper-1", file=("rede.wav", audio, "audio/wav"),
                                                          response_format="verbose_json")
    t = raw.parse()
    assert t.text == "fake translation of rede.wav" and t.duration == 61.0
    assert_upstream_saw(upstream, mark, "POST", "/v1/audio/translations")
    row = row_of(api_gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"]) == ("audio.translations", "whisper-1")
    assert row["cost_micros"] == math.ceil(61 * api_price("whisper-1", "price_per_minute") / 60) == 6100


# ---------------------------------------------------------------- files and batches


def batch_lines(n, model="resp-test"):
    return "".join(
        json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "messages": [{"role": "user", "content": f"batch line {i} please"}]}}) + "\n"
        for i in range(n)
    ).encode()


def test_files_upload_list_retrieve_content_delete(api_gateway, upstream):
    # A project of its own, so the list holds exactly this test's files.
    project = api_gateway.create_project("files test")
    c = api_gateway.client(api_gateway.create_key(project_id=project["id"], name="files")["value"])
    mark = upstream.mark()
    uploaded = [c.files.create(file=(f"doc{i}.txt", f"content {i}".encode()), purpose="user_data") for i in range(5)]
    assert all(f.id.startswith("file-fake") and f.purpose == "user_data" for f in uploaded)
    sent = upstream.since(mark)
    assert [(s["method"], s["path"]) for s in sent] == [("POST", "/v1/files")] * 5
    assert sent[0]["body"]["file"]["bytes"] == len(b"content 0")
    batch_file = c.files.create(file=("in.jsonl", batch_lines(2)), purpose="batch")

    # Newest first, two per page: the SDK follows `after` across pages.
    listed = list(c.files.list(limit=2))
    assert [f.id for f in listed] == [batch_file.id] + [f.id for f in reversed(uploaded)]
    assert [f.id for f in c.files.list(purpose="user_data")] == [f.id for f in reversed(uploaded)]
    page = c.files.list(limit=2)
    assert page.has_more is True and len(page.data) == 2

    assert c.files.retrieve(uploaded[2].id).filename == "doc2.txt"
    assert c.files.content(uploaded[2].id).read() == b"content 2"
    assert c.files.delete(uploaded[2].id).deleted is True
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(uploaded[2].id)
    assert uploaded[2].id not in [f.id for f in c.files.list()]

    # File management is not metered.
    assert [r for r in api_gateway.ledger() if r["project_id"] == project["id"]] == []


def test_batch_create_complete_and_metered_once(api_gateway, upstream):
    project = api_gateway.create_project("batch test")
    key = api_gateway.create_key(project_id=project["id"], name="batch")
    c = api_gateway.client(key["value"])
    f = c.files.create(file=("in.jsonl", batch_lines(3)), purpose="batch")
    mark = upstream.mark()
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.status == "validating" and b.input_file_id == f.id
    assert upstream.since(mark)[0]["body"]["input_file_id"] == f.id

    seen = []
    for _ in range(5):
        got = c.batches.retrieve(b.id)
        seen.append(got.status)
        if got.status == "completed":
            break
    assert seen[-1] == "completed", seen
    assert (got.usage.input_tokens, got.usage.output_tokens) == (3 * 4, 3 * 5)

    rows = api_gateway.ledger_rows([b.id])
    assert b.id in rows, "no ledger row for the completed batch"
    row = rows[b.id]
    assert (row["endpoint"], row["model"], row["project_id"], row["key_id"]) == ("batches", "resp-test", project["id"], key["id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (12, 15)
    assert row["cost_micros"] == token_cost_micros("resp-test", 12, 15, got.usage.input_tokens_details.cached_tokens)

    # The output file is the project's too.
    out = c.files.content(got.output_file_id).read().decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in out] == ["req-0", "req-1", "req-2"]

    # Seen completed again (retrieve, list): still one row.
    c.batches.retrieve(b.id)
    listed = list(c.batches.list(limit=1))
    assert [x.id for x in listed] == [b.id] and listed[0].status == "completed"
    assert len([r for r in api_gateway.ledger() if r["request_id"] == b.id]) == 1

    # Cancel: a second batch, cancelled before it completes.
    b2 = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert c.batches.cancel(b2.id).status == "cancelling"
    assert c.batches.retrieve(b2.id).status == "cancelled"
    assert b2.id not in api_gateway.ledger_rows([b2.id], timeout=0.5)
    assert [x.id for x in c.batches.list()] == [b2.id, b.id]


# ---------------------------------------------------------------- permissions, unserved


def test_restricted_keys_are_refused_naming_the_scope(api_gateway, upstream):
    responses_only = api_gateway.client(api_gateway.create_key(
        name="responses only", permissions={"mode": "restricted", "responses": "write"})["value"])
    # In a project of its own, which owns no files yet.
    empty = api_gateway.create_project("no files yet")
    files_reader = api_gateway.client(api_gateway.create_key(
        project_id=empty["id"], name="files reader",
        permissions={"mode": "restricted", "files": "read"})["value"])
    mark = upstream.mark()
    refusals = [
        (lambda: responses_only.moderations.create(model="omni-moderation-latest", input="x"), "moderations.write"),
        (lambda: responses_only.images.generate(model="dall-e-2", prompt="x"), "images.write"),
        (lambda: responses_only.audio.speech.create(model="tts-1", voice="alloy", input="x"), "audio.write"),
        (lambda: responses_only.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"x")), "audio.write"),
        (lambda: responses_only.files.list(), "files.read"),
        (lambda: responses_only.batches.list(), "batch.read"),
        (lambda: files_reader.files.create(file=("a.txt", b"x"), purpose="user_data"), "files.write"),
        (lambda: files_reader.batches.create(input_file_id="file-x", endpoint="/v1/chat/completions",
                                             completion_window="24h"), "batch.write"),
    ]
    for call, scope in refusals:
        with pytest.raises(openai.AuthenticationError) as e:
            call()
        assert e.value.status_code == 401, scope
        assert scope in e.value.message, (scope, e.value.message)
    assert upstream.since(mark) == [], "a refused request reached the upstream"
    assert list(files_reader.files.list()) == []  # reading is allowed (and the project owns none)


def test_read_only_keys_read_but_do_not_write_the_new_groups(api_gateway):
    c = api_gateway.client(api_gateway.create_key(name="ro", permissions={"mode": "read_only"})["value"])
    assert isinstance(list(c.files.list()), list)
    with pytest.raises(openai.AuthenticationError) as e:
        c.responses.create(model="resp-test", input="x")
    assert "responses.write" in e.value.message


def test_unserved_endpoints_answer_404_listing_what_is_served(api_gateway, api_key, upstream):
    mark = upstream.mark()
    with httpx.Client(base_url=api_gateway.base, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as h:
        for method, path in [("POST", "/v1/realtime/sessions"), ("GET", "/v1/realtime"), ("POST", "/v1/assistants"),
                             ("GET", "/v1/chat/completions")]:
            r = h.request(method, path, json={} if method == "POST" else None)
            # Stored chat completions (GET) may be a 405 of the POST route.
            allowed = (404, 405) if path == "/v1/chat/completions" else (404,)
            assert r.status_code in allowed, (path, r.status_code, r.text)
            if r.status_code == 404:
                err = r.json()["error"]
                assert "/v1/responses" in err["message"], err
    assert upstream.since(mark) == []
