//! `keyward keys create|list|revoke|rotate`, on the store named by
//! `--data-dir` / `--database-url` / `KEYWARD_DATABASE_URL`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use keyward_core::{duration, time, KeyId, Permissions, ProjectId};
use keyward_core::{KeyRecord, Page, RevokeReason};
use keyward_service::{Caller, KeyRef, KeySpec, Services};

use super::{services, CliError, StoreArgs};
use crate::api::present;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PermissionsArg {
    All,
    ReadOnly,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret once (alone on stdout, or as JSON with --json).
    Create {
        /// A name to tell the key apart.
        #[arg(long)]
        name: Option<String>,
        /// Project id (proj_…) or name; default: the oldest active project.
        #[arg(long)]
        project: Option<String>,
        /// Stop working after this long, e.g. 30d, 12h, 1w.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        #[arg(long, value_enum, default_value = "all")]
        permissions: PermissionsArg,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a project's keys (redacted), newest first.
    List {
        /// Project id (proj_…) or name; default: the oldest active project.
        #[arg(long)]
        project: Option<String>,
        /// Show revoked keys too.
        #[arg(long)]
        include_revoked: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key for good.
    Revoke {
        /// The key's id (key_…), as shown by `keyward keys list`.
        key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a key a new secret; the old one keeps working for --grace.
    Rotate {
        /// The key's id (key_…).
        key_id: String,
        /// How long the old secret keeps working, 0 to 7d (default 0).
        #[arg(long, value_name = "DURATION", default_value = "0")]
        grace: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: KeysCommand) -> Result<ExitCode, CliError> {
    let cli = Caller::cli();
    match command {
        KeysCommand::Create {
            name,
            project,
            expires_in,
            permissions,
            json,
            store,
        } => {
            let expires_at = expires_in
                .map(|d| match duration::parse_seconds(&d) {
                    Ok(0) => Err(CliError::Usage(
                        "--expires-in must put the expiry in the future: give a duration longer than zero, e.g. 30d".into(),
                    )),
                    Ok(s) => Ok(time::now_unix().saturating_add(s)),
                    Err(e) => Err(CliError::Usage(format!("--expires-in: {e}"))),
                })
                .transpose()?;
            let services = services(&store).await?;
            let project = resolve_project(&services, project.as_deref()).await?;
            let spec = KeySpec {
                name: name.unwrap_or_default(),
                permissions: Some(match permissions {
                    PermissionsArg::All => Permissions::All,
                    PermissionsArg::ReadOnly => Permissions::ReadOnly,
                }),
                expires_at,
                ..KeySpec::default()
            };
            let created = services.create_project_key(&cli, &project, spec).await?;
            print_secret(&services, created, json).await?;
        }
        KeysCommand::List {
            project,
            include_revoked,
            json,
            store,
        } => {
            let services = services(&store).await?;
            let project = resolve_project(&services, project.as_deref()).await?;
            let mut keys = Vec::new();
            let mut page = Page {
                after: None,
                limit: keyward_service::MAX_PAGE,
            };
            loop {
                let listed = services
                    .list_project_keys(&cli, &project, include_revoked, &page)
                    .await?;
                page.after = listed.items.last().map(|k| k.id.to_string());
                keys.extend(listed.items);
                if !listed.has_more {
                    break;
                }
            }
            if json {
                let objects = present::keys(&services, keys).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&objects).map_err(anyhow::Error::from)?
                );
            } else {
                print_table(&keys);
            }
        }
        KeysCommand::Revoke { key_id, store } => {
            let id = key_id_arg(&key_id)?;
            let services = services(&store).await?;
            let key = services
                .revoke_key(&cli, KeyRef::Any(&id), RevokeReason::Admin, None)
                .await?;
            eprintln!(
                "Revoked {} ({}); every request with it now fails with 401.",
                key.id, key.redacted_value
            );
        }
        KeysCommand::Rotate {
            key_id,
            grace,
            json,
            store,
        } => {
            let id = key_id_arg(&key_id)?;
            let grace = duration::parse_seconds(&grace)
                .map_err(|e| CliError::Usage(format!("--grace: {e}")))?;
            if grace > keyward_service::MAX_ROTATION_GRACE_SECONDS {
                return Err(CliError::Usage(
                    "--grace must be at most 7d: the old secret may outlive a rotation by a week at most".into(),
                ));
            }
            let services = services(&store).await?;
            let created = services.rotate_key(&cli, KeyRef::Any(&id), grace).await?;
            print_secret(&services, created, json).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_id_arg(raw: &str) -> Result<KeyId, CliError> {
    KeyId::parse(raw)
        .map_err(|e| CliError::Usage(format!("{e}; run `keyward keys list` to see key ids")))
}

/// The secret alone on stdout (so `$(keyward keys create)` captures it), or
/// the API's JSON object with `value`.
async fn print_secret(
    services: &Services,
    created: keyward_service::CreatedKey,
    json: bool,
) -> Result<(), CliError> {
    if json {
        let object = present::created_object(services, created).await;
        println!(
            "{}",
            serde_json::to_string_pretty(&object).map_err(anyhow::Error::from)?
        );
    } else {
        eprintln!(
            "Created key {} \"{}\". Save the secret below now: it will not be shown again.",
            created.key.id, created.key.name
        );
        println!("{}", created.secret.expose());
    }
    Ok(())
}

/// `--project` as an id or a name; without it, the oldest active project.
async fn resolve_project(services: &Services, wanted: Option<&str>) -> Result<ProjectId, CliError> {
    let projects = services.all_projects().await?;
    let active = || projects.iter().filter(|p| p.archived_at.is_none());
    let found: Vec<_> = match wanted {
        None => active().take(1).collect(),
        Some(w) => match ProjectId::parse(w) {
            Ok(id) => projects.iter().filter(|p| p.id == id).collect(),
            Err(_) => active().filter(|p| p.name == w).collect(),
        },
    };
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] if wanted.is_none() => Err(CliError::Usage(
            "there is no project yet; create an account first with `keyward admin create --email you@example.com --password-stdin`".into(),
        )),
        [] => Err(CliError::Usage(format!(
            "no project named {}; pass a project id (proj_…) or an existing name",
            wanted.unwrap_or_default()
        ))),
        _ => Err(CliError::Usage(format!(
            "several projects are named {}; pass the project id (proj_…) instead",
            wanted.unwrap_or_default()
        ))),
    }
}

fn print_table(keys: &[KeyRecord]) {
    let now = time::now_unix();
    println!(
        "{:<28} {:<24} {:<18} {:<16} {:<16} {:<10} STATUS",
        "ID", "NAME", "KEY", "CREATED", "LAST USED", "PERMS"
    );
    for k in keys {
        let status = match &k.revoked {
            Some(r) => format!("revoked ({})", r.reason.as_str()),
            None if !k.is_active(now) => "expired".into(),
            None => "active".into(),
        };
        let perms = match k.permissions {
            Permissions::All => "all",
            Permissions::ReadOnly => "read only",
            Permissions::Restricted(_) => "restricted",
        };
        println!(
            "{:<28} {:<24} {:<18} {:<16} {:<16} {:<10} {}",
            k.id,
            k.name.chars().take(24).collect::<String>(),
            k.redacted_value,
            time::format_utc(k.created_at),
            k.last_used_at
                .map_or_else(|| "never".into(), time::format_utc),
            perms,
            status
        );
    }
}
