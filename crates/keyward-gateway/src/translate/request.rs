//! A Responses request body → a chat completions body (design §3.1, §3.2);
//! what chat cannot express is refused by name (§3.6).

use serde_json::{json, Map, Value};

use super::input::{push_item, stored_item, stored_text_input, At};
use super::response::Echo;
use super::unsupported;
use crate::error::ApiError;

/// A Responses request, translated.
#[derive(Debug)]
pub struct ChatRequest {
    /// The chat completions body, `model` set to the upstream's name for
    /// the model; streamed with `stream_options.include_usage` when
    /// [`ChatRequest::stream`].
    pub body: Value,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The request's fields its Response object echoes; goes into
    /// [`super::ResponseContext::echo`].
    pub echo: Echo,
    /// The request's `input` as Responses items with ids (the client's, or
    /// new `msg_…`/`fc_…`/`fco_…` ones), oldest first: what Keyward stores
    /// and `GET /v1/responses/{id}/input_items` lists.
    pub input_items: Vec<Value>,
}

/// Translates a Responses request body. `history` holds the items of the
/// responses `previous_response_id` chains to (each one's input then its
/// output, oldest first); they go before the new `input`, after the new
/// `instructions` (the earlier ones are not carried over).
///
/// Errors are 400s naming the field, for what chat completions cannot do
/// (built-in tools, `background`, `conversation`, …) or what is malformed.
/// `previous_response_id`, `store` and `metadata` are the caller's to
/// handle; they are accepted here and not sent upstream.
pub fn chat_request(
    body: &Value,
    history: &[Value],
    upstream_model: &str,
) -> Result<ChatRequest, ApiError> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid(
            None,
            "The request body must be a JSON object.",
        ));
    };
    let mut chat = Map::new();
    chat.insert("model".into(), upstream_model.into());
    let mut stream = false;
    let mut tools = Vec::new();
    let mut tool_choice = None;
    let mut parallel_tool_calls = None;
    let mut logprobs = false;
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "model" | "input" | "instructions" | "store" | "metadata"
            | "previous_response_id" | "stream_options" => {}
            "stream" => stream = boolean(name, value)?,
            "background" => {
                if boolean(name, value)? {
                    return Err(ApiError::invalid(
                        Some(name.clone()),
                        "`background` responses are not supported for this model: its upstream speaks chat completions. Remove `background`, or set it to false.",
                    ));
                }
            }
            "max_output_tokens" => {
                if value.as_u64().is_none_or(|n| n == 0) {
                    return Err(ApiError::invalid(
                        Some(name.clone()),
                        "`max_output_tokens` must be a positive integer.",
                    ));
                }
                // The local model reads `max_tokens`; others `max_completion_tokens`.
                chat.insert("max_completion_tokens".into(), value.clone());
                chat.insert("max_tokens".into(), value.clone());
            }
            "tools" => tools = function_tools(value)?,
            "tool_choice" => tool_choice = Some(chat_tool_choice(value)?),
            "parallel_tool_calls" => parallel_tool_calls = Some(boolean(name, value)?),
            "text" => text(value, &mut chat)?,
            "reasoning" => reasoning(value, &mut chat)?,
            "truncation" => match value.as_str() {
                Some("disabled") => {}
                Some("auto") => {
                    return Err(ApiError::invalid(
                        Some(name.clone()),
                        "`truncation: \"auto\"` is not supported for this model yet. Remove it (or set \"disabled\") and keep the input within the model's context.",
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        Some(name.clone()),
                        "`truncation` is \"auto\" or \"disabled\".",
                    ))
                }
            },
            "include" => logprobs |= include(value)?,
            "top_logprobs" => {
                chat.insert(name.clone(), value.clone());
                logprobs = true;
            }
            "temperature" | "top_p" | "user" | "safety_identifier" | "prompt_cache_key"
            | "prompt_cache_retention" | "service_tier" => {
                chat.insert(name.clone(), value.clone());
            }
            "conversation" | "prompt" | "context_management" | "moderation"
            | "max_tool_calls" => return Err(unsupported(name, &format!("`{name}`"))),
            _ => {
                return Err(ApiError::invalid(
                    Some(name.clone()),
                    format!("Unrecognized request argument supplied: {name}"),
                ))
            }
        }
    }
    if logprobs {
        chat.insert("logprobs".into(), true.into());
    }

    let (messages, input_items) = messages(fields, history)?;
    chat.insert("messages".into(), Value::Array(messages));

    if tools.is_empty() {
        // Chat upstreams refuse `tool_choice` and `parallel_tool_calls`
        // without tools; only a choice that demands a tool means anything.
        if let Some(choice) = tool_choice.filter(|c| c != "auto" && c != "none") {
            return Err(ApiError::invalid(
                Some("tool_choice".into()),
                format!(
                    "`tool_choice` {choice} needs `tools`: add the function tools it may call."
                ),
            ));
        }
    } else {
        chat.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = tool_choice {
            chat.insert("tool_choice".into(), choice);
        }
        if let Some(parallel) = parallel_tool_calls {
            chat.insert("parallel_tool_calls".into(), parallel.into());
        }
    }
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(ChatRequest {
        body: Value::Object(chat),
        stream,
        echo: Echo::of_request(body),
        input_items,
    })
}

