//! The authorization matrix of docs/authorization.md: every route the
//! server documents in `/openapi.json`, the gateway's model routes (with
//! responses, files and batches) and the public routes, called by every
//! kind of caller on the objects of its own project and on another
//! account's, each answer's status (and error code) checked against the
//! spec. One server, built once; every wrong cell is collected and
//! reported in one table at the end. Another account's responses, files
//! and batches get the 404 of a made-up id, and the fake upstream must
//! never be sent a request naming either.
//!
//! A route in `/openapi.json` without a row in [`ROWS`] fails the test:
//! add a row (and its rule in [`expect`]) when adding a route.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use common::browser::Browser;
use common::upstream::{form as read_form, multipart};
use common::{keys_path, Server, PASSWORD};
use keyward_core::time::now_unix;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ------------------------------------------------------------------ routes

/// Every route the matrix covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ProjectsList,
    ProjectsCreate,
    ProjectRetrieve,
    ProjectModify,
    ProjectArchive,
    KeysList,
    KeysCreate,
    KeyRetrieve,
    KeyModify,
    KeyDelete,
    KeyRotate,
    AdminKeysList,
    AdminKeysCreate,
    AdminKeyRetrieve,
    AdminKeyDelete,
    AuditLogs,
    UsageCompletions,
    Costs,
    Notifications,
    ModelsList,
    ModelRetrieve,
    ChatCompletions,
    Completions,
    Embeddings,
    ResponsesCreate,
    ResponseRetrieve,
    ResponseDelete,
    ResponseCancel,
    ResponseInputItems,
    Moderations,
    ImagesGenerations,
    ImagesEdits,
    ImagesVariations,
    AudioSpeech,
    AudioTranscriptions,
    AudioTranslations,
    FilesUpload,
    FilesList,
    FileRetrieve,
    FileDelete,
    FileContent,
    BatchesCreate,
    BatchesList,
    BatchRetrieve,
    BatchCancel,
    Healthz,
    Readyz,
    OpenApi,
    KeysReport,
    GithubScanning,
}

/// One row of the matrix: a route as `/openapi.json` names it.
struct Row {
    method: &'static str,
    path: &'static str,
    route: Route,
    /// Listed in `/openapi.json` (the gateway's routes and the document
    /// itself are not).
    documented: bool,
}

const fn row(method: &'static str, path: &'static str, route: Route) -> Row {
    Row {
        method,
        path,
        route,
        documented: true,
    }
}

const fn undocumented(method: &'static str, path: &'static str, route: Route) -> Row {
    Row {
        method,
        path,
        route,
        documented: false,
    }
}

const PROJECT: &str = "/v1/organization/projects/{project_id}";
const RESPONSE: &str = "/v1/responses/{response_id}";
const FILE: &str = "/v1/files/{file_id}";
const KEY: &str = "/v1/organization/projects/{project_id}/api_keys/{key_id}";

const ROWS: &[Row] = &[
    row("GET", "/v1/organization/projects", Route::ProjectsList),
    row("POST", "/v1/organization/projects", Route::ProjectsCreate),
    row("GET", PROJECT, Route::ProjectRetrieve),
    row("POST", PROJECT, Route::ProjectModify),
    row(
        "POST",
        "/v1/organization/projects/{project_id}/archive",
        Route::ProjectArchive,
    ),
    row(
        "GET",
        "/v1/organization/projects/{project_id}/api_keys",
        Route::KeysList,
    ),
    row(
        "POST",
        "/v1/organization/projects/{project_id}/api_keys",
        Route::KeysCreate,
    ),
    row("GET", KEY, Route::KeyRetrieve),
    row("POST", KEY, Route::KeyModify),
    row("DELETE", KEY, Route::KeyDelete),
    row(
        "POST",
        "/v1/organization/projects/{project_id}/api_keys/{key_id}/rotate",
        Route::KeyRotate,
    ),
    row(
        "GET",
        "/v1/organization/admin_api_keys",
        Route::AdminKeysList,
    ),
    row(
        "POST",
        "/v1/organization/admin_api_keys",
        Route::AdminKeysCreate,
    ),
    row(
        "GET",
        "/v1/organization/admin_api_keys/{key_id}",
        Route::AdminKeyRetrieve,
    ),
    row(
        "DELETE",
        "/v1/organization/admin_api_keys/{key_id}",
        Route::AdminKeyDelete,
    ),
    row("GET", "/v1/organization/audit_logs", Route::AuditLogs),
    row(
        "GET",
        "/v1/organization/usage/completions",
        Route::UsageCompletions,
    ),
    row("GET", "/v1/organization/costs", Route::Costs),
    row(
        "GET",
        "/v1/organization/notifications",
        Route::Notifications,
    ),
    undocumented("GET", "/v1/models", Route::ModelsList),
    undocumented("GET", "/v1/models/{model}", Route::ModelRetrieve),
    undocumented("POST", "/v1/chat/completions", Route::ChatCompletions),
    undocumented("POST", "/v1/completions", Route::Completions),
    undocumented("POST", "/v1/embeddings", Route::Embeddings),
    undocumented("POST", "/v1/responses", Route::ResponsesCreate),
    undocumented("GET", RESPONSE, Route::ResponseRetrieve),
    undocumented("DELETE", RESPONSE, Route::ResponseDelete),
    undocumented(
        "POST",
        "/v1/responses/{response_id}/cancel",
        Route::ResponseCancel,
    ),
    undocumented(
        "GET",
        "/v1/responses/{response_id}/input_items",
        Route::ResponseInputItems,
    ),
    undocumented("POST", "/v1/moderations", Route::Moderations),
    undocumented("POST", "/v1/images/generations", Route::ImagesGenerations),
    undocumented("POST", "/v1/images/edits", Route::ImagesEdits),
    undocumented("POST", "/v1/images/variations", Route::ImagesVariations),
    undocumented("POST", "/v1/audio/speech", Route::AudioSpeech),
    undocumented(
        "POST",
        "/v1/audio/transcriptions",
        Route::AudioTranscriptions,
    ),
    undocumented("POST", "/v1/audio/translations", Route::AudioTranslations),
    undocumented("POST", "/v1/files", Route::FilesUpload),
    undocumented("GET", "/v1/files", Route::FilesList),
    undocumented("GET", FILE, Route::FileRetrieve),
    undocumented("DELETE", FILE, Route::FileDelete),
    undocumented("GET", "/v1/files/{file_id}/content", Route::FileContent),
    undocumented("POST", "/v1/batches", Route::BatchesCreate),
    undocumented("GET", "/v1/batches", Route::BatchesList),
    undocumented("GET", "/v1/batches/{batch_id}", Route::BatchRetrieve),
    undocumented("POST", "/v1/batches/{batch_id}/cancel", Route::BatchCancel),
    row("GET", "/healthz", Route::Healthz),
    row("GET", "/readyz", Route::Readyz),
    undocumented("GET", "/openapi.json", Route::OpenApi),
    row("POST", "/v1/keys/report", Route::KeysReport),
    row("POST", "/v1/secret-scanning/github", Route::GithubScanning),
];

