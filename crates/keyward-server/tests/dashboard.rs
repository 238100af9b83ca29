//! The dashboard's security, over HTTP against the real binary: session
//! cookie flags, the host check, CSRF rejection, log-in throttling (also
//! under concurrency), log-out ending the session on the server, no secret
//! at rest or in a URL, and one account never reaching another's projects
//! or keys.

mod common;

use common::browser::{shown_secret, Browser};
use common::{Server, PASSWORD};

/// For tests about something else that need several independent accounts.
const OPEN: (&str, &str) = ("KEYWARD_DASHBOARD__SIGNUP", "open");
use reqwest::header::CACHE_CONTROL;
use reqwest::StatusCode;

fn models_status(s: &Server, key: &str) -> StatusCode {
    s.get("/v1/models", key).status
}

#[test]
fn session_cookie_is_http_only_same_site_lax_and_hashed_at_rest() {
    let s = Server::start();
    let mut b = Browser::new(&s);
    b.sign_up("cookie@example.com");
    let session = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kw_session="))
        .expect("a session cookie")
        .clone();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Secure"), "{session}");
    let token = b.cookies["kw_session"].clone();
    assert!(token.len() >= 40);
    let page = b.get("/api-keys");
    assert_eq!(page.status, 200);
    assert_eq!(page.headers[CACHE_CONTROL], "no-store");
    assert!(page.body.contains("cookie@example.com"));
    if s.db.url().is_none() {
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(s.data_dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("keyward.db") {
                stored.extend(std::fs::read(path).unwrap());
            }
        }
        assert!(!stored.is_empty());
        assert!(
            !stored.windows(token.len()).any(|w| w == token.as_bytes()),
            "the session token is stored in the clear"
        );
    }
}

#[test]
fn secure_cookies_when_configured() {
    let s = Server::start_with(&[("KEYWARD_DASHBOARD__SECURE_COOKIES", "true")]);
    let mut b = Browser::new(&s);
    b.sign_up("secure@example.com");
    let session = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-kw_session="))
        .unwrap_or_else(|| panic!("{:?}", b.set_cookies));
    assert!(session.contains("; Secure"), "{session}");
    assert_eq!(b.get("/api-keys").status, 200);
}

#[test]
fn an_https_public_url_makes_cookies_secure_with_the_host_prefix() {
    let s = Server::start_with(&[("KEYWARD_PUBLIC_URL", "https://keys.example.com")]);
    let mut b = Browser::with_host(&s, "keys.example.com");
    b.sign_up("tls@example.com");
    for name in ["__Host-kw_session=", "__Host-kw_csrf="] {
        let cookie = b
            .set_cookies
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}: {:?}", b.set_cookies));
        assert!(
            cookie.contains("; Secure") && cookie.contains("Path=/"),
            "{cookie}"
        );
        assert!(!cookie.contains("Domain"), "{cookie}");
    }
    assert!(b.get("/api-keys").body.contains("tls@example.com"));
    // The explicit setting still wins.
    let s = Server::start_with(&[
        ("KEYWARD_PUBLIC_URL", "https://keys.example.com"),
        ("KEYWARD_DASHBOARD__SECURE_COOKIES", "false"),
    ]);
    let mut b = Browser::with_host(&s, "keys.example.com");
    b.sign_up("plain@example.com");
    assert!(b
        .set_cookies
        .iter()
        .any(|c| c.starts_with("kw_session=") && !c.contains("Secure")));
}