/// The chat messages (`instructions`, then the history, then `input`) and
/// the request's input items as stored.
fn messages(
    fields: &Map<String, Value>,
    history: &[Value],
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut messages = Vec::new();
    match fields.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => {
            return Err(ApiError::invalid(
                Some("instructions".into()),
                "`instructions` must be a string.",
            ))
        }
    }
    for item in history {
        push_item(&mut messages, item, At::History)?;
    }
    let input_items = match fields.get("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            messages.push(json!({"role": "user", "content": text}));
            vec![stored_text_input(text)]
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut messages, item, At::Input(i))?;
            }
            items.iter().map(stored_item).collect()
        }
        Some(_) => {
            return Err(ApiError::invalid(
                Some("input".into()),
                "`input` must be a string or a list of input items.",
            ))
        }
    };
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(ApiError::invalid(
            Some("input".into()),
            "Missing required parameter: 'input'.",
        ));
    }
    Ok((messages, input_items))
}

fn boolean(name: &str, value: &Value) -> Result<bool, ApiError> {
    value.as_bool().ok_or_else(|| {
        ApiError::invalid(
            Some(name.into()),
            format!("`{name}` must be true or false."),
        )
    })
}

/// Responses' flat function tools → chat's nested ones; any other tool
/// type is a built-in tool, refused.
fn function_tools(value: &Value) -> Result<Vec<Value>, ApiError> {
    let Some(list) = value.as_array() else {
        return Err(ApiError::invalid(
            Some("tools".into()),
            "`tools` must be a list of tool objects.",
        ));
    };
    let mut tools = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let at = |member: &str| format!("tools[{i}].{member}");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(unsupported(
                    &at("type"),
                    &format!("The built-in tool `{other}`"),
                ))
            }
            None => return Err(ApiError::invalid(
                Some(at("type")),
                "Each tool needs a `type`: only \"function\" tools are supported for this model.",
            )),
        }
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(ApiError::invalid(
                Some(at("name")),
                "A function tool needs a `name` string.",
            ));
        };
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        for (key, v) in tool.as_object().into_iter().flatten() {
            match key.as_str() {
                "type" | "name" => {}
                "description" | "parameters" | "strict" => {
                    if !v.is_null() {
                        function.insert(key.clone(), v.clone());
                    }
                }
                _ if v.is_null() || v == &Value::Bool(false) => {}
                _ => return Err(unsupported(&at(key), &format!("A function tool's `{key}`"))),
            }
        }
        tools.push(json!({"type": "function", "function": function}));
    }
    Ok(tools)
}

