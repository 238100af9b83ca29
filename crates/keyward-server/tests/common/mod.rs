//! Test harness: starts the real `keyward` binary on a free port against a
//! fresh database (SQLite in a temp dir, or a new PostgreSQL database when
//! `KEYWARD_TEST_DATABASE_URL` is set), and talks HTTP to it.
#![allow(dead_code)]

pub mod browser;
pub mod upstream;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

pub const PASSWORD: &str = "correct horse battery staple";

/// The database a test server uses.
pub enum Db {
    Sqlite,
    /// A database created for this test, dropped afterwards.
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Db {
    pub fn fresh() -> Db {
        let Ok(admin_url) = std::env::var("KEYWARD_TEST_DATABASE_URL") else {
            return Db::Sqlite;
        };
        let name = format!("kw_test_{}", random_suffix());
        run_pg(&admin_url, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("KEYWARD_TEST_DATABASE_URL is postgres://host/db");
        let url = format!("{base}/{name}");
        Db::Postgres {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            Db::Sqlite => None,
            Db::Postgres { url, .. } => Some(url),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres {
            admin_url, name, ..
        } = self
        {
            run_pg(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

fn run_pg(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("KEYWARD_TEST_DATABASE_URL must point at a reachable PostgreSQL");
        sqlx::Executor::execute(&mut conn, sql).await.expect(sql);
    });
}

fn random_suffix() -> String {
    let mut b = [0u8; 12];
    keyward_core::base62::fill_random(&mut b);
    String::from_utf8(b.to_vec()).unwrap().to_lowercase()
}

/// A `keyward serve` process just started, and the address it listens on.
pub struct Spawned {
    pub child: Child,
    pub base: String,
    /// Every line it has logged so far (stderr).
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// Starts `cmd` (a `keyward serve` on `127.0.0.1:0`) and waits until it says
/// where it listens; panics with its log if it does not start.
pub fn spawn(cmd: &mut Command) -> Spawned {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyward");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(base) => Spawned { child, base, logs },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "keyward did not start; its log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    }
}

/// One row of `usage_ledger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub request_id: String,
    pub endpoint: String,
    pub model: String,
    pub key_id: String,
    pub status: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for LedgerRow {
    fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(LedgerRow {
            request_id: row.try_get("request_id")?,
            endpoint: row.try_get("endpoint")?,
            model: row.try_get("model")?,
            key_id: row.try_get("key_id")?,
            status: row.try_get("status")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cost_micros: row.try_get("cost_micros")?,
        })
    }
}

/// A running `keyward serve` and the state it uses.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub db: Db,
    pub client: Client,
    logs: Arc<Mutex<Vec<String>>>,
    /// The extra environment it was started with, for [`Server::restart`].
    env: Vec<(String, String)>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts with extra `KEYWARD_*` environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_with_config("", env)
    }

    /// Starts with a TOML configuration file (e.g. upstreams and models).
    pub fn start_with_config(toml: &str, env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        std::fs::write(data_dir.path().join("keyward.toml"), toml).unwrap();
        let db = Db::fresh();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let Spawned { child, base, logs } = spawn(&mut serve_command(data_dir.path(), &db, &env));
        Server {
            child,
            base,
            data_dir,
            db,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            logs,
            env,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Starts the server again on the same data directory and database,
    /// after it stopped or was killed; it may listen on another port.
    pub fn restart(&mut self) {
        let _ = self.child.wait();
        let Spawned { child, base, logs } = spawn(&mut serve_command(
            self.data_dir.path(),
            &self.db,
            &self.env,
        ));
        self.child = child;
        self.base = base;
        self.logs = logs;
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The `keyward` CLI against this server's store.
    pub fn cli(&self) -> Command {
        cli_for(self.data_dir.path().to_path_buf(), self.db.url())
    }

    /// `keyward admin create` for `email`: returns the admin key.
    pub fn create_operator(&self, email: &str) -> String {
        let out = run_with_stdin(
            self.cli()
                .args(["admin", "create", "--email", email, "--password-stdin"]),
            PASSWORD,
        );
        assert!(
            out.status.success(),
            "admin create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method.parse().unwrap(), url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        Self::reply(resp)
    }

    /// A request with a raw body, for malformed input.
    pub fn raw(&self, method: &str, path: &str, key: &str, body: &'static [u8]) -> Reply {
        let resp = self
            .client
            .request(method.parse().unwrap(), format!("{}{}", self.base, path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("request");
        Self::reply(resp)
    }

    fn reply(resp: reqwest::blocking::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str, key: &str) -> Reply {
        self.call("GET", path, Some(key), None)
    }

    pub fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call("POST", path, Some(key), Some(body))
    }

    pub fn delete(&self, path: &str, key: &str) -> Reply {
        self.call("DELETE", path, Some(key), None)
    }

    /// The first project visible to `admin_key`.
    pub fn default_project(&self, admin_key: &str) -> String {
        let r = self.get("/v1/organization/projects", admin_key);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"][0]["id"].as_str().unwrap().to_owned()
    }

    /// Runs one SQL statement on the server's database (for tests that
    /// age rows, such as an invitation past its expiry).
    pub fn execute_sql(&self, sql: &str) {
        match self.db.url() {
            Some(url) => run_pg(url, sql),
            None => {
                let file = self.data_dir.path().join("keyward.db");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn =
                        sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                            .await
                            .unwrap();
                    sqlx::Executor::execute(&mut conn, sql).await.expect(sql);
                });
            }
        }
    }

    /// A request with any body and content type (forms, broken forms).
    pub fn send_bytes(&self, path: &str, key: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let resp = self
            .client
            .post(format!("{}{}", self.base, path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("request");
        Self::reply(resp)
    }

    /// Sends `request` (a whole HTTP/1.1 request, as written) on a fresh
    /// connection, so that its path reaches the server exactly as given;
    /// returns the status and the rest of the answer.
    pub fn raw_http(&self, request: &str) -> (u16, String) {
        use std::io::Read;
        let addr = self.base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    /// The rows `sql` selects from the server's database (either store).
    pub fn query<R>(&self, sql: &str) -> Vec<R>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let url = match self.db.url() {
            Some(u) => u.to_owned(),
            None => format!(
                "sqlite://{}",
                self.data_dir.path().join("keyward.db").display()
            ),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql);
            c.close().await.unwrap();
            rows
        })
    }

    /// Every row of the usage ledger, oldest first.
    pub fn ledger(&self) -> Vec<LedgerRow> {
        self.query(
            "SELECT request_id, endpoint, model, key_id, status, prompt_tokens, completion_tokens, cost_micros FROM usage_ledger ORDER BY created_at, request_id",
        )
    }

    /// The ledger once `done` holds of it (it is written off the request
    /// path), or as it is after five seconds.
    pub fn ledger_when(&self, done: impl Fn(&[LedgerRow]) -> bool) -> Vec<LedgerRow> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let rows = self.ledger();
            if done(&rows) || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        #[cfg(unix)]
        // SAFETY: kill(2) takes no pointers; the pid is this server's child.
        #[allow(unsafe_code)]
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// `keyward serve` on `data_dir` (with its `keyward.toml`) and `db`.
fn serve_command(data_dir: &std::path::Path, db: &Db, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(data_dir.join("keyward.toml"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env_remove("KEYWARD_DATABASE_URL")
        // Tests that want the in-process model turn it back on.
        .env("KEYWARD_LOCAL_MODEL__ENABLED", "false")
        // No fetching of GitHub's keys from the internet; tests that want
        // it set this to a local stand-in.
        .env("KEYWARD_SECRET_SCANNING__GITHUB_PUBLIC_KEYS_URL", "");
    if let Some(url) = db.url() {
        cmd.env("KEYWARD_DATABASE_URL", url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn cli_for(data_dir: PathBuf, db_url: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.env_remove("KEYWARD_DATABASE_URL")
        .env_remove("RUST_LOG");
    cmd.env("KEYWARD_DATA_DIR", data_dir);
    if let Some(url) = db_url {
        cmd.env("KEYWARD_DATABASE_URL", url);
    }
    cmd
}

pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

// Helpers for the management API tests.

pub fn keys_path(project: &str) -> String {
    format!("/v1/organization/projects/{project}/api_keys")
}

pub fn key_path(project: &str, key: &str) -> String {
    format!("/v1/organization/projects/{project}/api_keys/{key}")
}

pub fn ok(r: Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

pub fn create_key(s: &Server, auth: &str, project: &str, body: Value) -> Value {
    ok(s.post(&keys_path(project), auth, body))
}

/// A new key in `project`, made by `auth`: its secret and its id.
pub fn new_key(s: &Server, auth: &str, project: &str, body: Value) -> (String, String) {
    let k = create_key(s, auth, project, body);
    (secret(&k), id(&k))
}

pub fn secret(k: &Value) -> String {
    k["value"].as_str().unwrap().to_owned()
}

pub fn id(k: &Value) -> String {
    k["id"].as_str().unwrap().to_owned()
}

pub fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}