/// How a route addresses objects, which decides the targets it is tried on.
enum Shape {
    /// No object: the caller's own account, or nothing.
    Plain,
    /// `project_ids[]` narrows it: tried without, with the own project and
    /// with another account's.
    Filter,
    /// A project in the path.
    Project,
    /// A project key in the path.
    Key,
    /// An admin key in the path.
    AdminKey,
    /// A response, file or batch in the path: tried on one of the caller's
    /// project's, one of another account's and a made-up id.
    Object,
    /// A response or file named in the body (`previous_response_id`,
    /// `input_file_id`): the same three.
    Refers,
}

impl Route {
    fn shape(self) -> Shape {
        use Route::*;
        match self {
            ProjectRetrieve | ProjectModify | ProjectArchive | KeysList | KeysCreate => {
                Shape::Project
            }
            KeyRetrieve | KeyModify | KeyDelete | KeyRotate => Shape::Key,
            AdminKeyRetrieve | AdminKeyDelete => Shape::AdminKey,
            AuditLogs | UsageCompletions | Costs => Shape::Filter,
            ResponseRetrieve | ResponseDelete | ResponseCancel | ResponseInputItems
            | FileRetrieve | FileDelete | FileContent | BatchRetrieve | BatchCancel => {
                Shape::Object
            }
            ResponsesCreate | BatchesCreate => Shape::Refers,
            _ => Shape::Plain,
        }
    }

    /// The kind of object the route names, by id.
    fn object(self) -> Option<Obj> {
        use Route::*;
        match self {
            ResponsesCreate | ResponseRetrieve | ResponseDelete | ResponseCancel
            | ResponseInputItems => Some(Obj::Response),
            FileRetrieve | FileDelete | FileContent | BatchesCreate => Some(Obj::File),
            BatchRetrieve | BatchCancel => Some(Obj::Batch),
            _ => None,
        }
    }

    fn public(self) -> bool {
        use Route::*;
        matches!(
            self,
            Healthz | Readyz | OpenApi | KeysReport | GithubScanning
        )
    }
}

/// The objects a project owns through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Response,
    File,
    Batch,
}

impl Obj {
    /// An id of the upstream's shape that no one was given.
    fn made_up(self) -> &'static str {
        match self {
            Obj::Response => "resp_madeup",
            Obj::File => "file-madeup",
            Obj::Batch => "batch_madeup",
        }
    }
}

// ----------------------------------------------------------------- callers

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    None,
    Read,
    Write,
}

/// A project key's access per group, in the spec's table order.
#[derive(Debug, Clone, Copy)]
struct Perms {
    models: Access,
    chat_completions: Access,
    embeddings: Access,
    usage: Access,
    keys: Access,
    responses: Access,
    moderations: Access,
    images: Access,
    audio: Access,
    files: Access,
    batch: Access,
}

const GROUPS: [&str; 11] = [
    "models",
    "chat_completions",
    "embeddings",
    "usage",
    "keys",
    "responses",
    "moderations",
    "images",
    "audio",
    "files",
    "batch",
];

impl Perms {
    /// What a key with these `permissions` may do, per the spec's table:
    /// `all` writes every group but reads usage and has no keys, `read_only`
    /// reads every group but keys, `restricted` has what it names.
    fn of(permissions: &Value) -> Perms {
        use Access::{Read, Write};
        let level = |g: &str| match (permissions["mode"].as_str(), g) {
            (Some("all" | "read_only"), "keys") => Access::None,
            (Some("all" | "read_only"), "usage") | (Some("read_only"), _) => Read,
            (Some("all"), _) => Write,
            _ => match permissions[g].as_str() {
                Some("read") => Read,
                Some("write") => Write,
                _ => Access::None,
            },
        };
        Perms {
            models: level("models"),
            chat_completions: level("chat_completions"),
            embeddings: level("embeddings"),
            usage: level("usage"),
            keys: level("keys"),
            responses: level("responses"),
            moderations: level("moderations"),
            images: level("images"),
            audio: level("audio"),
            files: level("files"),
            batch: level("batch"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    Member,
    Reader,
}

enum Kind {
    /// An admin key: the user's role in the project under test, if any.
    User(Option<Role>),
    /// A live project key of the project under test.
    Key {
        perms: Perms,
        permissions: Value,
        /// Made by another key (a restricted `keys=write` one).
        delegated: bool,
    },
    /// A key that must not be accepted: revoked, expired, malformed, dead
    /// with its maker or its owner's membership.
    Invalid,
    /// No Authorization header.
    Missing,
    /// A key used from outside its IP allow-list.
    IpBlocked,
}

struct Caller {
    label: String,
    secret: Option<String>,
    kind: Kind,
    /// A project key's own id; a user's own admin key's id.
    own_id: Option<String>,
}

impl Caller {
    fn is_user(&self) -> bool {
        matches!(self.kind, Kind::User(_))
    }
}

// ----------------------------------------------------------------- targets

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The route without an object (or without a filter).
    None,
    /// The project under test, or one of its keys (not made by the caller),
    /// or the caller's own admin key; or a response, file or batch of the
    /// project under test.
    Own,
    /// Another account's project, key, admin key, response, file or batch.
    Other,
    /// The calling project key itself.
    SelfKey,
    /// A key the calling project key made.
    Child,
    /// The key that made the calling (delegated) key.
    Maker,
    /// An id no one was given (objects).
    MadeUp,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::None => "-",
            Target::Own => "own",
            Target::Other => "other",
            Target::SelfKey => "self",
            Target::Child => "child",
            Target::Maker => "maker",
            Target::MadeUp => "made-up",
        }
    }
}

fn targets(route: Route, who: &Caller) -> Vec<Target> {
    match route.shape() {
        Shape::Plain => vec![Target::None],
        Shape::Filter => vec![Target::None, Target::Own, Target::Other],
        Shape::Project | Shape::AdminKey => vec![Target::Own, Target::Other],
        Shape::Object | Shape::Refers => vec![Target::Own, Target::Other, Target::MadeUp],
        Shape::Key => {
            let mut t = vec![Target::Own, Target::Other];
            if let Kind::Key {
                perms, delegated, ..
            } = &who.kind
            {
                // Revoking itself would end the caller's other cells.
                if route != Route::KeyDelete {
                    t.push(Target::SelfKey);
                }
                if perms.keys == Access::Write {
                    t.push(Target::Child);
                }
                if *delegated {
                    t.push(Target::Maker);
                }
            }
            t
        }
    }
}

// ---------------------------------------------------------------- outcomes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200: the call did what it asks.
    Ok,
    /// 404 `not_found`: the caller cannot see the object.
    NotFound,
    /// 401 `insufficient_permissions`.
    Insufficient,
    /// 401 `invalid_api_key`.
    InvalidKey,
    /// 401 without a code: no key was given.
    MissingKey,
    /// 403 `ip_not_allowed`.
    IpBlocked,
}

impl Outcome {
    fn describe(self) -> &'static str {
        match self {
            Outcome::Ok => "200",
            Outcome::NotFound => "404 not_found",
            Outcome::Insufficient => "401 insufficient_permissions",
            Outcome::InvalidKey => "401 invalid_api_key",
            Outcome::MissingKey => "401 (no key)",
            Outcome::IpBlocked => "403 ip_not_allowed",
        }
    }

    fn matches(self, status: StatusCode, body: &Value) -> bool {
        let code = &body["error"]["code"];
        match self {
            Outcome::Ok => status == StatusCode::OK,
            Outcome::NotFound => status == StatusCode::NOT_FOUND && code == "not_found",
            Outcome::Insufficient => {
                status == StatusCode::UNAUTHORIZED && code == "insufficient_permissions"
            }
            Outcome::InvalidKey => status == StatusCode::UNAUTHORIZED && code == "invalid_api_key",
            Outcome::MissingKey => {
                status == StatusCode::UNAUTHORIZED
                    && code.is_null()
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("You didn't provide an API key"))
            }
            Outcome::IpBlocked => status == StatusCode::FORBIDDEN && code == "ip_not_allowed",
        }
    }
}

