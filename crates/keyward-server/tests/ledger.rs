//! The usage ledger under stress: a full queue, a database outage under
//! load, a graceful stop and a crash (kill -9). Every answered call must be
//! in the ledger exactly once (a crash may lose only a moment of traffic),
//! and no refused call may be.
//!
//! The database is blocked from outside the server: on SQLite by holding
//! the write lock (`BEGIN IMMEDIATE`), on PostgreSQL by holding an
//! `ACCESS EXCLUSIVE` lock on `usage_ledger`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::upstream::{fake_upstream, fake_upstream_counted, gateway_with};
use common::Server;
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// One chat completion through the gateway, as a client saw it.
#[derive(Debug)]
struct Answer {
    /// 0 when no complete answer arrived (connection refused or cut).
    status: u16,
    request_id: Option<String>,
    code: Option<String>,
    retry_after: Option<String>,
    error: Option<String>,
    sent: Instant,
    done: Instant,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status == 200
    }

    fn took(&self) -> Duration {
        self.done - self.sent
    }

    fn id(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(|| panic!("an answer without x-request-id: {self:?}"))
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An error and its causes, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn chat(client: &Client, base: &str, key: &str) -> Answer {
    let sent = Instant::now();
    let failed = |e: reqwest::Error| Answer {
        status: 0,
        request_id: None,
        code: None,
        retry_after: None,
        error: Some(error_chain(&e)),
        sent,
        done: Instant::now(),
    };
    let resp = match client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
    {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id");
    let retry_after = header("retry-after");
    // An answer counts once its body has arrived whole.
    let text = match resp.text() {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        request_id,
        code: body["error"]["code"].as_str().map(str::to_owned),
        retry_after,
        error: (status != 200).then_some(text),
        sent,
        done: Instant::now(),
    }
}

/// Client threads calling the gateway in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    /// Calls answered 200 so far.
    answered: Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<JoinHandle<Vec<Answer>>>,
    started: Instant,
}

impl Load {
    fn start(base: &str, key: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, base, key) = (stop.clone(), base.to_owned(), key.to_owned());
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let client = client();
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let a = chat(&client, &base, &key);
                        if a.ok() {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        let failed = a.status == 0;
                        answers.push(a);
                        if failed {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    answers
                })
            })
            .collect();
        Load {
            stop,
            answered,
            threads,
            started: Instant::now(),
        }
    }

    /// Waits until `n` calls have been answered (at most 30 s).
    fn wait_for_answers(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.answered.load(Ordering::SeqCst) < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets each thread finish the call it is making, then stop.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn finish(self) -> Vec<Answer> {
        self.stop();
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("a load thread panicked"))
            .collect()
    }
}

/// A project key: (secret, id).
fn project_key(s: &Server) -> (String, String) {
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let k = common::create_key(s, &admin, &project, json!({"name": "load"}));
    (common::secret(&k), common::id(&k))
}

fn db_url(s: &Server) -> String {
    match s.db.url() {
        Some(u) => u.to_owned(),
        None => format!(
            "sqlite://{}",
            s.data_dir.path().join("keyward.db").display()
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"))
}

/// Every ledger row, as (request_id, key_id), read from the database.
fn ledger_rows(url: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        use sqlx::Connection;
        let mut c = connect(url).await;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT request_id, key_id FROM usage_ledger ORDER BY seq")
                .fetch_all(&mut c)
                .await
                .unwrap();
        c.close().await.unwrap();
        rows
    })
}

/// Polls the ledger until `done` holds or `within` has passed; returns the
/// last rows read.
fn ledger_until(
    url: &str,
    within: Duration,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + within;
    loop {
        let rows = ledger_rows(url);
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the ledger holds each of `answered` exactly once, and nothing
/// else: every row is one of them, of `key_id`.
fn assert_ledger_is_exactly(rows: &[(String, String)], answered: &HashSet<String>, key_id: &str) {
    let ids: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "a request id is in the ledger twice");
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    let extra: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !answered.contains(*id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} answered calls, {} ledger rows; answered but not stored ({}): {:?}; stored but not answered ({}): {:?}",
        answered.len(),
        rows.len(),
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(10).collect::<Vec<_>>(),
    );
    for (id, key) in rows {
        assert_eq!(key, key_id, "ledger row {id} is for another key");
    }
}

