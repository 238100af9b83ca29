//! Reading just enough of a request to route, limit and meter it. The body
//! is forwarded as it came, unless the model must be renamed or usage must
//! be asked for on a stream.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::ApiError;

pub mod form;
pub mod tokens;

pub use keyward_core::Endpoint;

/// Reads a request body whole, up to `limit` bytes: 413 beyond, 408 when
/// it comes too slowly, 400 when it breaks off.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::{BodyExt, Limited};
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| ApiError::unreadable_body(&*e, limit))
}

/// The field holding an endpoint's input, which must be present.
fn input_field(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "messages",
        Endpoint::Completions | Endpoint::ImagesGenerations => "prompt",
        Endpoint::Embeddings
        | Endpoint::Responses
        | Endpoint::Moderations
        | Endpoint::AudioSpeech => "input",
        // Multipart forms and batches are read elsewhere (`form`, `stored`).
        Endpoint::ImagesEdits
        | Endpoint::ImagesVariations
        | Endpoint::AudioTranscriptions
        | Endpoint::AudioTranslations
        | Endpoint::Batches => "file",
    }
}

/// The model OpenAI uses when a request names none, for the endpoints
/// where `model` is optional.
pub fn default_model(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::Moderations => Some("omni-moderation-latest"),
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
            Some("dall-e-2")
        }
        _ => None,
    }
}

/// Whether the endpoint can answer with a stream when asked.
fn streams(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Responses
            | Endpoint::ImagesGenerations
    )
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The fields the gateway reads; everything else passes through unread.
#[derive(Debug, Default)]
struct Fields {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    max_output_tokens: Option<i64>,
    n: Option<i64>,
    best_of: Option<i64>,
    /// How many messages there are.
    messages: Option<usize>,
    prompt: Option<()>,
    input: Option<()>,
    previous_response_id: Option<String>,
    store: Option<bool>,
    background: Option<bool>,
}

/// What the gateway knows of a request.
#[derive(Debug, Clone)]
pub struct Head {
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk of a stream.
    pub include_usage: bool,
    /// The most output tokens the client allows per choice:
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Both `max_tokens` and `max_completion_tokens` were sent, with
    /// different values: the body sent upstream must carry the priced one
    /// in both, so that whichever the upstream reads, it obeys it.
    pub max_tokens_differ: bool,
    /// The field `max_tokens` was read from, for errors.
    pub max_tokens_param: &'static str,
    /// How many completions the upstream may generate: `max(n, best_of)`.
    pub choices: u64,
    /// The prompt's tokens, when they were counted (see [`parse`]).
    pub prompt_tokens: Option<u64>,
    /// What the call may use in units other than tokens (images,
    /// characters, audio), for budget reservations.
    pub units: keyward_core::Measure,
    /// Responses: the response this one continues.
    pub previous_response_id: Option<String>,
    /// Responses: whether the upstream keeps it (OpenAI's default: yes).
    pub store: bool,
    /// Responses: run in the background (answered later, by id).
    pub background: bool,
}

/// The most completions one request may ask for (`n`), as OpenAI allows.
pub const MAX_N: i64 = 128;
/// The most images one request may ask for, as OpenAI allows.
pub const MAX_IMAGES: i64 = 10;
/// The most candidates `best_of` may ask for, as OpenAI allows.
pub const MAX_BEST_OF: i64 = 20;

impl Head {
    /// The output tokens the upstream may produce: the output limit (or
    /// `default`, the model's) for each choice.
    pub fn output_allowance(&self, default: u64) -> u64 {
        self.max_tokens
            .unwrap_or(default)
            .saturating_mul(self.choices)
    }

