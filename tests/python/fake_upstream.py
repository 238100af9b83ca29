"""A small OpenAI-compatible upstream for tests, standing in for a remote
model provider. Everything it answers is computed from the request (or from
its in-memory store), so tests can predict every reply, usage and id.

Chat completions and text completions (`/v1/chat/completions`,
`/v1/completions`), embeddings:

- the reply is "echo: <last user message>", one word per stream chunk;
- usage counts whitespace-separated words of the prompt and the reply;
- model "upstream-error" answers 500 in OpenAI's error shape; model "slow"
  waits `SLOW_SECONDS` before answering; model "bad-request" answers 400
  (these three hold on every POST endpoint);
- with `tools` and a last message from the user, the answer is a call of
  the first tool (`finish_reason: "tool_calls"`), its arguments built by
  `tool_arguments` from the tool's JSON schema and the user's text; streamed,
  the call arrives as a first delta with id and name, then its arguments in
  two pieces;
- when the last message has role `tool`, the reply is
  "tool said: <that message's content>".

Responses (`/v1/responses`), stored in memory:

- the reply is "echo: <text of the last user input item>"; when the last
  input item is a `function_call_output` it is "tool said: <its output>";
  with function `tools` and any other last item, the output is one
  `function_call` of the first function tool (arguments as above);
- usage: `input_tokens` = words of `instructions` and of every text in
  `input`, plus the previous response's input and output tokens when
  `previous_response_id` is given; `cached_tokens` = input_tokens // 2;
  `reasoning_tokens` = REASONING_TOKENS; `output_tokens` = words of the
  reply (or of the call's arguments) + REASONING_TOKENS;
- `previous_response_id` must name a stored response, else 404
  `previous_response_not_found`; `store: false` responses are not stored;
- streamed: the events of docs/design/responses-api.md §2.2, one text delta
  per word, the call's arguments in two deltas, `sequence_number` from 0;
- `background: true` (not streamed): created `queued`; each retrieve moves it
  on, `in_progress` then `completed` (usage set) on the second retrieve;
  `cancel` before that makes it `cancelled`; cancelling a response that was
  not created in the background, or has finished, answers 400;
- `GET`, `DELETE`, `POST …/cancel`, `GET …/input_items` (`after`, `limit`,
  `order` default desc; input items get `msg_…`/`fc_…`/`fco_…` ids).

Moderations: one result per input; flagged when the text contains
"violent". Images: `n` images (default 1) as `b64_json`; a `gpt-image…`
model adds usage (generations and edits): input_tokens = words of the prompt
(+ IMAGE_INPUT_TOKENS per uploaded image for edits), output_tokens =
IMAGE_OUTPUT_TOKENS per image. Speech: `FAKE-AUDIO:<input>` as bytes.
Transcriptions and translations (multipart): the audio lasts
len(file bytes) / BYTES_PER_SECOND seconds; transcriptions in `json` carry
`usage {type: "duration", seconds}`, translations in `json` carry only
`text`; `verbose_json` carries `duration` for both; `text` is plain text.

Files: multipart upload, list (`after`, `limit` default 10000, `order`
default desc, `purpose`), retrieve, content, delete. Batches: created from
an uploaded `batch` file as `validating`; each retrieve moves it on:
`in_progress` on the first, `completed` on the second, with `usage` (the sum
over the input lines, each counted like a chat call, cached and reasoning 0)
and an `output_file_id` (a `batch_output` file of JSONL answers). Cancel
makes a batch that has not completed `cancelling`, and its next retrieve
`cancelled`. List (`after`, `limit` default 20) is newest first.

Ids are a prefix and a zero-padded counter (`resp_fake000001`,
`file-fake000002`, …), so their order is the creation order.

It records every request (method, path with query, authorization header,
body: the JSON, or for multipart a map of fields where files are
{filename, content_type, bytes}) so tests can check what Keyward forwarded;
`GET /requests` answers the list. Run: python fake_upstream.py [PORT_FILE]
"""