/// The database refusing the ledger's writes, from outside the server,
/// until [`Outage::end`] (or drop).
struct Outage {
    release: mpsc::Sender<()>,
    holder: JoinHandle<()>,
}

impl Outage {
    /// Returns once the lock is held.
    fn begin(s: &Server) -> Outage {
        let url = db_url(s);
        let postgres = s.db.url().is_some();
        let (held, is_held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            use sqlx::{Connection, Executor};
            let rt = runtime();
            let mut c = rt.block_on(async {
                let mut c = connect(&url).await;
                if postgres {
                    c.execute("BEGIN").await.unwrap();
                    c.execute("LOCK TABLE usage_ledger IN ACCESS EXCLUSIVE MODE")
                        .await
                        .unwrap();
                } else {
                    // Readers go on (WAL); no other writer can commit.
                    c.execute("BEGIN IMMEDIATE").await.unwrap();
                }
                c
            });
            held.send(()).unwrap();
            // Until released, or the test ended (the sender dropped).
            let _ = released.recv();
            rt.block_on(async {
                c.execute("ROLLBACK").await.unwrap();
                c.close().await.unwrap();
            });
        });
        is_held
            .recv_timeout(Duration::from_secs(15))
            .expect("the lock on the ledger was not taken");
        Outage { release, holder }
    }

    fn end(self) {
        self.release.send(()).unwrap();
        self.holder.join().expect("the lock holder panicked");
    }
}

/// The ledger's queue depth, from `/readyz`.
fn queue_depth(s: &Server) -> i64 {
    let r = s.call("GET", "/readyz", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["ledger_queue_depth"]
        .as_i64()
        .unwrap_or_else(|| panic!("no ledger_queue_depth in /readyz: {}", r.body))
}

extern "C" {
    #[link_name = "kill"]
    fn send_signal(pid: i32, sig: i32) -> i32;
}

/// Whether `pid` has exited (gone, or a zombie not yet reaped).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn status_counts(answers: &[Answer]) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for a in answers {
        *counts.entry(a.status).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_full_ledger_queue_refuses_calls_with_503_and_loses_nothing() {
    const CAPACITY: usize = 4;
    const CALLS: usize = 20;
    let (upstream, upstream_calls) = fake_upstream_counted();
    let s = gateway_with(
        upstream,
        &[
            ("KEYWARD_LEDGER__QUEUE_CAPACITY", "4"),
            ("KEYWARD_LEDGER__QUEUE_WAIT", "300ms"),
        ],
    );
    let (key, key_id) = project_key(&s);
    let url = db_url(&s);

    let outage = Outage::begin(&s);
    let start = Arc::new(Barrier::new(CALLS));
    let callers: Vec<_> = (0..CALLS)
        .map(|_| {
            let (start, base, key) = (start.clone(), s.base.clone(), key.clone());
            std::thread::spawn(move || {
                let client = client();
                start.wait();
                chat(&client, &base, &key)
            })
        })
        .collect();
    let answers: Vec<Answer> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    let (ok, refused): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(|a| a.ok());
    println!(
        "{} answered, {} refused; statuses {:?}",
        ok.len(),
        refused.len(),
        status_counts(&answers)
    );

    // The queue's places, and no more, went to calls: the rest were refused.
    assert_eq!(
        ok.len(),
        CAPACITY,
        "answers while the ledger is blocked: {answers:#?}"
    );
    for a in &refused {
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.code.as_deref(), Some("ledger_unavailable"), "{a:?}");
        assert!(a.retry_after.is_some(), "503 without Retry-After: {a:?}");
        assert!(
            a.took() >= Duration::from_millis(290) && a.took() < Duration::from_secs(2),
            "a refusal should come after the 300ms queue wait, not hang: {a:?}"
        );
    }
    // A refused call is not made.
    assert_eq!(upstream_calls.load(Ordering::SeqCst), ok.len());
    // The answered calls wait in the queue for the database.
    assert_eq!(queue_depth(&s), ok.len() as i64);

    outage.end();
    let answered: HashSet<String> = ok.iter().map(|a| a.id()).collect();
    assert_eq!(answered.len(), ok.len(), "two answers share a request id");
    ledger_until(&url, Duration::from_secs(10), |rows| {
        rows.len() >= answered.len()
    });
    // Give a duplicate or a refused call time to show up, if any would.
    std::thread::sleep(Duration::from_millis(500));
    assert_ledger_is_exactly(&ledger_rows(&url), &answered, &key_id);
    assert_eq!(queue_depth(&s), 0);

    // The queue has room again: calls are answered and stored.
    let again = chat(&client(), &s.base, &key);
    assert_eq!(again.status, 200, "{again:?}");
    let mut answered = answered;
    answered.insert(again.id());
    let rows = ledger_until(&url, Duration::from_secs(10), |rows| {
        rows.len() >= answered.len()
    });
    assert_ledger_is_exactly(&rows, &answered, &key_id);
}