/// What docs/authorization.md says `who` gets calling `route` on `target`.
fn expect(route: Route, who: &Caller, target: Target) -> Outcome {
    if route.public() {
        return Outcome::Ok;
    }
    match &who.kind {
        Kind::Invalid => Outcome::InvalidKey,
        Kind::Missing => Outcome::MissingKey,
        // "on every route that takes the key", whatever it addresses.
        Kind::IpBlocked => Outcome::IpBlocked,
        Kind::User(role) => expect_user(route, *role, target),
        Kind::Key { perms, .. } => expect_key(route, perms, target),
    }
}

/// An admin key reaches what its owner's dashboard session reaches: the
/// projects they are a member of (owner and member write, reader reads;
/// renaming and archiving are the owners'), and their own admin keys.
fn expect_user(route: Route, role: Option<Role>, target: Target) -> Outcome {
    use Outcome::*;
    use Route::*;
    let sees = match target {
        Target::None => true,
        Target::Own => role.is_some(),
        _ => false,
    };
    let writes = matches!(role, Some(Role::Owner | Role::Member));
    let owns = role == Some(Role::Owner);
    let gated = |allowed: bool| match (sees, allowed) {
        (false, _) => NotFound,
        (true, true) => Ok,
        (true, false) => Insufficient,
    };
    match route {
        ProjectsList | ProjectsCreate | AdminKeysList | AdminKeysCreate | Notifications => Ok,
        AdminKeyRetrieve | AdminKeyDelete => {
            if target == Target::Own {
                Ok
            } else {
                NotFound
            }
        }
        ProjectRetrieve | KeysList | KeyRetrieve | AuditLogs | UsageCompletions | Costs => {
            gated(true)
        }
        KeysCreate | KeyModify | KeyDelete | KeyRotate => gated(writes),
        ProjectModify | ProjectArchive => gated(owns),
        // Admin keys manage Keyward; they do not call models, nor own
        // responses, files or batches (those belong to projects).
        ModelsList | ModelRetrieve | ChatCompletions | Completions | Embeddings
        | ResponsesCreate | ResponseRetrieve | ResponseDelete | ResponseCancel
        | ResponseInputItems | Moderations | ImagesGenerations | ImagesEdits | ImagesVariations
        | AudioSpeech | AudioTranscriptions | AudioTranslations | FilesUpload | FilesList
        | FileRetrieve | FileDelete | FileContent | BatchesCreate | BatchesList | BatchRetrieve
        | BatchCancel => Insufficient,
        Healthz | Readyz | OpenApi | KeysReport | GithubScanning => Ok,
    }
}

/// A project key reaches its own project only, within its permissions; a
/// key changes only itself and the keys below it.
fn expect_key(route: Route, perms: &Perms, target: Target) -> Outcome {
    use Access::{Read, Write};
    use Outcome::*;
    use Route::*;
    let grant = |allowed: bool| if allowed { Ok } else { Insufficient };
    // A response, file or batch: the permission first, then only the
    // project's own objects; another's is as missing as a made-up id.
    let object = |allowed: bool| match (allowed, target) {
        (false, _) => Insufficient,
        (true, Target::Own) => Ok,
        (true, _) => NotFound,
    };
    match route {
        // Account-level routes: no group covers them.
        ProjectsList | ProjectsCreate | ProjectRetrieve | ProjectModify | ProjectArchive
        | AdminKeysList | AdminKeysCreate | AuditLogs | Notifications => Insufficient,
        // No project key can see an admin key.
        AdminKeyRetrieve | AdminKeyDelete => NotFound,
        UsageCompletions | Costs => match (perms.usage >= Read, target) {
            (false, _) => Insufficient,
            (true, Target::Other) => NotFound,
            (true, _) => Ok,
        },
        KeysList | KeyRetrieve => match target {
            Target::Other => NotFound,
            _ => grant(perms.keys >= Read),
        },
        KeysCreate => match target {
            Target::Other => NotFound,
            _ => grant(perms.keys == Write),
        },
        KeyModify | KeyDelete | KeyRotate => match target {
            Target::Other => NotFound,
            Target::SelfKey | Target::Child => grant(perms.keys == Write),
            // Siblings and makers are not below the caller.
            _ => Insufficient,
        },
        ModelsList | ModelRetrieve => grant(perms.models >= Read),
        ChatCompletions | Completions => grant(perms.chat_completions == Write),
        Embeddings => grant(perms.embeddings == Write),
        ResponsesCreate => object(perms.responses == Write),
        ResponseRetrieve | ResponseInputItems => object(perms.responses >= Read),
        ResponseDelete | ResponseCancel => object(perms.responses == Write),
        Moderations => grant(perms.moderations == Write),
        ImagesGenerations | ImagesEdits | ImagesVariations => grant(perms.images == Write),
        AudioSpeech | AudioTranscriptions | AudioTranslations => grant(perms.audio == Write),
        FilesUpload => grant(perms.files == Write),
        FilesList => grant(perms.files >= Read),
        FileRetrieve | FileContent => object(perms.files >= Read),
        FileDelete => object(perms.files == Write),
        // A batch of chat completions: write on batches and on what it
        // runs, and read on files for its input file.
        BatchesCreate => {
            object(perms.batch == Write && perms.chat_completions == Write && perms.files >= Read)
        }
        BatchesList => grant(perms.batch >= Read),
        BatchRetrieve => object(perms.batch >= Read),
        BatchCancel => object(perms.batch == Write),
        Healthz | Readyz | OpenApi | KeysReport | GithubScanning => Ok,
    }
}

// ---------------------------------------------------------------- fixtures

/// Everything the cells address, built once.
struct World<'s> {
    s: &'s Server,
    /// The project under test (its creator's Default project).
    p: String,
    /// Another account's project and one of its keys and admin keys.
    x: String,
    x_key: String,
    x_admin_key: String,
    /// The creator's admin key, which makes fresh objects for cells.
    admin: String,
    admin_key_id: String,
    /// A key of `p` made by its creator.
    sibling: String,
    /// The `keys=write` key that made the delegated key.
    maker: String,
    /// Per user caller, a project shaped like `p` for it to try archiving.
    archivable: HashMap<String, String>,
    github: SigningKey,
    since: i64,
    /// A key of `p` that writes everything, which makes the fresh
    /// responses, files and batches of the "own" cells.
    objects_key: String,
    /// Another account's project's response, file and batch.
    x_objects: Vec<(Obj, String)>,
    /// What the fake upstream was sent, and how much of it was setup.
    seen: Seen,
    seen_from: usize,
}