import base64
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLOW_SECONDS = 3.0
REASONING_TOKENS = 2
IMAGE_INPUT_TOKENS = 5
IMAGE_OUTPUT_TOKENS = 10
BYTES_PER_SECOND = 1000
REQUESTS = []
LOCK = threading.Lock()

# The stores, guarded by LOCK.
COUNTER = [0]
RESPONSES = {}  # id -> {"response": obj, "input_items": [...], "retrieves": n}
FILES = {}  # id -> {"object": FileObject, "content": bytes, "deleted": bool}
BATCHES = {}  # id -> {"object": Batch, "retrieves": n, "seq": n}


def new_id(prefix):
    with LOCK:
        COUNTER[0] += 1
        return f"{prefix}fake{COUNTER[0]:06d}"


def words(text):
    return [w for w in str(text).split() if w]


def content_text(content):
    """The text of a chat message's or a Responses item's content: a string,
    a list of parts with `text`, or nothing."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def prompt_text(body):
    if "messages" in body:
        return " ".join(content_text(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    if "prompt" in body:
        return str(body["prompt"])
    return str(body.get("input", ""))


def error(message, type_="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def tool_arguments(parameters, text):
    """Arguments for a call of a tool with JSON schema `parameters`: every
    string property gets `text`, integers and numbers 2, booleans true."""
    args = {}
    for name, schema in ((parameters or {}).get("properties") or {}).items():
        kind = (schema or {}).get("type")
        if kind in ("integer", "number"):
            args[name] = 2
        elif kind == "boolean":
            args[name] = True
        else:
            args[name] = text
    return json.dumps(args)


def parse_multipart(raw, content_type):
    """{name: value}; a value is a string, or {filename, content_type, data}
    for a file; a name sent more than once gets a list."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("no boundary")
    boundary = b"--" + m.group(1).encode()
    fields, lists = {}, set()
    for part in raw.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, _, data = part.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disp)
        if not name:
            continue
        filename = re.search(r'filename="([^"]*)"', disp)
        if filename:
            value = {"filename": filename.group(1), "content_type": headers.get("content-type"), "data": data}
        else:
            value = data.decode("utf-8", "replace")
        key = name.group(1)
        if key in lists:
            fields[key].append(value)
        elif key in fields:
            fields[key] = [fields[key], value]
            lists.add(key)
        else:
            fields[key] = value
    return fields


def recordable(fields):
    """Multipart fields as JSON: files as {filename, content_type, bytes}."""
    def one(v):
        if isinstance(v, dict):
            return {"filename": v["filename"], "content_type": v["content_type"], "bytes": len(v["data"])}
        return v

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in fields.items()}


def page(items, query, default_limit, default_order="desc"):
    """A cursor page of objects with `id`, in creation order `items`."""
    order = query.get("order", [default_order])[0]
    items = list(reversed(items)) if order == "desc" else list(items)
    after = query.get("after", [None])[0]
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = int(query.get("limit", [default_limit])[0])
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


# ---------------------------------------------------------------- responses


def input_items(body):
    """The request's input as a list of items, each given an id."""
    inp = body.get("input", "")
    if isinstance(inp, str):
        inp = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": inp}]}]
    items = []
    for item in inp:
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item.setdefault("status", "completed")
        prefix = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}.get(kind, "item_")
        if not item.get("id"):
            item["id"] = new_id(prefix)
        items.append(item)
    return items


def item_text(item):
    if item.get("type") == "function_call_output":
        out = item.get("output")
        return out if isinstance(out, str) else content_text(out)
    if item.get("type") == "function_call":
        return item.get("arguments", "")
    return content_text(item.get("content"))


