//! `keyward serve`: open the store, start background work, serve HTTP until
//! SIGTERM or Ctrl-C, then stop gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keyward_service::{Database as Place, OpenError, Policy, Services, SignupPolicy, UsageSink};

use keyward_gateway::budget::LocalBudgets;
use keyward_gateway::limits::LocalLimiter;
use keyward_gateway::{meter, telemetry, Catalog, Gateway, KeyCache};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::api::exposure::Exposure;
use crate::api::throttle::PerAddress;
use crate::api::{self, AppState};
use crate::config::{Config, Database, Signup};
use crate::github_keys::GithubKeys;
use crate::notify::Notifier;
use crate::{outbox, workers};

/// Opens the configured database, brings its schema up to date and wraps it
/// in the services.
pub async fn open_services(config: &Config) -> anyhow::Result<Services> {
    let cap = config.limits.max_active_keys_per_project;
    let policy = Policy {
        max_active_keys_per_project: (cap > 0).then_some(cap),
        notice_channels: config.notice_channels(),
        signup: match config.dashboard.signup {
            Signup::Closed => SignupPolicy::Closed,
            Signup::Open => SignupPolicy::Open,
        },
    };
    let database = config.database();
    let place = match &database {
        Database::Url(url) => Place::Url(url),
        Database::SqliteDir(dir) => Place::SqliteDir(dir),
    };
    Services::open(place, policy).await.map_err(|e| match e {
        OpenError::Connect(e) => anyhow::Error::new(e).context(match &database {
            Database::Url(_) => {
                "cannot connect to the database named by database_url / KEYWARD_DATABASE_URL"
                    .to_owned()
            }
            Database::SqliteDir(dir) => {
                format!("cannot open the SQLite database in {}", dir.display())
            }
        }),
        OpenError::Migrate(e) => {
            anyhow::Error::new(e).context("cannot bring the database schema up to date")
        }
    })
}