    /// 400 when the output limit is above what the model can produce, as
    /// OpenAI answers.
    pub fn check_output_limit(&self, model_max: u64) -> Result<(), ApiError> {
        match self.max_tokens {
            Some(asked) if asked > model_max => Err(ApiError::invalid(
                Some(self.max_tokens_param.into()),
                format!(
                    "max_tokens is too large: {asked}. This model supports at most {model_max} completion tokens, whereas you provided {asked}."
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The prompt's tokens: as counted, or else about four bytes of body each.
    pub fn prompt_estimate(&self, body_len: usize) -> u64 {
        self.prompt_tokens
            .unwrap_or_else(|| (body_len as u64).div_ceil(4))
    }
}

/// Parses and checks the fields the gateway needs; 400 naming the field
/// otherwise. With `count_prompt`, also counts the prompt's tokens in the
/// same pass (see [`tokens`]).
pub fn parse(endpoint: Endpoint, body: &[u8], count_prompt: bool) -> Result<Head, ApiError> {
    let not_json = || {
        ApiError::invalid(
            None,
            "We could not parse the JSON body of your request. The API expects a JSON object (Content-Type: application/json); check that your HTTP library sends one.",
        )
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_json());
    }
    let mut prompt = tokens::Prompt::new(endpoint, count_prompt);
    let fields = match read_fields(body, &mut prompt) {
        Ok(f) => f,
        Err(e) if e.is_syntax() || e.is_eof() => return Err(not_json()),
        Err(_) => {
            // Rare: parse again, tracking the path, to name the field.
            let mut track = serde_path_to_error::Track::new();
            let de = &mut serde_json::Deserializer::from_slice(body);
            let de = serde_path_to_error::Deserializer::new(de, &mut track);
            let e = match FieldsSeed(&mut tokens::Prompt::new(endpoint, false)).deserialize(de) {
                Err(e) => e,
                Ok(_) => return Err(not_json()),
            };
            let param = track.path().to_string();
            let detail = e.to_string();
            let detail = detail
                .split(" at line ")
                .next()
                .unwrap_or(&detail)
                .to_owned();
            return Err(ApiError::invalid(
                Some(param.clone()),
                format!("Invalid type for '{param}': {detail}."),
            ));
        }
    };
    let model = match (fields.model, default_model(endpoint)) {
        (Some(m), _) if !m.is_empty() => m,
        (None, Some(default)) => default.to_owned(),
        _ => {
            return Err(ApiError::invalid(
                Some("model".into()),
                "you must provide a model parameter",
            ))
        }
    };
    let input_present = match input_field(endpoint) {
        "messages" => fields.messages.is_some_and(|n| n > 0),
        "prompt" => fields.prompt.is_some(),
        _ => fields.input.is_some(),
    };
    if !input_present {
        let field = input_field(endpoint);
        return Err(ApiError::invalid(
            Some(field.into()),
            format!("Missing required parameter: '{field}'."),
        ));
    }
    let stream = fields.stream.unwrap_or(false) && streams(endpoint);
    let positive = |param: &'static str, v: Option<i64>, max: i64| match v {
        Some(v) if !(1..=max).contains(&v) => Err(ApiError::invalid(
            Some(param.into()),
            format!("Invalid '{param}': {v}. It must be an integer from 1 to {max}."),
        )),
        _ => Ok(v),
    };
    let max_tokens = positive("max_tokens", fields.max_tokens, i64::MAX)?;
    let max_completion_tokens = positive(
        "max_completion_tokens",
        fields.max_completion_tokens,
        i64::MAX,
    )?;
    let max_output_tokens = positive("max_output_tokens", fields.max_output_tokens, i64::MAX)?;
    let most_n = if endpoint == Endpoint::ImagesGenerations {
        MAX_IMAGES
    } else {
        MAX_N
    };
    let n = positive("n", fields.n, most_n)?.unwrap_or(1);
    let best_of = positive("best_of", fields.best_of, MAX_BEST_OF)?.unwrap_or(1);
    if fields.best_of.is_some() && best_of < n {
        return Err(ApiError::invalid(
            Some("best_of".into()),
            format!("Invalid 'best_of': {best_of}. It must be at least n ({n})."),
        ));
    }
    let choices = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => n.max(best_of) as u64,
        _ => 1,
    };
    let units = match endpoint {
        Endpoint::ImagesGenerations => keyward_core::Measure {
            images: n,
            ..Default::default()
        },
        Endpoint::Moderations => keyward_core::Measure {
            requests: 1,
            ..Default::default()
        },
        Endpoint::AudioSpeech => keyward_core::Measure {
            characters: speech_characters(body)?,
            ..Default::default()
        },
        _ => keyward_core::Measure::default(),
    };
    Ok(Head {
        endpoint,
        model,
        stream,
        include_usage: fields
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: max_output_tokens
            .or(max_completion_tokens)
            .or(max_tokens)
            .map(|v| v as u64),
        max_tokens_differ: max_tokens.is_some()
            && max_completion_tokens.is_some()
            && max_tokens != max_completion_tokens,
        max_tokens_param: if max_output_tokens.is_some() {
            "max_output_tokens"
        } else if max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        },
        choices,
        prompt_tokens: prompt.total(),
        units,
        previous_response_id: fields.previous_response_id,
        store: fields.store.unwrap_or(true),
        background: fields.background.unwrap_or(false),
    })
}

/// The characters of a speech request's `input`, which it is priced by.
fn speech_characters(body: &[u8]) -> Result<i64, ApiError> {
    #[derive(Deserialize)]
    struct Speech {
        input: String,
    }
    let speech: Speech = serde_json::from_slice(body).map_err(|_| {
        ApiError::invalid(
            Some("input".into()),
            "Invalid 'input': it must be the text to speak, a string.",
        )
    })?;
    Ok(i64::try_from(speech.input.chars().count()).unwrap_or(i64::MAX))
}

fn read_fields(body: &[u8], prompt: &mut tokens::Prompt) -> Result<Fields, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = FieldsSeed(prompt).deserialize(&mut de)?;
    de.end()?;
    Ok(fields)
}