def responses_reply(body, items):
    """("text", reply) or ("call", function_call item)."""
    last = items[-1] if items else {}
    if last.get("type") == "function_call_output":
        return "text", "tool said: " + item_text(last)
    last_user = next((i for i in reversed(items) if i.get("type") == "message" and i.get("role") == "user"), {})
    functions = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if functions:
        tool = functions[0]
        call = {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": new_id("call_"),
            "name": tool["name"],
            "arguments": tool_arguments(tool.get("parameters"), item_text(last_user)),
            "status": "completed",
        }
        return "call", call
    return "text", "echo: " + item_text(last_user)


def response_object(body, rid, status, output, usage):
    now = int(time.time())
    return {
        "id": rid,
        "object": "response",
        "created_at": now,
        "completed_at": now if status == "completed" else None,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def message_item(mid, text, status="completed"):
    return {
        "type": "message",
        "id": mid,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text is not None else [],
    }


def complete_response(resp, pending):
    """A background response reaches `completed`."""
    resp["status"] = "completed"
    resp["completed_at"] = int(time.time())
    resp["output"] = pending["output"]
    resp["usage"] = pending["usage"]


# ---------------------------------------------------------------- the server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing
    def send_json(self, status, obj):
        self.send_bytes(status, json.dumps(obj).encode(), "application/json")

    def send_bytes(self, status, data, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def send_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def record(self, body):
        with LOCK:
            REQUESTS.append({
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("authorization"),
                "body": body,
            })

    def not_found(self, what="not here", param=None):
        self.send_json(404, error(what, param=param, code="not_found" if param is None else None))

    # -- verbs
    def do_GET(self):
        if self.path == "/requests":
            with LOCK:
                self.send_json(200, REQUESTS)
            return
        self.record(None)
        self.route("GET", None)

    def do_DELETE(self):
        self.record(None)
        self.route("DELETE", None)

    def do_POST(self):
        raw = self.read_body()
        ctype = self.headers.get("content-type") or ""
        if ctype.startswith("multipart/form-data"):
            try:
                body = parse_multipart(raw, ctype)
            except ValueError:
                self.send_json(400, error("bad multipart"))
                return
            self.record(recordable(body))
        else:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self.send_json(400, error("bad json"))
                return
            self.record(body)
        model = body.get("model", "") if isinstance(body, dict) else ""
        if model == "upstream-error":
            self.send_json(500, error("upstream exploded", "server_error"))
            return
        if model == "bad-request":
            self.send_json(400, error("upstream says no", param="temperature"))
            return
        if model == "slow":
            time.sleep(SLOW_SECONDS)
        self.route("POST", body)

    def route(self, method, body):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        parts = path.strip("/").split("/")  # ["v1", ...]
        if parts[:1] != ["v1"] or len(parts) < 2:
            return self.not_found()
        rest = parts[1:]
        head = rest[0]
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return self.on_chat_like(body)
        if head == "responses":
            return self.on_responses(method, rest[1:], query, body)
        if method == "POST" and path == "/v1/moderations":
            return self.on_moderations(body)
        if method == "POST" and head == "images" and len(rest) == 2:
            return self.on_images(rest[1], body)
        if method == "POST" and path == "/v1/audio/speech":
            return self.send_bytes(200, b"FAKE-AUDIO:" + str(body.get("input", "")).encode(), "audio/mpeg")
        if method == "POST" and path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            return self.on_audio_text(rest[1], body)
        if head == "files":
            return self.on_files(method, rest[1:], query, body)
        if head == "batches":
            return self.on_batches(method, rest[1:], query, body)
        return self.not_found()

    # -- chat, completions, embeddings
    def on_chat_like(self, body):
        model = body.get("model", "")
        prompt_tokens = len(words(prompt_text(body)))
        if self.path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            self.send_json(200, {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)],
                "model": model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            })
            return
        chat = self.path.endswith("/chat/completions")
        call = None
        if chat:
            messages = body["messages"]
            last_msg = messages[-1] if messages else {}
            if last_msg.get("role") == "tool":
                reply = "tool said: " + content_text(last_msg.get("content"))
            elif body.get("tools") and last_msg.get("role") == "user":
                fn = body["tools"][0].get("function") or {}
                call = {
                    "id": new_id("call_"),
                    "type": "function",
                    "function": {"name": fn.get("name"), "arguments": tool_arguments(fn.get("parameters"), content_text(last_msg.get("content")))},
                }
                reply = None
            else:
                reply = "echo: " + prompt_text({"messages": messages[-1:]})
        else:
            reply = "echo: " + prompt_text(body)
        completion_tokens = len(words(reply if call is None else call["function"]["arguments"]))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            if chat:
                message = {"role": "assistant", "content": reply}
                if call:
                    message["tool_calls"] = [call]
                choice = {"index": 0, "message": message, "finish_reason": finish}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": reply, "finish_reason": "stop"}
                obj = "text_completion"
            self.send_json(200, {"id": "cmpl-fake", "object": obj, "created": 1, "model": model, "choices": [choice], "usage": usage})
            return
        self.start_sse()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        obj = "chat.completion.chunk" if chat else "text_completion"

        def send_event(o):
            self.send_chunk(("data: " + (o if isinstance(o, str) else json.dumps(o)) + "\n\n").encode())

        def chunk(choice):
            c = {"id": "cmpl-fake", "object": obj, "created": 1, "model": model, "choices": [choice]}
            if include_usage:
                c["usage"] = None
            return c

        if call:
            args = call["function"]["arguments"]
            half = len(args) // 2
            send_event(chunk({"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]}, "finish_reason": None}))
            for piece in (args[:half], args[half:]):
                send_event(chunk({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "finish_reason": None}))
            send_event(chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls"}))
        else:
            pieces = reply.split(" ")
            for i, piece in enumerate(pieces):
                text = piece if i == 0 else " " + piece
                if chat:
                    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
                else:
                    choice = {"index": 0, "text": text, "finish_reason": None}
                send_event(chunk(choice))
                time.sleep(0.01)
        if include_usage:
            send_event({"id": "cmpl-fake", "object": obj, "created": 1, "model": model, "choices": [], "usage": usage})
        send_event("[DONE]")
        self.end_chunks()

    # -- responses
    def on_responses(self, method, rest, query, body):
        if method == "POST" and not rest:
            return self.on_create_response(body)
        if not rest:
            return self.not_found()
        rid = rest[0]
        with LOCK:
            stored = RESPONSES.get(rid)
        if stored is None:
            return self.send_json(404, error(f"Response with id '{rid}' not found.", param="response_id"))
        resp = stored["response"]
        if method == "GET" and len(rest) == 1:
            with LOCK:
                if resp["background"] and resp["status"] in ("queued", "in_progress"):
                    stored["retrieves"] += 1
                    if stored["retrieves"] == 1:
                        resp["status"] = "in_progress"
                    else:
                        complete_response(resp, stored["pending"])
                return self.send_json(200, resp)
        if method == "DELETE" and len(rest) == 1:
            with LOCK:
                del RESPONSES[rid]
            return self.send_json(200, {"id": rid, "object": "response.deleted", "deleted": True})
        if method == "POST" and rest[1:] == ["cancel"]:
            with LOCK:
                if not resp["background"]:
                    return self.send_json(400, error("Cannot cancel a synchronous response.", param="response_id"))
                if resp["status"] not in ("queued", "in_progress"):
                    return self.send_json(400, error(f"Cannot cancel a response with status '{resp['status']}'.", param="response_id"))
                resp["status"] = "cancelled"
                return self.send_json(200, resp)
        if method == "GET" and rest[1:] == ["input_items"]:
            return self.send_json(200, page(stored["input_items"], query, 20))
        return self.not_found()

    def on_create_response(self, body):
        prev = body.get("previous_response_id")
        prev_usage = None
        if prev:
            with LOCK:
                stored = RESPONSES.get(prev)
            if stored is None:
                return self.send_json(404, error(f"Previous response with id '{prev}' not found.", param="previous_response_id", code="previous_response_not_found"))
            prev_usage = stored["response"]["usage"]
        items = input_items(body)
        kind, reply = responses_reply(body, items)
        input_tokens = len(words(body.get("instructions") or "")) + sum(len(words(item_text(i))) for i in items)
        if prev_usage:
            input_tokens += prev_usage["input_tokens"] + prev_usage["output_tokens"]
        out_words = len(words(reply if kind == "text" else reply["arguments"]))
        output_tokens = out_words + REASONING_TOKENS
        cached = input_tokens // 2
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            "total_tokens": input_tokens + output_tokens,
        }
        rid = new_id("resp_")
        if kind == "text":
            mid = new_id("msg_")
            output = [message_item(mid, reply)]
        else:
            output = [reply]
        store = body.get("store", True) is not False
        if body.get("background"):
            if body.get("stream"):
                return self.send_json(400, error("The fake does not stream background responses.", param="stream"))
            resp = response_object(body, rid, "queued", [], None)
            with LOCK:
                RESPONSES[rid] = {"response": resp, "input_items": items, "retrieves": 0,
                                  "pending": {"output": output, "usage": usage}}
            return self.send_json(200, resp)
        final = response_object(body, rid, "completed", output, usage)
        if store:
            with LOCK:
                RESPONSES[rid] = {"response": final, "input_items": items, "retrieves": 0}
        if not body.get("stream"):
            return self.send_json(200, final)
        self.on_stream_response(body, final, kind, reply)

    def on_stream_response(self, body, final, kind, reply):
        self.start_sse()
        seq = [0]

        def event(type_, **fields):
            data = {"type": type_, "sequence_number": seq[0], **fields}
            seq[0] += 1
            self.send_chunk(f"event: {type_}\ndata: {json.dumps(data)}\n\n".encode())

        start = dict(final, status="in_progress", output=[], usage=None, completed_at=None)
        event("response.created", response=start)
        event("response.in_progress", response=start)
        if kind == "text":
            item = final["output"][0]
            mid = item["id"]
            event("response.output_item.added", output_index=0, item=message_item(mid, None, "in_progress"))
            event("response.content_part.added", item_id=mid, output_index=0, content_index=0,
                  part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            for i, piece in enumerate(reply.split(" ")):
                event("response.output_text.delta", item_id=mid, output_index=0, content_index=0,
                      delta=piece if i == 0 else " " + piece, logprobs=[])
                time.sleep(0.005)
            event("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=reply, logprobs=[])
            event("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=item["content"][0])
            event("response.output_item.done", output_index=0, item=item)
        else:
            call = reply
            args = call["arguments"]
            half = len(args) // 2
            event("response.output_item.added", output_index=0, item=dict(call, arguments="", status="in_progress"))
            for piece in (args[:half], args[half:]):
                event("response.function_call_arguments.delta", item_id=call["id"], output_index=0, delta=piece)
            event("response.function_call_arguments.done", item_id=call["id"], output_index=0, name=call["name"], arguments=args)
            event("response.output_item.done", output_index=0, item=call)
        event("response.completed", response=final)
        self.end_chunks()

    # -- moderations
    def on_moderations(self, body):
        inp = body.get("input", "")
        inputs = inp if isinstance(inp, list) else [inp]
        categories = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                      "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions",
                      "sexual", "sexual/minors", "violence", "violence/graphic"]
        results = []
        for x in inputs:
            text = x if isinstance(x, str) else str(x.get("text", "")) if isinstance(x, dict) else str(x)
            flagged = "violent" in text
            results.append({
                "flagged": flagged,
                "categories": {c: flagged and c == "violence" for c in categories},
                "category_scores": {c: (0.9 if flagged and c == "violence" else 0.001) for c in categories},
                "category_applied_input_types": {c: ["text"] for c in categories},
            })
        self.send_json(200, {"id": new_id("modr-"), "model": body.get("model") or "omni-moderation-latest", "results": results})

    # -- images
    def on_images(self, kind, body):
        if kind not in ("generations", "edits", "variations"):
            return self.not_found()
        n = int(body.get("n") or 1)
        model = body.get("model") or ("dall-e-2" if kind != "generations" else "dall-e-2")
        data = []
        for i in range(n):
            png = b"\x89PNG\r\n\x1a\n" + f"fake image {i} of {kind}".encode()
            data.append({"b64_json": base64.b64encode(png).decode(), "revised_prompt": body.get("prompt") if kind == "generations" else None})
        out = {"created": int(time.time()), "data": data}
        if str(model).startswith("gpt-image") and kind in ("generations", "edits"):
            uploaded = 0
            for name in ("image", "image[]"):
                v = body.get(name)
                uploaded += len(v) if isinstance(v, list) else (1 if v else 0)
            text_tokens = len(words(body.get("prompt", "")))
            image_tokens = IMAGE_INPUT_TOKENS * uploaded
            out_tokens = IMAGE_OUTPUT_TOKENS * n
            out["usage"] = {
                "input_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
                "output_tokens": out_tokens,
                "total_tokens": text_tokens + image_tokens + out_tokens,
            }
            out.update({"background": "opaque", "output_format": "png", "quality": "low", "size": "1024x1024"})
        self.send_json(200, out)

    # -- audio
    def on_audio_text(self, kind, body):
        f = body.get("file")
        if not isinstance(f, dict):
            return self.send_json(400, error("file is required", param="file"))
        seconds = len(f["data"]) / BYTES_PER_SECOND
        text = f"fake {kind[:-1]} of {f['filename']}"
        fmt = body.get("response_format") or "json"
        if fmt == "text":
            return self.send_bytes(200, (text + "\n").encode(), "text/plain; charset=utf-8")
        if fmt == "verbose_json":
            return self.send_json(200, {"task": "transcribe" if kind == "transcriptions" else "translate",
                                        "language": "english", "duration": seconds, "text": text, "segments": []})
        out = {"text": text}
        if kind == "transcriptions":
            out["usage"] = {"type": "duration", "seconds": seconds}
        self.send_json(200, out)

    # -- files
    def on_files(self, method, rest, query, body):
        if method == "POST" and not rest:
            f = body.get("file") if isinstance(body, dict) else None
            if not isinstance(f, dict) or not body.get("purpose"):
                return self.send_json(400, error("file and purpose are required", param="file"))
            return self.send_json(200, self.on_store_file(f["filename"], f["data"], body["purpose"]))
        if method == "GET" and not rest:
            with LOCK:
                items = [e["object"] for e in FILES.values() if not e["deleted"]]
            purpose = query.get("purpose", [None])[0]
            if purpose:
                items = [i for i in items if i["purpose"] == purpose]
            return self.send_json(200, page(items, query, 10000))
        fid = rest[0] if rest else ""
        with LOCK:
            entry = FILES.get(fid)
        if entry is None or entry["deleted"]:
            return self.send_json(404, error(f"No such File object: {fid}", param="id"))
        if method == "GET" and len(rest) == 1:
            return self.send_json(200, entry["object"])
        if method == "GET" and rest[1:] == ["content"]:
            return self.send_bytes(200, entry["content"], "application/octet-stream")
        if method == "DELETE" and len(rest) == 1:
            with LOCK:
                entry["deleted"] = True
            return self.send_json(200, {"id": fid, "object": "file", "deleted": True})
        return self.not_found()

    @staticmethod
    def on_store_file(filename, data, purpose):
        fid = new_id("file-")
        now = int(time.time())
        obj = {
            "id": fid, "object": "file", "bytes": len(data), "created_at": now,
            "expires_at": now + 30 * 86400 if purpose == "batch" else None,
            "filename": filename, "purpose": purpose, "status": "processed", "status_details": None,
        }
        with LOCK:
            FILES[fid] = {"object": obj, "content": data, "deleted": False}
        return obj

    # -- batches
    def on_batches(self, method, rest, query, body):
        if method == "POST" and not rest:
            return self.on_create_batch(body)
        if method == "GET" and not rest:
            with LOCK:
                items = [b["object"] for b in BATCHES.values()]
            return self.send_json(200, page(items, query, 20))
        bid = rest[0]
        with LOCK:
            entry = BATCHES.get(bid)
        if entry is None:
            return self.send_json(404, error(f"No batch found with id '{bid}'.", param="batch_id"))
        batch = entry["object"]
        now = int(time.time())
        if method == "GET" and len(rest) == 1:
            with LOCK:
                if batch["status"] == "cancelling":
                    batch.update(status="cancelled", cancelled_at=now)
                elif batch["status"] in ("validating", "in_progress"):
                    entry["retrieves"] += 1
                    if entry["retrieves"] == 1:
                        batch.update(status="in_progress", in_progress_at=now)
                    else:
                        self.on_complete_batch(entry)
            return self.send_json(200, batch)
        if method == "POST" and rest[1:] == ["cancel"]:
            with LOCK:
                if batch["status"] not in ("validating", "in_progress"):
                    return self.send_json(400, error(f"Cannot cancel a batch with status '{batch['status']}'.", param="batch_id"))
                batch.update(status="cancelling", cancelling_at=now)
            return self.send_json(200, batch)
        return self.not_found()

    def on_create_batch(self, body):
        fid = body.get("input_file_id")
        with LOCK:
            entry = FILES.get(fid)
        if entry is None or entry["deleted"]:
            return self.send_json(404, error(f"No such File object: {fid}", param="input_file_id"))
        if entry["object"]["purpose"] != "batch":
            return self.send_json(400, error("The input file must have purpose 'batch'.", param="input_file_id"))
        lines = [json.loads(line) for line in entry["content"].decode().splitlines() if line.strip()]
        models = [(line.get("body") or {}).get("model") for line in lines]
        bid = new_id("batch_")
        now = int(time.time())
        batch = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"), "model": models[0] if models else None, "usage": None,
        }
        with LOCK:
            BATCHES[bid] = {"object": batch, "retrieves": 0, "lines": lines}
        self.send_json(200, batch)

    def on_complete_batch(self, entry):
        """Called with LOCK held."""
        batch = entry["object"]
        inp = out = 0
        answers = []
        for n, line in enumerate(entry["lines"]):
            body = line.get("body") or {}
            p = len(words(prompt_text(body)))
            if "messages" in body:
                reply = "echo: " + prompt_text({"messages": body["messages"][-1:]})
            else:
                reply = "echo: " + prompt_text(body)
            c = len(words(reply))
            inp, out = inp + p, out + c
            answers.append({
                "id": f"batch_req_{n}", "custom_id": line.get("custom_id"),
                "response": {"status_code": 200, "request_id": f"req_fake{n}", "body": {
                    "id": "cmpl-fake", "object": "chat.completion", "created": 1, "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}},
                "error": None,
            })
        COUNTER[0] += 1
        ofid = f"file-fake{COUNTER[0]:06d}"
        now = int(time.time())
        FILES[ofid] = {"object": {
            "id": ofid, "object": "file", "bytes": 0, "created_at": now, "expires_at": now + 30 * 86400,
            "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed", "status_details": None,
        }, "content": "".join(json.dumps(a) + "\n" for a in answers).encode(), "deleted": False}
        FILES[ofid]["object"]["bytes"] = len(FILES[ofid]["content"])
        total = len(entry["lines"])
        batch.update(
            status="completed", finalizing_at=now, completed_at=now, output_file_id=ofid,
            request_counts={"total": total, "completed": total, "failed": 0},
            usage={"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": inp + out},
        )


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(str(port))
    else:
        print(port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
