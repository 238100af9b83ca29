//! The local model as a service: load the weights, start the worker, and
//! answer OpenAI-format requests with OpenAI-format responses.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::engine::{self, Event, Job, Shape};
use crate::openai::{self, error_body, Api, Finish, Prompt, Usage, Writer};

/// How to run the local model.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The model id clients ask for.
    pub id: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// Tokens one request may use, prompt and answer together.
    pub context_length: u32,
    /// Requests decoded together.
    pub max_sequences: u32,
    /// Requests that may wait for a free sequence; more are refused with 429.
    pub queue: usize,
    /// CPU threads for llama.cpp (default: every core).
    pub threads: Option<u32>,
}

/// Why the model could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the model file {0} does not exist; run `keyward model pull` or point KEYWARD_MODEL_PATH at a GGUF file")]
    Missing(PathBuf),
    #[error("cannot load the model {path}: {reason}. Check that it is a GGUF file llama.cpp can read (run `keyward model pull` to fetch the default one again)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot start the local model: {0}")]
    Start(String),
}

/// A loaded model and its worker. Cheap to clone; the worker stops when the
/// last clone is dropped and the running requests are done.
#[derive(Clone)]
pub struct LocalModel {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    model: Arc<LlamaModel>,
    template: Option<LlamaChatTemplate>,
    jobs: SyncSender<Job>,
    /// Requests being decoded right now.
    active: Arc<AtomicUsize>,
}

/// An answer, as an HTTP upstream would give it.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Seconds to wait before retrying, on 429.
    pub retry_after: Option<u32>,
    pub body: BoxStream<'static, Bytes>,
}

fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError::Start(e.clone()))
}

impl LocalModel {
    /// Loads the weights and starts the worker thread.
    pub fn load(settings: Settings) -> Result<LocalModel, LoadError> {
        if !settings.path.is_file() {
            return Err(LoadError::Missing(settings.path.clone()));
        }
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &settings.path, &LlamaModelParams::default())
                .map_err(|e| LoadError::Unreadable {
                    path: settings.path.clone(),
                    reason: e.to_string(),
                })?;
        let model = Arc::new(model);
        let template = model.chat_template(None).ok();
        let threads = settings.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
            |t| t as i32,
        );
        let shape = Shape {
            context_length: settings.context_length.min(model.n_ctx_train()).max(16),
            sequences: settings.max_sequences.max(1),
            batch: 512,
            threads,
        };
        let (jobs, queue) = sync_channel(settings.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker_model = model.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let worker_active = active.clone();
        std::thread::Builder::new()
            .name("keyward-llm".into())
            .spawn(move || {
                engine::run(backend, &worker_model, shape, queue, worker_active, |r| {
                    let _ = ready_tx.send(r);
                })
            })
            .map_err(|e| LoadError::Start(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| LoadError::Start("the worker thread ended".into()))?
            .map_err(LoadError::Start)?;
        let mut settings = settings;
        settings.context_length = shape.context_length;
        Ok(LocalModel {
            shared: Arc::new(Shared {
                settings,
                model,
                template,
                jobs,
                active,
            }),
        })
    }

    /// The model id clients ask for.
    pub fn id(&self) -> &str {
        &self.shared.settings.id
    }

    /// Requests being decoded right now (a client that disconnects stops
    /// counting at the worker's next step).
    pub fn active_sequences(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Tokens one request may use.
    pub fn context_length(&self) -> u32 {
        self.shared.settings.context_length
    }

    /// The tokens a prompt is read as, chat messages rendered with the
    /// model's chat template.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, String> {
        let model = &self.shared.model;
        let text = match prompt {
            Prompt::Text(t) => return Ok(model.vocab().tokenize(t.as_bytes(), true, false)),
            Prompt::Messages(messages) => {
                let Some(template) = &self.shared.template else {
                    return Err(
                        "The model file has no chat template; use /v1/completions with it.".into(),
                    );
                };
                let chat = messages
                    .iter()
                    .map(|(role, content)| LlamaChatMessage::new(role.clone(), content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "Message text must not contain NUL characters.".to_string())?;
                model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| format!("The chat template could not be applied: {e}"))?
            }
        };
        Ok(model.vocab().tokenize(text.as_bytes(), true, true))
    }

    /// Answers one request to `api` (chat or text completions).
    pub async fn serve(&self, api: Api, body: &[u8]) -> Reply {
        let req = match openai::parse(api, body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    400,
                    "invalid_request_error",
                    &e.message,
                    e.param.as_deref(),
                    e.code,
                )
            }
        };
        // The field that carries the prompt, named in errors about it.
        let prompt_param = if api == Api::Chat {
            "messages"
        } else {
            "prompt"
        };
        let prompt = match self.tokenize(&req.prompt) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                return error(
                    400,
                    "invalid_request_error",
                    "The prompt is empty.",
                    Some(prompt_param),
                    None,
                );
            }
            Err(message) => return error(400, "invalid_request_error", &message, None, None),
        };
        let limit = self.context_length();
        let room = limit.saturating_sub(prompt.len() as u32);
        let asked = req.max_tokens.unwrap_or(room);
        if room == 0 || asked > room {
            let message = match req.max_tokens {
                Some(max) => format!(
                    "This model's maximum context length is {limit} tokens. However, you requested {} tokens ({} in the messages, {max} in the completion). Please reduce the length of the messages or completion.",
                    prompt.len() as u32 + max, prompt.len()
                ),
                None => format!(
                    "This model's maximum context length is {limit} tokens. However, your messages resulted in {} tokens. Please reduce the length of the messages.",
                    prompt.len()
                ),
            };
            return error(
                400,
                "invalid_request_error",
                &message,
                Some(prompt_param),
                Some("context_length_exceeded"),
            );
        }
        let (events, rx) = unbounded_channel();
        let job = Job {
            prompt,
            max_new: asked,
            stop: req.stop.clone(),
            sampling: req.sampling,
            events,
        };
        match self.shared.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let mut reply = error(
                    429,
                    "rate_limit_error",
                    "The local model is busy: every sequence is in use and the queue is full. Try again in a second.",
                    None,
                    Some("model_busy"),
                );
                reply.retry_after = Some(1);
                return reply;
            }
            Err(TrySendError::Disconnected(_)) => {
                return error(
                    503,
                    "server_error",
                    "The local model has stopped. Tell the operator.",
                    None,
                    None,
                )
            }
        }
        let writer = Writer::new(api, self.id(), req.include_usage);
        if req.stream {
            Reply {
                status: 200,
                content_type: "text/event-stream",
                retry_after: None,
                body: sse(writer, rx),
            }
        } else {
            whole(writer, rx).await
        }
    }
}

