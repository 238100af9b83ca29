//! The edge against hostile clients: slow heads, slow bodies, idle
//! connections, more connections than a worker takes, forged forwarded
//! headers, and a graceful stop that slow clients cannot hold past its
//! grace. Each test starts a real `keyward serve` and talks TCP to it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::upstream::{fake_upstream, gateway_with};
use common::Server;
use serde_json::json;

fn addr(s: &Server) -> SocketAddr {
    s.base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// The operator's admin key, and the secret of a key made in the default
/// project with `body`.
fn operator_and_key(s: &Server, body: serde_json::Value) -> (String, String) {
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let key = common::secret(&common::create_key(s, &admin, &project, body));
    (admin, key)
}

/// Whether the server has closed `conn`: a read sees the end (or a reset)
/// within `wait`.
fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            // An answer (a 408, say) before the close: keep reading.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A plain GET on a fresh connection: the status line, and how long it took.
fn get(addr: SocketAddr, path: &str) -> (String, Duration) {
    get_with(addr, path, "")
}

/// [`get`] with extra header lines (each ending in `\r\n`).
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    let line = text.lines().next().unwrap_or_default().to_owned();
    (line, started.elapsed())
}

#[test]
fn hundreds_of_trickling_heads_neither_block_others_nor_stay_open() {
    let s = Server::start_with(&[("KEYWARD_HTTP__HEADER_READ_TIMEOUT", "2s")]);
    let a = addr(&s);
    let started = Instant::now();
    let mut tricklers: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = TcpStream::connect(a).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").unwrap();
            c
        })
        .collect();
    // A byte each from every trickler, twice, while a normal client is served.
    for round in 0..2 {
        for c in &mut tricklers {
            let _ = c.write_all(b"a");
        }
        let (line, took) = get(a, "/healthz");
        assert!(line.contains(" 200 "), "round {round}: {line}");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: a normal request took {took:?} beside 300 trickling ones"
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    // The head timeout (2 s from each connection's opening) closes them all,
    // although they kept sending.
    let mut open = 0;
    for c in &mut tricklers {
        let _ = c.write_all(b"a");
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        if !closed_within(c, left.max(Duration::from_millis(50))) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} of 300 trickling connections were still open after 5 s"
    );
}

#[test]
fn a_silent_connection_is_closed_by_the_header_timeout() {
    let s = Server::start_with(&[("KEYWARD_HTTP__HEADER_READ_TIMEOUT", "1s")]);
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(4)),
        "a connection that sent nothing stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early: {:?}",
        started.elapsed()
    );
}

#[test]
fn an_idle_keep_alive_connection_lasts_the_keep_alive_timeout_not_the_header_timeout() {
    let s = Server::start_with(&[
        ("KEYWARD_HTTP__HEADER_READ_TIMEOUT", "1s"),
        ("KEYWARD_HTTP__KEEP_ALIVE_TIMEOUT", "3s"),
    ]);
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    // Still open after the header timeout: idle, not slow.
    assert!(
        !closed_within(&mut c, Duration::from_millis(1800)),
        "closed by the header timeout while idle"
    );
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the second request on the connection failed"
    );
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(6)),
        "an idle connection outlived the keep-alive timeout"
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2500),
        "closed after {idle:?} idle (keep-alive is 3 s); first answer {:?} ago",
        answered.elapsed()
    );
}

#[test]
fn a_body_that_stalls_gets_408_and_the_body_timeout_is_not_the_header_timeout() {
    let s = gateway_with(
        fake_upstream(),
        &[
            ("KEYWARD_HTTP__HEADER_READ_TIMEOUT", "1s"),
            ("KEYWARD_HTTP__BODY_READ_TIMEOUT", "2s"),
        ],
    );
    let (_, key) = operator_and_key(&s, json!({"name": "k"}));
    for path in ["/v1/chat/completions", "/v1/organization/projects"] {
        let mut c = TcpStream::connect(addr(&s)).unwrap();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\""
        )
        .unwrap();
        let started = Instant::now();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        let took = started.elapsed();
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("request_timeout"), "{path}: {text}");
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
            "{path}: answered after {took:?}; the body timeout is 2 s"
        );
    }
}

