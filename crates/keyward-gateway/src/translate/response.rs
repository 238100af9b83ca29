//! The Response object (design §2.1) built from what a chat upstream
//! answered: whole (§3.3) here, streamed in [`super::stream`], which
//! shares the object and item builders below.

use serde_json::{json, Map, Value};

use super::{mint_id, ResponsesUsage};

/// The request's fields a Response object echoes back, with OpenAI's
/// defaults for those the request left out (design §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Echo(Map<String, Value>);

impl Echo {
    /// The echo of a Responses request body (fields that are absent or null
    /// take their defaults).
    pub fn of_request(body: &Value) -> Self {
        let mut echo = match json!({
            "background": false,
            "instructions": null,
            "max_output_tokens": null,
            "max_tool_calls": null,
            "metadata": {},
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": true,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
        }) {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        for (name, value) in body.as_object().into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            match name.as_str() {
                // Objects whose missing members keep their defaults.
                "reasoning" | "text" => {
                    if let (Some(Value::Object(into)), Value::Object(given)) =
                        (echo.get_mut(name), value)
                    {
                        into.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                "user" | "safety_identifier" | "prompt_cache_key" | "service_tier" => {
                    echo.insert(name.clone(), value.clone());
                }
                _ if echo.contains_key(name) => {
                    echo.insert(name.clone(), value.clone());
                }
                _ => {}
            }
        }
        Echo(echo)
    }
}

impl Default for Echo {
    fn default() -> Self {
        Echo::of_request(&Value::Null)
    }
}

/// What the gateway knows when it starts a translated response.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    /// The response's id (`resp_…`), minted by the caller.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The model id the client asked for (not the upstream's name for it).
    pub model: String,
    /// The request's echoed fields ([`super::ChatRequest::echo`]).
    pub echo: Echo,
}

/// How a response ended, or that it has not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    InProgress,
    Completed,
    /// `incomplete_details.reason`.
    Incomplete(&'static str),
    /// `error.message` (the code is `server_error`).
    Failed(String),
}

impl Outcome {
    /// The outcome a chat `finish_reason` means: `length` and
    /// `content_filter` leave the response incomplete; anything else
    /// (`stop`, `tool_calls`, none) completes it.
    pub(super) fn of_finish(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Outcome::Incomplete("max_output_tokens"),
            Some("content_filter") => Outcome::Incomplete("content_filter"),
            _ => Outcome::Completed,
        }
    }

    /// The `status` of output items that end with this outcome.
    pub(super) fn item_status(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::InProgress => "in_progress",
            Outcome::Incomplete(_) | Outcome::Failed(_) => "incomplete",
        }
    }

    /// The SSE event that ends a stream with this outcome.
    pub(super) fn terminal_event(&self) -> &'static str {
        match self {
            Outcome::InProgress => "response.in_progress",
            Outcome::Completed => "response.completed",
            Outcome::Incomplete(_) => "response.incomplete",
            Outcome::Failed(_) => "response.failed",
        }
    }
}

impl ResponseContext {
    /// The Response object: `usage` is null until known, `error` null
    /// unless failed.
    pub(super) fn response(
        &self,
        outcome: &Outcome,
        output: Vec<Value>,
        usage: Option<ResponsesUsage>,
    ) -> Value {
        let (status, error, incomplete) = match outcome {
            Outcome::InProgress => ("in_progress", Value::Null, Value::Null),
            Outcome::Completed => ("completed", Value::Null, Value::Null),
            Outcome::Incomplete(reason) => ("incomplete", Value::Null, json!({"reason": reason})),
            Outcome::Failed(message) => (
                "failed",
                json!({"code": "server_error", "message": message}),
                Value::Null,
            ),
        };
        let completed_at = match outcome {
            Outcome::Completed => json!(now()),
            _ => Value::Null,
        };
        let mut response = self.echo.0.clone();
        response.extend([
            ("id".into(), json!(self.id)),
            ("object".into(), json!("response")),
            ("created_at".into(), json!(self.created_at)),
            ("completed_at".into(), completed_at),
            ("status".into(), json!(status)),
            ("error".into(), error),
            ("incomplete_details".into(), incomplete),
            ("model".into(), json!(self.model)),
            ("output".into(), Value::Array(output)),
            (
                "usage".into(),
                usage.map_or(Value::Null, ResponsesUsage::to_json),
            ),
        ]);
        Value::Object(response)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An assistant message output item.
pub(super) fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

/// An `output_text` content part.
pub(super) fn text_part(text: &str, logprobs: Vec<Value>) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

/// A `refusal` content part.
pub(super) fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

/// A `function_call` output item.
pub(super) fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// The token logprobs of a chat choice (`logprobs.content`), which have
/// the same shape in an `output_text` part.
pub(super) fn logprobs_of(choice: &Value) -> Vec<Value> {
    match choice.pointer("/logprobs/content") {
        Some(Value::Array(tokens)) => tokens.clone(),
        _ => Vec::new(),
    }
}

/// A whole chat completion → the Response object: its text (and refusal)
/// as one message item, each tool call as a `function_call` item after it,
/// the status from `finish_reason`, usage mapped (design §3.3, §3.5).
pub fn response_from_chat(chat: &Value, ctx: &ResponseContext) -> Value {
    let choice = chat.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let outcome = Outcome::of_finish(choice.get("finish_reason").and_then(Value::as_str));
    let status = outcome.item_status();
    let mut output = Vec::new();
    let mut content = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(text_part(text, logprobs_of(choice)));
    }
    if let Some(refusal) = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(refusal_part(refusal));
    }
    if !content.is_empty() {
        output.push(message_item(&mint_id("msg_"), status, content));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |pointer| call.pointer(pointer).and_then(Value::as_str).unwrap_or("");
        let call_id = match text("/id") {
            "" => mint_id("call_"),
            id => id.to_owned(),
        };
        output.push(call_item(
            &mint_id("fc_"),
            &call_id,
            text("/function/name"),
            text("/function/arguments"),
            status,
        ));
    }
    let usage = chat.get("usage").and_then(ResponsesUsage::from_chat);
    ctx.response(&outcome, output, usage)
}
