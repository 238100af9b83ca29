"""Keyward's OpenAI-compatible gateway, driven by the official OpenAI Python
SDK against a running `keyward serve` whose upstream is fake_upstream.py.

The fake answers "echo: <last user message>" and counts words as tokens, so
every expected reply and usage below is computed from the request.
"""

import json
import secrets
import signal
import socket
import threading
import time
import zlib

import httpx
import openai
import pytest

from conftest import MODEL_IDS, UPSTREAM_KEY, expected_cost_micros

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ---------------------------------------------------------------- helpers


def words(text):
    return len(str(text).split())


def fake_chat_usage(messages):
    """(prompt_tokens, completion_tokens) as fake_upstream.py counts them."""
    prompt = words(" ".join(str(m.get("content", "")) for m in messages))
    completion = words("echo: " + str(messages[-1].get("content", "")))
    return prompt, completion


def user(text):
    return [{"role": "user", "content": text}]


def assert_request_id(value):
    assert isinstance(value, str) and value.startswith("req_") and len(value) > len("req_"), value


def mask(key):
    """OpenAI's mask: first 8 characters, a `*` for each middle one, last 4."""
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def well_formed_unknown_key():
    """A key with a valid format and checksum that Keyward never issued."""
    body = "".join(secrets.choice(BASE62) for _ in range(40))
    crc = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits = BASE62[r] + digits
    return "sk-kw-" + body + digits


def no_upstream_call(upstream, mark):
    sent = upstream.since(mark)
    assert sent == [], f"a refused request reached the upstream: {sent}"


# ---------------------------------------------------------------- chat


def test_plain_chat_completion(client, upstream):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there world"},
    ]
    mark = upstream.mark()
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=messages)
    completion = raw.parse()

    assert completion.choices[0].message.content == "echo: hello there world"
    assert completion.choices[0].finish_reason == "stop"
    prompt, completion_tokens = fake_chat_usage(messages)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, completion_tokens)
    assert completion.usage.total_tokens == prompt + completion_tokens
    assert completion.id == "cmpl-fake"

    request_id = raw.headers.get("x-request-id")
    assert_request_id(request_id)
    assert completion._request_id == request_id
    assert raw.headers.get("openai-processing-ms", "").isdigit(), dict(raw.headers)

    sent = upstream.since(mark)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/chat/completions"
    assert sent[0]["body"]["model"] == "gpt-test"
    assert sent[0]["body"]["messages"] == messages
    assert "stream_options" not in sent[0]["body"]


