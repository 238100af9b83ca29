//! Objects an upstream keeps for whoever created them (responses, files,
//! batches) and the project that owns each. Every project shares the
//! operator's upstream credential, so the upstream would show any id to
//! any caller: Keyward records the owner of each id it sees created and
//! answers only the owner.

use crate::{KeyId, ProjectId, UserId};

/// The kinds of upstream objects Keyward tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `resp_…`, from `POST /v1/responses` (unless `store: false`).
    Response,
    /// `file-…`, uploaded through `POST /v1/files`, or a batch's output.
    File,
    /// `batch_…`, from `POST /v1/batches`.
    Batch,
}

crate::names::stored_names!(ObjectKind {
    (Response) => "response",
    (File) => "file",
    (Batch) => "batch",
});

impl ObjectKind {
    /// How OpenAI names it in its errors ("No response found with id …").
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Response => "response",
            ObjectKind::File => "file",
            ObjectKind::Batch => "batch",
        }
    }
}

/// One object's owner and what Keyward keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedObject {
    pub kind: ObjectKind,
    /// The id the upstream issued (or Keyward, for a translated response).
    pub id: String,
    pub project_id: ProjectId,
    /// The key that created it (for the record; access is per project).
    pub key_id: KeyId,
    /// That key's owner: usage that arrives later is billed as theirs.
    pub owner_id: UserId,
    /// The upstream that holds it: calls naming only the id go there.
    pub upstream: String,
    /// The model id it was created for (responses), which usage seen
    /// later is priced by; `None` when the call named no model (batches).
    pub model: Option<String>,
    pub created_at: i64,
    /// Files: their purpose, for `GET /v1/files?purpose=`.
    pub purpose: Option<String>,
    /// Files a batch wrote: the batch.
    pub parent_id: Option<String>,
    /// The object's last JSON seen (files and batches, for lists; a
    /// translated response's whole Response, Keyward being its store).
    pub snapshot: Option<String>,
    /// A translated response's input items (JSON array), for
    /// `input_items` and `previous_response_id`.
    pub items: Option<String>,
    /// A batch whose usage is in the ledger.
    pub settled: bool,
}

/// Which of a project's objects to list, and where to start.
#[derive(Debug, Clone)]
pub struct ObjectQuery<'a> {
    pub project_id: &'a ProjectId,
    pub kind: ObjectKind,
    pub purpose: Option<&'a str>,
    /// Start after this id (the cursor OpenAI's lists take).
    pub after: Option<&'a str>,
    /// At most this many (one more is read to tell whether there are more).
    pub limit: u32,
    /// Newest first (OpenAI's default) or oldest first.
    pub newest_first: bool,
}
