//! The command line. Every command calls the same services as the HTTP API.

mod admin;
mod byte_size;
mod keys;
#[cfg(feature = "local-model")]
mod model;
mod scan;
mod sighting;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward_service::ServiceError;

use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Self-hosted API keys, limits and metering for AI APIs."
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the API, the gateway and the dashboard on one address
    /// (default http://127.0.0.1:8080), storing in SQLite under ./keyward-data
    /// unless database_url is set, with the built-in model (its weights are
    /// fetched once on the first start). On a fresh installation the first
    /// account to sign up at /signup becomes the operator (or use `keyward
    /// admin create`).
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Create or update the database schema, then exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Operator accounts.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Create, list, revoke and rotate secret keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Requests, tokens and cost per day, project, key and model.
    Usage(usage::UsageArgs),
    /// Find leaked keys in files, trees or git history (exit 1 when any is found).
    Scan(scan::ScanArgs),
    /// The local model's weights.
    #[cfg(feature = "local-model")]
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
}

/// Where the configuration and the database are.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory holding the SQLite database (default ./keyward-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL; overrides KEYWARD_DATABASE_URL and the config file.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl StoreArgs {
    fn config(&self, listen: Option<std::net::SocketAddr>) -> Result<Config, CliError> {
        Config::load(
            self.config.as_deref(),
            &Overrides {
                listen,
                data_dir: self.data_dir.clone(),
                database_url: self.database_url.clone(),
            },
        )
        .map_err(CliError::Usage)
    }
}

/// A failed command: `Usage` for the caller's mistakes (exit 2), `Failed`
/// for everything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl From<ServiceError> for CliError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => CliError::Failed(anyhow::Error::new(s)),
            ServiceError::NotFound { what: "key", .. } => CliError::Usage(format!(
                "{e}; run `keyward keys list --include-revoked` to see key ids"
            )),
            other => CliError::Usage(other.to_string()),
        }
    }
}

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Command::Serve { store, listen } => {
            let config = store.config(listen)?;
            // llama.cpp reports every tensor it loads at info level.
            crate::logging::init(config.log.format, "info,llama-cpp-2=warn");
            crate::serve::run(config).await?;
        }
        Command::Migrate { store } => {
            let config = store.config(None)?;
            crate::logging::init(config.log.format, "warn");
            crate::serve::open_services(&config).await?;
            eprintln!("The database schema is up to date.");
        }
        Command::Admin { command } => admin::run(command).await?,
        Command::Keys { command } => return keys::run(command).await,
        Command::Usage(args) => usage::run(args).await?,
        Command::Scan(args) => return scan::run(args).await,
        #[cfg(feature = "local-model")]
        Command::Model { command } => model::run(command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the services for a one-shot command.
async fn services(store: &StoreArgs) -> Result<keyward_service::Services, CliError> {
    let config = store.config(None)?;
    crate::logging::init(config.log.format, "warn");
    Ok(crate::serve::open_services(&config).await?)
}
