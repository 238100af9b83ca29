"""Fixtures for the end-to-end gateway tests: the fake upstream
(fake_upstream.py), real `keyward serve` processes on fresh stores (SQLite
in a temp dir, or a new PostgreSQL database per Keyward instance when
KEYWARD_TEST_DATABASE_URL is set), and keys.

The binary is KEYWARD_BIN (tests/python/run.sh sets it), else
target/debug/keyward, built with `cargo build --bin keyward` if missing.
"""

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

# The Agents SDK exports traces to OpenAI with the client's key unless this
# is set before it is imported (test_agents_sdk.py sets it too).
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PASSWORD = "correct horse battery staple"
# The upstream's own credential: it must reach the upstream and nobody else.
UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(16)


def _dead_port():
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEAD_PORT = _dead_port()

# The models every test server serves: (id, upstream, upstream_model,
# input USD per million tokens, output USD per million tokens), in
# configuration order. The fake upstream gives special behaviour to the
# models named upstream-error (500), bad-request (400) and slow (3 s).
MODELS = [
    ("gpt-test", "fake", None, 2.5, 10.0),
    ("gpt-other", "fake", None, 0.15, 0.60),
    ("renamed", "fake", "fake-internal-name", 1.0, 3.0),
    ("embed-test", "fake", None, 0.02, 0.0),
    ("upstream-error", "fake", None, 1.0, 1.0),
    ("bad-request", "fake", None, 1.0, 1.0),
    ("slow", "fake-slowpoke", None, 1.0, 1.0),
    ("down", "nowhere", None, 1.0, 1.0),
    ("org/slash-model", "fake", None, 1.0, 1.0),
    ("late-end", "lagging", None, 1.0, 1.0),
]
MODEL_IDS = [m[0] for m in MODELS]
PRICES = {m[0]: (m[3], m[4]) for m in MODELS}


