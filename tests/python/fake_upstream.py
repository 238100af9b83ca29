"""A small OpenAI-compatible upstream for tests, standing in for a remote
model provider. It answers deterministically from the request:

- the reply is "echo: <last user message>", one word per stream chunk;
- usage counts whitespace-separated words of the prompt and the reply;
- model "upstream-error" answers 500 in OpenAI's error shape; model "slow"
  waits `SLOW_SECONDS` before answering; model "bad-request" answers 400.

It records every request (path, headers, JSON body) so tests can check what
Keyward forwarded. Run: python fake_upstream.py PORT_FILE
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 3.0
REQUESTS = []
LOCK = threading.Lock()


def words(text):
    return [w for w in str(text).split() if w]


def prompt_text(body):
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    if "prompt" in body:
        return str(body["prompt"])
    return str(body.get("input", ""))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/requests":
            with LOCK:
                self.send_json(200, REQUESTS)
            return
        self.send_json(404, {"error": {"message": "not here", "type": "invalid_request_error", "param": None, "code": None}})

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error", "param": None, "code": None}})
            return
        with LOCK:
            REQUESTS.append({"path": self.path, "authorization": self.headers.get("authorization"), "body": body})
        model = body.get("model", "")
        if model == "upstream-error":
            self.send_json(500, {"error": {"message": "upstream exploded", "type": "server_error", "param": None, "code": None}})
            return
        if model == "bad-request":
            self.send_json(400, {"error": {"message": "upstream says no", "type": "invalid_request_error", "param": "temperature", "code": None}})
            return
        if model == "slow":
            time.sleep(SLOW_SECONDS)
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
        last = prompt_text({"messages": body["messages"][-1:]}) if "messages" in body else prompt_text(body)
        reply = "echo: " + last
        completion_tokens = len(words(reply))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        chat = self.path.endswith("/chat/completions")
        if not body.get("stream"):
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": reply, "finish_reason": "stop"}
                obj = "text_completion"
            self.send_json(200, {"id": "cmpl-fake", "object": obj, "created": 1, "model": model, "choices": [choice], "usage": usage})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def send_event(obj):
            data = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        pieces = reply.split(" ")
        for i, piece in enumerate(pieces):
            text = piece if i == 0 else " " + piece
            if chat:
                choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": text, "finish_reason": None}
                obj = "text_completion"
            chunk = {"id": "cmpl-fake", "object": obj, "created": 1, "model": model, "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            send_event(chunk)
            time.sleep(0.01)
        if include_usage:
            send_event({"id": "cmpl-fake", "object": "chat.completion.chunk" if chat else "text_completion", "created": 1, "model": model, "choices": [], "usage": usage})
        send_event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


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