#[test]
fn a_database_outage_under_load_loses_no_answered_call() {
    let s = gateway_with(fake_upstream(), &[]);
    let (key, key_id) = project_key(&s);
    let url = db_url(&s);

    let load = Load::start(&s.base, &key, 4);
    std::thread::sleep(Duration::from_secs(1));
    let outage = Outage::begin(&s);
    let outage_began = Instant::now();
    std::thread::sleep(Duration::from_millis(1900));
    let depth = queue_depth(&s);
    let outage_ended = Instant::now();
    outage.end();
    std::thread::sleep(
        (load.started + Duration::from_secs(4)).saturating_duration_since(Instant::now()),
    );
    let answers = load.finish();

    let ok: Vec<&Answer> = answers.iter().filter(|a| a.ok()).collect();
    let refused = answers.iter().filter(|a| a.status == 503).count();
    let during = ok
        .iter()
        .filter(|a| a.sent >= outage_began && a.done <= outage_ended)
        .count();
    println!(
        "{} answered ({during} during the outage), {refused} refused; queue depth at the outage's end {depth}; statuses {:?}",
        ok.len(),
        status_counts(&answers)
    );
    for a in answers.iter().filter(|a| !a.ok()) {
        assert_eq!(a.status, 503, "only 200 or 503 is expected: {:?}", a.error);
        assert_eq!(a.code.as_deref(), Some("ledger_unavailable"), "{a:?}");
    }
    // The queue took the calls answered while the database was away.
    assert!(during > 0, "no call was answered during the outage");
    assert!(depth > 0, "nothing was waiting for the database");

    let answered: HashSet<String> = ok.iter().map(|a| a.id()).collect();
    assert_eq!(answered.len(), ok.len(), "two answers share a request id");
    ledger_until(&url, Duration::from_secs(10), |rows| {
        rows.len() >= answered.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_ledger_is_exactly(&ledger_rows(&url), &answered, &key_id);
}

#[test]
fn a_graceful_stop_stores_everything_answered() {
    const THREADS: usize = 4;
    let mut s = gateway_with(fake_upstream(), &[]);
    let (key, key_id) = project_key(&s);
    let url = db_url(&s);

    let load = Load::start(&s.base, &key, THREADS);
    std::thread::sleep(Duration::from_millis(1500));
    // The database goes away shortly before the stop, so that answered
    // calls are still queued when it comes: the stop must wait for them.
    let outage = Outage::begin(&s);
    let outage_began = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let depth = queue_depth(&s);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        outage.end();
    });
    load.stop();
    let stopping = Instant::now();
    s.stop();
    let stop_took = stopping.elapsed();
    releaser.join().unwrap();
    let answers = load.finish();

    let ok: Vec<&Answer> = answers.iter().filter(|a| a.ok()).collect();
    let queued = ok.iter().filter(|a| a.sent >= outage_began).count();
    println!(
        "{} answered ({queued} after the database went away), queue depth before the stop {depth}; stop took {stop_took:?}; statuses {:?}",
        ok.len(),
        status_counts(&answers)
    );
    assert!(depth > 0, "nothing was queued at the stop");
    assert!(
        queued > 0,
        "no call was answered after the database went away"
    );
    assert!(
        stop_took < Duration::from_secs(9),
        "the server did not stop by itself (killed after 10 s?): {stop_took:?}"
    );
    let logs = s.logs();
    assert!(logs.contains("keyward stopped"), "{logs}");
    assert!(!logs.contains("usage events lost"), "{logs}");

    let answered: HashSet<String> = ok.iter().map(|a| a.id()).collect();
    let rows = ledger_rows(&url);
    let stored: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    println!(
        "stored {}; calls without an answer: {:?}",
        rows.len(),
        answers
            .iter()
            .filter(|a| a.status == 0)
            .map(|a| &a.error)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        stored.len(),
        rows.len(),
        "a request id is in the ledger twice"
    );
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered, {} stored; answered but not stored: {missing:?}",
        answered.len(),
        rows.len()
    );
    // Besides the answered calls, only those in flight at the stop (one per
    // client thread at most) may have been stored.
    assert!(
        rows.len() <= answered.len() + THREADS,
        "{} answered, {} stored",
        answered.len(),
        rows.len()
    );
    for (id, k) in &rows {
        assert_eq!(k, &key_id, "ledger row {id} is for another key");
    }
}

