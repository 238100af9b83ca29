//! Hostile numbers against one real server (docs/authorization.md,
//! "Numbers from outside"): any i64, u64::MAX, huge floats, negative zero
//! and numbers as strings in the usage API, key and project bodies,
//! rotation, list paging and gateway bodies. Properties, for every case:
//!
//! - never a 5xx, and every 4xx is in OpenAI's error shape;
//! - an answer within [`TIMEOUT`], and `GET /healthz` is 200 afterwards;
//! - the server's resident memory stays under [`RSS_BOUND`] (a watchdog
//!   kills it past [`RSS_KILL`], so a runaway shows as a failure here,
//!   not as the machine running out of memory);
//! - a value outside the documented range is a 400 naming its `param`.
//!
//! Every property runs against the same server; only a server that died,
//! hung or was killed is replaced (and that is reported as a failure).
//! All properties run, and the test fails at the end listing each
//! failing one with its (shrunk) input.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::upstream::gateway;
use common::{key_path, keys_path, Server};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseResult, TestError, TestRunner};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// The longest a request may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The server's resident memory must stay below this.
const RSS_BOUND: u64 = 500 << 20;
/// Past this the watchdog kills the server.
const RSS_KILL: u64 = 1 << 30;
/// Cases per property (`PROPTEST_CASES` overrides).
const CASES: u32 = 128;

/// 9999-12-31T23:59:59Z, the last second the usage API accepts.
const YEAR_9999: i64 = 253_402_300_799;
/// `max_output_tokens` of the model `m` (the catalog's default).
const MAX_OUTPUT_TOKENS: i64 = 4096;
const MAX_GRACE: i64 = 604_800;
const MAX_RATE: i64 = 1_000_000_000;
const MAX_BUDGET: f64 = 1e9;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// The server process: its pid and a memory watchdog.

