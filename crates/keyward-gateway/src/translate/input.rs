//! Responses input items → chat messages (design §3.1), and the same items
//! as Keyward stores them: with ids, for `GET /v1/responses/{id}/input_items`.

use serde_json::{json, Map, Value};

use super::{mint_id, unsupported};
use crate::error::ApiError;

/// Where an item came from, to name it in an error.
#[derive(Clone, Copy)]
pub(super) enum At {
    /// `input[i]` of this request.
    Input(usize),
    /// An item of the earlier responses `previous_response_id` chains to.
    History,
}

impl At {
    /// The parameter an error about this item (or a member of it) names.
    fn param(self, member: &str) -> String {
        match self {
            At::Input(i) => format!("input[{i}]{member}"),
            At::History => "previous_response_id".into(),
        }
    }

    fn invalid(self, member: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(Some(self.param(member)), message)
    }

    fn unsupported(self, member: &str, what: &str) -> ApiError {
        unsupported(&self.param(member), what)
    }
}

/// Appends the chat message(s) for one input item to `messages`. A
/// `function_call` joins the assistant message before it, so consecutive
/// calls (and the text just before them) form one assistant message.
pub(super) fn push_item(messages: &mut Vec<Value>, item: &Value, at: At) -> Result<(), ApiError> {
    let Some(fields) = item.as_object() else {
        return Err(at.invalid(
            "",
            "Each input item must be an object: a message `{\"role\",\"content\"}`, a `function_call` or a `function_call_output`.",
        ));
    };
    match fields.get("type") {
        None | Some(Value::Null) => push_message(messages, fields, at),
        Some(Value::String(kind)) => match kind.as_str() {
            "message" => push_message(messages, fields, at),
            "function_call" => push_call(messages, fields, at),
            "function_call_output" => {
                messages.push(call_output(fields, at)?);
                Ok(())
            }
            // Another model's reasoning: a chat upstream cannot take it.
            "reasoning" => Ok(()),
            "item_reference" => Err(at.invalid(
                ".type",
                "`item_reference` items are not supported for this model: send the item itself instead of a reference to it.",
            )),
            other => Err(at.unsupported(".type", &format!("The input item type `{other}`"))),
        },
        Some(_) => Err(at.invalid(".type", "An input item's `type` must be a string.")),
    }
}

fn push_message(
    messages: &mut Vec<Value>,
    item: &Map<String, Value>,
    at: At,
) -> Result<(), ApiError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "system" | "developer" | "assistant")) => role,
        Some(other) => {
            return Err(at.invalid(
                ".role",
                format!("A message's `role` is one of user, system, developer and assistant, not `{other}`."),
            ))
        }
        None => return Err(at.invalid(".role", "Each message needs a `role` string.")),
    };
    let content = item.get("content").unwrap_or(&Value::Null);
    if role == "assistant" {
        messages.push(assistant_message(content, at)?);
        return Ok(());
    }
    let content = match content {
        Value::String(_) => content.clone(),
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .enumerate()
                .map(|(j, part)| input_part(part, at, j))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(at.invalid(
                ".content",
                "A message's `content` must be a string or a list of content parts.",
            ))
        }
    };
    messages.push(json!({"role": role, "content": content}));
    Ok(())
}