/// Waits for the whole answer.
async fn whole(writer: Writer, mut rx: UnboundedReceiver<Event>) -> Reply {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done { finish, usage } => {
                let body = writer.completion(&text, finish, usage);
                return json_reply(200, &body);
            }
            Event::Failed(message) => return error(500, "server_error", &message, None, None),
        }
    }
    error(
        500,
        "server_error",
        "The local model stopped before answering. Try again.",
        None,
        None,
    )
}

/// The answer as server-sent events, chunk by chunk as tokens come.
fn sse(writer: Writer, rx: UnboundedReceiver<Event>) -> BoxStream<'static, Bytes> {
    let opening = writer.opening().map(|v| event(&v));
    let rest = stream::unfold(Some((writer, rx)), |state| async move {
        let (writer, mut rx) = state?;
        let chunk = match rx.recv().await {
            Some(Event::Text(t)) => event(&writer.delta(&t)),
            Some(Event::Done { finish, usage }) => {
                return Some((ending(&writer, finish, usage), None));
            }
            Some(Event::Failed(message)) => {
                let mut out = event(&error_body("server_error", &message, None, None)).to_vec();
                out.extend_from_slice(b"data: [DONE]\n\n");
                return Some((Bytes::from(out), None));
            }
            None => return None,
        };
        Some((chunk, Some((writer, rx))))
    });
    stream::iter(opening).chain(rest).boxed()
}

fn ending(writer: &Writer, finish: Finish, usage: Usage) -> Bytes {
    let mut out = event(&writer.closing(finish)).to_vec();
    if let Some(u) = writer.usage(usage) {
        out.extend_from_slice(&event(&u));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Bytes::from(out)
}

fn event(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    // A `Value` always serialises.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        retry_after: None,
        body: stream::iter([Bytes::from(body.to_string())]).boxed(),
    }
}

fn error(status: u16, kind: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    json_reply(status, &error_body(kind, message, param, code))
}