impl World<'_> {
    /// Another account's project's object of kind `obj`.
    fn other(&self, obj: Obj) -> &str {
        let (_, id) = self.x_objects.iter().find(|(o, _)| *o == obj).unwrap();
        id
    }

    /// Ids no caller of the matrix may see, nor make the upstream hear of.
    fn hidden_ids(&self) -> impl Iterator<Item = &str> {
        let made_up = [Obj::Response, Obj::File, Obj::Batch]
            .into_iter()
            .map(|obj| -> &str { obj.made_up() });
        self.x_objects
            .iter()
            .map(|(_, id)| id.as_str())
            .chain(made_up)
    }
}

const GITHUB_KEY_ID: &str = "matrix-key";
const FAKE_LEAK: &str = "sk-kw-thisisnotarealkeybutlookslikeoneXXXXXXXXXXXXXX";

/// Every request the fake upstream got: `METHOD /path body`.
type Seen = Arc<Mutex<Vec<String>>>;

/// An OpenAI-compatible upstream serving every model endpoint, responses,
/// files and batches, minting ids `resp_1`, `file-2`, `batch_3`, … and
/// logging every request it gets.
fn fake_upstream() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let app = Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let (log, next) = (log.clone(), next.clone());
                    async move { upstream_answer(&log, &next, &method, uri.path(), &headers, &body) }
                },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), seen)
}

/// What the fake upstream answers `method path`, minimally but in shape.
fn upstream_answer(
    log: &Mutex<Vec<String>>,
    next: &AtomicUsize,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    log.lock()
        .unwrap()
        .push(format!("{method} {path} {}", String::from_utf8_lossy(body)));
    let mint = |prefix: &str| format!("{prefix}{}", next.fetch_add(1, Ordering::Relaxed) + 1);
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = &request["model"];
    let usage = json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5});
    let response = |id: &str, status: &str| {
        json!({
            "id": id, "object": "response", "created_at": 1, "status": status, "model": "m",
            "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "ok", "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        })
    };
    let batch = |id: &str, status: &str| {
        json!({
            "id": id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": request["input_file_id"], "completion_window": "24h",
            "status": status, "output_file_id": null, "error_file_id": null,
            "created_at": 1, "model": "m", "usage": null
        })
    };
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let answer = match (method.as_str(), segments.as_slice()) {
        ("POST", ["chat", "completions"]) => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage
        }),
        ("POST", ["completions"]) => json!({
            "id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
            "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
            "usage": usage
        }),
        ("POST", ["embeddings"]) => json!({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.5]}],
            "usage": usage
        }),
        ("POST", ["responses"]) => response(&mint("resp_"), "completed"),
        ("GET", ["responses", id]) => response(id, "completed"),
        ("DELETE", ["responses", id]) => {
            json!({"id": id, "object": "response.deleted", "deleted": true})
        }
        ("POST", ["responses", id, "cancel"]) => response(id, "cancelled"),
        ("GET", ["responses", _, "input_items"]) => json!({
            "object": "list", "first_id": "msg_0", "last_id": "msg_0", "has_more": false,
            "data": [{"type": "message", "id": "msg_0", "role": "user",
                      "content": [{"type": "input_text", "text": "hi"}]}]
        }),
        ("POST", ["moderations"]) => json!({
            "id": "modr-1", "model": model,
            "results": [{"flagged": false, "categories": {}, "category_scores": {}}]
        }),
        ("POST", ["images", _]) => json!({
            "created": 1, "data": [{"b64_json": "aGk="}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        }),
        ("POST", ["audio", "speech"]) => {
            return ([(CONTENT_TYPE, "audio/mpeg")], b"ID3".to_vec()).into_response()
        }
        ("POST", ["audio", _]) => {
            json!({"text": "ok", "usage": {"type": "duration", "seconds": 1}})
        }
        ("POST", ["files"]) => {
            let parts = read_form(headers, body);
            let (filename, data) = &parts["file"];
            json!({
                "id": mint("file-"), "object": "file", "bytes": data.len(), "created_at": 1,
                "filename": filename, "purpose": String::from_utf8_lossy(&parts["purpose"].1),
                "status": "processed"
            })
        }
        ("GET", ["files", id]) => json!({
            "id": id, "object": "file", "bytes": 2, "created_at": 1,
            "filename": "in.jsonl", "purpose": "batch", "status": "processed"
        }),
        ("DELETE", ["files", id]) => json!({"id": id, "object": "file", "deleted": true}),
        ("GET", ["files", _, "content"]) => return "{}\n".into_response(),
        ("POST", ["batches"]) => batch(&mint("batch_"), "validating"),
        ("GET", ["batches", id]) => batch(id, "in_progress"),
        ("POST", ["batches", id, "cancel"]) => batch(id, "cancelling"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(answer).into_response()
}

fn start_server(dir: &std::path::Path, github: &SigningKey) -> (Server, Seen) {
    let keys_file = dir.join("github-keys.json");
    let pem = github
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let keys = json!({"public_keys": [
        {"key_identifier": GITHUB_KEY_ID, "key": pem, "is_current": true},
    ]});
    std::fs::write(&keys_file, keys.to_string()).unwrap();
    let (upstream, seen) = fake_upstream();
    let server = Server::start_with_config(
        &format!(
            r#"
[limits]
max_active_keys_per_project = 0

[secret_scanning]
reports_per_minute_per_ip = 1000000
github_public_keys_file = {keys_file:?}

[[upstreams]]
name = "fake"
base_url = "http://{upstream}/v1"
timeout = "5s"
responses = "native"
files = true

[[models]]
id = "m"
upstream = "fake"
input_price_per_mtok = 1.0
output_price_per_mtok = 1.0
price_per_image = 0.04
price_per_mchar = 15.0
price_per_minute = 0.006
price_per_request = 0.001
"#,
            keys_file = keys_file.display().to_string(),
        ),
        &[],
    );
    (server, seen)
}

/// POSTs `body` with `auth` and returns the created object, or panics.
fn created(s: &Server, path: &str, auth: &str, body: Value) -> Value {
    let r = s.post(path, auth, body.clone());
    assert_eq!(r.status, 200, "setup: POST {path} {body}: {}", r.body);
    r.body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn secret_of(v: &Value) -> String {
    v["value"].as_str().unwrap().to_owned()
}

/// A user's own admin key: (its id, the user's id).
fn own_admin_key(s: &Server, admin: &str) -> (String, String) {
    let r = s.get("/v1/organization/admin_api_keys", admin);
    assert_eq!(r.status, 200, "setup: {}", r.body);
    let k = &r.body["data"][0];
    (
        id_of(k),
        k["owner"]["user"]["id"].as_str().unwrap().to_owned(),
    )
}

/// Invites `invited`'s account to `project` as `role`; it accepts.
fn add_member(owner: &mut Browser, invited: &mut Browser, project: &str, email: &str, role: &str) {
    let link = owner.invite(project, email, role);
    let page = invited.accept(&link);
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "setup: adding {email} to {project} as {role}: {}",
        page.body
    );
}

/// A browser logged in as `email` (an account made with the CLI).
fn logged_in<'s>(s: &'s Server, email: &str) -> Browser<'s> {
    let mut b = Browser::new(s);
    let page = b.log_in(email, PASSWORD);
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "setup: log in {email}: {}",
        page.body
    );
    b
}

fn restricted(group: &str, level: &str) -> Value {
    let mut p = json!({"mode": "restricted"});
    p[group] = json!(level);
    p
}