def test_streaming_chat_without_include_usage_has_no_usage_chunk(client, upstream, gateway, key):
    messages = user("one two three four")
    mark = upstream.mark()
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=messages, stream=True)
    assert_request_id(raw.headers.get("x-request-id"))
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    assert raw.headers.get("openai-processing-ms", "").isdigit(), dict(raw.headers)
    chunks = list(raw.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert len(chunks) == words(text), "one chunk per word, and no extra (usage) chunk"
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    assert all(c.choices for c in chunks), "a usage-only chunk reached the client"

    # Keyward asked the upstream for usage itself (to meter the stream).
    sent = upstream.since(mark)
    assert len(sent) == 1
    assert sent[0]["body"]["stream"] is True
    assert sent[0]["body"].get("stream_options", {}).get("include_usage") is True

    # On the wire too: the usage chunk is gone and the stream still ends
    # properly, also when the client said include_usage: false.
    with httpx.Client(timeout=30) as h:
        for extra in [{}, {"stream_options": {"include_usage": False}}]:
            mark = upstream.mark()
            r = h.post(
                f"{gateway.base}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "gpt-test", "messages": messages, "stream": True, **extra},
            )
            assert r.status_code == 200
            assert "prompt_tokens" not in r.text, r.text
            assert r.text.count("data: ") == words("echo: one two three four") + 1, r.text
            assert r.text.rstrip().endswith("data: [DONE]"), r.text
            assert upstream.since(mark)[0]["body"]["stream_options"]["include_usage"] is True


def test_streaming_chat_with_include_usage_ends_with_usage(client, upstream):
    messages = [
        {"role": "user", "content": "first question here"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "and a second one please"},
    ]
    mark = upstream.mark()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    assert_request_id(raw.headers.get("x-request-id"))
    chunks = list(raw.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: and a second one please"
    last = chunks[-1]
    assert last.choices == []
    prompt, completion = fake_chat_usage(messages)
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt, completion)
    assert last.usage.total_tokens == prompt + completion
    assert all(c.usage is None for c in chunks[:-1])

    sent = upstream.since(mark)
    assert sent[0]["body"]["stream_options"] == {"include_usage": True}


# ---------------------------------------------------------------- completions, embeddings


def test_completions(client, upstream):
    mark = upstream.mark()
    raw = client.completions.with_raw_response.create(model="gpt-test", prompt="say hello please")
    assert_request_id(raw.headers.get("x-request-id"))
    c = raw.parse()
    assert c.choices[0].text == "echo: say hello please"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (3, 4, 7)

    stream = client.completions.create(model="gpt-test", prompt="stream me", stream=True)
    chunks = list(stream)
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "echo: stream me"
    assert all(ch.usage is None for ch in chunks)

    sent = upstream.since(mark)
    assert [s["path"] for s in sent] == ["/v1/completions", "/v1/completions"]
    assert sent[1]["body"]["stream_options"]["include_usage"] is True


def test_embeddings(client, upstream):
    mark = upstream.mark()
    raw = client.embeddings.with_raw_response.create(
        model="embed-test", input=["alpha beta", "gamma"], encoding_format="float"
    )
    assert_request_id(raw.headers.get("x-request-id"))
    e = raw.parse()
    assert [d.index for d in e.data] == [0, 1]
    assert e.data[0].embedding == pytest.approx([0.1, 0.2, 0.3])
    assert (e.usage.prompt_tokens, e.usage.total_tokens) == (3, 3)

    sent = upstream.since(mark)
    assert len(sent) == 1 and sent[0]["path"] == "/v1/embeddings"
    assert sent[0]["body"]["input"] == ["alpha beta", "gamma"]


# ---------------------------------------------------------------- models


def test_models_list_and_retrieve(client):
    listed = client.models.list()
    assert [m.id for m in listed] == MODEL_IDS
    assert all(m.object == "model" for m in listed)

    m = client.models.retrieve("gpt-test")
    assert (m.id, m.object, m.owned_by) == ("gpt-test", "model", "fake")
    assert client.models.retrieve("slow").owned_by == "fake-slowpoke"


def test_model_ids_with_a_slash(client, upstream):
    """Hugging Face style ids (org/name), as vLLM serves them; the SDK sends
    the slash percent-encoded in /v1/models/{model}."""
    assert client.models.retrieve("org/slash-model").id == "org/slash-model"
    mark = upstream.mark()
    r = client.chat.completions.create(model="org/slash-model", messages=user("slashed"))
    assert r.choices[0].message.content == "echo: slashed"
    assert upstream.since(mark)[0]["body"]["model"] == "org/slash-model"


def test_unknown_model_is_not_found(client, upstream):
    mark = upstream.mark()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"
    assert "The model `no-such-model` does not exist or you do not have access to it." in e.value.message
    assert_request_id(e.value.request_id)
    no_upstream_call(upstream, mark)

    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.code == "model_not_found"
    assert_request_id(e.value.request_id)


def test_allowed_models_limit_what_a_key_sees_and_uses(gateway, upstream):
    k = gateway.create_key(name="only gpt-other", allowed_models=["gpt-other"])
    c = gateway.client(k["value"])

    assert [m.id for m in c.models.list()] == ["gpt-other"]
    assert c.models.retrieve("gpt-other").id == "gpt-other"
    with pytest.raises(openai.NotFoundError) as e:
        c.models.retrieve("gpt-test")
    assert e.value.code == "model_not_found"
    assert_request_id(e.value.request_id)

    mark = upstream.mark()
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-test", messages=user("hi"))
    assert e.value.code == "model_not_found"
    assert "The model `gpt-test` does not exist or you do not have access to it." in e.value.message
    assert_request_id(e.value.request_id)
    no_upstream_call(upstream, mark)

    ok = c.chat.completions.create(model="gpt-other", messages=user("allowed"))
    assert ok.choices[0].message.content == "echo: allowed"


def test_model_rename_sends_the_upstream_name(client, upstream):
    mark = upstream.mark()
    r = client.chat.completions.create(model="renamed", messages=user("rename me"))
    assert r.choices[0].message.content == "echo: rename me"
    r = client.chat.completions.create(model="renamed", messages=user("and stream"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in r if c.choices) == "echo: and stream"
    sent = upstream.since(mark)
    assert [s["body"]["model"] for s in sent] == ["fake-internal-name", "fake-internal-name"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "bad_key",
    [
        pytest.param("well-formed", id="unknown-well-formed-key"),
        pytest.param("sk-kw-" + "A" * 46, id="bad-checksum"),
        pytest.param("sk-proj-not-a-keyward-key-0123456789", id="foreign-key"),
    ],
)
def test_wrong_key_is_authentication_error(gateway, upstream, bad_key):
    if bad_key == "well-formed":
        bad_key = well_formed_unknown_key()
    mark = upstream.mark()
    c = gateway.client(bad_key)
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="gpt-test", messages=user("hi"))
    err = e.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key"
    assert_request_id(err.request_id)
    assert mask(bad_key) in err.message, err.message
    assert bad_key not in err.response.text
    assert all(bad_key not in v for v in err.response.headers.values())
    no_upstream_call(upstream, mark)

    # A new client after each refusal of a POST: see test_a_refused_request_leaves_the_connection_usable.
    with pytest.raises(openai.AuthenticationError) as e:
        gateway.client(bad_key).models.list()
    assert e.value.code == "invalid_api_key"
    assert_request_id(e.value.request_id)


def test_missing_key_is_401(gateway):
    r = httpx.post(f"{gateway.base}/v1/chat/completions", json={"model": "gpt-test", "messages": user("hi")})
    assert r.status_code == 401
    assert r.json()["error"]["message"].startswith("You didn't provide an API key.")
    assert_request_id(r.headers.get("x-request-id"))


def test_missing_messages_is_bad_request(client, upstream):
    mark = upstream.mark()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-test", messages=[])
    assert e.value.status_code == 400
    assert e.value.param == "messages"
    assert e.value.type == "invalid_request_error"
    assert_request_id(e.value.request_id)

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-test", messages=user("hi"), extra_body={"max_tokens": "many"})
    assert e.value.param == "max_tokens"
    assert_request_id(e.value.request_id)
    no_upstream_call(upstream, mark)


def test_read_only_key_cannot_call_models(gateway, upstream):
    k = gateway.create_key(name="read only", permissions={"mode": "read_only"})
    c = gateway.client(k["value"])
    assert [m.id for m in c.models.list()] == MODEL_IDS  # reading is allowed

    mark = upstream.mark()
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="gpt-test", messages=user("hi"))
    assert e.value.status_code == 401
    assert "insufficient permissions" in e.value.message
    assert "chat.completions.write" in e.value.message
    assert_request_id(e.value.request_id)

    with pytest.raises(openai.AuthenticationError) as e:
        gateway.client(k["value"]).embeddings.create(model="embed-test", input="x", encoding_format="float")
    assert "embeddings.write" in e.value.message
    assert_request_id(e.value.request_id)
    no_upstream_call(upstream, mark)


