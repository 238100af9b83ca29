//! Which models exist, which upstream serves each, and what they cost —
//! from the operator's `[[upstreams]]` and `[[models]]` configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use hyper::header::HeaderValue;
use hyper::Uri;
use keyward_core::{Micros, Price, UpstreamKind};

use crate::request::Endpoint;
use crate::upstream::Origin;
use serde::{Deserialize, Serialize};

/// Something that serves models: an OpenAI-compatible HTTP API, or a model
/// running inside this process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Any name; models refer to it.
    pub name: String,
    /// `openai`: any OpenAI-compatible HTTP API (OpenAI, vLLM, llama.cpp
    /// server, Ollama, …); `local`: the model running in this process.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// E.g. `https://api.openai.com/v1`; endpoint paths are appended.
    /// Required for `openai`, not used by `local`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the upstream's API key.
    pub api_key_env: Option<String>,
    /// The upstream's API key inline (prefer `api_key_env`).
    pub api_key: Option<String>,
    /// How long a call may take, e.g. `120s` (default 600s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Whether it serves OpenAI's Responses API itself (`native`, the
    /// default for `openai`) or only chat completions (`translate`:
    /// Keyward turns `/v1/responses` calls into chat completions and
    /// keeps the responses). `local` always translates.
    #[serde(default)]
    pub responses: Option<String>,
    /// This upstream serves `/v1/files` and `/v1/batches` (at most one
    /// upstream may). Without one, those endpoints answer 404.
    #[serde(default)]
    pub files: bool,
}

fn default_kind() -> String {
    UpstreamKind::OpenAi.as_str().into()
}

impl UpstreamConfig {
    /// The kind `kind` names; `None` for a name no kind has.
    pub fn upstream_kind(&self) -> Option<UpstreamKind> {
        UpstreamKind::parse(&self.kind)
    }
}

/// A model id clients ask for, and where it goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub id: String,
    pub upstream: String,
    /// The name the upstream knows the model by, if different.
    pub upstream_model: Option<String>,
    /// USD per million input tokens.
    #[serde(default)]
    pub input_price_per_mtok: f64,
    /// USD per million output tokens.
    #[serde(default)]
    pub output_price_per_mtok: f64,
    /// USD per million input tokens served from the upstream's prompt
    /// cache (default: the input price).
    #[serde(default)]
    pub cached_input_price_per_mtok: Option<f64>,
    /// USD per image generated, edited or varied.
    #[serde(default)]
    pub price_per_image: f64,
    /// USD per million characters turned into speech.
    #[serde(default)]
    pub price_per_mchar: f64,
    /// USD per minute of audio transcribed or translated.
    #[serde(default)]
    pub price_per_minute: f64,
    /// USD per request (moderations, which OpenAI does not bill by token).
    #[serde(default)]
    pub price_per_request: f64,
    /// The most output tokens the model produces, for budget reservations
    /// when a request sets no `max_tokens` (default 4096).
    pub max_output_tokens: Option<u64>,
}

/// A configured upstream, ready to call.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub transport: Transport,
    /// How it answers `/v1/responses`.
    pub responses: ResponsesMode,
}

/// How an upstream answers `/v1/responses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsesMode {
    /// It serves the Responses API: calls are forwarded as they came.
    Native,
    /// It speaks chat completions only: Keyward translates, and stores
    /// the responses itself.
    Translate,
}

impl ResponsesMode {
    fn of(u: &UpstreamConfig, kind: UpstreamKind) -> Result<ResponsesMode, String> {
        match (u.responses.as_deref(), kind) {
            (_, UpstreamKind::Local) | (Some("translate"), _) => Ok(ResponsesMode::Translate),
            (None | Some("native"), _) => Ok(ResponsesMode::Native),
            (Some(other), _) => Err(format!(
                "upstream `{}`: responses is `{other}`; it is `native` (the upstream serves /v1/responses) or `translate` (it speaks chat completions only)",
                u.name
            )),
        }
    }
}

