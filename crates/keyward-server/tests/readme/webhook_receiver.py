"""A webhook receiver built on README.md's verification snippet, run as
README shows it (the fenced python block that mentions X-Keyward-Signature),
for crates/keyward-server/tests/exposure.rs.

usage: webhook_receiver.py README.md SECRET [PORT [DELAY]]

Prints the port it listens on, then one JSON line per POST:
{"signature", "body", "accepted"}; answers 200 when the snippet accepts the
delivery, else 400. A request header `X-Test-Clock-Ahead: N` checks the
delivery as if N seconds had passed since it was made (a replay). With
DELAY, it answers each delivery only after that many seconds (a slow
receiver).
"""

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

readme, secret = sys.argv[1], sys.argv[2].encode()
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
blocks = [
    b
    for b in re.findall(r"```python\n(.*?)```", open(readme, encoding="utf-8").read(), re.S)
    if "X-Keyward-Signature" in b
]
if len(blocks) != 1:
    sys.exit(f"README.md must hold one python block about X-Keyward-Signature, not {len(blocks)}")
snippet = {}
exec(blocks[0], snippet)
verify = snippet["verify_keyward_signature"]
real_time = time.time


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        header = self.headers.get("X-Keyward-Signature", "")
        ahead = int(self.headers.get("X-Test-Clock-Ahead", "0"))
        with mock.patch("time.time", lambda: real_time() + ahead):
            accepted = verify(secret, header, body)
        record = {"signature": header, "body": body.decode(), "accepted": accepted}
        print(json.dumps(record), flush=True)
        time.sleep(delay)
        self.send_response(200 if accepted else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", port), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
