//! What a key may do: All, Read only, or Restricted with none/read/write per
//! endpoint group. Stored and sent as JSON:
//!
//! ```json
//! {"mode":"all"}
//! {"mode":"read_only"}
//! {"mode":"restricted","models":"read","chat_completions":"write","embeddings":"none","usage":"read","keys":"none"}
//! ```
//!
//! Restricted keys name any of `models`, `chat_completions`, `embeddings`,
//! `responses`, `moderations`, `images`, `audio`, `files`, `batch`, `usage`
//! and `keys`; a group left out has no access, so a key made before a group
//! existed gains nothing when it is added. The groups follow OpenAI's
//! restricted-key permissions, with model capabilities split per endpoint.

use serde::{Deserialize, Serialize};

/// How far a key may use one endpoint group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    None,
    Read,
    Write,
}

/// The endpoint groups permissions are granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointGroup {
    /// `/v1/models`
    Models,
    /// `/v1/chat/completions` and `/v1/completions`
    ChatCompletions,
    /// `/v1/embeddings`
    Embeddings,
    /// `/v1/organization/usage/…`, `/v1/organization/costs`
    Usage,
    /// the project's own `/v1/organization/projects/{id}/api_keys`
    Keys,
    /// `/v1/responses…`: write creates, cancels and deletes; read retrieves
    Responses,
    /// `/v1/moderations`
    Moderations,
    /// `/v1/images/…`
    Images,
    /// `/v1/audio/…`
    Audio,
    /// `/v1/files…`: write uploads and deletes; read lists and downloads
    Files,
    /// `/v1/batches…`: write creates and cancels; read retrieves and lists
    Batch,
}

impl EndpointGroup {
    pub const ALL: [EndpointGroup; 11] = [
        EndpointGroup::Models,
        EndpointGroup::ChatCompletions,
        EndpointGroup::Embeddings,
        EndpointGroup::Responses,
        EndpointGroup::Moderations,
        EndpointGroup::Images,
        EndpointGroup::Audio,
        EndpointGroup::Files,
        EndpointGroup::Batch,
        EndpointGroup::Usage,
        EndpointGroup::Keys,
    ];

    /// The scope name shown in "missing scope" errors, e.g. `keys.write`.
    pub fn scope(self, access: Access) -> String {
        let group = match self {
            EndpointGroup::Models => "models",
            EndpointGroup::ChatCompletions => "chat.completions",
            EndpointGroup::Embeddings => "embeddings",
            EndpointGroup::Usage => "usage",
            EndpointGroup::Keys => "keys",
            EndpointGroup::Responses => "responses",
            EndpointGroup::Moderations => "moderations",
            EndpointGroup::Images => "images",
            EndpointGroup::Audio => "audio",
            EndpointGroup::Files => "files",
            EndpointGroup::Batch => "batch",
        };
        let level = match access {
            Access::None => "none",
            Access::Read => "read",
            Access::Write => "write",
        };
        format!("{group}.{level}")
    }
}

/// Per-group access of a Restricted key; a group left out has no access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restricted {
    pub models: Access,
    pub chat_completions: Access,
    pub embeddings: Access,
    pub usage: Access,
    pub keys: Access,
    pub responses: Access,
    pub moderations: Access,
    pub images: Access,
    pub audio: Access,
    pub files: Access,
    pub batch: Access,
}

impl Restricted {
    /// The access granted on `group`.
    pub fn get(mut self, group: EndpointGroup) -> Access {
        *self.slot(group)
    }

    /// The same grants, with `access` on `group`.
    pub fn with(mut self, group: EndpointGroup, access: Access) -> Restricted {
        *self.slot(group) = access;
        self
    }

    fn slot(&mut self, group: EndpointGroup) -> &mut Access {
        match group {
            EndpointGroup::Models => &mut self.models,
            EndpointGroup::ChatCompletions => &mut self.chat_completions,
            EndpointGroup::Embeddings => &mut self.embeddings,
            EndpointGroup::Usage => &mut self.usage,
            EndpointGroup::Keys => &mut self.keys,
            EndpointGroup::Responses => &mut self.responses,
            EndpointGroup::Moderations => &mut self.moderations,
            EndpointGroup::Images => &mut self.images,
            EndpointGroup::Audio => &mut self.audio,
            EndpointGroup::Files => &mut self.files,
            EndpointGroup::Batch => &mut self.batch,
        }
    }
}

