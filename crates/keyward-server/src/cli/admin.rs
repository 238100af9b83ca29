//! `keyward admin create`: an operator account, its Default project and an
//! admin key, printed once.

use std::io::BufRead;

use clap::Subcommand;
use keyward_core::UserRole;
use keyward_service::{Caller, NewAccount};

use super::{services, CliError, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an operator account with a Default project, and print an admin key for it once.
    Create {
        /// The operator's email, used to log in.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (required, so it never
        /// appears in the process list or shell history).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: AdminCommand) -> Result<(), CliError> {
    let AdminCommand::Create {
        email,
        password_stdin: _,
        store,
    } = command;
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| {
            CliError::Usage(format!("cannot read the password from standard input: {e}"))
        })?;
    let password = password.trim_end_matches(['\r', '\n']);
    let services = services(&store).await?;
    let cli = Caller::cli();
    let (user, project) = services
        .create_account(
            &cli,
            NewAccount {
                email: &email,
                password,
                role: Some(UserRole::Operator),
            },
        )
        .await?;
    let key = services
        .create_admin_key(
            &cli,
            Some(&user.id),
            "Created by keyward admin create",
            None,
        )
        .await?;
    eprintln!(
        "Created operator {} ({}) with project \"{}\" ({}).\nAdmin key {} below: save it now, it will not be shown again.",
        user.email, user.id, project.name, project.id, key.key.id
    );
    println!("{}", key.secret.expose());
    Ok(())
}