#[test]
fn the_dashboard_refuses_a_foreign_host() {
    let s = Server::start();
    // A page that rebinds its own name to 127.0.0.1 sends that name.
    let mut rebound = Browser::with_host(&s, "evil.example");
    for path in ["/login", "/signup", "/api-keys", "/static/style.css"] {
        let page = rebound.get(path);
        assert_eq!(
            page.status,
            StatusCode::MISDIRECTED_REQUEST,
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("public_url"), "{}", page.body);
    }
    let page = rebound.post_with(
        "/signup",
        &[("email", "x@example.com"), ("password", PASSWORD)],
        &[("origin", "http://evil.example")],
    );
    assert_eq!(page.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!Browser::new(&s)
        .get("/signup")
        .body
        .contains("Sign-up is closed"));
    // The loopback names work on any port; the API answers any host.
    for host in ["localhost:1234", "127.0.0.1", "[::1]:8080"] {
        assert_eq!(
            Browser::with_host(&s, host).get("/login").status,
            200,
            "{host}"
        );
    }
    let api = s
        .client
        .get(format!("{}/v1/models", s.base))
        .header("host", "api.behind-a-proxy.example")
        .send()
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);

    // With public_url, only its host; the CSRF check compares with it,
    // not with the request's own Host.
    let s = Server::start_with(&[("KEYWARD_PUBLIC_URL", "https://keys.example.com")]);
    assert_eq!(
        Browser::new(&s).get("/login").status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let mut b = Browser::with_host(&s, "keys.example.com");
    let csrf = b.get("/signup").csrf();
    let form = [
        ("csrf_token", csrf.as_str()),
        ("email", "ops@example.com"),
        ("password", PASSWORD),
    ];
    let page = b.post_with("/signup", &form, &[("origin", "http://keys.example.com")]);
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    let page = b.post_with("/signup", &form, &[("origin", "https://keys.example.com")]);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[test]
fn forms_without_the_csrf_token_are_rejected() {
    let s = Server::start_with(&[OPEN]);
    let mut b = Browser::new(&s);
    // No cookie at all: even the log-in form is refused.
    let page = b.post(
        "/login",
        &[("email", "x@example.com"), ("password", PASSWORD)],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("did not come from this Keyward site"));

    b.sign_up("csrf@example.com");
    let project = b.project();
    let csrf = b.get("/api-keys").csrf();
    for form in [
        vec![("project", project.as_str()), ("name", "forged")],
        vec![
            ("csrf_token", ""),
            ("project", &project),
            ("name", "forged"),
        ],
        vec![
            ("csrf_token", &"0".repeat(64)),
            ("project", &project),
            ("name", "forged"),
        ],
    ] {
        let page = b.post("/api-keys/create", &form);
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    // The right token from another site's page is refused too.
    let page = b.post_with(
        "/api-keys/create",
        &[
            ("csrf_token", &csrf),
            ("project", &project),
            ("name", "forged"),
        ],
        &[("origin", "https://evil.example")],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!b.get("/api-keys").body.contains("forged"));
    // A token from another browser's session does not work here.
    let mut other = Browser::new(&s);
    other.sign_up("other@example.com");
    let theirs = other.get("/api-keys").csrf();
    assert_ne!(theirs, csrf);
    let page = b.post(
        "/api-keys/create",
        &[
            ("csrf_token", &theirs),
            ("project", &project),
            ("name", "forged"),
        ],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // And with its own token the form works.
    let page = b.post(
        "/api-keys/create",
        &[
            ("csrf_token", &csrf),
            ("project", &project),
            ("name", "real"),
        ],
    );
    assert_eq!(page.status, 200, "{}", page.body);
}

#[test]
fn created_key_is_shown_once_never_in_a_url_and_revoking_it_gives_401() {
    let s = Server::start();
    let mut b = Browser::new(&s);
    b.sign_up("keys@example.com");
    let project = b.project();
    let page = b.create_key(&project, "ci");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers[CACHE_CONTROL], "no-store");
    let secret = shown_secret(&page);
    assert!(secret.starts_with("sk-kw-"), "{secret}");
    assert_eq!(page.body.matches(&secret).count(), 1);
    assert_eq!(models_status(&s, &secret), 200);

    let list = b.get(&format!("/api-keys?project={project}"));
    assert!(!list.body.contains(&secret));
    assert!(list.body.contains(&secret[secret.len() - 4..]));
    let start = list.body.find("/api-keys/key_").unwrap() + 10;
    let end = start + list.body[start..].find('/').unwrap();
    let key_id = list.body[start..end].to_owned();

    let csrf = list.csrf();
    let page = b.post(
        &format!("/api-keys/{key_id}/revoke"),
        &[("csrf_token", &csrf), ("project", &project)],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(!page.location().contains("sk-"));
    assert_eq!(models_status(&s, &secret), 401);
    assert!(!s.logs().contains(&secret), "a secret reached the logs");
}

#[test]
fn log_out_ends_the_session_on_the_server() {
    let s = Server::start();
    let mut b = Browser::new(&s);
    b.sign_up("bye@example.com");
    let stolen = b.cookies["kw_session"].clone();
    let csrf = b.get("/api-keys").csrf();
    let page = b.post("/logout", &[("csrf_token", &csrf)]);
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    assert!(!b.cookies.contains_key("kw_session"));
    // The old cookie, replayed, no longer signs anyone in.
    b.cookies.insert("kw_session".into(), stolen);
    let page = b.get("/api-keys");
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
}

#[test]
fn wrong_passwords_are_throttled_per_email() {
    let s = Server::start_with(&[OPEN]);
    let mut b = Browser::new(&s);
    b.sign_up("victim@example.com");
    b.cookies.remove("kw_session");
    let page = b.log_in("victim@example.com", "not the password");
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Incorrect email or password."));
    for _ in 0..4 {
        let page = b.log_in("victim@example.com", "still not it");
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused for a while, with a reason.
    let page = b.log_in("victim@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.body
            .contains("Too many failed log-in attempts for this email"),
        "{}",
        page.body
    );
    // Other accounts are not locked out by it.
    let mut other = Browser::new(&s);
    other.sign_up("bystander@example.com");
    other.cookies.remove("kw_session");
    let page = other.log_in("bystander@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[test]
fn one_account_never_reaches_another_accounts_keys() {
    let s = Server::start_with(&[OPEN]);
    let mut alice = Browser::new(&s);
    alice.sign_up("alice@example.com");
    let alice_project = alice.project();
    let secret = shown_secret(&alice.create_key(&alice_project, "alice-key"));
    let list = alice.get("/api-keys");
    let start = list.body.find("/api-keys/key_").unwrap() + 10;
    let end = start + list.body[start..].find('/').unwrap();
    let key_id = list.body[start..end].to_owned();

    let mut bob = Browser::new(&s);
    bob.sign_up("bob@example.com");
    let bob_project = bob.project();
    assert_ne!(alice_project, bob_project);
    let page = bob.get("/api-keys");
    assert!(!page.body.contains("alice-key"));
    for path in [
        format!("/api-keys?project={alice_project}"),
        format!("/usage?project={alice_project}"),
        format!("/limits?project={alice_project}"),
        format!("/projects?project={alice_project}"),
    ] {
        let page = bob.get(&path);
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("alice"), "{path}");
    }
    let csrf = bob.get("/api-keys").csrf();
    for project in [&alice_project, &bob_project] {
        let page = bob.post(
            &format!("/api-keys/{key_id}/revoke"),
            &[("csrf_token", &csrf), ("project", project)],
        );
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    }
    let page = bob.post(
        "/api-keys/create",
        &[
            ("csrf_token", &csrf),
            ("project", &alice_project),
            ("name", "intruder"),
        ],
    );
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = bob.post(
        &format!("/projects/{alice_project}/invitations"),
        &[
            ("csrf_token", &csrf),
            ("email", "bob@example.com"),
            ("role", "owner"),
        ],
    );
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(models_status(&s, &secret), 200);
    assert!(!alice.get("/api-keys").body.contains("intruder"));
}

#[test]
fn owners_add_members_with_roles_and_readers_cannot_create_keys() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    let link = owner.invite(&project, "reader@example.com", "reader");
    let mut reader = Browser::new(&s);
    reader.join(&link);
    let page = reader.get(&format!("/api-keys?project={project}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You are a reader"));
    let csrf = page.csrf();
    let page = reader.post(
        "/api-keys/create",
        &[
            ("csrf_token", &csrf),
            ("project", &project),
            ("name", "nope"),
        ],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("insufficient permissions"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"new-secret\""));
    // The only owner cannot demote themself.
    let page = owner.get("/projects");
    let csrf = page.csrf();
    let marker = format!("/projects/{project}/members/");
    let start = page.body.find(&marker).unwrap() + marker.len();
    let owner_id = &page.body[start..start + page.body[start..].find('/').unwrap()];
    let page = owner.post(
        &format!("/projects/{project}/members/{owner_id}/role"),
        &[("csrf_token", &csrf), ("role", "member")],
    );
    assert!(page.body.contains("at least one owner"), "{}", page.body);
}

#[test]
fn restricted_permissions_from_the_form_reach_the_key() {
    let s = Server::start();
    let mut b = Browser::new(&s);
    b.sign_up("restricted@example.com");
    let project = b.project();
    let csrf = b.get("/api-keys").csrf();
    let page = b.post(
        "/api-keys/create",
        &[
            ("csrf_token", &csrf),
            ("project", &project),
            ("name", "read models"),
            ("permissions", "restricted"),
            ("perm_models", "read"),
            ("perm_chat_completions", "none"),
            ("perm_embeddings", "none"),
            ("perm_usage", "none"),
            ("perm_keys", "read"),
            ("expires_in_days", "30"),
        ],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let secret = shown_secret(&page);
    let listed = s.get(&common::keys_path(&project), &secret);
    assert_eq!(listed.status, 200, "{}", listed.body);
    let key = &listed.body["data"][0];
    assert_eq!(key["name"], "read models");
    let p = &key["permissions"];
    assert_eq!(p["mode"], "restricted", "{key}");
    assert_eq!(p["models"], "read", "{key}");
    assert_eq!(p["keys"], "read", "{key}");
    assert_eq!(p["chat_completions"], "none", "{key}");
    assert!(key["expires_at"].as_i64().is_some(), "{key}");
    let list = b.get(&format!("/api-keys?project={project}"));
    assert!(list.body.contains("Restricted"));
    assert!(list.body.contains("Models: read"));
}

#[test]
fn parallel_wrong_passwords_are_counted_before_they_are_checked() {
    let s = Server::start();
    let mut b = Browser::new(&s);
    b.sign_up("target@example.com");
    b.cookies.remove("kw_session");
    let csrf = b.get("/login").csrf();
    let cookie = format!("kw_csrf={}", b.cookies["kw_csrf"]);
    let barrier = std::sync::Barrier::new(30);
    let statuses: Vec<StatusCode> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|n| {
                let (csrf, cookie, barrier, s) = (&csrf, &cookie, &barrier, &s);
                scope.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap();
                    let password = format!("wrong password number {n}");
                    let req = client
                        .post(format!("{}/login", s.base))
                        .header("cookie", cookie.as_str())
                        .form(&[
                            ("csrf_token", csrf.as_str()),
                            ("email", "target@example.com"),
                            ("password", password.as_str()),
                        ]);
                    barrier.wait();
                    req.send().unwrap().status()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert_eq!(checked + refused, 30, "{statuses:?}");
}

#[test]
fn sign_ups_and_successful_log_ins_do_not_lock_anyone_out() {
    let s = Server::start_with(&[OPEN]);
    Browser::new(&s).sign_up("regular@example.com");
    // Thirty sign-ups in all from one address (an office behind one proxy),
    // as many as the address may make in 15 minutes.
    for n in 0..29 {
        Browser::new(&s).sign_up(&format!("colleague{n}@example.com"));
    }
    // And thirty-odd successful log-ins.
    for n in 0..31 {
        let page = Browser::new(&s).log_in(&format!("colleague{}@example.com", n % 29), PASSWORD);
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let page = Browser::new(&s).log_in("regular@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    // A wrong password is still checked, not refused for the address.
    let page = Browser::new(&s).log_in("regular@example.com", "not the password");
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
}