def test_ip_outside_allow_list_is_permission_denied(gateway, upstream):
    outside = gateway.client(gateway.create_key(name="10/8 only", allowed_ips=["10.0.0.0/8"])["value"])
    mark = upstream.mark()
    with pytest.raises(openai.PermissionDeniedError) as e:
        outside.chat.completions.create(model="gpt-test", messages=user("hi"))
    assert e.value.status_code == 403
    assert_request_id(e.value.request_id)
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(outside.api_key).chat.completions.create(model="gpt-test", messages=user("hi"), stream=True)
    no_upstream_call(upstream, mark)

    inside = gateway.client(gateway.create_key(name="loopback", allowed_ips=["127.0.0.0/8"])["value"])
    assert inside.chat.completions.create(model="gpt-test", messages=user("hi")).choices[0].message.content == "echo: hi"


def test_ip_allow_list_applies_to_the_models_endpoints(gateway):
    """The allow-list is a property of the key: every request made with it
    from elsewhere is refused, listing models included."""
    outside = gateway.client(gateway.create_key(name="10/8 only", allowed_ips=["10.0.0.0/8"])["value"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        outside.models.list()
    assert_request_id(e.value.request_id)
    with pytest.raises(openai.PermissionDeniedError) as e:
        outside.models.retrieve("gpt-test")
    assert_request_id(e.value.request_id)


def read_response(sock):
    """One HTTP/1.1 response from `sock`: (status, headers, body); None if the
    server closed the connection without answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("refusal", ["read-only key (401)", "unknown key (401)", "IP not allowed (403)"])
def test_a_refused_request_leaves_the_connection_usable(gateway, key, refusal):
    """Keyward refuses some POSTs before reading their body. When the body
    is still on its way (clients send headers and body in separate writes),
    the connection must stay usable for the next request, or the refusal
    must say `Connection: close`. Closed silently, the client's next request
    on the kept-alive connection fails with "Server disconnected without
    sending a response" (the SDK's APIConnectionError)."""
    presented, status = {
        "read-only key (401)": (gateway.create_key(permissions={"mode": "read_only"})["value"], 401),
        "unknown key (401)": (well_formed_unknown_key(), 401),
        "IP not allowed (403)": (gateway.create_key(allowed_ips=["10.0.0.0/8"])["value"], 403),
    }[refusal]
    host, port = gateway.base.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"model": "gpt-test", "messages": user("hi")}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {presented}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        time.sleep(0.1)
        try:
            s.sendall(body)
        except OSError:
            pass
        first = read_response(s)
        assert first is not None and first[0] == status, first
        if "close" in first[1].get("connection", "").lower():
            return  # the server said it closes the connection: clients will not reuse it
        try:
            s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
            second = read_response(s)
        except OSError as e:
            second = e
    assert second is not None and not isinstance(second, OSError) and second[0] == 200, (
        f"after a {status} without `Connection: close`, the kept-alive connection was closed: {second!r}"
    )


def test_upstream_500_is_passed_through(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="upstream-error", messages=user("hi"))
    err = e.value
    assert err.status_code == 500
    assert "upstream exploded" in err.message
    assert err.body["message"] == "upstream exploded"
    assert err.response.json() == {
        "error": {"message": "upstream exploded", "type": "server_error", "param": None, "code": None}
    }
    assert_request_id(err.request_id)

    # A stream that fails before it starts is the same error.
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="upstream-error", messages=user("hi"), stream=True)
    assert e.value.body["message"] == "upstream exploded"
    assert_request_id(e.value.request_id)


