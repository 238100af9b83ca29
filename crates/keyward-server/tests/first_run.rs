//! A first start tells a newcomer what to do next: where the dashboard is,
//! that the first account to sign up becomes the operator, and the CLI way
//! to the same; once an account exists, it only names the dashboard.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
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
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = s.db.url() {
        cmd.env("KEYWARD_DATABASE_URL", url);
    }
    let mut child = cmd.spawn().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut base = None;
    for line in lines.map_while(Result::ok) {
        if let Some(addr) = line.split("listening on ").nth(1) {
            base = Some(addr.trim().to_owned());
        }
        let done = line.contains("dashboard: ") || line.contains("no account yet");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    let base = base.unwrap_or_else(|| panic!("the server did not start: {log}"));
    assert!(log.contains(&format!("dashboard: {base}/login")), "{log}");
    assert!(!log.contains("no account yet"), "{log}");
}