/// One content part of a user, system or developer message, as a chat part.
fn input_part(part: &Value, at: At, j: usize) -> Result<Value, ApiError> {
    let member = format!(".content[{j}]");
    match part.get("type").and_then(Value::as_str) {
        Some("input_text") => match part.get("text") {
            Some(Value::String(text)) => Ok(json!({"type": "text", "text": text})),
            _ => Err(at.invalid(&format!("{member}.text"), "An `input_text` part needs a `text` string.")),
        },
        Some("input_image") => {
            if part.get("file_id").is_some_and(|v| !v.is_null()) {
                return Err(at.invalid(
                    &format!("{member}.file_id"),
                    "Images by `file_id` are not supported for this model: its upstream speaks chat completions. Send the image as `image_url` (an https or data: URL) instead.",
                ));
            }
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(at.invalid(
                    &format!("{member}.image_url"),
                    "An `input_image` part needs an `image_url` string.",
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        Some(kind @ ("input_file" | "input_audio")) => {
            Err(at.unsupported(&member, &format!("The content part type `{kind}`")))
        }
        Some(other) => Err(at.invalid(
            &format!("{member}.type"),
            format!("`{other}` is not a content part of a user, system or developer message: use `input_text` or `input_image`."),
        )),
        None => Err(at.invalid(&format!("{member}.type"), "Each content part needs a `type`.")),
    }
}

/// An assistant message (the easy form or an output item sent back): its
/// text parts joined, a refusal in `refusal`. Ids, statuses, annotations
/// and logprobs the client echoes are ignored.
fn assistant_message(content: &Value, at: At) -> Result<Value, ApiError> {
    let (text, refusal) = match content {
        Value::String(s) => (s.clone(), String::new()),
        Value::Null => (String::new(), String::new()),
        Value::Array(parts) => {
            let (mut text, mut refusal) = (String::new(), String::new());
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                let (into, key) =
                    match kind {
                        Some("output_text" | "input_text") => (&mut text, "text"),
                        Some("refusal") => (&mut refusal, "refusal"),
                        _ => return Err(at.invalid(
                            &format!(".content[{j}].type"),
                            "An assistant message's content parts are `output_text` or `refusal`.",
                        )),
                    };
                match part.get(key).and_then(Value::as_str) {
                    Some(s) => into.push_str(s),
                    None => {
                        return Err(at.invalid(
                            &format!(".content[{j}].{key}"),
                            format!("This content part needs a `{key}` string."),
                        ))
                    }
                }
            }
            (text, refusal)
        }
        _ => {
            return Err(at.invalid(
                ".content",
                "A message's `content` must be a string or a list of content parts.",
            ))
        }
    };
    let mut message = json!({"role": "assistant", "content": text});
    if !refusal.is_empty() {
        message["refusal"] = Value::String(refusal);
    }
    Ok(message)
}

/// A `function_call` item: a tool call of the assistant message just
/// before it, or of a new one.
fn push_call(messages: &mut Vec<Value>, item: &Map<String, Value>, at: At) -> Result<(), ApiError> {
    let call_id = call_id(item, at)?;
    let Some(name) = item.get("name").and_then(Value::as_str) else {
        return Err(at.invalid(".name", "A `function_call` item needs a `name` string."));
    };
    let arguments = match item.get("arguments") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        None | Some(Value::Null) | Some(Value::String(_)) => "{}",
        Some(_) => {
            return Err(at.invalid(
                ".arguments",
                "A `function_call` item's `arguments` must be a JSON string.",
            ))
        }
    };
    let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
    match messages.last_mut() {
        Some(last) if last["role"] == "assistant" => match last.get_mut("tool_calls") {
            Some(Value::Array(calls)) => calls.push(call),
            _ => {
                last["tool_calls"] = json!([call]);
            }
        },
        _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
    }
    Ok(())
}

/// A `function_call_output` item → a `tool` message.
fn call_output(item: &Map<String, Value>, at: At) -> Result<Value, ApiError> {
    let call_id = call_id(item, at)?;
    let content = match item.get("output") {
        Some(output @ Value::String(_)) => output.clone(),
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .enumerate()
                .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
                    Some("input_text") => match part.get("text") {
                        Some(Value::String(text)) => Ok(json!({"type": "text", "text": text})),
                        _ => Err(at.invalid(
                            &format!(".output[{j}].text"),
                            "An `input_text` part needs a `text` string.",
                        )),
                    },
                    _ => Err(at.unsupported(
                        &format!(".output[{j}]"),
                        "A function call output other than text",
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(at.invalid(
                ".output",
                "A `function_call_output` item needs an `output`: a string or a list of `input_text` parts.",
            ))
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": content}))
}

fn call_id(item: &Map<String, Value>, at: At) -> Result<&str, ApiError> {
    match item.get("call_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(at.invalid(
            ".call_id",
            "This item needs the `call_id` of the function call it belongs to.",
        )),
    }
}

/// One input item as Keyward stores it: typed, with an id (the client's,
/// or a new `msg_`/`fc_`/`fco_`/`rs_` one), string content as a part list
/// and a status. Call only for items [`push_item`] accepted.
pub(super) fn stored_item(item: &Value) -> Value {
    let mut item = item.as_object().cloned().unwrap_or_default();
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind.to_owned(),
        None => {
            item.insert("type".into(), "message".into());
            "message".to_owned()
        }
    };
    let prefix = match kind.as_str() {
        "message" => "msg_",
        "function_call" => "fc_",
        "function_call_output" => "fco_",
        _ => "rs_",
    };
    if item
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        item.insert("id".into(), mint_id(prefix).into());
    }
    if kind == "message" {
        let assistant = item.get("role").and_then(Value::as_str) == Some("assistant");
        if let Some(Value::String(text)) = item.get("content") {
            let part = if assistant {
                json!({"type": "output_text", "text": text, "annotations": []})
            } else {
                json!({"type": "input_text", "text": text})
            };
            item.insert("content".into(), json!([part]));
        }
    }
    if kind != "reasoning" && item.get("status").is_none_or(Value::is_null) {
        item.insert("status".into(), "completed".into());
    }
    Value::Object(item)
}

/// The input items of a request whose `input` is a plain string.
pub(super) fn stored_text_input(text: &str) -> Value {
    stored_item(&json!({"type": "message", "role": "user", "content": text}))
}