/// A key's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Permissions {
    #[default]
    All,
    ReadOnly,
    Restricted(Restricted),
}

impl Permissions {
    /// The access granted on `group`. As on OpenAI's platform, `All` and
    /// `ReadOnly` keys cover the model endpoints and reading usage, not key
    /// management: that takes an explicit `keys` grant.
    pub fn access(&self, group: EndpointGroup) -> Access {
        match (self, group) {
            (Permissions::All | Permissions::ReadOnly, EndpointGroup::Keys) => Access::None,
            (Permissions::All | Permissions::ReadOnly, EndpointGroup::Usage) => Access::Read,
            (Permissions::All, _) => Access::Write,
            (Permissions::ReadOnly, _) => Access::Read,
            (Permissions::Restricted(r), group) => r.get(group),
        }
    }

    /// Whether `needed` access on `group` is granted (write implies read).
    pub fn allows(&self, group: EndpointGroup, needed: Access) -> bool {
        self.access(group) >= needed
    }

    /// Whether everything `other` grants is granted here too: a key may only
    /// create keys no more powerful than itself.
    pub fn covers(&self, other: &Permissions) -> bool {
        EndpointGroup::ALL
            .iter()
            .all(|&g| self.access(g) >= other.access(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let p: Permissions = serde_json::from_str(r#"{"mode":"read_only"}"#).unwrap();
        assert_eq!(p, Permissions::ReadOnly);
        let p: Permissions =
            serde_json::from_str(r#"{"mode":"restricted","models":"read","keys":"write"}"#)
                .unwrap();
        assert_eq!(p.access(EndpointGroup::Keys), Access::Write);
        assert_eq!(p.access(EndpointGroup::Embeddings), Access::None);
        assert!(serde_json::from_str::<Permissions>(r#"{"mode":"root"}"#).is_err());
        assert!(
            serde_json::from_str::<Permissions>(r#"{"mode":"restricted","modles":"read"}"#)
                .is_err()
        );
        assert_eq!(
            serde_json::to_string(&Permissions::All).unwrap(),
            r#"{"mode":"all"}"#
        );
    }

    #[test]
    fn ordering_of_grants() {
        assert!(!Permissions::ReadOnly.allows(EndpointGroup::Keys, Access::Read));
        assert!(!Permissions::All.allows(EndpointGroup::Keys, Access::Read));
        assert!(Permissions::All.allows(EndpointGroup::Usage, Access::Read));
        assert!(!Permissions::All.allows(EndpointGroup::Usage, Access::Write));
        assert!(Permissions::ReadOnly.allows(EndpointGroup::Models, Access::Read));
        assert!(Permissions::All.covers(&Permissions::ReadOnly));
        assert!(!Permissions::ReadOnly.covers(&Permissions::All));
        let r = Permissions::Restricted(Restricted {
            keys: Access::Write,
            ..Restricted::default()
        });
        assert!(!r.covers(&Permissions::ReadOnly));
        assert!(!Permissions::All.covers(&r));
        assert!(Permissions::ReadOnly.covers(&Permissions::Restricted(Restricted::default())));
        // The newer groups: All writes them, Read only reads them, and a
        // restricted key that does not name them has none.
        for g in [
            EndpointGroup::Responses,
            EndpointGroup::Files,
            EndpointGroup::Batch,
        ] {
            assert_eq!(Permissions::All.access(g), Access::Write);
            assert_eq!(Permissions::ReadOnly.access(g), Access::Read);
            let old: Permissions =
                serde_json::from_str(r#"{"mode":"restricted","chat_completions":"write"}"#)
                    .unwrap();
            assert_eq!(old.access(g), Access::None);
        }
        let files =
            Permissions::Restricted(Restricted::default().with(EndpointGroup::Files, Access::Read));
        assert!(!files.covers(&Permissions::Restricted(
            Restricted::default().with(EndpointGroup::Files, Access::Write)
        )));
        for g in EndpointGroup::ALL {
            assert_eq!(
                Restricted::default().with(g, Access::Write).get(g),
                Access::Write
            );
        }
    }
}
