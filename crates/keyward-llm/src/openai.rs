//! The OpenAI wire format of the local model: reading chat and text
//! completion requests (every field checked, anything the model cannot
//! honour refused by name) and writing responses and stream chunks.

use serde_json::{json, Map, Value};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completions,
}

/// What the model is asked to read.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat messages as (role, text), rendered by the model's chat template.
    Messages(Vec<(String, String)>),
    /// Raw text, continued as is.
    Text(String),
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u32>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
}

/// A request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: Prompt,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampling: Sampling,
}

/// A request the model cannot serve, with the field to blame.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

fn invalid(param: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        param: Some(param.to_string()),
        code: None,
    }
}

/// Fields accepted and without effect on a local model.
const IGNORED: &[&str] = &["model", "user", "store", "metadata", "service_tier"];

/// Reads a request body for `api`.
pub fn parse(api: Api, body: &[u8]) -> Result<Request, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Invalid {
        message: format!("The request body is not valid JSON: {e}. Send a JSON object."),
        param: None,
        code: None,
    })?;
    let Value::Object(fields) = value else {
        return Err(Invalid {
            message: "The request body must be a JSON object.".into(),
            param: None,
            code: None,
        });
    };
    let mut req = Request {
        prompt: Prompt::Text(String::new()),
        stream: false,
        include_usage: false,
        max_tokens: None,
        stop: Vec::new(),
        sampling: Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        },
    };
    let mut prompt = None;
    for (name, v) in &fields {
        let name = name.as_str();
        if v.is_null() || IGNORED.contains(&name) {
            continue;
        }
        match (api, name) {
            (Api::Chat, "messages") => prompt = Some(Prompt::Messages(messages(v)?)),
            (Api::Completions, "prompt") => prompt = Some(Prompt::Text(text_prompt(v)?)),
            (_, "stream") => req.stream = boolean(name, v)?,
            (_, "stream_options") => req.include_usage = include_usage(v)?,
            (_, "temperature") => req.sampling.temperature = number(name, v, 0.0, 2.0)?,
            (_, "top_p") => req.sampling.top_p = number(name, v, 0.0, 1.0)?,
            (_, "presence_penalty") => req.sampling.presence_penalty = number(name, v, -2.0, 2.0)?,
            (_, "frequency_penalty") => {
                req.sampling.frequency_penalty = number(name, v, -2.0, 2.0)?
            }
            (_, "max_tokens") | (Api::Chat, "max_completion_tokens") => {
                req.max_tokens = Some(count(name, v)?)
            }
            (_, "seed") => {
                let seed = v
                    .as_i64()
                    .ok_or_else(|| invalid(name, "`seed` must be an integer."))?;
                // Any 64-bit seed is accepted; the sampler takes 32 bits.
                req.sampling.seed = Some((seed as u64 ^ (seed as u64 >> 32)) as u32);
            }
            (_, "stop") => req.stop = stops(v)?,
            (_, "n") => {
                if v.as_u64() != Some(1) {
                    return Err(invalid(
                        "n",
                        "The local model returns one choice per request: set `n` to 1 or leave it out.",
                    ));
                }
            }
            (_, "logprobs") if v == &Value::Bool(false) => {}
            (Api::Completions, "echo") if v == &Value::Bool(false) => {}
            (
                _,
                "logprobs"
                | "top_logprobs"
                | "logit_bias"
                | "tools"
                | "tool_choice"
                | "functions"
                | "function_call"
                | "parallel_tool_calls"
                | "response_format"
                | "audio"
                | "modalities"
                | "prediction"
                | "reasoning_effort"
                | "echo"
                | "suffix"
                | "best_of"
                | "web_search_options",
            ) => {
                return Err(invalid(
                    name,
                    format!("`{name}` is not supported by the local model. Remove it, or use a model served by a remote provider."),
                ));
            }
            _ => {
                return Err(invalid(
                    name,
                    format!("Unrecognized request argument supplied: {name}"),
                ))
            }
        }
    }
    req.prompt = prompt.ok_or_else(|| match api {
        Api::Chat => invalid("messages", "Missing required parameter: 'messages'."),
        Api::Completions => invalid("prompt", "Missing required parameter: 'prompt'."),
    })?;
    if !req.stream && fields.get("stream_options").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    Ok(req)
}

fn boolean(name: &str, v: &Value) -> Result<bool, Invalid> {
    v.as_bool()
        .ok_or_else(|| invalid(name, format!("`{name}` must be true or false.")))
}

