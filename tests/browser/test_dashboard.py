"""The dashboard as people use it, in a real browser: the flow of
PRODUCT.md with its exact labels, isolation between accounts, CSRF, clear
errors, and a screenshot of every page (desktop and phone width)."""

import re
import time

from playwright.sync_api import expect

from conftest import PASSWORD, PHONE, api, create_key, fresh_email, invitation_link, log_in, sign_up

# The stored redacted form: the prefix, perhaps a few leading characters, an
# ellipsis, the last four.
REDACTED = re.compile(r"^sk-kw-[A-Za-z0-9]{0,4}(…|\.\.\.)[A-Za-z0-9]{4}$")


def test_sign_up_create_copy_use_and_revoke_a_key(new_context, base_url, shots):
    page = new_context().new_page()
    email = fresh_email("owner")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    shots(page, "01-log-in")
    page.get_by_role("link", name="Sign up").click()
    shots(page, "02-sign-up")
    sign_up(page, email)

    # Log out ends the session; log in again with the same account.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    log_in(page, email)
    expect(page).to_have_url(re.compile(r"/api-keys$"))

    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    shots(page, "03-api-keys-empty")

    page.get_by_role("button", name="Create new secret key").click()
    dialog = page.get_by_role("dialog", name="Create new secret key")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("Checkout service")
    expect(dialog.get_by_label("Project")).to_be_visible()
    dialog.get_by_text("Restricted", exact=True).click()
    expect(dialog.get_by_text("Embeddings", exact=True)).to_be_visible()
    shots(page, "04-create-key-dialog-restricted", full_page=False)
    dialog.get_by_text("All", exact=True).click()
    dialog.get_by_role("button", name="Create secret key").click()

    saved = page.get_by_role("dialog", name="Save your key")
    expect(saved).to_be_visible()
    expect(saved).to_contain_text("won't be able to view it again")
    field = saved.get_by_label("Secret key")
    expect(field).to_have_attribute("readonly", "")
    secret = field.input_value()
    assert secret.startswith("sk-kw-") and len(secret) == 52, secret
    saved.get_by_role("button", name="Copy").click()
    expect(saved.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == secret
    shots(page, "05-key-created", full_page=False)
    with page.expect_navigation(url=re.compile(r"/api-keys\?project=proj_")):
        saved.get_by_role("button", name="Done").click()
    page.wait_for_load_state()

    # The secret is gone from the page; the row shows the redacted value.
    expect(page.get_by_role("dialog", name="Save your key")).to_have_count(0)
    assert secret not in page.content()
    row = page.get_by_role("row").filter(has_text="Checkout service")
    expect(row).to_have_count(1)
    redacted = row.locator("code.redacted").inner_text()
    assert REDACTED.match(redacted), redacted
    assert redacted.endswith(secret[-4:])
    expect(row).to_contain_text(email)
    expect(row).to_contain_text("All")
    expect(row).to_contain_text("Never")

    # A Restricted key, chosen group by group: the editor offers every
    # group the gateway serves, and the key gets exactly what was picked.
    page.get_by_role("button", name="Create new secret key").click()
    dialog = page.get_by_role("dialog", name="Create new secret key")
    dialog.get_by_label("Name").fill("Agent runner")
    dialog.get_by_text("Restricted", exact=True).click()
    for label in ["Models", "Model capabilities", "Responses API", "Embeddings", "Moderations",
                  "Images", "Audio", "Files", "Batch", "Usage", "API keys"]:
        expect(dialog.locator(".perm-row legend span", has_text=re.compile(f"^{label}$"))).to_have_count(1)
    dialog.locator("label[for=perm_responses-write]").click()
    dialog.locator("label[for=perm_files-read]").click()
    dialog.get_by_role("button", name="Create secret key").click()
    saved = page.get_by_role("dialog", name="Save your key")
    expect(saved).to_be_visible()
    restricted_secret = saved.get_by_label("Secret key").input_value()
    with page.expect_navigation(url=re.compile(r"/api-keys\?project=proj_")):
        saved.get_by_role("button", name="Done").click()
    row = page.get_by_role("row").filter(has_text="Agent runner")
    expect(row).to_contain_text("Restricted")
    detail = row.locator("span[title]").get_attribute("title")
    assert "Responses API: write" in detail and "Files: read" in detail, detail
    assert "Model capabilities: none" in detail and "Batch: none" in detail, detail
    # The gateway enforces it: no chat completions for this key.
    status, body = api(base_url, "POST", "/v1/chat/completions", restricted_secret,
                       {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 401 and "chat.completions.write" in body["error"]["message"], body

    # The copied key works on the gateway.
    status, body = api(base_url, "GET", "/v1/models", copied)
    assert status == 200, body
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} >= {"gpt-4o-mini", "gpt-4o"}
    for model, n in [("gpt-4o-mini", 3), ("gpt-4o", 2)]:
        for _ in range(n):
            status, body = api(
                base_url,
                "POST",
                "/v1/chat/completions",
                copied,
                {"model": model, "messages": [{"role": "user", "content": "hello there from the browser test"}]},
            )
            assert status == 200, body

    # A second key, so the table and charts have more than one row.
    nightly = create_key(page, "Nightly batch")
    shots(page, "06-api-keys")

    # The Usage page charts what the key did (the ledger writes in batches).
    for _ in range(30):
        page.goto("/usage")
        if page.get_by_role("cell", name="gpt-4o-mini").count() > 0:
            break
        time.sleep(0.5)
    expect(page.get_by_role("cell", name="gpt-4o-mini")).to_have_count(1)
    expect(page.locator("#chart-cost")).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-cost')")
    shots(page, "07-usage")
    page.get_by_label("Group by").select_option("key")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("cell", name=re.compile("Checkout service"))).to_have_count(1)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    csv = open(download.value.path()).read()
    assert csv.startswith("date,api_key,requests,input_tokens,output_tokens,cost_usd")
    assert "Checkout service" in csv

    page.get_by_role("navigation").get_by_role("link", name="Limits").click()
    expect(page.get_by_role("heading", name="Limits", exact=True)).to_be_visible()
    limits = page.get_by_role("form", name="Project limits")
    limits.get_by_label("Monthly budget (USD)").fill("25")
    limits.get_by_label("Requests per minute").fill("600")
    limits.get_by_role("button", name="Save limits").click()
    expect(page.get_by_role("status")).to_contain_text("Limits saved")
    expect(limits.get_by_label("Monthly budget (USD)")).to_have_value("25.00")
    shots(page, "08-limits")

    page.get_by_role("navigation").get_by_role("link", name="Projects").click()
    shots(page, "09-projects")
    # A key reported exposed is revoked at once and its owner is told.
    status, body = api(
        base_url,
        "POST",
        "/v1/keys/report",
        nightly,
        {"keys": [nightly], "url": "https://github.com/acme/shop/blob/main/.env", "source": "keyward scan"},
    )
    assert status == 200, body
    page.get_by_role("navigation").get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("listitem").filter(has_text="Nightly batch")).to_contain_text("found exposed")
    expect(page.get_by_role("listitem").filter(has_text="Nightly batch")).to_contain_text("https://github.com/acme/shop/blob/main/.env")
    shots(page, "10-notifications")

    # Revoke from the trash bin; the key then gets 401 everywhere.
    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    page.get_by_role("button", name="Revoke key Checkout service").click()
    confirm = page.get_by_role("dialog", name="Revoke secret key")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(redacted)
    shots(page, "11-revoke-dialog", full_page=False)
    confirm.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("Key revoked")
    expect(page.get_by_role("row").filter(has_text="Checkout service")).to_have_count(0)
    status, body = api(base_url, "GET", "/v1/models", copied)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_api_key"

    # Revoked keys stay listed on request, marked, with no actions.
    page.get_by_label("Show revoked keys").check()
    page.wait_for_url(re.compile(r"revoked=1"))
    revoked = page.get_by_role("row").filter(has_text="Checkout service")
    expect(revoked).to_contain_text("Revoked")
    expect(revoked.get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text="Nightly batch")).to_contain_text("exposed")
    shots(page, "17-api-keys-with-revoked")