/// Installs the process-wide Prometheus recorder behind `/metrics`.
fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            telemetry::LATENCY_BUCKETS,
        )?
        .install_recorder()?)
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = install_metrics().context("cannot set up metrics")?;
    let routing = crate::local_model::routing(&config).await?;
    let catalog = Catalog::new(&routing.upstreams, &routing.models, &routing.in_process)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let services = open_services(&config).await?;
    let keys = KeyCache::new(services.clone(), 1_000_000);
    let watcher = keys.watch(Duration::from_millis(250));
    let (meter, ledger) = start_ledger(&config, Arc::new(services.ledger())).await?;
    let budgets = Arc::new(LocalBudgets::new(
        Arc::new(services.ledger()),
        meter.clone(),
    ));
    let gateway = Gateway {
        keys,
        catalog: Arc::new(catalog),
        meter,
        limiter: Arc::new(LocalLimiter::default()),
        budgets,
        max_body_bytes: config.limits.max_request_body_bytes,
        max_upload_bytes: config.limits.max_upload_bytes,
        objects: Arc::new(services.objects()),
    };
    let sweeper = tokio::spawn(sweep_expired_keys(
        services.clone(),
        Duration::from_secs(config.limits.expiry_sweep_seconds.max(1)),
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let scanning = &config.secret_scanning;
    let github_url = scanning
        .github_public_keys_url
        .clone()
        .filter(|url| !url.trim().is_empty());
    let github = match (&scanning.github_public_keys_file, github_url) {
        (None, None) => None,
        (file, url) => Some(
            GithubKeys::new(file.as_deref(), url, client.clone())
                .map_err(|e| anyhow::anyhow!("secret_scanning.github_public_keys_file: {e}"))?,
        ),
    };
    let refresher = github.as_ref().and_then(GithubKeys::refresh_hourly);
    let notifier = Notifier::new(config.smtp.as_ref(), config.webhook.as_ref(), client)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for channel in notifier.describe() {
        tracing::info!("notices of exposed keys also go out by {channel}");
    }
    let addr = workers::claim(config.listen).with_context(|| {
        format!(
            "cannot listen on {}; is another process using it?",
            config.listen
        )
    })?;
    let site = keyward_dashboard::Site::new(config.public_url.as_deref(), addr)
        .map_err(|e| anyhow::anyhow!("{e} (KEYWARD_PUBLIC_URL)"))?;
    if site.public_url().is_none() && addr.ip().is_unspecified() {
        tracing::warn!(
            "listening on every interface without public_url: the dashboard answers only at localhost; set public_url (KEYWARD_PUBLIC_URL) to the address people use"
        );
    }
    let dashboard = keyward_dashboard::Settings {
        site,
        secure_cookies: config.dashboard.secure_cookies,
        mailer: notifier.mailer(),
    };
    let (outbox, deliverer) =
        outbox::start(services.notice_outbox(), notifier, config.notices.clone());
    let exposure = Exposure {
        outbox,
        github,
        reports: PerAddress::new(config.secret_scanning.reports_per_minute_per_ip, "reports"),
        github_requests: PerAddress::new(
            config.secret_scanning.github_requests_per_minute_per_ip,
            "requests",
        ),
    };
    let state = AppState {
        ledger: gateway.meter.clone(),
        services: services.clone(),
        max_body_bytes: config.limits.max_body_bytes,
        exposure: Arc::new(exposure),
        dashboard,
    };
    let count = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let edge = workers::Edge {
        limits: config.http.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        forwarded_header: config.forwarded_header,
    };
    let (metrics, metrics_server) = serve_metrics(&config, metrics).await?;
    let mut workers = workers::start(addr, count, api::app(state, gateway, metrics), edge)
        .context("cannot start the HTTP worker threads")?;
    tracing::info!(workers = count, "HTTP worker threads started");
    tracing::info!("keyward listening on http://{addr}");
    first_run_guide(&services, addr).await;
    shutdown_signal().await;
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    workers.drain(deadline).await;
    sweeper.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    watcher.abort();
    if let Some(r) = refresher {
        r.abort();
    }
    // Every request has finished: store what is still queued (a failing
    // database is given up on when the grace runs out). Notices not yet
    // delivered wait in the outbox for the next start.
    deliverer.stop(deadline).await;
    ledger.shutdown(deadline).await;
    services.close().await;
    workers.finish();
    tracing::info!("keyward stopped");
    Ok(())
}

/// On a fresh installation (no account yet), says what to do next: the
/// dashboard's address, and that the first account becomes the operator.
async fn first_run_guide(services: &Services, addr: std::net::SocketAddr) {
    match services.has_accounts().await {
        Ok(false) => {
            tracing::info!(
                "no account yet: open http://{addr}/signup in a browser; the first account to sign up becomes the operator"
            );
            tracing::info!(
                "or, at this machine: echo 'a long passphrase' | keyward admin create --email you@example.com --password-stdin  (prints an admin key, sk-kwadmin-…)"
            );
            tracing::info!(
                "then create a key (dashboard: API keys → Create new secret key) and call http://{addr}/v1/chat/completions with it; see README.md"
            );
        }
        Ok(true) => tracing::info!("dashboard: http://{addr}/login"),
        Err(e) => tracing::warn!(error = %e, "cannot count accounts"),
    }
}

/// Revokes keys whose expiry has passed, so lists and the audit log say so.
async fn sweep_expired_keys(services: Services, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match services.expire_due_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "revoked expired keys"),
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
        }
    }
}

/// `/metrics` for Keyward's own router, or `None` and a server of its own
/// on `metrics.listen`.
async fn serve_metrics(
    config: &Config,
    handle: PrometheusHandle,
) -> anyhow::Result<(
    Option<api::metrics::MetricsAccess>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let separate = config.metrics.listen;
    let access = api::metrics::MetricsAccess::new(handle, &config.metrics, separate.is_some())
        .map_err(|e| anyhow::anyhow!(e))?;
    let Some(addr) = separate else {
        return Ok((Some(access), None));
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on metrics.listen = {addr}"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = api::metrics::routes::<()>(access)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok((None, Some(server)))
}

/// The ledger's writer, with its crash spool unless turned off; before
/// anything is served, the spool stores what a crashed process left, so
/// that budgets read from the ledger count it.
async fn start_ledger(
    config: &Config,
    sink: Arc<dyn UsageSink>,
) -> anyhow::Result<(meter::Meter, meter::LedgerWriter)> {
    let settings = meter::QueueSettings {
        capacity: config.ledger.queue_capacity,
        wait: config.ledger.queue_wait,
    };
    if !config.ledger.spool {
        return Ok(meter::start(sink, settings));
    }
    let root = config
        .ledger
        .spool_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("ledger-spool"));
    let (meter, writer, recovered) = meter::start_spooled(sink, settings, &root)
        .await
        .with_context(|| {
            format!(
                "cannot open the ledger spool in {} (set ledger.spool_dir to a writable directory, or ledger.spool = false)",
                root.display()
            )
        })?;
    if recovered.spools > 0 {
        tracing::warn!(
            events = recovered.events,
            unreadable_lines = recovered.unreadable,
            spools = recovered.spools,
            "stored the usage events a process that did not stop cleanly left in the ledger spool"
        );
    }
    Ok((meter, writer))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