/// A batch of chat completions reading `file`.
fn batch_body(file: &str) -> Value {
    json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
}

/// A file to upload, as a multipart form.
fn upload_form() -> Body {
    form(&[
        ("purpose", None, b"batch"),
        ("file", Some("in.jsonl"), b"{}"),
    ])
}

fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Body {
    let (content_type, body) = multipart(parts);
    Body::Form(content_type, body)
}

/// A new response, file or batch of the project of the key `auth`.
fn make_object(s: &Server, auth: &str, obj: Obj) -> Result<String, String> {
    let (path, body) = match obj {
        Obj::Response => (
            "/v1/responses",
            Body::Json(json!({"model": "m", "input": "hi"})),
        ),
        Obj::File => ("/v1/files", upload_form()),
        Obj::Batch => (
            "/v1/batches",
            Body::Json(batch_body(&make_object(s, auth, Obj::File)?)),
        ),
    };
    let req = Request {
        method: "POST",
        path: path.to_owned(),
        body,
    };
    match send_as(s, Some(auth), req) {
        (StatusCode::OK, v) => Ok(id_of(&v)),
        (status, v) => Err(format!("setup: creating a {obj:?} got {status}: {v}")),
    }
}

fn build(s: &Server, github: SigningKey, seen: Seen) -> (World<'_>, Vec<Caller>) {
    let since = now_unix() - 86_400;
    // The accounts: the project's creator, users it adds through the
    // dashboard, a stranger with a project of its own, and the account
    // whose objects are the "other" targets.
    let creator = s.create_operator("creator@example.com");
    let p = s.default_project(&creator);
    let expires_at = now_unix() + 2;
    let expiring = created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "expiring", "expires_at": expires_at}),
    );
    let users: Vec<(&str, &str, Option<Role>)> = vec![
        ("owner", "co-owner@example.com", Some(Role::Owner)),
        ("member", "member@example.com", Some(Role::Member)),
        ("reader", "reader@example.com", Some(Role::Reader)),
        ("non-member (removed)", "former@example.com", None),
    ];
    let user_keys: Vec<String> = users
        .iter()
        .map(|(_, email, _)| s.create_operator(email))
        .collect();
    let stranger = s.create_operator("stranger@example.com");
    let other_admin = s.create_operator("other@example.com");
    let x = s.default_project(&other_admin);
    let x_key = id_of(&created(
        s,
        &keys_path(&x),
        &other_admin,
        json!({"name": "other's"}),
    ));
    let (x_admin_key, _) = own_admin_key(s, &other_admin);
    let (admin_key_id, _) = own_admin_key(s, &creator);

    // Membership, through the dashboard.
    let mut browser = Browser::new(s);
    let page = browser.log_in("creator@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "log in: {}", page.body);
    let mut sessions: HashMap<&str, Browser> = users
        .iter()
        .map(|(_, email, _)| (*email, logged_in(s, email)))
        .collect();
    for (_, email, role) in &users {
        let role = match role {
            Some(Role::Owner) => "owner",
            Some(Role::Reader) => "reader",
            // The former member is a member until removed below.
            Some(Role::Member) | None => "member",
        };
        let invited = sessions.get_mut(email).unwrap();
        add_member(&mut browser, invited, &p, email, role);
    }
    // The former member makes a key, then is removed: the key dies with
    // the membership.
    let former = &user_keys[3];
    let former_key = created(
        s,
        &keys_path(&p),
        former,
        json!({"name": "former member's"}),
    );
    let (_, former_id) = own_admin_key(s, former);
    let csrf = browser.get("/projects").csrf();
    let page = browser.post(
        &format!("/projects/{p}/members/{former_id}/remove"),
        &[("csrf_token", &csrf)],
    );
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "remove member: {}",
        page.body
    );

    // Callers.
    let mut callers = vec![Caller {
        label: "admin key: creator (owner)".into(),
        secret: Some(creator.clone()),
        kind: Kind::User(Some(Role::Owner)),
        own_id: Some(admin_key_id.clone()),
    }];
    for ((label, _, role), key) in users.iter().zip(&user_keys) {
        callers.push(Caller {
            label: format!("admin key: {label}"),
            secret: Some(key.clone()),
            kind: Kind::User(*role),
            own_id: Some(own_admin_key(s, key).0),
        });
    }
    callers.push(Caller {
        label: "admin key: other account".into(),
        secret: Some(stranger.clone()),
        kind: Kind::User(None),
        own_id: Some(own_admin_key(s, &stranger).0),
    });

    let mut specs: Vec<(String, Value)> = vec![
        ("key all".into(), json!({"mode": "all"})),
        ("key read_only".into(), json!({"mode": "read_only"})),
        ("key restricted, none".into(), json!({"mode": "restricted"})),
    ];
    for g in GROUPS {
        for level in ["read", "write"] {
            specs.push((format!("key {g}={level}"), restricted(g, level)));
        }
    }
    // What creating a batch of chat completions takes.
    specs.push((
        "key batch=write, files=read, chat_completions=write".into(),
        json!({"mode": "restricted", "batch": "write", "files": "read", "chat_completions": "write"}),
    ));
    for (label, permissions) in specs {
        let k = created(
            s,
            &keys_path(&p),
            &creator,
            json!({"name": label, "permissions": permissions}),
        );
        callers.push(Caller {
            label,
            secret: Some(secret_of(&k)),
            kind: Kind::Key {
                perms: Perms::of(&permissions),
                permissions,
                delegated: false,
            },
            own_id: Some(id_of(&k)),
        });
    }
    // The delegated key's maker is not a caller itself, so a cell that
    // wrongly changes or revokes it spoils only the delegated key's cells.
    let keys_write = restricted("keys", "write");
    let maker = created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "maker", "permissions": keys_write}),
    );
    let delegated = created(
        s,
        &keys_path(&p),
        &secret_of(&maker),
        json!({"name": "delegated", "permissions": keys_write}),
    );
    callers.push(Caller {
        label: "key delegated (keys=write)".into(),
        secret: Some(secret_of(&delegated)),
        kind: Kind::Key {
            perms: Perms::of(&keys_write),
            permissions: keys_write.clone(),
            delegated: true,
        },
        own_id: Some(id_of(&delegated)),
    });

    // Keys that must not work.
    let mut invalid = |label: &str, secret: String| {
        callers.push(Caller {
            label: label.into(),
            secret: Some(secret),
            kind: Kind::Invalid,
            own_id: None,
        })
    };
    let dead_maker = created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "revoked maker", "permissions": keys_write}),
    );
    let orphan = created(
        s,
        &keys_path(&p),
        &secret_of(&dead_maker),
        json!({"name": "orphan", "permissions": keys_write}),
    );
    let r = s.delete(&common::key_path(&p, &id_of(&dead_maker)), &creator);
    assert_eq!(r.status, 200, "setup: revoke the maker: {}", r.body);
    invalid("key delegated, maker revoked", secret_of(&orphan));
    invalid("key of the removed member", secret_of(&former_key));
    let revoked = created(s, &keys_path(&p), &creator, json!({"name": "revoked"}));
    let r = s.delete(&common::key_path(&p, &id_of(&revoked)), &creator);
    assert_eq!(r.status, 200, "setup: revoke: {}", r.body);
    invalid("key revoked", secret_of(&revoked));
    invalid("key expired", secret_of(&expiring));
    let revoked_admin = created(
        s,
        "/v1/organization/admin_api_keys",
        &creator,
        json!({"name": "revoked"}),
    );
    let r = s.delete(
        &format!("/v1/organization/admin_api_keys/{}", id_of(&revoked_admin)),
        &creator,
    );
    assert_eq!(r.status, 200, "setup: revoke admin key: {}", r.body);
    invalid("admin key revoked", secret_of(&revoked_admin));
    invalid("malformed key", "sk-kw-this-is-not-a-key".into());
    let mut everything = json!({"mode": "restricted"});
    for g in GROUPS {
        everything[g] = json!("write");
    }
    let fenced = created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "fenced", "permissions": everything, "allowed_ips": ["203.0.113.0/24"]}),
    );
    callers.push(Caller {
        label: "key outside its IP allow-list".into(),
        secret: Some(secret_of(&fenced)),
        kind: Kind::IpBlocked,
        own_id: Some(id_of(&fenced)),
    });
    callers.push(Caller {
        label: "no key".into(),
        secret: None,
        kind: Kind::Missing,
        own_id: None,
    });

    // A project shaped like `p` for each user to try archiving.
    let mut archivable = HashMap::new();
    for who in callers.iter().filter(|c| c.is_user()) {
        let project = id_of(&created(
            s,
            "/v1/organization/projects",
            &creator,
            json!({"name": "to archive"}),
        ));
        for (_, email, role) in &users[..3] {
            let role = match role {
                Some(Role::Owner) => "owner",
                Some(Role::Member) => "member",
                _ => "reader",
            };
            let invited = sessions.get_mut(email).unwrap();
            add_member(&mut browser, invited, &project, email, role);
        }
        archivable.insert(who.label.clone(), project);
    }

    let sibling = id_of(&created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "sibling"}),
    ));

    // Responses, files and batches: a key of `p` makes the own ones cell
    // by cell; the other account's are made once.
    let objects_key = secret_of(&created(
        s,
        &keys_path(&p),
        &creator,
        json!({"name": "objects", "permissions": {"mode": "all"}}),
    ));
    let x_writer = secret_of(&created(
        s,
        &keys_path(&x),
        &other_admin,
        json!({"name": "other's objects", "permissions": {"mode": "all"}}),
    ));
    let x_objects = [Obj::Response, Obj::File, Obj::Batch]
        .into_iter()
        .map(|obj| (obj, make_object(s, &x_writer, obj).unwrap()))
        .collect();
    let seen_from = seen.lock().unwrap().len();

    // The expiring key must have expired before the cells run.
    while now_unix() <= expires_at {
        std::thread::sleep(Duration::from_millis(100));
    }

    let world = World {
        s,
        p,
        x,
        x_key,
        x_admin_key,
        admin: creator,
        admin_key_id,
        sibling,
        maker: id_of(&maker),
        archivable,
        github,
        since,
        objects_key,
        x_objects,
        seen,
        seen_from,
    };
    (world, callers)
}