#[test]
fn connections_past_a_workers_limit_wait_in_the_backlog_and_are_served_later() {
    let s = Server::start_with(&[
        ("KEYWARD_WORKERS", "1"),
        ("KEYWARD_HTTP__MAX_CONNECTIONS_PER_WORKER", "20"),
        ("KEYWARD_HTTP__HEADER_READ_TIMEOUT", "2s"),
    ]);
    let a = addr(&s);
    let _silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The 21st connects (the kernel's backlog), and is answered once the
    // silent ones are closed by the header timeout: not refused.
    let (line, took) = get(a, "/healthz");
    assert!(line.contains(" 200 "), "{line}");
    assert!(
        took >= Duration::from_millis(1200),
        "served after {took:?}: the limit of 20 connections did not hold"
    );
}

#[test]
fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let upstream = fake_upstream();
    let call = |s: &Server, key: &str, xff: &str| {
        let mut c = TcpStream::connect(addr(s)).unwrap();
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        write!(
            c,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             X-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.read_to_string(&mut text);
        text.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    let key_for = |s: &Server| {
        operator_and_key(
            s,
            json!({"name": "office", "allowed_ips": ["198.51.100.0/24"]}),
        )
        .1
    };

    let behind_proxy = gateway_with(
        upstream,
        &[("KEYWARD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")],
    );
    let key = key_for(&behind_proxy);
    assert_eq!(
        call(&behind_proxy, &key, "198.51.100.7"),
        "200",
        "the proxy's client was not believed"
    );
    assert_eq!(
        call(&behind_proxy, &key, "198.51.100.7, 203.0.113.5"),
        "403",
        "a forged hop left of the real client was believed"
    );
    assert_eq!(call(&behind_proxy, &key, "203.0.113.5, 10.1.2.3"), "403");
    assert_eq!(
        call(&behind_proxy, &key, "198.51.100.7, 10.1.2.3"),
        "200",
        "a trusted inner proxy was not skipped"
    );

    let direct = gateway_with(upstream, &[]);
    let key = key_for(&direct);
    assert_eq!(
        call(&direct, &key, "198.51.100.7"),
        "403",
        "X-Forwarded-For was believed from a peer that is not a trusted proxy"
    );
}

/// An upstream that answers a stream and then sends a chunk every 200 ms,
/// for ever: a slow client's answer that a stop must not wait for.
fn endless_stream_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
                loop {
                    if conn
                        .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    a
}

#[test]
fn a_stream_still_open_at_the_end_of_shutdown_grace_is_cut_and_billed() {
    let mut s = gateway_with(
        endless_stream_upstream(),
        &[("KEYWARD_SHUTDOWN_GRACE", "2s")],
    );
    let (admin, key) = operator_and_key(&s, json!({"name": "k"}));
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The client keeps reading slowly; the server is asked to stop.
    let asked = Instant::now();
    s.stop();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the stop took {took:?} with shutdown_grace = 2s"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "the stop took {took:?}: the open stream was not given its grace"
    );
    assert!(
        s.logs().contains("keyward stopped"),
        "no clean stop:\n{}",
        s.logs()
    );
    // Billed: the cut stream is in the ledger, as a client gone (499).
    s.restart();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let usage = s.get(
        &format!("/v1/organization/usage/completions?start_time={since}&bucket_width=1d"),
        &admin,
    );
    assert_eq!(usage.status, 200, "{}", usage.body);
    let requests: i64 = usage.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().cloned().unwrap_or_default())
        .map(|r| r["num_model_requests"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(requests, 1, "the cut stream was not billed: {}", usage.body);
}

/// The status code of a GET with extra headers on a fresh connection.
fn status_of(addr: SocketAddr, path: &str, headers: &str) -> String {
    let (line, _) = get_with(addr, path, headers);
    line.split(' ').nth(1).unwrap_or_default().to_owned()
}

#[test]
fn metrics_are_served_only_to_this_machine_by_default() {
    let s = Server::start_with(&[("KEYWARD_TRUSTED_PROXIES", "127.0.0.1")]);
    let a = addr(&s);
    assert_eq!(
        status_of(a, "/metrics", ""),
        "200",
        "a local scrape was refused"
    );
    // A client reaching it through a proxy on this machine is not local.
    assert_eq!(
        status_of(a, "/metrics", "X-Forwarded-For: 203.0.113.5\r\n"),
        "403",
        "/metrics was served to a remote client"
    );
}

#[test]
fn metrics_with_a_token_need_it_from_everyone() {
    let s = Server::start_with(&[
        ("KEYWARD_METRICS__BEARER_TOKEN_ENV", "SCRAPE_TOKEN"),
        ("SCRAPE_TOKEN", "t0ken-for-prometheus"),
    ]);
    let a = addr(&s);
    assert_eq!(status_of(a, "/metrics", ""), "401");
    assert_eq!(
        status_of(a, "/metrics", "Authorization: Bearer wrong\r\n"),
        "401"
    );
    assert_eq!(
        status_of(
            a,
            "/metrics",
            "Authorization: Bearer t0ken-for-prometheus\r\n"
        ),
        "200"
    );
}

#[test]
fn metrics_on_their_own_address_leave_the_main_one() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_at = format!("127.0.0.1:{port}");
    let s = Server::start_with(&[("KEYWARD_METRICS__LISTEN", &metrics_at)]);
    assert_eq!(status_of(addr(&s), "/metrics", ""), "404");
    let mut served = String::new();
    for _ in 0..50 {
        served = status_of(metrics_at.parse().unwrap(), "/metrics", "");
        if served == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served, "200", "nothing served /metrics on metrics.listen");
}

#[test]
fn a_named_but_unset_metrics_token_stops_the_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("KEYWARD_LOCAL_MODEL__ENABLED", "false")
        .env("KEYWARD_METRICS__BEARER_TOKEN_ENV", "NO_SUCH_TOKEN_VAR")
        .env_remove("NO_SUCH_TOKEN_VAR")
        .env_remove("KEYWARD_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NO_SUCH_TOKEN_VAR"), "{err}");
}
