//! Who may have an account: sign-up is closed by default (the first
//! account, the operator, may sign up; then only invited people), open when
//! configured; invitations are shown once, stored hashed, work once and
//! expire; and neither the invitation nor the sign-up form tells whether
//! an email has an account.

mod common;

use common::browser::{invitation_link, unescape, Browser};
use common::{Server, PASSWORD};
use reqwest::StatusCode;

const OPEN: (&str, &str) = ("KEYWARD_DASHBOARD__SIGNUP", "open");

fn try_sign_up(b: &mut Browser, email: &str) -> common::browser::Page {
    let csrf = b.get("/signup").csrf();
    b.post(
        "/signup",
        &[
            ("csrf_token", &csrf),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
}

#[test]
fn sign_up_is_closed_by_default_after_the_first_account() {
    let s = Server::start();
    let mut first = Browser::new(&s);
    let page = first.get("/signup");
    assert!(page.body.contains("Create your account"), "{}", page.body);
    first.sign_up("operator@example.com");

    let mut stranger = Browser::new(&s);
    let page = stranger.get("/signup");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign-up is closed"), "{}", page.body);
    assert!(!page.body.contains("type=\"password\""), "{}", page.body);
    // A form posted anyway is refused, and makes no account.
    let csrf = stranger.get("/login").csrf();
    let page = stranger.post(
        "/signup",
        &[
            ("csrf_token", &csrf),
            ("email", "stranger@example.com"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("Sign-up is closed"), "{}", page.body);
    assert!(page.body.contains("invite you"), "{}", page.body);
    let page = stranger.log_in("stranger@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    // The CLI still adds people.
    s.create_operator("added@example.com");
    let page = stranger.log_in("added@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[test]
fn sign_up_is_open_when_configured() {
    let s = Server::start_with(&[OPEN]);
    Browser::new(&s).sign_up("one@example.com");
    let mut b = Browser::new(&s);
    assert!(!b.get("/signup").body.contains("Sign-up is closed"));
    b.sign_up("two@example.com");
    assert!(b.get("/api-keys").body.contains("two@example.com"));
}

#[test]
fn an_invitation_lets_one_person_sign_up_once_and_join_the_project() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    let page = owner.try_invite(&project, "New.Person@example.com", "reader");
    assert_eq!(page.status, 200, "{}", page.body);
    let link = invitation_link(&page);
    let token = link.split("token=").nth(1).unwrap().to_owned();
    assert!(token.len() >= 40, "{link}");
    // Shown once: the Projects page lists the invitation, not its link.
    let later = owner.get(&format!("/projects?project={project}"));
    assert!(
        later.body.contains("new.person@example.com"),
        "{}",
        later.body
    );
    assert!(!later.body.contains(&token));

    let mut invited = Browser::new(&s);
    let page = invited.get(&link);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("new.person@example.com"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Default project"), "{}", page.body);
    // The password rules apply, and a refused try leaves the link working.
    let page = invited.join_with(&link, "short");
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("at least 12 characters"),
        "{}",
        page.body
    );
    let page = invited.join(&link);
    assert_eq!(page.location(), format!("/api-keys?project={project}"));
    let keys = invited.get(&format!("/api-keys?project={project}"));
    assert!(keys.body.contains("You are a reader"), "{}", keys.body);

    // Used once: a second use, by anyone, fails and says what to do.
    for mut b in [Browser::new(&s), invited] {
        let page = b.join_with(&link, PASSWORD);
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(
            unescape(&page.body).contains("Ask the project's owner for a new one"),
            "{}",
            page.body
        );
    }
    let members = owner.get(&format!("/projects?project={project}"));
    assert!(!members
        .body
        .contains("Withdraw the invitation for new.person@example.com"));

    // Only the hash is stored.
    if s.db.url().is_none() {
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(s.data_dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("keyward.db") {
                stored.extend(std::fs::read(path).unwrap());
            }
        }
        assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    assert!(
        !s.logs().contains(&token),
        "the invitation token reached the logs"
    );
}

#[test]
fn parallel_uses_of_one_invitation_make_one_member() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    let link = owner.invite(&project, "racer@example.com", "member");
    let statuses: Vec<StatusCode> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| Browser::new(&s).join_with(&link, PASSWORD).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let joined = statuses
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(joined, 1, "{statuses:?}");
}

#[test]
fn an_invitation_expires_after_seven_days_and_can_be_withdrawn() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    let page = owner.get(&format!("/projects?project={project}"));
    assert!(page.body.contains("Invite a member"));
    let link = owner.invite(&project, "late@example.com", "member");
    let page = owner.get(&format!("/projects?project={project}"));
    assert!(page.body.contains("late@example.com"));
    s.execute_sql(&format!(
        "UPDATE invitations SET expires_at = {} WHERE email = 'late@example.com'",
        keyward_core::time::now_unix() - 1
    ));
    let mut late = Browser::new(&s);
    let page = late.get(&link);
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("expired"), "{}", page.body);
    assert_eq!(
        late.join_with(&link, PASSWORD).status,
        StatusCode::BAD_REQUEST
    );

    // Withdrawn: the link stops working at once.
    let link = owner.invite(&project, "maybe@example.com", "member");
    let page = owner.get(&format!("/projects?project={project}"));
    let marker = format!("/projects/{project}/invitations/");
    let start = page.body.find(&marker).expect("a withdraw button") + marker.len();
    let id = &page.body[start..start + page.body[start..].find('/').unwrap()];
    let csrf = page.csrf();
    let page = owner.post(
        &format!("/projects/{project}/invitations/{id}/cancel"),
        &[("csrf_token", &csrf)],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(Browser::new(&s).get(&link).status, StatusCode::BAD_REQUEST);
}

#[test]
fn an_existing_account_logs_in_to_accept_and_only_its_own_invitation() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    s.create_operator("existing@example.com");
    s.create_operator("someone.else@example.com");
    let link = owner.invite(&project, "existing@example.com", "member");

    // Signed in as another account: refused, with what to do.
    let mut other = Browser::new(&s);
    other.log_in("someone.else@example.com", PASSWORD);
    let page = other.accept(&link);
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("Log out, then open the link again"),
        "{}",
        page.body
    );

    // Logging in from the invitation comes back to it, then accepting joins.
    let mut invited = Browser::new(&s);
    let page = invited.get(&link);
    let body = unescape(&page.body);
    let start = body.find("href=\"/login?next=").expect("a log-in link") + 6;
    let login = body[start..start + body[start..].find('"').unwrap()].to_owned();
    let login_page = invited.get(&login);
    assert!(
        login_page.body.contains("name=\"next\""),
        "{}",
        login_page.body
    );
    let csrf = login_page.csrf();
    let next = link.clone();
    let page = invited.post(
        "/login",
        &[
            ("csrf_token", &csrf),
            ("email", "existing@example.com"),
            ("password", PASSWORD),
            ("next", &next),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), link);
    let page = invited.accept(&link);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), format!("/api-keys?project={project}"));
    assert_eq!(
        invited.get(&format!("/api-keys?project={project}")).status,
        200
    );
    // A log-in never leads to another site.
    let page = invited.get("/login?next=https://evil.example/");
    assert_eq!(page.location(), "/api-keys");
}

#[test]
fn the_invitation_form_does_not_tell_whether_an_email_has_an_account() {
    let s = Server::start();
    let mut owner = Browser::new(&s);
    owner.sign_up("owner@example.com");
    let project = owner.project();
    s.create_operator("known@example.com");
    // The answer for an email: the invitation block, with the email and
    // the link's token taken out.
    let answer = |page: &common::browser::Page, email: &str| {
        let start = page
            .body
            .find("class=\"invited\"")
            .expect("an invitation block");
        let end = start + page.body[start..].find("Copy it now.").unwrap();
        let token = invitation_link(page)
            .split("token=")
            .nth(1)
            .unwrap()
            .to_owned();
        page.body[start..end]
            .replace(email, "EMAIL")
            .replace(&token, "TOKEN")
    };
    let known = owner.try_invite(&project, "known@example.com", "member");
    let unknown = owner.try_invite(&project, "nobody@example.com", "member");
    assert_eq!(known.status, StatusCode::OK, "{}", known.body);
    assert_eq!(unknown.status, StatusCode::OK, "{}", unknown.body);
    assert_eq!(
        answer(&known, "known@example.com"),
        answer(&unknown, "nobody@example.com")
    );
    for page in [&known, &unknown] {
        assert!(!page.body.contains("No account"), "{}", page.body);
        assert!(!page.body.contains("sign up first"), "{}", page.body);
    }
}

#[test]
fn the_sign_up_form_does_not_say_an_email_has_an_account() {
    let s = Server::start_with(&[OPEN]);
    Browser::new(&s).sign_up("taken@example.com");
    let page = try_sign_up(&mut Browser::new(&s), "taken@example.com");
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    for telling in [
        "already exists",
        "taken@example.com already",
        "has an account",
    ] {
        assert!(!page.body.contains(telling), "{telling}: {}", page.body);
    }
    assert!(
        page.body.contains("cannot be used to sign up"),
        "{}",
        page.body
    );
}