fn number(name: &str, v: &Value, min: f64, max: f64) -> Result<f32, Invalid> {
    match v.as_f64() {
        Some(x) if (min..=max).contains(&x) => Ok(x as f32),
        _ => Err(invalid(
            name,
            format!("`{name}` must be a number from {min} to {max}."),
        )),
    }
}

fn count(name: &str, v: &Value) -> Result<u32, Invalid> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(n.min(u32::MAX as u64) as u32),
        _ => Err(invalid(
            name,
            format!("`{name}` must be a whole number of at least 1."),
        )),
    }
}

fn include_usage(v: &Value) -> Result<bool, Invalid> {
    let Value::Object(o) = v else {
        return Err(invalid(
            "stream_options",
            "`stream_options` must be an object.",
        ));
    };
    let mut usage = false;
    for (k, v) in o {
        match k.as_str() {
            "include_usage" if v.is_null() => {}
            "include_usage" => usage = boolean("stream_options.include_usage", v)?,
            "include_obfuscation" => {}
            other => {
                return Err(invalid(
                    "stream_options",
                    format!("Unrecognized stream option: {other}"),
                ))
            }
        }
    }
    Ok(usage)
}

fn stops(v: &Value) -> Result<Vec<String>, Invalid> {
    let list = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.len() <= 4 => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("stop", "Every entry of `stop` must be a string."))?,
        _ => {
            return Err(invalid(
                "stop",
                "`stop` must be a string or a list of up to 4 strings.",
            ))
        }
    };
    Ok(list)
}

fn text_prompt(v: &Value) -> Result<String, Invalid> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_string())
        }
        _ => Err(invalid(
            "prompt",
            "The local model takes one prompt string per request (`prompt` as a string or a list of one string).",
        )),
    }
}

fn messages(v: &Value) -> Result<Vec<(String, String)>, Invalid> {
    let Value::Array(items) = v else {
        return Err(invalid(
            "messages",
            "`messages` must be an array of messages.",
        ));
    };
    if items.is_empty() {
        return Err(invalid(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

fn message(i: usize, m: &Value) -> Result<(String, String), Invalid> {
    let at = |field: &str| format!("messages.[{i}].{field}");
    let Value::Object(m) = m else {
        return Err(invalid(
            &format!("messages.[{i}]"),
            "Each message must be an object with `role` and `content`.",
        ));
    };
    let role = match m.get("role").and_then(Value::as_str) {
        Some("developer") | Some("system") => "system",
        Some("user") => "user",
        Some("assistant") => "assistant",
        Some(other) => {
            return Err(invalid(
                &at("role"),
                format!("The local model takes the roles system, developer, user and assistant, not `{other}`."),
            ))
        }
        None => return Err(invalid(&at("role"), "Each message needs a `role` string.")),
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(invalid(
                            &at("content"),
                            "The local model reads text only: every content part must be {\"type\":\"text\",\"text\":…}.",
                        ))
                    }
                }
            }
            text
        }
        Some(Value::Null) | None if role == "assistant" => String::new(),
        _ => {
            return Err(invalid(
                &at("content"),
                "Each message needs `content`: a string or a list of text parts.",
            ))
        }
    };
    for k in m.keys() {
        if !matches!(k.as_str(), "role" | "content" | "name" | "refusal") {
            return Err(invalid(
                &at(k),
                format!("`{k}` in a message is not supported by the local model."),
            ));
        }
    }
    Ok((role.to_string(), content))
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer, or a stop sequence appeared.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Token counts, as the model's tokenizer counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// Writes one response's JSON bodies and stream events.
#[derive(Debug, Clone)]
pub struct Writer {
    pub api: Api,
    pub id: String,
    pub model: String,
    pub created: u64,
    /// Whether stream chunks carry `"usage": null` and a usage chunk ends the stream.
    pub include_usage: bool,
}

const FINGERPRINT: &str = "keyward-local";

impl Writer {
    pub fn new(api: Api, model: &str, include_usage: bool) -> Writer {
        let prefix = match api {
            Api::Chat => "chatcmpl-",
            Api::Completions => "cmpl-",
        };
        let mut id = [0u8; 12];
        // The id only has to be unique enough to tell responses apart.
        let _ = getrandom::fill(&mut id);
        Writer {
            api,
            id: format!("{prefix}{}", hex::encode(id)),
            model: model.to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            include_usage,
        }
    }

    /// The whole answer, for a request that did not stream.
    pub fn completion(&self, text: &str, finish: Finish, usage: Usage) -> Value {
        let choice = match self.api {
            Api::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }),
            Api::Completions => json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str(),
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
            "usage": usage.json(),
        })
    }

    /// The first chunk of a chat stream names the role.
    pub fn opening(&self) -> Option<Value> {
        (self.api == Api::Chat)
            .then(|| self.chunk(json!({"role": "assistant", "content": ""}), None))
    }

    /// A chunk carrying new text.
    pub fn delta(&self, text: &str) -> Value {
        match self.api {
            Api::Chat => self.chunk(json!({"content": text}), None),
            Api::Completions => self.chunk(json!(text), None),
        }
    }

    /// The chunk that says why generation ended.
    pub fn closing(&self, finish: Finish) -> Value {
        match self.api {
            Api::Chat => self.chunk(json!({}), Some(finish)),
            Api::Completions => self.chunk(json!(""), Some(finish)),
        }
    }

    /// The final chunk with the token counts, when the client asked for it.
    pub fn usage(&self, usage: Usage) -> Option<Value> {
        self.include_usage.then(|| {
            let mut v = self.envelope(Vec::new());
            v["usage"] = usage.json();
            v
        })
    }

    fn chunk(&self, delta: Value, finish: Option<Finish>) -> Value {
        let field = match self.api {
            Api::Chat => "delta",
            Api::Completions => "text",
        };
        let mut choice = Map::new();
        choice.insert("index".into(), json!(0));
        choice.insert(field.into(), delta);
        choice.insert("logprobs".into(), Value::Null);
        choice.insert(
            "finish_reason".into(),
            finish.map_or(Value::Null, |f| json!(f.as_str())),
        );
        self.envelope(vec![Value::Object(choice)])
    }

    fn envelope(&self, choices: Vec<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completions, _) => "text_completion",
        }
    }
}

