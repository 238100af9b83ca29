//! A first start tells a newcomer what to do next: where the dashboard is,
//! that the first account to sign up becomes the operator, and the CLI way
//! to the same; once an account exists, it only names the dashboard.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// Waits (briefly) for `text` in the server's log.
fn logged(s: &Server, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if s.logs().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_fresh_installation_says_how_to_create_the_first_account() {
    let s = Server::start();
    let signup = format!("open {}/signup", s.base);
    assert!(logged(&s, &signup), "no sign-up hint: {}", s.logs());
    assert!(
        logged(&s, "the first account to sign up becomes the operator"),
        "{}",
        s.logs()
    );
    assert!(logged(&s, "keyward admin create --email"), "{}", s.logs());
}

#[test]
fn with_an_account_the_start_names_only_the_dashboard() {
    let s = Server::start();
    s.create_operator("first@example.com");
    // A second server on the same store, now that an account exists.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir.path())
        .env_remove("KEYWARD_DATABASE_URL")
        .env("KEYWARD_LOCAL_MODEL__ENABLED", "false")
        .env("RUST_LOG", "info");
    if let Some(url) = s.db.url() {
        cmd.env("KEYWARD_DATABASE_URL", url);
    }
    let mut second = common::spawn(&mut cmd);
    let base = second.base.clone();
    let login = format!("dashboard: {base}/login");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !second
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&login))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = second.logs.lock().unwrap().join("\n");
    let _ = second.child.kill();
    let _ = second.child.wait();
    assert!(log.contains(&format!("dashboard: {base}/login")), "{log}");
    assert!(!log.contains("no account yet"), "{log}");
}