/// How an upstream is reached.
pub enum Transport {
    Http(Box<HttpUpstream>),
    InProcess(Arc<dyn InProcess>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http(h) => h.fmt(f),
            Transport::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// An OpenAI-compatible HTTP API. Its credential is kept as a sensitive
/// header value, which `Debug` does not print.
#[derive(Debug)]
pub struct HttpUpstream {
    pub origin: Origin,
    /// The path of each model endpoint, parsed once.
    paths: Vec<(Endpoint, Uri)>,
    /// The base URL's path (`/v1`), for the paths built per call.
    base_path: String,
    pub authorization: Option<HeaderValue>,
    pub timeout: Duration,
}

impl HttpUpstream {
    /// The endpoint's path (origin-form, as sent on a connection to [`Self::origin`]).
    pub fn path(&self, endpoint: Endpoint) -> Uri {
        self.paths
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, uri)| uri.clone())
            .unwrap_or_else(|| Uri::from_static("/"))
    }

    /// `path` (e.g. `/files/file-abc/content?x=1`) after the base URL's
    /// path; `None` when it does not make a valid URI.
    pub fn path_to(&self, path: &str) -> Option<Uri> {
        format!("{}{path}", self.base_path).parse().ok()
    }
}

/// A model served inside this process: it takes the request body as the
/// client sent it (with the model name resolved) and answers in OpenAI's
/// format, exactly as an HTTP upstream would, so that limits, metering and
/// streaming treat both alike.
#[async_trait::async_trait]
pub trait InProcess: Send + Sync {
    async fn call(&self, endpoint: Endpoint, body: Bytes) -> InProcessReply;
}

/// What an in-process model answered.
pub struct InProcessReply {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    /// Seconds the client should wait before retrying (with 429 or 503).
    pub retry_after: Option<u32>,
    /// The body, chunk by chunk; dropping it cancels the work.
    pub body: BoxStream<'static, Bytes>,
}

/// One model, resolved.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    pub upstream: Arc<Upstream>,
    /// `Some` when the upstream knows the model by another name.
    pub rename: Option<String>,
    pub price: Price,
    pub max_output_tokens: u64,
}

impl Route {
    /// The name the upstream knows the model by.
    pub fn upstream_model(&self) -> &str {
        self.rename.as_deref().unwrap_or(&self.id)
    }
}

/// Every model the installation serves.
#[derive(Debug, Default)]
pub struct Catalog {
    routes: Vec<Arc<Route>>,
    by_id: HashMap<String, Arc<Route>>,
    upstreams: HashMap<String, Arc<Upstream>>,
    /// The upstream serving `/v1/files` and `/v1/batches`.
    files: Option<Arc<Upstream>>,
}

impl Catalog {
    /// Checks the configuration and resolves credentials from the
    /// environment. Upstreams of kind `local` are served by `in_process`,
    /// by name.
    pub fn new(
        upstreams: &[UpstreamConfig],
        models: &[ModelConfig],
        in_process: &HashMap<String, Arc<dyn InProcess>>,
    ) -> Result<Catalog, String> {
        let mut resolved: HashMap<&str, Arc<Upstream>> = HashMap::new();
        let mut files = None;
        for u in upstreams {
            let kind = u.upstream_kind();
            let transport = match kind {
                Some(UpstreamKind::OpenAi) => Transport::Http(Box::new(http_upstream(u)?)),
                Some(UpstreamKind::Local) => Transport::InProcess(in_process.get(&u.name).cloned().ok_or_else(|| {
                    format!(
                        "upstream `{}` has kind `local`, but the local model is not running (enable [local_model], or build with the `local-model` feature)",
                        u.name
                    )
                })?),
                None => {
                    return Err(format!(
                        "upstream `{}` has kind `{}`; the kinds are `openai` (any OpenAI-compatible HTTP API) and `local` (the model running in this process)",
                        u.name, u.kind
                    ))
                }
            };
            let responses = kind.map_or(Ok(ResponsesMode::Native), |k| ResponsesMode::of(u, k))?;
            let upstream = Arc::new(Upstream {
                name: u.name.clone(),
                transport,
                responses,
            });
            if u.files {
                if !matches!(upstream.transport, Transport::Http(_)) {
                    return Err(format!(
                        "upstream `{}`: files = true needs an `openai` upstream; the local model keeps no files",
                        u.name
                    ));
                }
                if let Some(other) = files.replace(upstream.clone()) {
                    let other: Arc<Upstream> = other;
                    return Err(format!(
                        "upstreams `{}` and `{}` both set files = true; one upstream serves /v1/files and /v1/batches",
                        other.name, u.name
                    ));
                }
            }
            if resolved.insert(u.name.as_str(), upstream).is_some() {
                return Err(format!(
                    "two upstreams are named `{}`; names must be unique",
                    u.name
                ));
            }
        }
        let mut catalog = Catalog {
            files,
            upstreams: resolved
                .iter()
                .map(|(name, u)| ((*name).to_owned(), u.clone()))
                .collect(),
            ..Catalog::default()
        };
        for m in models {
            let upstream = resolved.get(m.upstream.as_str()).ok_or_else(|| {
                format!(
                    "model `{}` names upstream `{}`, which is not configured",
                    m.id, m.upstream
                )
            })?;
            let price = |usd: f64, what: &str| {
                Micros::from_usd(usd).map_err(|e| format!("model `{}`: {what} {e}", m.id))
            };
            let route = Arc::new(Route {
                id: m.id.as_str().into(),
                upstream: upstream.clone(),
                rename: m.upstream_model.clone().filter(|n| n != &m.id),
                price: Price {
                    input_per_mtok: price(m.input_price_per_mtok, "input_price_per_mtok")?,
                    output_per_mtok: price(m.output_price_per_mtok, "output_price_per_mtok")?,
                    cached_input_per_mtok: m
                        .cached_input_price_per_mtok
                        .map(|usd| price(usd, "cached_input_price_per_mtok"))
                        .transpose()?,
                    per_image: price(m.price_per_image, "price_per_image")?,
                    per_mchar: price(m.price_per_mchar, "price_per_mchar")?,
                    per_minute: price(m.price_per_minute, "price_per_minute")?,
                    per_request: price(m.price_per_request, "price_per_request")?,
                },
                max_output_tokens: m.max_output_tokens.unwrap_or(4096),
            });
            if catalog.by_id.insert(m.id.clone(), route.clone()).is_some() {
                return Err(format!("model `{}` is configured twice", m.id));
            }
            catalog.routes.push(route);
        }
        Ok(catalog)
    }

