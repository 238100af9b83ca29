//! The kinds of upstream a model can be routed to, each with the one name
//! the configuration gives it.

/// What serves an upstream's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    /// Any OpenAI-compatible HTTP API (OpenAI, vLLM, llama.cpp server, Ollama, …).
    OpenAi,
    /// The model running in this process.
    Local,
}

crate::names::stored_names!(UpstreamKind {
    (OpenAi) => "openai",
    (Local) => "local",
});