// ------------------------------------------------------------------- cells

struct Cell {
    row: &'static Row,
    caller: usize,
    target: Target,
    expected: Outcome,
    /// Cells that would spoil shared fixtures if wrongly allowed run after
    /// the others, in this order.
    phase: u8,
}

fn phase(route: Route, who: &Caller, target: Target) -> u8 {
    match (route, target) {
        (Route::KeyRotate, Target::SelfKey) => 1,
        (Route::KeyModify | Route::KeyRotate, Target::Maker) => 2,
        (Route::KeyDelete, Target::Maker) => 3,
        (Route::ProjectArchive, Target::Other) => 4,
        // Project keys live in `p`: they can only try archiving it.
        (Route::ProjectArchive, Target::Own) if !who.is_user() => 5,
        // The other account's objects are shared by every caller's cells.
        (
            Route::ResponseDelete | Route::ResponseCancel | Route::FileDelete | Route::BatchCancel,
            Target::Other,
        ) => 6,
        _ => 0,
    }
}

const PHASES: u8 = 7;

enum Body {
    None,
    Json(Value),
    /// A body signed as GitHub's secret scanning signs it.
    Signed(Vec<u8>, String),
    /// A `multipart/form-data` body and its content type.
    Form(String, Vec<u8>),
}

struct Request {
    method: &'static str,
    path: String,
    body: Body,
}

/// A fresh key of `project` made with `auth`, for a cell to change.
fn fresh_key(w: &World, auth: &str, project: &str, body: Value) -> Result<String, String> {
    let r = w.s.post(&keys_path(project), auth, body);
    if r.status == 200 {
        Ok(id_of(&r.body))
    } else {
        Err(format!(
            "setup: creating a key got {}: {}",
            r.status, r.body
        ))
    }
}

/// A fresh admin key of the user behind `auth`, for a cell to revoke.
fn fresh_admin_key(w: &World, auth: &str) -> Result<String, String> {
    let r = w.s.post(
        "/v1/organization/admin_api_keys",
        auth,
        json!({"name": "fresh"}),
    );
    if r.status == 200 {
        Ok(id_of(&r.body))
    } else {
        Err(format!(
            "setup: creating an admin key got {}: {}",
            r.status, r.body
        ))
    }
}

fn filter(path: &str, w: &World, target: Target) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    match target {
        Target::Own => format!("{path}{sep}project_ids[]={}", w.p),
        Target::Other => format!("{path}{sep}project_ids[]={}", w.x),
        _ => path.to_owned(),
    }
}