    /// The route for `model` if it exists and `allowed` (a key's allow-list) permits it.
    pub fn route(&self, model: &str, allowed: impl Fn(&str) -> bool) -> Option<&Arc<Route>> {
        self.by_id.get(model).filter(|_| allowed(model))
    }

    /// The route `upstream` knows as `name` (its `upstream_model`), for
    /// answers that name the model as the upstream does.
    pub fn route_by_upstream_name(&self, upstream: &str, name: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.upstream.name == upstream && r.upstream_model() == name)
    }

    /// The upstream named `name` (where an object recorded as created there lives).
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// The upstream serving `/v1/files` and `/v1/batches`, if one does.
    pub fn files_upstream(&self) -> Option<&Arc<Upstream>> {
        self.files.as_ref()
    }

    /// The models a key may use, in configuration order.
    pub fn visible<'a>(
        &'a self,
        allowed: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Arc<Route>> + 'a {
        self.routes.iter().filter(move |r| allowed(&r.id))
    }
}

/// Checks an `openai` upstream's settings and resolves its credential.
fn http_upstream(u: &UpstreamConfig) -> Result<HttpUpstream, String> {
    let base = u
        .base_url
        .as_deref()
        .ok_or_else(|| format!("upstream `{}`: kind `openai` needs a base_url", u.name))?
        .trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(format!(
            "upstream `{}`: base_url must start with http:// or https://",
            u.name
        ));
    }
    let key = match (&u.api_key, &u.api_key_env) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
            format!(
                "upstream `{}`: the environment variable {var} named by api_key_env is not set",
                u.name
            )
        })?),
        (None, None) => None,
    };
    let authorization = key
        .map(|k| {
            let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                format!(
                    "upstream `{}`: the API key contains characters not allowed in a header",
                    u.name
                )
            })?;
            v.set_sensitive(true);
            Ok::<_, String>(v)
        })
        .transpose()?;
    let invalid = |e: &dyn std::fmt::Display| {
        format!("upstream `{}`: base_url is not a valid URL ({e})", u.name)
    };
    let base: Uri = base.parse().map_err(|e| invalid(&e))?;
    let origin = Origin::of(&base).map_err(|e| invalid(&e))?;
    let path = |endpoint: Endpoint| {
        format!("{}{}", base.path().trim_end_matches('/'), endpoint.path())
            .parse::<Uri>()
            .map_err(|e| invalid(&e))
    };
    Ok(HttpUpstream {
        origin,
        paths: Endpoint::ALL
            .into_iter()
            .map(|e| Ok((e, path(e)?)))
            .collect::<Result<_, String>>()?,
        base_path: base.path().trim_end_matches('/').to_owned(),
        authorization,
        timeout: u.timeout.unwrap_or(Duration::from_secs(600)),
    })
}