def test_upstream_400_is_passed_through_unchanged(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="bad-request", messages=user("hi"))
    err = e.value
    assert err.status_code == 400
    assert err.response.json() == {
        "error": {"message": "upstream says no", "type": "invalid_request_error", "param": "temperature", "code": None}
    }
    assert err.param == "temperature"
    assert_request_id(err.request_id)


def test_upstream_timeout_is_504(client):
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="slow", messages=user("hi"))
    elapsed = time.monotonic() - started
    err = e.value
    assert err.status_code == 504
    assert isinstance(err, openai.InternalServerError)
    assert err.code == "upstream_timeout"
    assert err.type == "server_error"
    assert_request_id(err.request_id)
    assert 0.9 <= elapsed < 2.5, f"the upstream timeout is 1s, the call took {elapsed:.2f}s"


def test_upstream_down_is_502(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="down", messages=user("hi"))
    err = e.value
    assert err.status_code == 502
    assert err.code == "upstream_unavailable"
    assert err.type == "server_error"
    assert_request_id(err.request_id)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="down", messages=user("hi"), stream=True)
    assert e.value.status_code == 502


# ---------------------------------------------------------------- credentials


def test_upstream_credential_stays_on_the_server(gateway, upstream, key):
    mark = upstream.mark()
    auth = {"Authorization": f"Bearer {key}"}
    calls = [
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": user("hi"), "stream": True}),
        ("POST", "/v1/completions", {"model": "gpt-test", "prompt": "hi"}),
        ("POST", "/v1/embeddings", {"model": "embed-test", "input": "hi"}),
        ("POST", "/v1/chat/completions", {"model": "upstream-error", "messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"model": "bad-request", "messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"model": "down", "messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"model": "slow", "messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": user("hi")}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/gpt-test", None),
    ]
    statuses = []
    with httpx.Client(base_url=gateway.base, headers=auth, timeout=30) as h:
        for method, path, body in calls:
            r = h.request(method, path, json=body)
            statuses.append(r.status_code)
            assert UPSTREAM_KEY not in r.text, (path, body)
            for name, value in r.headers.items():
                assert UPSTREAM_KEY not in value, (path, name)
            assert "sk-upstream" not in r.text
    assert statuses == [200, 200, 200, 200, 500, 400, 502, 504, 404, 200, 200]

    sent = upstream.since(mark)
    assert len(sent) == 7  # every call that was routed to the fake (not `down`, not `nope`)
    for s in sent:
        assert s["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert key not in json.dumps(s)


# ---------------------------------------------------------------- revocation


def test_key_revoked_with_the_management_api_fails_on_the_next_request(gateway):
    k = gateway.create_key(name="to revoke")
    c = gateway.client(k["value"])
    assert c.chat.completions.create(model="gpt-test", messages=user("before")).choices  # now cached
    assert c.models.list().data

    gateway.revoke_key(k["id"])

    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="gpt-test", messages=user("after"))
    assert e.value.code == "invalid_api_key"
    assert mask(k["value"]) in e.value.message
    assert_request_id(e.value.request_id)
    with pytest.raises(openai.AuthenticationError):
        gateway.client(k["value"]).models.list()


def test_key_revoked_with_the_cli_fails_within_a_second(gateway):
    k = gateway.cli_key("revoked by the cli")
    c = gateway.client(k["value"])
    assert c.chat.completions.create(model="gpt-test", messages=user("before")).choices  # now cached

    gateway.cli("keys", "revoke", k["id"])
    revoked = time.monotonic()
    while True:
        try:
            c.chat.completions.create(model="gpt-test", messages=user("after"))
        except openai.AuthenticationError as e:
            assert e.code == "invalid_api_key"
            assert_request_id(e.request_id)
            break
        waited = time.monotonic() - revoked
        assert waited < 1.0, f"the key revoked by the CLI still worked {waited:.2f}s later"
        time.sleep(0.05)


# ---------------------------------------------------------------- metering


def test_ledger_matches_what_the_client_saw(fresh_gateway):
    gw = fresh_gateway
    k = gw.cli_key("metered")
    c = gw.client(k["value"])
    seen = {}  # request id -> (model, endpoint, prompt, completion, status)

    for text in ["first plain call", "second plain call with more words"]:
        raw = c.chat.completions.with_raw_response.create(model="gpt-test", messages=user(text))
        u = raw.parse().usage
        seen[raw.headers["x-request-id"]] = ("gpt-test", "chat.completions", u.prompt_tokens, u.completion_tokens, 200)

    raw = c.chat.completions.with_raw_response.create(
        model="gpt-test", messages=user("streamed with usage"), stream=True, stream_options={"include_usage": True}
    )
    u = list(raw.parse())[-1].usage
    seen[raw.headers["x-request-id"]] = ("gpt-test", "chat.completions", u.prompt_tokens, u.completion_tokens, 200)

    # The client is not told the usage of this stream; the fake's count is known.
    messages = user("streamed without usage")
    raw = c.chat.completions.with_raw_response.create(model="gpt-other", messages=messages, stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    seen[raw.headers["x-request-id"]] = ("gpt-other", "chat.completions", *fake_chat_usage(messages), 200)

    raw = c.chat.completions.with_raw_response.create(model="renamed", messages=user("by another name"))
    u = raw.parse().usage
    seen[raw.headers["x-request-id"]] = ("renamed", "chat.completions", u.prompt_tokens, u.completion_tokens, 200)

    raw = c.completions.with_raw_response.create(model="gpt-test", prompt="complete this")
    u = raw.parse().usage
    seen[raw.headers["x-request-id"]] = ("gpt-test", "completions", u.prompt_tokens, u.completion_tokens, 200)

    raw = c.embeddings.with_raw_response.create(model="embed-test", input="embed these words", encoding_format="float")
    u = raw.parse().usage
    seen[raw.headers["x-request-id"]] = ("embed-test", "embeddings", u.prompt_tokens, 0, 200)

    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="upstream-error", messages=user("fail"))
    seen[e.value.request_id] = ("upstream-error", "chat.completions", 0, 0, 500)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="down", messages=user("fail"))
    seen[e.value.request_id] = ("down", "chat.completions", 0, 0, 502)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="slow", messages=user("fail"))
    assert e.value.status_code == 504
    seen[e.value.request_id] = ("slow", "chat.completions", 0, 0, 504)

    # SIGTERM while streams are in flight: each is served to its end and
    # recorded, and only then does the server stop.
    in_flight = 8
    started, go = threading.Barrier(in_flight + 1), threading.Event()
    results = [None] * in_flight

    def stream(i):
        try:
            messages = user(" ".join(f"s{i}w{n}" for n in range(50)))  # about 0.5 s of streaming
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-test", messages=messages, stream=True, stream_options={"include_usage": True}
            )
            chunks = iter(raw.parse())
            first = next(chunks)
            started.wait(10)
            go.wait(10)
            results[i] = (raw.headers["x-request-id"], messages, [first, *chunks])
        except Exception as e:  # reported below, in the test's thread
            results[i] = e
            started.abort()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(in_flight)]
    for t in threads:
        t.start()
    try:
        started.wait(10)
    except threading.BrokenBarrierError:
        pass  # a stream failed; reported below
    gw.proc.send_signal(signal.SIGTERM)
    go.set()
    for t in threads:
        t.join(30)
    for r in results:
        if not isinstance(r, tuple):
            raise AssertionError(f"a stream in flight at SIGTERM failed: {r!r}")
    for request_id, messages, chunks in results:
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "echo: " + messages[0]["content"]
        u = chunks[-1].usage
        assert (u.prompt_tokens, u.completion_tokens) == fake_chat_usage(messages)
        seen[request_id] = ("gpt-test", "chat.completions", u.prompt_tokens, u.completion_tokens, 200)

    assert all(rid.startswith("req_") for rid in seen)
    assert len(seen) == 10 + in_flight

    assert gw.proc.wait(20) == 0, "keyward did not exit cleanly on SIGTERM"
    rows = [r for r in gw.ledger() if r["key_id"] == k["id"]]

    assert sorted(r["request_id"] for r in rows) == sorted(seen), "one ledger row per request, same ids"
    for r in rows:
        model, endpoint, prompt, completion, status = seen[r["request_id"]]
        got = (r["model"], r["endpoint"], r["prompt_tokens"], r["completion_tokens"], r["status"])
        hint = ""
        if r["status"] == 499 and status == 200:
            hint = "a stream the SDK read to [DONE] was recorded as 499; see test_stream_the_client_read_to_done_is_recorded_as_200"
        assert got == (model, endpoint, prompt, completion, status), (r, hint)
        assert r["cost_micros"] == expected_cost_micros(model, prompt, completion), r
        assert r["project_id"] == k["project_id"]
        assert r["user_id"] == k["owner"]["user"]["id"]
        assert r["latency_ms"] >= 0
        assert abs(r["created_at"] - time.time()) < 600
    # The daily roll-up agrees with the ledger, model by model.
    daily = {}
    for d in gw.query("SELECT * FROM usage_daily"):
        if d["key_id"] == k["id"]:
            t = daily.setdefault(d["model"], [0, 0, 0, 0, 0])
            for i, col in enumerate(["requests", "errors", "prompt_tokens", "completion_tokens", "cost_micros"]):
                t[i] += d[col]
    expected = {}
    for r in rows:
        t = expected.setdefault(r["model"], [0, 0, 0, 0, 0])
        for i, v in enumerate([1, int(r["status"] >= 400), r["prompt_tokens"], r["completion_tokens"], r["cost_micros"]]):
            t[i] += v
    assert daily == expected
    # The prices make most costs fractional, so rounding up is checked too.
    assert any(
        (r["prompt_tokens"] * 2_500_000 + r["completion_tokens"] * 10_000_000) % 1_000_000
        for r in rows
        if r["model"] == "gpt-test"
    )