/// The request a cell sends, after making the fresh objects it needs.
fn request(w: &World, who: &Caller, row: &Row, target: Target) -> Result<Request, String> {
    use Route::*;
    let project = match target {
        Target::Other => w.x.as_str(),
        _ => w.p.as_str(),
    };
    let key = || -> Result<String, String> {
        match target {
            Target::Other => Ok(w.x_key.clone()),
            Target::SelfKey => Ok(who.own_id.clone().unwrap()),
            Target::Maker => Ok(w.maker.clone()),
            Target::Child => {
                let Kind::Key { permissions, .. } = &who.kind else {
                    unreachable!()
                };
                fresh_key(
                    w,
                    who.secret.as_deref().unwrap(),
                    &w.p,
                    json!({"name": "child", "permissions": permissions}),
                )
            }
            _ if row.route == KeyRetrieve => Ok(w.sibling.clone()),
            _ => fresh_key(w, &w.admin, &w.p, json!({"name": "fresh"})),
        }
    };
    let key_path = |k: String| format!("/v1/organization/projects/{project}/api_keys/{k}");
    // The response, file or batch the cell names.
    let object = |obj: Obj| -> Result<String, String> {
        match target {
            Target::Other => Ok(w.other(obj).to_owned()),
            Target::MadeUp => Ok(obj.made_up().to_owned()),
            _ => make_object(w.s, &w.objects_key, obj),
        }
    };
    let (path, body) = match row.route {
        ProjectsList => ("/v1/organization/projects".to_owned(), Body::None),
        ProjectsCreate => (
            "/v1/organization/projects".to_owned(),
            Body::Json(json!({"name": "made by a cell"})),
        ),
        ProjectRetrieve => (format!("/v1/organization/projects/{project}"), Body::None),
        ProjectModify => (
            format!("/v1/organization/projects/{project}"),
            // Both projects are Default projects: the name stays.
            Body::Json(json!({"name": "Default project"})),
        ),
        ProjectArchive => {
            let project = match (target, w.archivable.get(&who.label)) {
                (Target::Own, Some(mine)) => mine.as_str(),
                _ => project,
            };
            (
                format!("/v1/organization/projects/{project}/archive"),
                Body::None,
            )
        }
        KeysList => (keys_path(project), Body::None),
        KeysCreate => (
            keys_path(project),
            // Narrower than any key, so a key with keys=write may make it.
            Body::Json(json!({"name": "made by a cell", "permissions": {"mode": "restricted"}})),
        ),
        KeyRetrieve => (key_path(key()?), Body::None),
        KeyModify => (
            key_path(key()?),
            Body::Json(json!({"name": "renamed by a cell"})),
        ),
        KeyDelete => (key_path(key()?), Body::None),
        KeyRotate => {
            // A key rotating itself keeps its old secret for its other cells.
            let grace = if target == Target::SelfKey { 3600 } else { 0 };
            (
                format!("{}/rotate", key_path(key()?)),
                Body::Json(json!({"grace_period_seconds": grace})),
            )
        }
        AdminKeysList => ("/v1/organization/admin_api_keys".to_owned(), Body::None),
        AdminKeysCreate => (
            "/v1/organization/admin_api_keys".to_owned(),
            Body::Json(json!({"name": "made by a cell"})),
        ),
        AdminKeyRetrieve | AdminKeyDelete => {
            let id = match (target, &who.kind) {
                (Target::Other, _) => w.x_admin_key.clone(),
                (_, Kind::User(_)) if row.route == AdminKeyRetrieve => who.own_id.clone().unwrap(),
                (_, Kind::User(_)) => fresh_admin_key(w, who.secret.as_deref().unwrap())?,
                // Not the caller's: the creator's.
                _ if row.route == AdminKeyRetrieve => w.admin_key_id.clone(),
                _ => fresh_admin_key(w, &w.admin)?,
            };
            (format!("/v1/organization/admin_api_keys/{id}"), Body::None)
        }
        AuditLogs => (filter("/v1/organization/audit_logs", w, target), Body::None),
        UsageCompletions => (
            filter(
                &format!(
                    "/v1/organization/usage/completions?start_time={}&bucket_width=1h",
                    w.since
                ),
                w,
                target,
            ),
            Body::None,
        ),
        Costs => (
            filter(
                &format!("/v1/organization/costs?start_time={}", w.since),
                w,
                target,
            ),
            Body::None,
        ),
        Notifications => ("/v1/organization/notifications".to_owned(), Body::None),
        ModelsList => ("/v1/models".to_owned(), Body::None),
        ModelRetrieve => ("/v1/models/m".to_owned(), Body::None),
        ChatCompletions => (
            "/v1/chat/completions".to_owned(),
            Body::Json(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
        ),
        Completions => (
            "/v1/completions".to_owned(),
            Body::Json(json!({"model": "m", "prompt": "hi"})),
        ),
        Embeddings => (
            "/v1/embeddings".to_owned(),
            Body::Json(json!({"model": "m", "input": "hi"})),
        ),
        ResponsesCreate => (
            "/v1/responses".to_owned(),
            Body::Json(
                json!({"model": "m", "input": "hi", "previous_response_id": object(Obj::Response)?}),
            ),
        ),
        ResponseRetrieve | ResponseDelete => (
            format!("/v1/responses/{}", object(Obj::Response)?),
            Body::None,
        ),
        ResponseCancel => (
            format!("/v1/responses/{}/cancel", object(Obj::Response)?),
            Body::None,
        ),
        ResponseInputItems => (
            format!("/v1/responses/{}/input_items", object(Obj::Response)?),
            Body::None,
        ),
        Moderations => (
            "/v1/moderations".to_owned(),
            Body::Json(json!({"model": "m", "input": "hi"})),
        ),
        ImagesGenerations => (
            "/v1/images/generations".to_owned(),
            Body::Json(json!({"model": "m", "prompt": "a cat"})),
        ),
        ImagesEdits => (
            "/v1/images/edits".to_owned(),
            form(&[
                ("model", None, b"m"),
                ("prompt", None, b"a hat"),
                ("image", Some("cat.png"), b"PNG"),
            ]),
        ),
        ImagesVariations => (
            "/v1/images/variations".to_owned(),
            form(&[("model", None, b"m"), ("image", Some("cat.png"), b"PNG")]),
        ),
        AudioSpeech => (
            "/v1/audio/speech".to_owned(),
            Body::Json(json!({"model": "m", "input": "hi", "voice": "alloy"})),
        ),
        AudioTranscriptions | AudioTranslations => (
            row.path.to_owned(),
            form(&[
                ("model", None, b"m"),
                ("file", Some("hi.mp3"), b"ID3 audio"),
            ]),
        ),
        FilesUpload => ("/v1/files".to_owned(), upload_form()),
        FilesList => ("/v1/files".to_owned(), Body::None),
        FileRetrieve | FileDelete => (format!("/v1/files/{}", object(Obj::File)?), Body::None),
        FileContent => (
            format!("/v1/files/{}/content", object(Obj::File)?),
            Body::None,
        ),
        BatchesCreate => (
            "/v1/batches".to_owned(),
            Body::Json(batch_body(&object(Obj::File)?)),
        ),
        BatchesList => ("/v1/batches".to_owned(), Body::None),
        BatchRetrieve => (format!("/v1/batches/{}", object(Obj::Batch)?), Body::None),
        BatchCancel => (
            format!("/v1/batches/{}/cancel", object(Obj::Batch)?),
            Body::None,
        ),
        Healthz => ("/healthz".to_owned(), Body::None),
        Readyz => ("/readyz".to_owned(), Body::None),
        OpenApi => ("/openapi.json".to_owned(), Body::None),
        KeysReport => (
            "/v1/keys/report".to_owned(),
            Body::Json(json!({"keys": [FAKE_LEAK], "source": "authorization matrix"})),
        ),
        GithubScanning => {
            let body = b"[]".to_vec();
            let sig: Signature = w.github.sign(&body);
            let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
            (
                "/v1/secret-scanning/github".to_owned(),
                Body::Signed(body, sig),
            )
        }
    };
    Ok(Request {
        method: row.method,
        path,
        body,
    })
}

fn send(w: &World, who: &Caller, req: Request) -> (StatusCode, Value) {
    send_as(w.s, who.secret.as_deref(), req)
}

fn send_as(s: &Server, secret: Option<&str>, req: Request) -> (StatusCode, Value) {
    let mut rb = s.client.request(
        req.method.parse().unwrap(),
        format!("{}{}", s.base, req.path),
    );
    if let Some(k) = secret {
        rb = rb.bearer_auth(k);
    }
    rb = match req.body {
        Body::None => rb,
        Body::Json(v) => rb.json(&v),
        Body::Signed(bytes, sig) => rb
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", GITHUB_KEY_ID)
            .header("Github-Public-Key-Signature", sig)
            .body(bytes),
        Body::Form(content_type, bytes) => rb.header("content-type", content_type).body(bytes),
    };
    let resp = rb
        .send()
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.path));
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

struct Mismatch {
    order: usize,
    route: String,
    caller: String,
    target: &'static str,
    expected: String,
    got: String,
}

