"""Fixtures for the dashboard's browser tests. run.sh starts the server and
sets KEYWARD_URL; these tests drive headless Chromium (Debian's, never a
downloaded one) through Playwright and keep a screenshot of every page."""

import json
import re
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def base_url():
    url = os.environ.get("KEYWARD_URL")
    if not url:
        pytest.exit("KEYWARD_URL is not set: run the browser tests with tests/browser/run.sh", 2)
    return url.rstrip("/")


@pytest.fixture(scope="session")
def shots():
    out = Path(os.environ.get("KEYWARD_SCREENSHOTS", "target/browser-screenshots"))
    out.mkdir(parents=True, exist_ok=True)

    def take(page, name, full_page=True):
        page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)

    return take


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def new_context(browser, base_url):
    """Opens browser contexts (separate cookie jars: separate people)."""
    opened = []

    problems = []

    def watch(page):
        # Script errors and Content-Security-Policy violations show up here;
        # answers with an error status (asked for by the tests) do not count.
        page.on(
            "console",
            lambda m: m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and problems.append(f"{page.url}: {m.text}"),
        )
        page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))

    def make(viewport=DESKTOP):
        ctx = browser.new_context(base_url=base_url, viewport=viewport)
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        ctx.on("page", watch)
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


def fresh_email(tag):
    return f"{tag}-{secrets.token_hex(4)}@example.com"


# Sign-up is closed (the default): the first account, the operator, signs up
# through /signup; everyone else joins through an invitation it makes.
_operator = {}


def operator_page(browser):
    """The operator's page, signed up on first use as the first account."""
    if "page" not in _operator:
        ctx = browser.new_context(base_url=os.environ["KEYWARD_URL"].rstrip("/"), viewport=DESKTOP)
        page = ctx.new_page()
        page.goto("/signup")
        page.get_by_label("Email address").fill(fresh_email("operator"))
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url("**/api-keys")
        _operator["page"] = page
    return _operator["page"]


def invitation_link(browser, email, role="owner", shots=None):
    """The operator makes a project for `email` and invites them to it from
    the Projects page (as its owner unless told otherwise, so that every
    page works for them as in their own project); returns the link, shown
    once."""
    op = operator_page(browser)
    op.goto("/projects")
    op.get_by_label("Name").fill(f"Team of {email}")
    op.get_by_role("button", name="Create project").click()
    op.wait_for_url(re.compile(r"/projects\?project=proj_"))
    op.get_by_label("Email address").fill(email)
    op.get_by_label("Role", exact=True).select_option(role)
    op.get_by_role("button", name="Invite", exact=True).click()
    link = op.get_by_label("Invitation link")
    if shots:
        shots(op, "18-invitation-link")
    return link.input_value()


def sign_up(page, email, password=PASSWORD):
    """Joins through an invitation: opens the link, creates the account."""
    page.goto(invitation_link(page.context.browser, email))
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account and join").click()
    page.wait_for_url(re.compile(r"/api-keys\?project=proj_"))


def log_in(page, email, password=PASSWORD):
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def create_key(page, name):
    """Creates a key through the dialog; returns the secret from the field."""
    page.get_by_role("button", name="Create new secret key").click()
    dialog = page.get_by_role("dialog", name="Create new secret key")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create secret key").click()
    saved = page.get_by_role("dialog", name="Save your key")
    secret = saved.get_by_label("Secret key").input_value()
    with page.expect_navigation(url=re.compile(r"/api-keys\?project=proj_")):
        saved.get_by_role("button", name="Done").click()
    page.wait_for_load_state()
    return secret


def api(base_url, method, path, key, body=None):
    """(status, JSON body) of a gateway call with a bearer key."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