def expected_cost_micros(model, prompt_tokens, completion_tokens):
    """Integer micro-dollars, rounded up: ceil((p * in + c * out) / 1e6)
    with prices in micro-dollars per million tokens."""
    inp, out = PRICES[model]
    total = prompt_tokens * round(inp * 1_000_000) + completion_tokens * round(out * 1_000_000)
    return -(-total // 1_000_000)


# The models of the endpoints beyond chat, completions and embeddings
# (Responses, moderations, images, audio, files, batches), served by the
# `api_gateway` fixture only: their configuration keys (an upstream's
# `responses` and `files`, the prices other than per token) are newer than
# the rest of the suite, which keeps the configuration above. id -> upstream
# and prices in USD, under the names of the [[models]] keys. `fake` is the
# fake upstream speaking Responses natively (and serving files and batches);
# `fake-chat` is the same fake marked `responses = "translate"`, so Keyward
# turns Responses calls into chat completions for it.
API_MODELS = {
    "resp-test": {"upstream": "fake", "input_price_per_mtok": 2.5,
                  "cached_input_price_per_mtok": 1.25, "output_price_per_mtok": 10.0},
    "resp-chat": {"upstream": "fake-chat", "input_price_per_mtok": 1.0,
                  "cached_input_price_per_mtok": 0.5, "output_price_per_mtok": 3.0},
    "omni-moderation-latest": {"upstream": "fake", "price_per_request": 0.0015},
    "gpt-image-1": {"upstream": "fake", "input_price_per_mtok": 5.0, "output_price_per_mtok": 40.0,
                    "price_per_image": 0.011},
    "dall-e-2": {"upstream": "fake", "price_per_image": 0.02},
    "tts-1": {"upstream": "fake", "price_per_mchar": 15.0},
    "whisper-1": {"upstream": "fake", "price_per_minute": 0.006},
}
API_UPSTREAM_KEYS = {"fake": {"responses": "native", "files": True}, "fake-chat": {"responses": "translate"}}


def micros(usd):
    return round(usd * 1_000_000)


def api_price(model, name):
    """A price of API_MODELS (or MODELS) in micro-dollars, 0 when unset."""
    if model in API_MODELS:
        return micros(API_MODELS[model].get(name, 0))
    inp, out = PRICES[model]
    return micros({"input_price_per_mtok": inp, "output_price_per_mtok": out}.get(name, 0))


def token_cost_micros(model, input_tokens, output_tokens, cached_tokens=0):
    """ceil(((input - cached) * in + cached * cached_in + output * out) / 1e6),
    prices in micro-dollars per million tokens; a model without a cached
    price bills cached tokens at the input price."""
    cached_price = api_price(model, "cached_input_price_per_mtok") or api_price(model, "input_price_per_mtok")
    total = ((input_tokens - cached_tokens) * api_price(model, "input_price_per_mtok")
             + cached_tokens * cached_price
             + output_tokens * api_price(model, "output_price_per_mtok"))
    return -(-total // 1_000_000)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def config_toml(upstream_base, lagging_base, api=False):
    """The test configuration; with `api`, also API_MODELS, the `fake`
    upstream marked native and files, and the `fake-chat` upstream."""
    parts = []
    upstreams = [
        ("fake", upstream_base, "10s"),
        ("fake-slowpoke", upstream_base, "1s"),
        ("nowhere", f"http://127.0.0.1:{DEAD_PORT}/v1", "2s"),
        ("lagging", lagging_base, "10s"),
    ]
    if api:
        upstreams.append(("fake-chat", upstream_base, "10s"))
    for name, base, timeout in upstreams:
        s = (
            f'[[upstreams]]\nname = "{name}"\nbase_url = "{base}"\n'
            f'api_key = "{UPSTREAM_KEY}"\ntimeout = "{timeout}"\n'
        )
        if api:
            for k, v in API_UPSTREAM_KEYS.get(name, {}).items():
                s += f"{k} = {toml_value(v)}\n"
        parts.append(s)
    for mid, up, up_model, inp, out in MODELS:
        s = f'[[models]]\nid = "{mid}"\nupstream = "{up}"\n'
        if up_model:
            s += f'upstream_model = "{up_model}"\n'
        s += f"input_price_per_mtok = {inp}\noutput_price_per_mtok = {out}\n"
        parts.append(s)
    if api:
        for mid, cfg in API_MODELS.items():
            s = f'[[models]]\nid = "{mid}"\n'
            s += "".join(f"{k} = {toml_value(v)}\n" for k, v in cfg.items())
            parts.append(s)
    return "\n".join(parts)


def keyward_bin():
    path = os.environ.get("KEYWARD_BIN")
    if path:
        return Path(path)
    path = ROOT / "target" / "debug" / "keyward"
    if not path.exists():
        subprocess.run(["cargo", "build", "--bin", "keyward"], cwd=ROOT, check=True)
    return path


# ---------------------------------------------------------------- upstream


class FakeUpstream:
    """tests/python/fake_upstream.py in its own process."""

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_upstream.py")],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"fake upstream did not start (said {line!r})")
        self.port = int(line)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.lagging = LaggingUpstream()

    def requests(self):
        """Every request it received so far: {path, authorization, body}."""
        return httpx.get(f"http://127.0.0.1:{self.port}/requests", timeout=10).json()

    def mark(self):
        return len(self.requests())

    def since(self, mark):
        return self.requests()[mark:]

    def log(self):
        """What it wrote on stderr (tracebacks of connections cut by Keyward)."""
        return self.log_path.read_text()

    def close(self):
        self.lagging.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


class LaggingUpstream:
    """An upstream whose streams end late: it sends the whole chat stream
    (content, usage chunk, `data: [DONE]`) at once, then waits half a second
    before ending the HTTP body. The client has everything at [DONE]."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                base = {"id": "cmpl-lag", "object": "chat.completion.chunk", "created": 1, "model": body.get("model")}
                events = [
                    {**base, "choices": [{"index": 0, "delta": {"content": "all"}, "finish_reason": None}]},
                    {**base, "choices": [{"index": 0, "delta": {"content": " here"}, "finish_reason": "stop"}]},
                    {**base, "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}},
                ]
                data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                data = data.encode()
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    time.sleep(0.5)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- database


class PgDatabase:
    """A PostgreSQL database created for one Keyward instance, dropped after."""

    def __init__(self, admin_url):
        import psycopg

        self.admin_url = admin_url
        self.name = "kw_py_" + secrets.token_hex(6)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _ = admin_url.split("?")[0].rsplit("/", 1)
        self.url = f"{base}/{self.name}"

    def drop(self):
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ---------------------------------------------------------------- keyward

LIVE = []  # running instances, for logs on failure


class Keyward:
    """One `keyward serve` with its own data dir (and PostgreSQL database)."""

    def __init__(self, binary, upstream, data_dir, pg_admin_url, api=False):
        self.binary = str(binary)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = PgDatabase(pg_admin_url) if pg_admin_url else None
        self.config = self.data_dir / "keyward.toml"
        self.config.write_text(config_toml(upstream.base_url, upstream.lagging.base_url, api=api))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        env["RUST_LOG"] = "info"
        # The in-process model is off unless a test turns it on.
        env["KEYWARD_LOCAL_MODEL__ENABLED"] = "false"
        if self.db:
            env["KEYWARD_DATABASE_URL"] = self.db.url
        self.env = env
        self.proc = None
        self.logs = []
        self.base = None
        self.admin_key = None
        self._admin = None

    # -- CLI, another process on the same store
    def cli(self, *args, input=None):
        cmd = [self.binary, *args, "--data-dir", str(self.data_dir), "--config", str(self.config)]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, env=self.env, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def create_operator(self):
        r = self.cli("admin", "create", "--email", "op@example.com", "--password-stdin", input=PASSWORD + "\n")
        self.admin_key = r.stdout.strip()
        assert self.admin_key.startswith("sk-kwadmin-"), r.stdout
        return self.admin_key

    def cli_key(self, name="cli key"):
        """A project key made with `keyward keys create --json`: {value, id, project_id, …}."""
        return json.loads(self.cli("keys", "create", "--name", name, "--json").stdout)

    # -- server
    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config), "--data-dir", str(self.data_dir),
             "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.logs.append(line.rstrip("\n"))
                m = re.search(r"keyward listening on (http://\S+)", line)
                if m and not ready.is_set():
                    self.base = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or self.base is None:
            self.proc.kill()
            raise RuntimeError("keyward did not start:\n" + "\n".join(self.logs[-40:]))
        LIVE.append(self)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the server with `sig`; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"keyward did not stop within {timeout}s of signal {sig}")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._admin is not None:
            self._admin.close()
        if self in LIVE:
            LIVE.remove(self)
        if self.db:
            self.db.drop()

    # -- clients
    def client(self, key, **kw):
        """The official SDK pointed at Keyward; no retries, so every error is seen once."""
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30)
        return OpenAI(base_url=f"{self.base}/v1", api_key=key, **kw)

    @property
    def admin(self):
        """httpx client for the management API, with the admin key."""
        if self._admin is None:
            self._admin = httpx.Client(
                base_url=self.base, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
            )
        return self._admin

    def project_id(self):
        r = self.admin.get("/v1/organization/projects")
        assert r.status_code == 200, r.text
        return r.json()["data"][0]["id"]

    def create_project(self, name):
        """A new project made with the management API; its object."""
        r = self.admin.post("/v1/organization/projects", json={"name": name})
        assert r.status_code in (200, 201), r.text
        return r.json()

    def create_key(self, project_id=None, **body):
        """POST …/api_keys with `body` (in the first project unless
        `project_id`); the created key object with `value`."""
        body.setdefault("name", "test key")
        project_id = project_id or self.project_id()
        r = self.admin.post(f"/v1/organization/projects/{project_id}/api_keys", json=body)
        assert r.status_code in (200, 201), r.text
        key = r.json()
        assert key["value"].startswith("sk-kw-"), key
        return key

    def revoke_key(self, key_id):
        r = self.admin.delete(f"/v1/organization/projects/{self.project_id()}/api_keys/{key_id}")
        assert r.status_code == 200, r.text
        return r.json()

    # -- the store, read directly: SQLite in the data dir, or PostgreSQL
    def query(self, sql):
        """Rows of `sql` as dicts."""
        if self.db:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.db.url, row_factory=dict_row) as conn:
                return conn.execute(sql).fetchall()
        conn = sqlite3.connect(self.data_dir / "keyward.db")
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql)]
        finally:
            conn.close()

    def ledger(self):
        return self.query("SELECT * FROM usage_ledger ORDER BY seq")

    def ledger_rows(self, request_ids, timeout=5):
        """The ledger rows of `request_ids` (x-request-id values, or object
        ids for deferred settlement), waiting up to `timeout` seconds for all
        of them to be written; {request_id: row}."""
        wanted = set(request_ids)
        deadline = time.time() + timeout
        while True:
            rows = {r["request_id"]: r for r in self.ledger() if r["request_id"] in wanted}
            if len(rows) == len(wanted) or time.time() > deadline:
                return rows
            time.sleep(0.05)


def _new_keyward(binary, upstream, data_dir, api=False):
    kw = Keyward(binary, upstream, data_dir, os.environ.get("KEYWARD_TEST_DATABASE_URL"), api=api)
    try:
        kw.create_operator()
        kw.default_key = kw.cli_key("default")
        kw.start()
    except BaseException:
        kw.close()
        raise
    return kw


@pytest.fixture(scope="session")
def binary():
    return keyward_bin()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    fake = FakeUpstream(tmp_path_factory.mktemp("upstream") / "stderr.log")
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def gateway(binary, upstream, tmp_path_factory):
    """A Keyward shared by the tests that do not stop it."""
    kw = _new_keyward(binary, upstream, tmp_path_factory.mktemp("keyward"))
    yield kw
    kw.close()


@pytest.fixture
def fresh_gateway(binary, upstream, tmp_path):
    """A Keyward of the test's own, on its own store, that the test may stop."""
    kw = _new_keyward(binary, upstream, tmp_path / "keyward")
    yield kw
    kw.close()


@pytest.fixture(scope="session")
def api_gateway(binary, upstream, tmp_path_factory):
    """A Keyward configured with API_MODELS too (Responses, moderations,
    images, audio, files, batches), shared by the tests that do not stop it."""
    kw = _new_keyward(binary, upstream, tmp_path_factory.mktemp("keyward-api"), api=True)
    yield kw
    kw.close()


@pytest.fixture(scope="session")
def api_key(api_gateway):
    """The secret of api_gateway's CLI-made project key (all permissions)."""
    return api_gateway.default_key["value"]


@pytest.fixture
def api(api_gateway, api_key):
    """The SDK pointed at api_gateway with api_key."""
    c = api_gateway.client(api_key)
    yield c
    c.close()


@pytest.fixture(scope="session")
def key(gateway):
    """The secret of a project key made with the CLI (all permissions)."""
    return gateway.default_key["value"]


@pytest.fixture
def client(gateway, key):
    c = gateway.client(key)
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when == "call":
        for kw in LIVE:
            rep.sections.append((f"keyward log ({kw.base})", "\n".join(kw.logs[-60:])))