fn run_cell(w: &World, callers: &[Caller], order: usize, cell: &Cell) -> Option<Mismatch> {
    let who = &callers[cell.caller];
    let mismatch = |got: String| Mismatch {
        order,
        route: format!("{} {}", cell.row.method, cell.row.path),
        caller: who.label.clone(),
        target: cell.target.name(),
        expected: cell.expected.describe().to_owned(),
        got,
    };
    let req = match request(w, who, cell.row, cell.target) {
        Ok(r) => r,
        Err(e) => return Some(mismatch(e)),
    };
    let (status, body) = send(w, who, req);
    if cell.expected.matches(status, &body) {
        return check_hidden(w, who, cell, &body).map(mismatch);
    }
    let error = &body["error"];
    let got = if error.is_object() {
        let message: String = error["message"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(90)
            .collect();
        format!(
            "{} {}: {message}",
            status.as_u16(),
            error["code"].as_str().unwrap_or("(no code)")
        )
    } else {
        status.as_u16().to_string()
    };
    Some(mismatch(got))
}

/// What is wrong with an answer that has the expected status: a 200 that
/// shows another account's object, or a 404 for another account's object
/// that differs from the one for a made-up id.
fn check_hidden(w: &World, who: &Caller, cell: &Cell, body: &Value) -> Option<String> {
    let text = body.to_string();
    if cell.expected == Outcome::Ok {
        if let Some(id) = w
            .hidden_ids()
            .find(|id| text.contains(&format!("\"{id}\"")))
        {
            return Some(format!("200 but shows {id}"));
        }
    }
    let obj = cell.row.route.object()?;
    if cell.target != Target::Other || cell.expected != Outcome::NotFound {
        return None;
    }
    let req = request(w, who, cell.row, Target::MadeUp).ok()?;
    let (_, made_up) = send(w, who, req);
    let alike = |v: &Value, id: &str| v["error"].to_string().replace(id, "{id}");
    let (theirs, none) = (alike(body, w.other(obj)), alike(&made_up, obj.made_up()));
    (theirs != none).then(|| format!("404 unlike a made-up id's: {theirs} vs {none}"))
}

/// The lines of `seen` that name `id` (in a path or as a JSON string).
fn naming<'a>(seen: &'a [String], id: &str) -> Vec<&'a String> {
    seen.iter()
        .filter(|line| line.split(['/', ' ', '"', '?']).any(|t| t == id))
        .collect()
}

/// Runs `cells` on `threads` threads; returns the mismatches.
fn run(w: &World, callers: &[Caller], cells: &[(usize, &Cell)], threads: usize) -> Vec<Mismatch> {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((order, cell)) = cells.get(i) else {
                    break;
                };
                if let Some(m) = run_cell(w, callers, *order, cell) {
                    found.lock().unwrap().push(m);
                }
            });
        }
    });
    found.into_inner().unwrap()
}

/// `{project_id}` and `{key_id}` alike, so a renamed path parameter is
/// still the same route.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every (method, path) of `/openapi.json` has a row; every documented row
/// is still in `/openapi.json`.
fn check_rows_cover_openapi(s: &Server) -> Vec<String> {
    let r = s.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200, "/openapi.json: {}", r.body);
    let paths = r.body["paths"]
        .as_object()
        .expect("/openapi.json has paths");
    let mut served = BTreeSet::new();
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                served.insert((method.to_uppercase(), normalize(path), path.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    for (method, normalized, path) in &served {
        if !ROWS
            .iter()
            .any(|r| r.method == method && normalize(r.path) == *normalized)
        {
            problems.push(format!(
                "/openapi.json serves {method} {path}, which has no rule in the matrix: add a row for {method} {path} to ROWS (and its rule to expect())"
            ));
        }
    }
    for r in ROWS.iter().filter(|r| r.documented) {
        if !served
            .iter()
            .any(|(m, n, _)| m == r.method && *n == normalize(r.path))
        {
            problems.push(format!(
                "the matrix has a row for {} {}, which /openapi.json no longer lists",
                r.method, r.path
            ));
        }
    }
    problems
}

fn table(mismatches: &[Mismatch]) -> String {
    let header = ["route", "caller", "target", "expected", "got"];
    let rows: Vec<[&str; 5]> = mismatches
        .iter()
        .map(|m| {
            [
                m.route.as_str(),
                m.caller.as_str(),
                m.target,
                m.expected.as_str(),
                m.got.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} | "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 12));
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// Wrong cells counted per caller and per route, to see the pattern.
fn tally(mismatches: &[Mismatch]) -> String {
    let mut by_caller: Vec<(&str, usize)> = Vec::new();
    let mut by_route: Vec<(&str, usize)> = Vec::new();
    for m in mismatches {
        for (list, name) in [
            (&mut by_caller, m.caller.as_str()),
            (&mut by_route, m.route.as_str()),
        ] {
            match list.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => list.push((name, 1)),
            }
        }
    }
    let mut out = String::from("wrong cells by caller:");
    for (name, n) in by_caller {
        out.push_str(&format!("\n  {n:4}  {name}"));
    }
    out.push_str("\nwrong cells by route:");
    for (name, n) in by_route {
        out.push_str(&format!("\n  {n:4}  {name}"));
    }
    out
}

#[test]
fn every_route_answers_every_caller_as_the_spec_says() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let github = SigningKey::from_slice(&[7; 32]).unwrap();
    let (s, seen) = start_server(dir.path(), &github);
    let mut problems = check_rows_cover_openapi(&s);
    let (w, callers) = build(&s, github, seen);
    let built = started.elapsed();

    let mut cells = Vec::new();
    for row in ROWS {
        for (i, who) in callers.iter().enumerate() {
            for target in targets(row.route, who) {
                cells.push(Cell {
                    row,
                    caller: i,
                    target,
                    expected: expect(row.route, who, target),
                    phase: phase(row.route, who, target),
                });
            }
        }
    }
    let mut mismatches = Vec::new();
    for p in 0..PHASES {
        let batch: Vec<(usize, &Cell)> = cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.phase == p)
            .collect();
        // The ordinary cells touch only their own fresh objects: run them
        // side by side. The others one at a time, in order.
        let threads = if p == 0 { 4 } else { 1 };
        mismatches.extend(run(&w, &callers, &batch, threads));
    }
    mismatches.sort_by_key(|m| m.order);
    eprintln!(
        "authorization matrix: {} cells, {} callers, {} routes; fixtures {:.1?}, total {:.1?}",
        cells.len(),
        callers.len(),
        ROWS.len(),
        built,
        started.elapsed()
    );
    // Another account's objects and made-up ids are refused before the
    // upstream is asked about them.
    let seen = w.seen.lock().unwrap();
    for id in w.hidden_ids() {
        let named = naming(&seen[w.seen_from..], id);
        if !named.is_empty() {
            problems.push(format!(
                "the upstream was sent {} request(s) naming {id}, which no caller may reach, e.g. {}",
                named.len(),
                named[0]
            ));
        }
    }
    if !mismatches.is_empty() {
        problems.push(format!(
            "{} of {} cells answered other than docs/authorization.md says:\n{}\n\n{}",
            mismatches.len(),
            cells.len(),
            table(&mismatches),
            tally(&mismatches)
        ));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}