def test_phone_width(new_context, shots):
    page = new_context(viewport=PHONE).new_page()
    sign_up(page, fresh_email("phone"))
    create_key(page, "Phone key")
    shots(page, "12-phone-api-keys")
    page.get_by_role("button", name="Create new secret key").click()
    shots(page, "13-phone-create-dialog", full_page=False)
    page.keyboard.press("Escape")
    # Nothing is wider than the screen except inside scrolling tables.
    for name, shot in [("Usage", "14-phone-usage"), ("Limits", "14b-phone-limits"), ("Projects", "14c-phone-projects")]:
        page.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        shots(page, shot)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (name, width)


def test_another_account_cannot_see_my_keys(new_context, base_url):
    alice = new_context().new_page()
    sign_up(alice, fresh_email("alice"))
    create_key(alice, "Alice private key")
    alice_project = re.search(r"project=(proj_[A-Za-z0-9]+)", alice.url).group(1)

    bob = new_context().new_page()
    sign_up(bob, fresh_email("bob"))
    expect(bob.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    assert "Alice private key" not in bob.content()
    # Asking for Alice's project by id looks the same as a project that does not exist.
    resp = bob.goto(f"/api-keys?project={alice_project}")
    assert resp.status == 404
    assert "Alice private key" not in bob.content()
    resp = bob.goto(f"/usage?project={alice_project}")
    assert resp.status == 404


def test_a_form_post_without_the_csrf_token_is_rejected(new_context):
    ctx = new_context()
    page = ctx.new_page()
    sign_up(page, fresh_email("csrf"))
    project = page.get_by_label("Project").first.input_value()
    for form in [
        {"name": "forged", "project": project},
        {"name": "forged", "project": project, "csrf_token": "0" * 64},
    ]:
        resp = ctx.request.post("/api-keys/create", form=form, max_redirects=0)
        assert resp.status == 403, resp.status
        assert "did not come from this Keyward site" in resp.text()
    page.reload()
    assert "forged" not in page.content()


def test_a_wrong_password_gives_a_clear_error(new_context, shots):
    page = new_context().new_page()
    email = fresh_email("typo")
    sign_up(page, email)
    page.get_by_role("button", name="Log out").click()
    log_in(page, email, PASSWORD + "!")
    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    expect(page).to_have_url(re.compile(r"/login$"))
    shots(page, "15-log-in-error")
    # Password rules are explained at sign-up.
    page.goto(invitation_link(page.context.browser, fresh_email("short")))
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account and join").click()
    expect(page.get_by_role("alert")).to_have_text("The password must be at least 12 characters long.")


def test_edit_and_rotate_a_key_from_its_row(new_context, base_url, shots):
    page = new_context().new_page()
    sign_up(page, fresh_email("rotate"))
    old = create_key(page, "Reporting")

    page.get_by_role("button", name="Edit key Reporting").click()
    edit = page.get_by_role("dialog", name="Edit secret key")
    expect(edit.get_by_label("Name")).to_have_value("Reporting")
    edit.get_by_label("Name").fill("Reporting job")
    edit.get_by_label("Requests per minute").fill("120")
    edit.get_by_label("Monthly budget (USD)").fill("5")
    shots(page, "16-edit-dialog", full_page=False)
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Key updated")
    expect(page.get_by_role("row").filter(has_text="Reporting job")).to_have_count(1)
    page.get_by_role("navigation").get_by_role("link", name="Limits").click()
    row = page.get_by_role("row").filter(has_text="Reporting job")
    expect(row).to_contain_text("120")
    expect(row).to_contain_text("$5.00")

    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    page.get_by_role("button", name="Rotate key Reporting job").click()
    rotate = page.get_by_role("dialog", name="Rotate secret key")
    rotate.get_by_label("The old secret keeps working").select_option("0")
    rotate.get_by_role("button", name="Rotate key").click()
    saved = page.get_by_role("dialog", name="Save your new key")
    new = saved.get_by_label("Secret key").input_value()
    assert new.startswith("sk-kw-") and new != old
    with page.expect_navigation(url=re.compile(r"/api-keys\?project=proj_")):
        saved.get_by_role("button", name="Done").click()
    page.wait_for_load_state()
    assert new not in page.content()
    assert api(base_url, "GET", "/v1/models", new)[0] == 200
    assert api(base_url, "GET", "/v1/models", old)[0] == 401


def test_keyboard_only(new_context):
    page = new_context().new_page()
    sign_up(page, fresh_email("keys"))
    # Skip link first, then the sidebar, then the page's controls.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    button = page.get_by_role("button", name="Create new secret key")
    button.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Create new secret key")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.type("Typed key")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(button).to_be_focused()


def test_sign_up_is_closed_and_an_invitation_lets_one_person_in(new_context, base_url, shots):
    page = new_context().new_page()
    email = fresh_email("invited")
    link = invitation_link(page.context.browser, email, role="reader", shots=shots)
    assert "/invite?token=" in link
    # Without an invitation, the sign-up page says plainly that it is closed.
    page.goto("/signup")
    expect(page.get_by_role("heading", name="Sign-up is closed")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    shots(page, "19-sign-up-closed")

    page.goto(link)
    expect(page.get_by_role("heading", name=re.compile(r"^Join Team of "))).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_value(email)
    shots(page, "20-invitation")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account and join").click()
    page.wait_for_url(re.compile(r"/api-keys\?project=proj_"))
    expect(page.get_by_text("You are a reader")).to_be_visible()

    # The link worked once.
    other = new_context().new_page()
    resp = other.goto(link)
    assert resp.status == 400
    expect(other.get_by_role("alert")).to_contain_text("Ask the project's owner for a new one")