/// An error body in OpenAI's shape.
pub fn error_body(kind: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<Request, Invalid> {
        parse(Api::Chat, body.to_string().as_bytes())
    }

    #[test]
    fn a_full_chat_request_is_read() {
        let r = chat(json!({
            "model": "m", "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
            ],
            "temperature": 0, "top_p": 0.5, "max_completion_tokens": 7, "stop": ["\n"],
            "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 1,
            "stream": true, "stream_options": {"include_usage": true}, "user": "u1"
        }))
        .unwrap();
        assert_eq!(
            r.prompt,
            Prompt::Messages(vec![
                ("system".into(), "Be brief.".into()),
                ("user".into(), "Hi".into())
            ])
        );
        assert!(r.stream && r.include_usage);
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.sampling.seed, Some(42));
    }

    #[test]
    fn what_the_model_cannot_do_is_refused_by_name() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (field, value) in [
            ("n", json!(2)),
            ("tools", json!([])),
            ("logprobs", json!(true)),
            ("temperature", json!(3)),
            ("max_tokens", json!(0)),
            ("stop", json!(["a", "b", "c", "d", "e"])),
            ("frobnicate", json!(1)),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let err = chat(body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field), "{err:?}");
        }
        let err = chat(json!({"model": "m"})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        let err = chat(json!({"messages": [{"role": "tool", "content": "x"}]})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.[0].role"));
    }

    #[test]
    fn stream_options_need_a_stream() {
        let err = chat(json!({"messages": [{"role": "user", "content": "x"}],
            "stream_options": {"include_usage": true}}))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("stream_options"));
    }

    #[test]
    fn a_text_prompt_is_read() {
        let r = parse(
            Api::Completions,
            br#"{"model":"m","prompt":["Once"],"echo":false}"#,
        )
        .unwrap();
        assert_eq!(r.prompt, Prompt::Text("Once".into()));
    }

    #[test]
    fn chunks_have_openai_shapes() {
        let w = Writer::new(Api::Chat, "smol", true);
        assert_eq!(
            w.opening().unwrap()["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(w.delta("hi")["choices"][0]["delta"]["content"], "hi");
        assert!(w.delta("hi")["usage"].is_null());
        assert_eq!(
            w.closing(Finish::Length)["choices"][0]["finish_reason"],
            "length"
        );
        let u = w
            .usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
            })
            .unwrap();
        assert_eq!(u["usage"]["total_tokens"], 5);
        assert_eq!(u["choices"].as_array().unwrap().len(), 0);
        let c = Writer::new(Api::Completions, "smol", false).completion(
            "x",
            Finish::Stop,
            Usage::default(),
        );
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["choices"][0]["text"], "x");
    }
}