/// Reads the top-level object: the fields above, the input through the
/// prompt counter, everything else skipped.
struct FieldsSeed<'p>(&'p mut tokens::Prompt);

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Fields, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let prompt = self.0;
        let mut f = Fields::default();
        while let Some(name) = map.next_key::<Name>()? {
            // A field given twice is refused inside its value, so that the
            // error names it.
            macro_rules! once {
                ($slot:expr, $name:literal) => {
                    if $slot.is_some() {
                        return map.next_value_seed(Duplicate($name));
                    }
                };
            }
            match name {
                Name::Model => {
                    once!(f.model, "model");
                    f.model = map.next_value()?;
                }
                Name::Stream => {
                    once!(f.stream, "stream");
                    f.stream = map.next_value()?;
                }
                Name::StreamOptions => {
                    once!(f.stream_options, "stream_options");
                    f.stream_options = map.next_value()?;
                }
                Name::MaxTokens => {
                    once!(f.max_tokens, "max_tokens");
                    f.max_tokens = map.next_value()?;
                }
                Name::MaxCompletionTokens => {
                    once!(f.max_completion_tokens, "max_completion_tokens");
                    f.max_completion_tokens = map.next_value()?;
                }
                Name::MaxOutputTokens => {
                    once!(f.max_output_tokens, "max_output_tokens");
                    f.max_output_tokens = map.next_value()?;
                }
                Name::PreviousResponseId => {
                    once!(f.previous_response_id, "previous_response_id");
                    f.previous_response_id = map.next_value()?;
                }
                Name::Store => {
                    once!(f.store, "store");
                    f.store = map.next_value()?;
                }
                Name::Background => {
                    once!(f.background, "background");
                    f.background = map.next_value()?;
                }
                Name::N => {
                    once!(f.n, "n");
                    f.n = map.next_value()?;
                }
                Name::BestOf => {
                    once!(f.best_of, "best_of");
                    f.best_of = map.next_value()?;
                }
                Name::Messages => {
                    once!(f.messages, "messages");
                    f.messages = map.next_value_seed(tokens::Messages(&mut *prompt))?;
                }
                Name::Prompt => {
                    once!(f.prompt, "prompt");
                    f.prompt = map.next_value_seed(tokens::Input(&mut *prompt))?;
                }
                Name::Input => {
                    once!(f.input, "input");
                    f.input = map.next_value_seed(tokens::Input(&mut *prompt))?;
                }
                Name::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }
}

/// The value of a field given twice: always an error.
struct Duplicate(&'static str);

impl<'de> DeserializeSeed<'de> for Duplicate {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<Fields, D::Error> {
        Err(de::Error::duplicate_field(self.0))
    }
}

/// A top-level field name.
enum Name {
    Model,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    MaxOutputTokens,
    PreviousResponseId,
    Store,
    Background,
    N,
    BestOf,
    Messages,
    Prompt,
    Input,
    Other,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                Ok(match s {
                    "model" => Name::Model,
                    "stream" => Name::Stream,
                    "stream_options" => Name::StreamOptions,
                    "max_tokens" => Name::MaxTokens,
                    "max_completion_tokens" => Name::MaxCompletionTokens,
                    "max_output_tokens" => Name::MaxOutputTokens,
                    "previous_response_id" => Name::PreviousResponseId,
                    "store" => Name::Store,
                    "background" => Name::Background,
                    "n" => Name::N,
                    "best_of" => Name::BestOf,
                    "messages" => Name::Messages,
                    "prompt" => Name::Prompt,
                    "input" => Name::Input,
                    _ => Name::Other,
                })
            }
        }
        de.deserialize_identifier(V)
    }
}

