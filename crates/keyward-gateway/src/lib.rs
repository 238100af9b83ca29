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
pub mod error;
mod header_text;
pub mod limits;
pub mod meter;
mod model_endpoints;
mod proxy;
pub mod request;
pub mod request_id;
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

/// The `/v1` model endpoints.
pub fn routes(gateway: Gateway) -> Router {
    // Build the tokenizer now rather than in the first request that needs it.
    std::thread::spawn(request::tokens::warm);
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(proxy::list_models))
        .route("/v1/models/{model}", get(proxy::retrieve_model))
        .merge(stored::routes())
        .with_state(gateway)
}
