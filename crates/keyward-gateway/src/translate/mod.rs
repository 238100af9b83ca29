//! Translation between OpenAI's Responses API and chat completions, for
//! models whose upstream does not speak Responses (the in-process local
//! model, or an upstream configured as chat-only). Pure: no I/O; the
//! caller sends and stores. The wire formats and rules are those of
//! `docs/design/responses-api.md` §1–§4.
//!
//! ```text
//! POST /v1/responses body ──chat_request──▶ ChatRequest { body, stream, echo, input_items }
//!                                              │ body sent upstream (chat completions)
//!             whole JSON ◀──response_from_chat─┤
//!   Responses SSE events ◀──StreamTranslator───┘ (chat SSE bytes in)
//! ```
//!
//! - [`chat_request`]`(body, history, upstream_model) -> Result<ChatRequest, ApiError>`:
//!   the chat body (instructions → system message, items → messages,
//!   function tools nested, `max_output_tokens` → `max_completion_tokens`
//!   and `max_tokens`, `stream_options.include_usage` when streaming), the
//!   request's [`Echo`] and its input items with ids for storage. What chat
//!   cannot do is a 400 naming the field (design §3.6).
//! - [`ResponseContext`] `{ id, created_at, model, echo }`: what the caller
//!   knows when a response starts (it mints the `resp_…` id).
//! - [`response_from_chat`]`(chat, ctx) -> Value`: a whole chat completion
//!   → the Response object.
//! - [`StreamTranslator`]: `new(ctx)`, `start()` (`response.created`,
//!   `response.in_progress`), `feed(chunk)` (chat SSE bytes split anywhere),
//!   `finish()` (the upstream ended: `response.completed` or
//!   `response.incomplete`), `fail(message)` (`response.failed`), then
//!   `usage()` and `final_response()` (the terminal event's Response, to
//!   store). Each returns Responses SSE bytes to send as they are.
//! - [`ResponsesUsage`] and [`usage_of_response`]: token counts of any
//!   Response object, translated or native.
//!
//! Not handled here: `previous_response_id` (the caller passes the earlier
//! items as `history`), `item_reference` input items (refused; a caller
//! that stores items may replace them by the items before translating),
//! and what the upstream itself cannot do after translation (the local
//! model refuses tools, for one: its own 400).

mod input;
mod request;
mod response;
mod stream;
mod usage;

pub use request::{chat_request, ChatRequest};
pub use response::{response_from_chat, Echo, ResponseContext};
pub use stream::StreamTranslator;
pub use usage::{usage_of_response, ResponsesUsage};

use crate::error::ApiError;

/// A fresh id for an item Keyward creates: `prefix` then 24 random base-62
/// characters (`msg_…`, `fc_…`, `fco_…`, `call_…`).
pub(crate) fn mint_id(prefix: &str) -> String {
    let mut random = [0u8; 24];
    keyward_core::base62::fill_random(&mut random);
    let mut id = String::with_capacity(prefix.len() + random.len());
    id.push_str(prefix);
    id.extend(random.iter().map(|&b| char::from(b)));
    id
}

/// The 400 for something the Responses API has and chat completions does
/// not; `what` names it at the start of the sentence.
fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(
        Some(param.into()),
        format!("{what} is not supported for this model: its upstream speaks chat completions, not the Responses API. Remove it, or use a model whose upstream speaks Responses."),
    )
}

#[cfg(test)]
mod tests;