#[test]
fn kill_9_under_load_loses_at_most_a_moment_of_traffic() {
    let mut s = gateway_with(fake_upstream(), &[]);
    let (key, key_id) = project_key(&s);
    let url = db_url(&s);
    let pid = s.pid();

    let load = Load::start(&s.base, &key, 8);
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) takes no pointers; the pid found above is the
    // server this test started.
    #[allow(unsafe_code)]
    let killed = unsafe { send_signal(pid, 9) };
    let killed_at = Instant::now();
    load.stop();
    assert_eq!(killed, 0, "kill -9 {pid} failed");
    let ran = killed_at - load.started;
    let answers = load.finish();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(exited(pid), "the server survived kill -9");
    // The next start stores what the spool holds before it listens.
    s.restart();
    assert!(
        s.logs().contains("left in the ledger spool"),
        "the restarted server did not replay the spool:\n{}",
        s.logs()
    );

    let ok: Vec<&Answer> = answers.iter().filter(|a| a.ok()).collect();
    let answered: HashSet<String> = ok.iter().map(|a| a.id()).collect();
    assert_eq!(answered.len(), ok.len(), "two answers share a request id");
    let rows = ledger_rows(&url);
    let stored: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        stored.len(),
        rows.len(),
        "a request id is in the ledger twice"
    );
    let lost_answers: Vec<&&Answer> = ok
        .iter()
        .filter(|a| !stored.contains(a.id().as_str()))
        .collect();
    let lost = lost_answers.len();
    // How far behind the writer was: the earliest lost call's answer.
    let behind = lost_answers
        .iter()
        .map(|a| killed_at.saturating_duration_since(a.done))
        .max()
        .unwrap_or_default();
    let unanswered_stored = stored.iter().filter(|id| !answered.contains(**id)).count();
    let rate = answered.len() as f64 / ran.as_secs_f64();
    let lost_ms = lost as f64 / rate * 1000.0;
    let store = if s.db.url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "kill -9 on {store}: answered {} in {ran:?} ({rate:.0} calls/s), stored {}, lost {lost} \
         ({lost_ms:.1} ms of traffic; the earliest answered {behind:?} before the kill), \
         stored but unanswered {unanswered_stored}; statuses {:?}",
        answered.len(),
        rows.len(),
        status_counts(&answers)
    );
    if let Some(a) = answers.iter().find(|a| a.status != 200 && a.status != 0) {
        panic!("an unexpected answer {}: {:?}", a.status, a.error);
    }
    assert!(
        answered.len() >= 100,
        "too little traffic to measure: {} calls",
        answered.len()
    );
    for (id, k) in &rows {
        assert_eq!(k, &key_id, "ledger row {id} is for another key");
    }
    // At most 100 ms of traffic on either store, however far behind the
    // database was (plus the calls in flight at the kill): the spool held
    // what the database had not yet committed.
    let allowed = rate * 0.1 + 20.0;
    assert!(
        lost as f64 <= allowed,
        "lost {lost} answered calls ({lost_ms:.1} ms of traffic at {rate:.0}/s); at most {allowed:.0} allowed on {store}"
    );
}

