//! The OpenAI-compatible gateway: every call made with a key passes here.
//!
//! ```text
//! request ─▶ auth (key → record, cached) ─▶ validate head ─▶ permission, IP, model
//!         ─▶ upstream (bytes forwarded as they came) ─▶ response / SSE back
//!                                   └──▶ meter (usage event) ─▶ ledger writer (batched)
//! ```

#![forbid(unsafe_code)]

mod admission;
pub mod auth;
pub mod body_deadline;
pub mod budget;
pub mod catalog;
mod deferred;
pub mod error;
mod forward;
mod header_text;
pub mod limits;
pub mod meter;
mod model_endpoints;
mod proxy;
pub mod request;
pub mod request_id;
mod responses;
mod sse;
mod stored;
mod table;
pub mod telemetry;
pub mod translate;
pub mod upstream;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use auth::{KeyCache, KeyLookup};
pub use catalog::{Catalog, InProcess, InProcessReply, ModelConfig, UpstreamConfig};
pub use meter::Meter;
pub use model_endpoints::ModelEndpoints;
pub use request::Endpoint;

/// Everything the gateway's handlers share.
#[derive(Clone)]
pub struct Gateway {
    pub keys: Arc<dyn KeyLookup>,
    pub catalog: Arc<Catalog>,
    pub meter: Meter,
    pub limiter: Arc<dyn limits::Limiter>,
    pub budgets: Arc<dyn budget::BudgetBook>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest upload (`/v1/files`, and the image and audio forms), in bytes.
    pub max_upload_bytes: usize,
    /// Who owns each response, file and batch.
    pub objects: Arc<dyn keyward_service::ObjectRegistry>,
}

/// The OpenAI endpoints the gateway serves, as a 404 for any other lists them.
pub const SERVED_PATHS: [&str; 16] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/files",
    "/v1/batches",
    "/v1/models",
    "/v1/organization/usage/completions",
    "/v1/organization/costs",
];

/// The `/v1` model endpoints.
pub fn routes(gateway: Gateway) -> Router {
    // Build the tokenizer now rather than in the first request that needs it.
    std::thread::spawn(request::tokens::warm);
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/responses", post(proxy::responses))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/v1/responses/{id}/cancel", post(responses::cancel))
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/moderations", post(proxy::moderations))
        .route("/v1/images/generations", post(proxy::images_generations))
        .route("/v1/images/edits", post(proxy::images_edits))
        .route("/v1/images/variations", post(proxy::images_variations))
        .route("/v1/audio/speech", post(proxy::audio_speech))
        .route(
            "/v1/audio/transcriptions",
            post(proxy::audio_transcriptions),
        )
        .route("/v1/audio/translations", post(proxy::audio_translations))
        .route("/v1/models", get(proxy::list_models))
        .route("/v1/models/{model}", get(proxy::retrieve_model))
        .merge(stored::routes())
        .with_state(gateway)
}