#[cfg(unix)]
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Resident memory of `pid` in bytes; `None` once it has exited.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples the server's RSS every 10 ms, keeps the peak, and kills the
/// server (SIGKILL) if it passes [`RSS_KILL`].
struct Watchdog {
    peak: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(pid: u32) -> Watchdog {
        let peak = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, k, s) = (peak.clone(), killed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(now) = rss(pid) else { return };
                p.fetch_max(now, Ordering::Relaxed);
                if now > RSS_KILL {
                    #[cfg(unix)]
                    // SAFETY: kill(2) takes no pointers; `pid` is the
                    // server this test started.
                    #[allow(unsafe_code)]
                    unsafe {
                        libc_kill(pid as i32, 9);
                    }
                    k.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Watchdog {
            peak,
            killed,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// One server with what the properties need.

struct Answer {
    status: u16,
    body: Value,
}

struct Fixture {
    // Declared first so that it stops before the server does.
    watchdog: Watchdog,
    server: Server,
    client: Client,
    admin: String,
    /// The default project: the chat key and the keys created here.
    project: String,
    /// A project whose own limits and budget the properties change.
    limits_project: String,
    chat_key: String,
    update_key: String,
    rotate_key: String,
    /// Why the server can no longer be trusted (died, hung, was killed).
    broken: RefCell<Option<String>>,
    /// How often each status was answered (in the current property).
    statuses: RefCell<BTreeMap<u16, usize>>,
}

impl Fixture {
    fn start() -> Fixture {
        let server = gateway();
        let pid = server.pid() as u32;
        let watchdog = Watchdog::start(pid);
        let client = Client::builder().timeout(TIMEOUT).build().unwrap();
        let admin = server.create_operator("owner@example.com");
        let project = server.default_project(&admin);
        let limits_project = common::ok(server.post(
            "/v1/organization/projects",
            &admin,
            json!({"name": "limits"}),
        ))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = |name: &str| common::create_key(&server, &admin, &project, json!({"name": name}));
        let chat_key = common::secret(&key("chat"));
        let update_key = common::id(&key("update"));
        let rotate_key = common::id(&key("rotate"));
        Fixture {
            watchdog,
            server,
            client,
            admin,
            project,
            limits_project,
            chat_key,
            update_key,
            rotate_key,
            broken: RefCell::new(None),
            statuses: RefCell::new(BTreeMap::new()),
        }
    }

    fn broken(&self) -> Option<String> {
        self.broken.borrow().clone()
    }

    /// Marks the server broken by `what` and fails the case.
    fn fatal(&self, why: String) -> TestCaseError {
        self.broken.borrow_mut().get_or_insert(why.clone());
        TestCaseError::fail(why)
    }

    /// Sends a request and checks the properties every answer must have:
    /// an answer in time, no 5xx, 4xx in OpenAI's shape, the server still
    /// healthy and within its memory.
    fn send(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
    ) -> Result<Answer, TestCaseError> {
        let what = match body {
            Some(b) => format!("{method} {path} {b}"),
            None => format!("{method} {path}"),
        };
        let mut req = self
            .client
            .request(
                method.parse().unwrap(),
                format!("{}{}", self.server.base, path),
            )
            .bearer_auth(key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let started = Instant::now();
        let resp = req.send();
        if self.watchdog.killed() {
            return Err(self.fatal(format!(
                "{what}: the server's RSS passed {} MB; it was killed",
                RSS_KILL >> 20
            )));
        }
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(self.fatal(format!(
                    "{what}: no answer within {TIMEOUT:?} (server peak RSS {} MB)",
                    self.watchdog.peak() >> 20
                )))
            }
            Err(e) => return Err(self.fatal(format!("{what}: no answer: {e}"))),
        };
        let status = resp.status().as_u16();
        *self.statuses.borrow_mut().entry(status).or_default() += 1;
        let text = match resp.text() {
            Ok(t) => t,
            Err(e) => {
                return Err(self.fatal(format!(
                    "{what}: {status} with no complete body after {:?}: {e}",
                    started.elapsed()
                )))
            }
        };
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.healthy(&what)?;
        if status >= 500 {
            return Err(TestCaseError::fail(format!(
                "{what}: {status} {}",
                short(&body)
            )));
        }
        if (400..500).contains(&status) {
            error_shape(&body).map_err(|e| {
                TestCaseError::fail(format!("{what}: {status} {e}: {}", short(&body)))
            })?;
        }
        Ok(Answer { status, body })
    }

    fn healthy(&self, after: &str) -> Result<(), TestCaseError> {
        let r = self
            .client
            .get(format!("{}/healthz", self.server.base))
            .send();
        if self.watchdog.killed() {
            return Err(self.fatal(format!(
                "{after}: the server's RSS passed {} MB; it was killed",
                RSS_KILL >> 20
            )));
        }
        match r {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(self.fatal(format!(
                "{after}: then GET /healthz answered {}",
                r.status()
            ))),
            Err(e) => Err(self.fatal(format!("{after}: then GET /healthz failed: {e}"))),
        }
    }

    fn get(&self, path: &str) -> Result<Answer, TestCaseError> {
        self.send("GET", path, &self.admin, None)
    }

    fn post(&self, path: &str, body: &str) -> Result<Answer, TestCaseError> {
        self.send("POST", path, &self.admin, Some(body))
    }

    fn chat(&self, body: &str) -> Result<Answer, TestCaseError> {
        self.send("POST", "/v1/chat/completions", &self.chat_key, Some(body))
    }
}

/// A body for a failure message, cut to a readable length.
fn short(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// `{"error":{"message","type","param","code"}}`, every member present.
fn error_shape(body: &Value) -> Result<(), String> {
    let err = body
        .get("error")
        .and_then(Value::as_object)
        .ok_or("not an OpenAI error object")?;
    match err.get("message").and_then(Value::as_str) {
        Some(m) if !m.trim().is_empty() => {}
        _ => return Err("no message".into()),
    }
    if !err.get("type").is_some_and(Value::is_string) {
        return Err("no type".into());
    }
    for member in ["param", "code"] {
        match err.get(member) {
            Some(Value::String(_) | Value::Null) => {}
            _ => return Err(format!("no `{member}` (string or null)")),
        }
    }
    Ok(())
}

/// A 400 whose `param` is `field` (a dotted path may also be named by its
/// last part: `rate_limits.requests_per_minute` or `requests_per_minute`).
fn refused_naming(a: &Answer, field: &str, what: &str) -> TestCaseResult {
    let param = a.body["error"]["param"].as_str().unwrap_or_default();
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let named = param == field || param == leaf || param.ends_with(&format!(".{leaf}"));
    if a.status == 400 && named {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: expected 400 naming `{field}`, got {} {}",
            a.status,
            short(&a.body)
        )))
    }
}

// ---------------------------------------------------------------------------
// Numbers.

/// Numbers at the edges of the widths and ranges the server reads them into.
fn edges() -> Vec<String> {
    let n = now();
    let mut v: Vec<String> = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "-1",
        "0.5",
        "1e3",
        "1e308",
        "-1e308",
        "1.7976931348623157e308",
        "5e-324",
        "20",
        "21",
        "31",
        "32",
        "100",
        "101",
        "128",
        "129",
        "168",
        "169",
        "1440",
        "1441",
        "4096",
        "4097",
        "604800",
        "604801",
        "1000000000",
        "1000000001",
        "4294967295",
        "4294967296",
        "253402300799",
        "253402300800",
        "9007199254740993",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in [n - 86_400, n, n + 60, n + 3650 * 86_400, n + 3660 * 86_400] {
        v.push(t.to_string());
    }
    v
}

/// Any number, as JSON text.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        3 => select(edges()),
        1 => any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        1 => (1usize..40).prop_map(|d| "9".repeat(d)),
    ]
    .boxed()
}

