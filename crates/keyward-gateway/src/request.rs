//! Reading just enough of a request to route, limit and meter it. The body
//! is forwarded as it came, unless the model must be renamed or usage must
//! be asked for on a stream.

use bytes::Bytes;
use keyward_core::EndpointGroup;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::ApiError;

/// The gateway's model endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path after the upstream's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    pub fn group(self) -> EndpointGroup {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => EndpointGroup::ChatCompletions,
            Endpoint::Embeddings => EndpointGroup::Embeddings,
        }
    }

    /// The name the usage ledger records.
    pub fn ledger_name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// The field holding the input, which must be present.
    fn input_field(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "messages",
            Endpoint::Completions => "prompt",
            Endpoint::Embeddings => "input",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The fields the gateway reads; everything else passes through unread.
#[derive(Debug, Deserialize)]
struct Fields {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    messages: Option<Vec<IgnoredAny>>,
    prompt: Option<IgnoredAny>,
    input: Option<IgnoredAny>,
}

/// What the gateway knows of a request.
#[derive(Debug)]
pub struct Head {
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk of a stream.
    pub include_usage: bool,
    /// The most output tokens the client allows.
    pub max_tokens: Option<u64>,
}

/// Parses and checks the fields the gateway needs; 400 naming the field otherwise.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Head, ApiError> {
    let not_json = || {
        ApiError::invalid(
            None,
            "We could not parse the JSON body of your request. The API expects a JSON object (Content-Type: application/json); check that your HTTP library sends one.",
        )
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_json());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let fields: Fields = serde_path_to_error::deserialize(de).map_err(|e| {
        if e.inner().is_syntax() || e.inner().is_eof() {
            return not_json();
        }
        let param = e.path().to_string();
        let detail = e.inner().to_string();
        let detail = detail
            .split(" at line ")
            .next()
            .unwrap_or(&detail)
            .to_owned();
        ApiError::invalid(
            Some(param.clone()),
            format!("Invalid type for '{param}': {detail}."),
        )
    })?;
    let model = match fields.model {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(ApiError::invalid(
                Some("model".into()),
                "you must provide a model parameter",
            ))
        }
    };
    let input_present = match endpoint {
        Endpoint::ChatCompletions => fields.messages.as_ref().is_some_and(|m| !m.is_empty()),
        Endpoint::Completions => fields.prompt.is_some(),
        Endpoint::Embeddings => fields.input.is_some(),
    };
    if !input_present {
        let field = endpoint.input_field();
        return Err(ApiError::invalid(
            Some(field.into()),
            format!("Missing required parameter: '{field}'."),
        ));
    }
    let stream = fields.stream.unwrap_or(false) && endpoint != Endpoint::Embeddings;
    Ok(Head {
        model,
        stream,
        include_usage: fields
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: fields.max_completion_tokens.or(fields.max_tokens),
    })
}

/// The body to send upstream, and whether the stream's usage chunk must be
/// removed before the client sees it (because Keyward, not the client, asked for it).
pub fn upstream_body(
    raw: &Bytes,
    head: &Head,
    rename: Option<&str>,
) -> Result<(Bytes, bool), ApiError> {
    let inject_usage = head.stream && !head.include_usage;
    if rename.is_none() && !inject_usage {
        return Ok((raw.clone(), false));
    }
    let mut body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)
        .map_err(|_| ApiError::invalid(None, "The request body is not a JSON object."))?;
    if let Some(name) = rename {
        body.insert("model".into(), name.into());
    }
    if inject_usage {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(o) = options.as_object_mut() {
            o.insert("include_usage".into(), true.into());
        } else {
            *options = serde_json::json!({"include_usage": true});
        }
    }
    let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    Ok((Bytes::from(bytes), inject_usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_it_needs() {
        let h = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5,"extra":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(
            (h.model.as_str(), h.stream, h.include_usage),
            ("m", true, false)
        );
    }

    #[test]
    fn names_the_bad_field() {
        let e = parse(Endpoint::ChatCompletions, br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse(Endpoint::ChatCompletions, br#"{"model":"m"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse(Endpoint::ChatCompletions, br#"{"model":1,"messages":[1]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":"hi"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse(Endpoint::Embeddings, br#"{"model":"m"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        assert!(parse(Endpoint::ChatCompletions, b"not json")
            .unwrap_err()
            .param
            .is_none());
        assert!(parse(Endpoint::ChatCompletions, b"[1]").is_err());
    }

    #[test]
    fn rewrites_only_when_needed() {
        let raw = Bytes::from_static(br#"{"model":"a","messages":[1],"stream":true}"#);
        let head = parse(Endpoint::ChatCompletions, &raw).unwrap();
        let (body, strip) = upstream_body(&raw, &head, Some("b")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(strip);
        let raw = Bytes::from_static(br#"{"model":"a","messages":[1]}"#);
        let head = parse(Endpoint::ChatCompletions, &raw).unwrap();
        let (body, strip) = upstream_body(&raw, &head, None).unwrap();
        assert_eq!(body, raw);
        assert!(!strip);
    }
}
