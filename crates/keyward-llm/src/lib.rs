//! Keyward's in-process chat model. GGUF weights run on the CPU through
//! llama.cpp (the `llama-cpp-2` crate, pinned); one worker thread owns the
//! context and decodes every active request in one batch per step
//! (continuous batching); requests and responses are OpenAI's chat and
//! text completion formats, so the gateway treats the model like any other
//! upstream.

#![forbid(unsafe_code)]

mod engine;
mod model;
pub mod openai;
mod text;
pub mod weights;

pub use model::{LoadError, LocalModel, Reply, Settings};
pub use openai::Api;

/// The id the default model is served under.
pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