def test_stream_the_client_read_to_done_is_recorded_as_200(gateway, client):
    """The official SDK stops reading at `data: [DONE]` and closes the
    response. The client has then received the whole stream: the ledger
    must say 200, not 499, even when the upstream ends its HTTP body a
    little after [DONE]."""
    raw = client.chat.completions.with_raw_response.create(
        model="late-end", messages=user("hi"), stream=True, stream_options={"include_usage": True}
    )
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "all here"
    assert chunks[-1].usage.total_tokens == 4

    row = None
    deadline = time.monotonic() + 5
    while row is None and time.monotonic() < deadline:
        row = next((r for r in gateway.ledger() if r["request_id"] == request_id), None)
        time.sleep(0.05)
    assert row is not None, "the stream was never recorded"
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == (200, 2, 2), row


def test_client_disconnecting_mid_stream_is_recorded_as_499(fresh_gateway, upstream):
    gw = fresh_gateway
    k = gw.cli_key("disconnects")
    long_prompt = " ".join(f"w{i}" for i in range(300))  # about 3 s of streaming, 10 ms a word
    log_before = len(upstream.log())
    started = time.monotonic()
    with httpx.Client(timeout=30) as h:
        with h.stream(
            "POST",
            f"{gw.base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {k['value']}"},
            json={"model": "gpt-test", "messages": user(long_prompt), "stream": True},
        ) as r:
            assert r.status_code == 200
            request_id = r.headers["x-request-id"]
            assert_request_id(request_id)
            got = b""
            for chunk in r.iter_raw():
                got += chunk
                if got.count(b"data:") >= 3:
                    break
    # The response and the client are closed: the connection is gone.

    row = None
    while time.monotonic() - started < 2.5:  # well before the stream would have ended on its own
        row = next((r for r in gw.ledger() if r["request_id"] == request_id), None)
        if row:
            break
        time.sleep(0.05)
    assert row is not None, "the disconnected stream was not recorded before it would have ended by itself"

    # The upstream call was cancelled too: the fake's next writes fail.
    while "Error" not in upstream.log()[log_before:] and time.monotonic() - started < 2.5:
        time.sleep(0.05)
    cut = upstream.log()[log_before:]
    assert "BrokenPipeError" in cut or "ConnectionResetError" in cut, (
        "the upstream kept streaming to Keyward after the client had gone"
    )
    assert gw.stop() == 0

    rows = [r for r in gw.ledger() if r["key_id"] == k["id"]]
    assert [r["request_id"] for r in rows] == [request_id]
    row = rows[0]
    assert row["status"] == 499
    assert row["model"] == "gpt-test"
    assert 1 <= row["completion_tokens"] < 300, row
    assert row["prompt_tokens"] > 0, row
    assert row["cost_micros"] == expected_cost_micros("gpt-test", row["prompt_tokens"], row["completion_tokens"])
    assert row["latency_ms"] < 2500, row