/// A hostile JSON value: mostly numbers, some as strings, some not numbers.
fn json_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => number(),
        2 => number().prop_map(|n| format!("\"{n}\"")),
        1 => select(&["null", "true", "\"\"", "[]", "{}", "\"NaN\"", "\"Infinity\"", "[1]"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A hostile query-string value (not yet encoded).
fn query_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => number(),
        1 => number().prop_map(|n| format!("\"{n}\"")),
        1 => select(&["", "+1", " 1", "1 ", "0x10", "NaN", "inf", "-inf", "1_000", "1e999", "١"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Integers and other numbers outside `lo..=hi` for an integer field, as JSON
/// text: below, above, past i64 and u64, non-integers, and in-range numbers
/// sent as strings.
fn int_outside(lo: i64, hi: i64) -> BoxedStrategy<String> {
    let mut options: Vec<BoxedStrategy<String>> = vec![
        select(
            &[
                "18446744073709551615",
                "18446744073709551616",
                "9223372036854775808",
                "123456789012345678901234567890",
                "1e308",
                "-1e308",
            ][..],
        )
        .prop_map(str::to_owned)
        .boxed(),
        (lo..=hi.min(lo.saturating_add(1_000_000)))
            .prop_map(|n| format!("{n}.5"))
            .boxed(),
        (lo..=hi).prop_map(|n| format!("\"{n}\"")).boxed(),
    ];
    if lo > i64::MIN {
        options.push((i64::MIN..lo).prop_map(|n| n.to_string()).boxed());
        options.push(
            (lo.saturating_sub(10)..lo)
                .prop_map(|n| n.to_string())
                .boxed(),
        );
    }
    if hi < i64::MAX {
        options.push((hi + 1..=i64::MAX).prop_map(|n| n.to_string()).boxed());
        options.push(
            (hi + 1..=hi.saturating_add(10))
                .prop_map(|n| n.to_string())
                .boxed(),
        );
    }
    proptest::strategy::Union::new(options).boxed()
}

/// Money outside 0 to [`MAX_BUDGET`], as JSON text.
fn budget_outside() -> BoxedStrategy<String> {
    prop_oneof![
        (-1e308f64..-1e-9).prop_map(|f| format!("{f:e}")),
        (MAX_BUDGET * 1.000_001..1e308).prop_map(|f| format!("{f:e}")),
        select(
            &[
                "1e308",
                "-1e308",
                "-1",
                "1000000000.01",
                "18446744073709551616",
                "\"5\"",
                "\"NaN\"",
                "\"Infinity\"",
                "[]"
            ][..]
        )
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    parts.join("&")
}

/// JSON object text from members whose values are JSON text.
fn object(members: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = members
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("\"{k}\":{v}")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

// ---------------------------------------------------------------------------
// Running properties against the shared server.

struct Suite {
    fixture: Option<Fixture>,
    failures: Vec<String>,
    peak_rss: u64,
    replaced: usize,
}

impl Suite {
    fn fixture(&mut self) -> &Fixture {
        let dead = self.fixture.as_ref().is_none_or(|f| f.broken().is_some());
        if dead {
            if let Some(old) = self.fixture.take() {
                self.peak_rss = self.peak_rss.max(old.watchdog.peak());
                self.replaced += 1;
            }
            self.fixture = Some(Fixture::start());
        }
        self.fixture.as_ref().unwrap()
    }

    /// Runs `case` on [`CASES`] inputs from `strategy`; records a failure
    /// with its shrunk input. A case that breaks the server stops the
    /// property there: shrinking it would only meet the broken server.
    fn property<S>(
        &mut self,
        name: &str,
        strategy: S,
        case: impl Fn(&Fixture, &S::Value) -> TestCaseResult,
    ) where
        S: Strategy,
        S::Value: Debug,
    {
        let started = Instant::now();
        let fx = self.fixture();
        fx.statuses.borrow_mut().clear();
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(CASES);
        let mut runner = TestRunner::new(Config {
            cases,
            max_shrink_iters: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |v| {
            if fx.broken().is_some() {
                return Ok(());
            }
            case(fx, &v)
        });
        let outcome = match result {
            Ok(()) => None,
            Err(TestError::Fail(why, input)) => Some(format!("{why}\n    input: {input:?}")),
            Err(TestError::Abort(why)) => Some(format!("aborted: {why}")),
        };
        let broke = fx.broken().is_some();
        let statuses: Vec<String> = fx
            .statuses
            .borrow()
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        eprintln!(
            "{name}: {} in {:.1?} [{}]{}",
            if outcome.is_some() { "FAILED" } else { "ok" },
            started.elapsed(),
            statuses.join(" "),
            if broke { " (the server broke)" } else { "" }
        );
        if let Some(o) = outcome {
            self.failures.push(format!("{name}: {o}"));
        }
    }
}

// ---------------------------------------------------------------------------
// The properties.

const USAGE_ROUTES: [&str; 2] = [
    "/v1/organization/usage/completions",
    "/v1/organization/costs",
];
const NUMERIC_CHAT_FIELDS: [&str; 5] = [
    "max_tokens",
    "max_completion_tokens",
    "n",
    "best_of",
    "temperature",
];

fn chat_body(extra: &[(&str, Option<String>)]) -> String {
    let mut members = vec![
        ("model", Some("\"m\"".to_owned())),
        (
            "messages",
            Some(r#"[{"role":"user","content":"hi"}]"#.to_owned()),
        ),
    ];
    members.extend(extra.iter().cloned());
    object(&members)
}

#[test]
fn hostile_numbers_never_break_the_server() {
    let started = Instant::now();
    let mut suite = Suite {
        fixture: None,
        failures: Vec::new(),
        peak_rss: 0,
        replaced: 0,
    };
    let n = now();

    // Gateway bodies.
    suite.property(
        "chat: any numbers in max_tokens, max_completion_tokens, n, best_of, temperature",
        prop::collection::vec((select(&NUMERIC_CHAT_FIELDS[..]), json_value()), 1..5),
        |fx, fields| {
            let fields: Vec<(&str, Option<String>)> =
                fields.iter().map(|(k, v)| (*k, Some(v.clone()))).collect();
            fx.chat(&chat_body(&fields)).map(|_| ())
        },
    );
    suite.property(
        "chat: out-of-range max_tokens, max_completion_tokens, n, best_of are 400 naming them",
        prop_oneof![
            int_outside(1, MAX_OUTPUT_TOKENS).prop_map(|v| ("max_tokens", v, None)),
            int_outside(1, MAX_OUTPUT_TOKENS).prop_map(|v| ("max_completion_tokens", v, None)),
            int_outside(1, 128).prop_map(|v| ("n", v, None)),
            int_outside(1, 20).prop_map(|v| ("best_of", v, None)),
            (2i64..=20)
                .prop_flat_map(|n| (Just(n), 1..n))
                .prop_map(|(n, b)| ("best_of", b.to_string(), Some(n.to_string()))),
        ],
        |fx, (field, value, n)| {
            let body = chat_body(&[("n", n.clone()), (field, Some(value.clone()))]);
            let a = fx.chat(&body)?;
            refused_naming(&a, field, &body)
        },
    );

    // Keys.
    let rate_limits = || {
        prop_oneof![
            3 => (
                prop::option::of(json_value()),
                prop::option::of(json_value()),
                prop::option::of(json_value()),
            )
                .prop_map(|(r, t, c)| {
                    object(&[
                        ("requests_per_minute", r),
                        ("tokens_per_minute", t),
                        ("max_concurrent_requests", c),
                    ])
                }),
            1 => json_value(),
        ]
    };
    let key_body = (
        prop::option::of(json_value()),
        prop::option::of(rate_limits()),
        prop::option::of(json_value()),
    )
        .prop_map(|(e, r, b)| {
            object(&[
                ("expires_at", e),
                ("rate_limits", r),
                ("monthly_budget_usd", b),
            ])
        });
    suite.property(
        "key create: any numbers in expires_at, rate_limits.*, monthly_budget_usd",
        key_body.clone(),
        |fx, body| fx.post(&keys_path(&fx.project), body).map(|_| ()),
    );
    suite.property(
        "key update: any numbers in expires_at, rate_limits.*, monthly_budget_usd",
        key_body,
        |fx, body| {
            let path = key_path(&fx.project, &fx.update_key);
            let a = fx.post(&path, body)?;
            if a.status == 200 {
                // Undo, so the key stays usable for the next case.
                fx.post(
                    &path,
                    r#"{"expires_at":null,"rate_limits":null,"monthly_budget_usd":null}"#,
                )?;
            }
            Ok(())
        },
    );
    let key_outside = move || {
        prop_oneof![
            // In the future, within ten years: of up to 366 days each,
            // counted from the server's now, a minute or so after `n`.
            int_outside(n + 1, n + 3661 * 86_400).prop_map(|v| ("expires_at", v)),
            (n + 3662 * 86_400..=n + 100 * 366 * 86_400)
                .prop_map(|t| ("expires_at", t.to_string())),
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.requests_per_minute", v)),
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.tokens_per_minute", v)),
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.max_concurrent_requests", v)),
            budget_outside().prop_map(|v| ("monthly_budget_usd", v)),
        ]
    };
    let nested = |field: &str, value: &str| match field.split_once('.') {
        Some((outer, inner)) => format!("{{\"{outer}\":{{\"{inner}\":{value}}}}}"),
        None => format!("{{\"{field}\":{value}}}"),
    };
    suite.property(
        "key create: out-of-range expires_at, rate_limits.*, monthly_budget_usd are 400 naming them",
        key_outside(),
        |fx, (field, value)| {
            let body = nested(field, value);
            let a = fx.post(&keys_path(&fx.project), &body)?;
            refused_naming(&a, field, &body)
        },
    );
    suite.property(
        "key update: out-of-range expires_at, rate_limits.*, monthly_budget_usd are 400 naming them",
        key_outside(),
        |fx, (field, value)| {
            let body = nested(field, value);
            let path = key_path(&fx.project, &fx.update_key);
            let a = fx.post(&path, &body)?;
            if a.status == 200 {
                fx.post(
                    &path,
                    r#"{"expires_at":null,"rate_limits":null,"monthly_budget_usd":null}"#,
                )?;
            }
            refused_naming(&a, field, &body)
        },
    );

    // Projects' own limits and budget.
    suite.property(
        "project update: out-of-range rate_limits.*, monthly_budget_usd are 400 naming them; any number never breaks",
        prop_oneof![
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.requests_per_minute", v, true)),
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.tokens_per_minute", v, true)),
            int_outside(1, MAX_RATE).prop_map(|v| ("rate_limits.max_concurrent_requests", v, true)),
            budget_outside().prop_map(|v| ("monthly_budget_usd", v, true)),
            json_value().prop_map(|v| ("rate_limits.tokens_per_minute", v, false)),
            json_value().prop_map(|v| ("monthly_budget_usd", v, false)),
        ],
        |fx, (field, value, outside)| {
            let body = nested(field, value);
            let a = fx.post(&format!("/v1/organization/projects/{}", fx.limits_project), &body)?;
            if *outside {
                refused_naming(&a, field, &body)
            } else {
                Ok(())
            }
        },
    );

    // Rotation.
    suite.property(
        "rotate: any grace_period_seconds never breaks; out of 0..=604800 is 400 naming it",
        prop_oneof![
            json_value().prop_map(|v| (v, false)),
            int_outside(0, MAX_GRACE).prop_map(|v| (v, true)),
        ],
        |fx, (value, outside)| {
            let body = format!("{{\"grace_period_seconds\":{value}}}");
            let path = format!("{}/rotate", key_path(&fx.project, &fx.rotate_key));
            let a = fx.post(&path, &body)?;
            if *outside {
                refused_naming(&a, "grace_period_seconds", &body)
            } else {
                Ok(())
            }
        },
    );

    // Lists.
    let lists = move |fx: &Fixture| -> Vec<String> {
        vec![
            "/v1/organization/projects".into(),
            keys_path(&fx.project),
            "/v1/organization/admin_api_keys".into(),
            "/v1/organization/audit_logs".into(),
            "/v1/organization/notifications".into(),
        ]
    };
    suite.property(
        "lists: any limit and after never break; limit out of 1..=100 is 400 naming it",
        (
            0usize..5,
            prop_oneof![
                2 => query_value().prop_map(|v| (Some(v), false)),
                2 => int_outside(1, 100).prop_map(|v| (Some(v), true)),
                1 => Just((None, false)),
            ],
            prop::option::of(query_value()),
        ),
        move |fx, (route, (limit, outside), after)| {
            let path = format!(
                "{}?{}",
                lists(fx)[*route],
                query(&[("limit", limit.clone()), ("after", after.clone())])
            );
            let a = fx.get(&path)?;
            // `after` may be refused first; only a valid one makes `limit` decisive.
            if *outside && after.is_none() {
                refused_naming(&a, "limit", &path)
            } else {
                Ok(())
            }
        },
    );

    // The usage API (last: on today's code it can take the server down).
    let day = 86_400;
    // Times near the end of i64, where bucket arithmetic can overflow.
    let near_max = || {
        prop_oneof![
            2 => select(vec![
                i64::MAX,
                i64::MAX - 1,
                i64::MAX - 60,
                i64::MAX - day,
                i64::MAX - 7 * day
            ]),
            1 => i64::MAX - 8 * day..=i64::MAX,
        ]
    };
    // One to two parameters changed from a valid query.
    let usage_override = move || {
        prop_oneof![
            4 => (select(vec!["start_time", "end_time", "limit", "page"]), query_value())
                .prop_map(|o| vec![o]),
            1 => prop_oneof![
                select(vec!["1m", "1h", "1d", "0m", "-1d", "1e308d", "18446744073709551615m", "1440m", ""])
                    .prop_map(str::to_owned),
                query_value(),
            ]
            .prop_map(|w| vec![("bucket_width", w)]),
            1 => (select(vec!["start_time", "end_time", "page"]), near_max())
                .prop_map(|(k, t)| vec![(k, t.to_string())]),
            // A window at the end of time, or a page there.
            3 => (near_max(), near_max(), any::<bool>()).prop_map(|(a, b, page)| {
                let (lo, hi) = (a.min(b), a.max(b));
                let second = if page { "page" } else { "end_time" };
                let (first, second_value) = if page { (i64::MAX - 8 * 86_400, lo) } else { (lo, hi) };
                vec![("start_time", first.to_string()), (second, second_value.to_string())]
            }),
            1 => (select(vec!["start_time", "end_time", "page"]), 0..=YEAR_9999)
                .prop_map(|(k, t)| vec![(k, t.to_string())]),
            1 => (0i64..=1441).prop_map(|l| vec![("limit", l.to_string())]),
        ]
    };
    suite.property(
        "usage, costs: any start_time, end_time, limit, page, bucket_width never break",
        (
            0usize..2,
            select(vec!["1m", "1h", "1d"]),
            any::<bool>(),
            prop::collection::vec(usage_override(), 1..3),
        ),
        move |fx, (route, width, with_end, overrides)| {
            // A valid query, then one to three parameters made hostile.
            let mut params = vec![
                ("start_time", Some((n - 7 * day).to_string())),
                ("end_time", with_end.then(|| (n + 1).to_string())),
                (
                    "bucket_width",
                    Some(if *route == 1 { "1d" } else { width }.to_owned()),
                ),
                ("limit", None),
                ("page", None),
            ];
            for (field, value) in overrides.iter().flatten() {
                if let Some(slot) = params.iter_mut().find(|(k, _)| k == field) {
                    slot.1 = Some(value.clone());
                }
            }
            let path = format!("{}?{}", USAGE_ROUTES[*route], query(&params));
            fx.get(&path).map(|_| ())
        },
    );
    let start = n - 7 * day;
    let time_outside = || {
        prop_oneof![
            (i64::MIN..0).prop_map(|t| t.to_string()),
            (YEAR_9999 + 1..=i64::MAX).prop_map(|t| t.to_string()),
            select(
                &[
                    "-1",
                    "253402300800",
                    "9223372036854775807",
                    "9223372036854775808",
                    "18446744073709551615",
                    "1e308",
                    "-0.5",
                    "1.5"
                ][..]
            )
            .prop_map(str::to_owned),
        ]
    };
    suite.property(
        "usage, costs: out-of-range start_time, end_time, page, limit, bucket_width are 400 naming them",
        (
            0usize..2,
            0usize..3,
            prop_oneof![
                time_outside().prop_map(|v| ("start_time", v)),
                time_outside().prop_map(|v| ("end_time", v)),
                (0..=start).prop_map(|t| ("end_time", t.to_string())),
                time_outside().prop_map(|v| ("page", v)),
                prop_oneof![(i64::MIN..=0).prop_map(|l| l.to_string()), Just("0".to_owned()), Just("1e308".to_owned())]
                    .prop_map(|v| ("limit", v)),
                Just(("limit", "too-many".to_owned())),
                select(&["0m", "-1d", "2d", "1e308d", "18446744073709551615m", "1440m", "1D"][..])
                    .prop_map(|v| ("bucket_width", v.to_owned())),
            ],
        ),
        move |fx, (route, width, (field, value))| {
            let widths = ["1m", "1h", "1d"];
            // Costs only has daily buckets.
            let width = if *route == 1 { 2 } else { *width };
            let too_many = [1441, 169, 32][width].to_string();
            let value = if value == "too-many" { too_many } else { value.clone() };
            let mut params = vec![
                ("start_time", Some(start.to_string())),
                ("end_time", Some((n + 1).to_string())),
                ("bucket_width", Some(widths[width].to_owned())),
            ];
            match params.iter_mut().find(|(k, _)| k == field) {
                Some(slot) => slot.1 = Some(value),
                None => params.push((field, Some(value))),
            }
            let path = format!("{}?{}", USAGE_ROUTES[*route], query(&params));
            let a = fx.get(&path)?;
            refused_naming(&a, field, &path)
        },
    );

    if let Some(fx) = suite.fixture.take() {
        suite.peak_rss = suite.peak_rss.max(fx.watchdog.peak());
    }
    eprintln!(
        "all properties in {:.1?}; peak server RSS {} MB; servers replaced: {}",
        started.elapsed(),
        suite.peak_rss >> 20,
        suite.replaced
    );
    if suite.peak_rss >= RSS_BOUND {
        suite.failures.push(format!(
            "the server's RSS reached {} MB (bound {} MB)",
            suite.peak_rss >> 20,
            RSS_BOUND >> 20
        ));
    }
    assert!(
        suite.failures.is_empty(),
        "{} failure(s):\n\n{}",
        suite.failures.len(),
        suite.failures.join("\n\n")
    );
}