/// `tool_choice` in chat's shape: the same strings; a named function or
/// an allowed-tools list nested; hosted tool choices refused.
fn chat_tool_choice(value: &Value) -> Result<Value, ApiError> {
    let param = Some("tool_choice".to_owned());
    let named = |tool: &Value, param: String| match tool.get("name").and_then(Value::as_str) {
        Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
        None => Err(ApiError::invalid(
            Some(param),
            "A function choice needs a `name` string.",
        )),
    };
    match value {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(value.clone()),
        Value::Object(choice) => match choice.get("type").and_then(Value::as_str) {
            Some("function") => named(value, "tool_choice.name".into()),
            Some("allowed_tools") => {
                let mode = choice.get("mode").cloned().unwrap_or_else(|| "auto".into());
                let tools = choice
                    .get("tools")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            Some("tool_choice.tools".into()),
                            "`allowed_tools` needs a `tools` list.",
                        )
                    })?
                    .iter()
                    .enumerate()
                    .map(|(j, tool)| {
                        let param = format!("tool_choice.tools[{j}]");
                        match tool.get("type").and_then(Value::as_str) {
                            Some("function") => named(tool, format!("{param}.name")),
                            _ => Err(unsupported(&format!("{param}.type"), "A built-in tool")),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(
                    json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}),
                )
            }
            Some(other) => Err(unsupported(
                "tool_choice.type",
                &format!("The hosted tool choice `{other}`"),
            )),
            None => Err(ApiError::invalid(
                param,
                "A `tool_choice` object needs a `type`.",
            )),
        },
        _ => Err(ApiError::invalid(
            param,
            "`tool_choice` is \"auto\", \"none\", \"required\" or a tool choice object.",
        )),
    }
}

/// `text.format` → `response_format`; `text.verbosity` → `verbosity`.
fn text(value: &Value, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    for (key, v) in members("text", value)? {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "format" => match v.get("type").and_then(Value::as_str) {
                Some("text") => {}
                Some("json_object") => {
                    chat.insert("response_format".into(), json!({"type": "json_object"}));
                }
                Some("json_schema") => {
                    let mut schema = Map::new();
                    for (k, member) in v.as_object().into_iter().flatten() {
                        if k != "type" && !member.is_null() {
                            schema.insert(k.clone(), member.clone());
                        }
                    }
                    for required in ["name", "schema"] {
                        if !schema.contains_key(required) {
                            return Err(ApiError::invalid(
                                Some(format!("text.format.{required}")),
                                format!("A `json_schema` format needs `{required}`."),
                            ));
                        }
                    }
                    chat.insert(
                        "response_format".into(),
                        json!({"type": "json_schema", "json_schema": schema}),
                    );
                }
                _ => {
                    return Err(ApiError::invalid(
                        Some("text.format.type".into()),
                        "`text.format.type` is \"text\", \"json_object\" or \"json_schema\".",
                    ))
                }
            },
            "verbosity" => {
                chat.insert("verbosity".into(), v.clone());
            }
            _ => {
                return Err(unsupported(
                    &format!("text.{key}"),
                    &format!("`text.{key}`"),
                ))
            }
        }
    }
    Ok(())
}

/// `reasoning.effort` → `reasoning_effort`; the rest has no chat equivalent.
fn reasoning(value: &Value, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    for (key, v) in members("reasoning", value)? {
        match key.as_str() {
            _ if v.is_null() => {}
            "effort" => {
                chat.insert("reasoning_effort".into(), v.clone());
            }
            _ => {
                return Err(unsupported(
                    &format!("reasoning.{key}"),
                    &format!("`reasoning.{key}`"),
                ))
            }
        }
    }
    Ok(())
}

/// Whether `include` asks for logprobs; other values than the two chat can
/// serve are refused.
fn include(value: &Value) -> Result<bool, ApiError> {
    let Some(list) = value.as_array() else {
        return Err(ApiError::invalid(
            Some("include".into()),
            "`include` must be a list of strings.",
        ));
    };
    let mut logprobs = false;
    for (i, v) in list.iter().enumerate() {
        match v.as_str() {
            // Nothing to include: a chat upstream's reasoning is not returned.
            Some("reasoning.encrypted_content") => {}
            Some("message.output_text.logprobs") => logprobs = true,
            Some(other) => {
                return Err(unsupported(
                    &format!("include[{i}]"),
                    &format!("Including `{other}`"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    Some(format!("include[{i}]")),
                    "`include` must be a list of strings.",
                ))
            }
        }
    }
    Ok(logprobs)
}

fn members<'a>(name: &str, value: &'a Value) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::invalid(Some(name.into()), format!("`{name}` must be an object.")))
}
