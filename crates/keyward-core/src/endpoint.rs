//! The model endpoints the gateway serves, and the one name each has in
//! the usage ledger (and the crash spool): a new endpoint is a new variant,
//! and every mapping below is then a compile error until it is named.

use serde::{Deserialize, Serialize};

use crate::permissions::EndpointGroup;

/// A model endpoint, as recorded in the usage ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    #[serde(rename = "chat.completions")]
    ChatCompletions,
    #[serde(rename = "completions")]
    Completions,
    #[serde(rename = "embeddings")]
    Embeddings,
}

crate::names::stored_names!(Endpoint {
    (ChatCompletions) => "chat.completions",
    (Completions) => "completions",
    (Embeddings) => "embeddings",
});

impl Endpoint {
    /// The path after an OpenAI-style base URL (`…/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    /// The permission group that grants it.
    pub fn group(self) -> EndpointGroup {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => EndpointGroup::ChatCompletions,
            Endpoint::Embeddings => EndpointGroup::Embeddings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_reads_back_from_its_name_and_its_json() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::parse(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
        }
        assert_eq!(Endpoint::parse("responses"), None);
    }
}