/// Client threads calling until the gateway refuses them for the budget
/// (or a minute passes): the calls answered.
fn spend_until_refused(base: &str, key: &str, threads: usize) -> Vec<Answer> {
    let until = Instant::now() + Duration::from_secs(60);
    let threads: Vec<JoinHandle<Vec<Answer>>> = (0..threads)
        .map(|_| {
            let (base, key) = (base.to_owned(), key.to_owned());
            std::thread::spawn(move || {
                let client = client();
                let mut answers = Vec::new();
                while Instant::now() < until {
                    let a = chat(&client, &base, &key);
                    let refused = a.code.as_deref() == Some("insufficient_quota");
                    answers.push(a);
                    if refused {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread panicked"))
        .collect()
}

/// A budget rebuilt after a crash counts what was spent before it: a key
/// whose monthly budget covers N calls is answered at most N times (plus
/// the moment a crash may lose) across a `kill -9` and a restart.
#[test]
fn a_budget_after_kill_9_counts_the_spend_before_it() {
    let mut s = gateway_with(fake_upstream(), &[]);
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    // Each call costs $0.03 (30 tokens at $1000 per million): 10,000 calls.
    const CALLS: usize = 10_000;
    let k = common::create_key(
        &s,
        &admin,
        &project,
        json!({"name": "budget", "monthly_budget_usd": 300}),
    );
    let key = common::secret(&k);

    let load = Load::start(&s.base, &key, 8);
    // Part of the budget spent, whatever the machine's pace.
    load.wait_for_answers(CALLS / 5);
    let pid = s.pid();
    // SAFETY: kill(2) takes no pointers; the pid is the server this test
    // started.
    #[allow(unsafe_code)]
    let killed = unsafe { send_signal(pid, 9) };
    assert_eq!(killed, 0, "kill -9 {pid} failed");
    let killed_at = Instant::now();
    let before: Vec<Answer> = load.finish();
    let ran = killed_at - before.iter().map(|a| a.sent).min().unwrap();
    let before_ok = before.iter().filter(|a| a.ok()).count();
    let rate = before_ok as f64 / ran.as_secs_f64();
    assert!(
        (100..CALLS).contains(&before_ok),
        "the first run should spend part of the budget: {before_ok} calls answered"
    );
    s.restart();

    let after = spend_until_refused(&s.base, &key, 8);
    let after_ok = after.iter().filter(|a| a.ok()).count();
    if let Some(a) = after
        .iter()
        .find(|a| !a.ok() && a.code.as_deref() != Some("insufficient_quota"))
    {
        panic!("an unexpected answer {}: {:?}", a.status, a.error);
    }
    assert!(
        after
            .iter()
            .any(|a| a.code.as_deref() == Some("insufficient_quota")),
        "the budget never ran out after the restart ({after_ok} more calls)"
    );
    let total = before_ok + after_ok;
    println!(
        "budget of {CALLS} calls: {before_ok} answered before kill -9 ({rate:.0}/s), \
         {after_ok} after the restart, {total} in all"
    );
    // What a crash may lose (100 ms of traffic and the calls in flight)
    // is the most the budget may be overrun by.
    let overrun_allowed = (rate * 0.1) as usize + 20;
    assert!(
        total <= CALLS + overrun_allowed,
        "{total} calls answered on a budget of {CALLS} (at most {overrun_allowed} over allowed): \
         the spend before the crash was forgotten"
    );
    // Reservations may refuse the last few calls early, not many.
    assert!(
        total >= CALLS * 9 / 10,
        "only {total} of {CALLS} calls were answered before the budget refused"
    );
}