/// The body to send upstream, and whether the stream's usage chunk must be
/// removed before the client sees it (because Keyward, not the client, asked for it).
pub fn upstream_body(
    raw: &Bytes,
    head: &Head,
    rename: Option<&str>,
) -> Result<(Bytes, bool), ApiError> {
    // Only chat streams need asking for their usage; others report it.
    let inject_usage = head.stream
        && !head.include_usage
        && matches!(
            head.endpoint,
            Endpoint::ChatCompletions | Endpoint::Completions
        );
    if rename.is_none() && !inject_usage && !head.max_tokens_differ {
        return Ok((raw.clone(), false));
    }
    let mut body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)
        .map_err(|_| ApiError::invalid(None, "The request body is not a JSON object."))?;
    if let Some(name) = rename {
        body.insert("model".into(), name.into());
    }
    if let (true, Some(priced)) = (head.max_tokens_differ, head.max_tokens) {
        // The priced limit in both fields: old upstreams read only
        // `max_tokens`, new ones prefer `max_completion_tokens`.
        body.insert("max_tokens".into(), priced.into());
        body.insert("max_completion_tokens".into(), priced.into());
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
            false,
        )
        .unwrap();
        assert_eq!(
            (h.model.as_str(), h.stream, h.include_usage),
            ("m", true, false)
        );
    }

    #[test]
    fn names_the_bad_field() {
        let e = parse(Endpoint::ChatCompletions, br#"{"messages":[]}"#, false).unwrap_err();
        assert_eq!(e.param(), Some("model"));
        let e = parse(Endpoint::ChatCompletions, br#"{"model":"m"}"#, false).unwrap_err();
        assert_eq!(e.param(), Some("messages"));
        let e = parse(
            Endpoint::ChatCompletions,
            br#"{"model":1,"messages":[1]}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("model"));
        let e = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":"hi"}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("messages"));
        let e = parse(Endpoint::Embeddings, br#"{"model":"m"}"#, false).unwrap_err();
        assert_eq!(e.param(), Some("input"));
        assert!(parse(Endpoint::ChatCompletions, b"not json", false)
            .unwrap_err()
            .param()
            .is_none());
        assert!(parse(Endpoint::ChatCompletions, b"[1]", false).is_err());
        let e = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","model":"n","messages":[1]}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("model"));
        let e = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":[{"content":[{"text":5}]}],"stream":"yes"}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("stream"));
        assert!(parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":[1]} x"#,
            true
        )
        .is_err());
    }

    #[test]
    fn numbers_out_of_range_name_their_field() {
        let chat = |extra: &str| {
            let body = format!(r#"{{"model":"m","messages":[1]{extra}}}"#);
            parse(Endpoint::ChatCompletions, body.as_bytes(), false)
        };
        for (extra, param) in [
            (r#","max_tokens":9223372036854775807000"#, "max_tokens"),
            (r#","max_tokens":0"#, "max_tokens"),
            (r#","max_tokens":-1"#, "max_tokens"),
            (r#","max_tokens":1.5"#, "max_tokens"),
            (r#","max_completion_tokens":0"#, "max_completion_tokens"),
            (r#","n":0"#, "n"),
            (r#","n":129"#, "n"),
            (r#","n":1e30"#, "n"),
            (r#","best_of":21"#, "best_of"),
            (r#","n":3,"best_of":2"#, "best_of"),
        ] {
            let e = chat(extra).unwrap_err();
            assert_eq!(e.param(), Some(param), "{extra}: {}", e.message());
        }
        let h = chat(r#","max_tokens":9223372036854775807,"n":64"#).unwrap();
        assert_eq!(h.output_allowance(10), u64::MAX, "saturates, not wraps");
        assert!(h.check_output_limit(4096).is_err());
        let h = chat(r#","n":4,"best_of":6,"max_tokens":10"#).unwrap();
        assert_eq!((h.choices, h.output_allowance(99)), (6, 60));
        let h = chat("").unwrap();
        assert_eq!(h.output_allowance(100), 100);
    }

    #[test]
    fn the_priced_output_limit_goes_upstream_in_both_fields() {
        let raw = Bytes::from_static(
            br#"{"model":"a","messages":[1],"max_tokens":500,"max_completion_tokens":5}"#,
        );
        let head = parse(Endpoint::ChatCompletions, &raw, false).unwrap();
        assert_eq!(head.max_tokens, Some(5));
        let (body, _) = upstream_body(&raw, &head, None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (
                v["max_tokens"].as_u64(),
                v["max_completion_tokens"].as_u64()
            ),
            (Some(5), Some(5))
        );
    }

    #[test]
    fn rewrites_only_when_needed() {
        let raw = Bytes::from_static(br#"{"model":"a","messages":[1],"stream":true}"#);
        let head = parse(Endpoint::ChatCompletions, &raw, false).unwrap();
        let (body, strip) = upstream_body(&raw, &head, Some("b")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(strip);
        let raw = Bytes::from_static(br#"{"model":"a","messages":[1]}"#);
        let head = parse(Endpoint::ChatCompletions, &raw, false).unwrap();
        let (body, strip) = upstream_body(&raw, &head, None).unwrap();
        assert_eq!(body, raw);
        assert!(!strip);
    }
}
