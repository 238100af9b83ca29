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
    #[serde(rename = "responses")]
    Responses,
    #[serde(rename = "moderations")]
    Moderations,
    #[serde(rename = "images.generations")]
    ImagesGenerations,
    #[serde(rename = "images.edits")]
    ImagesEdits,
    #[serde(rename = "images.variations")]
    ImagesVariations,
    #[serde(rename = "audio.speech")]
    AudioSpeech,
    #[serde(rename = "audio.transcriptions")]
    AudioTranscriptions,
    #[serde(rename = "audio.translations")]
    AudioTranslations,
    /// A batch's usage, recorded once when Keyward first sees it completed.
    #[serde(rename = "batches")]
    Batches,
}

crate::names::stored_names!(Endpoint {
    (ChatCompletions) => "chat.completions",
    (Completions) => "completions",
    (Embeddings) => "embeddings",
    (Responses) => "responses",
    (Moderations) => "moderations",
    (ImagesGenerations) => "images.generations",
    (ImagesEdits) => "images.edits",
    (ImagesVariations) => "images.variations",
    (AudioSpeech) => "audio.speech",
    (AudioTranscriptions) => "audio.transcriptions",
    (AudioTranslations) => "audio.translations",
    (Batches) => "batches",
});

impl Endpoint {
    /// The path after an OpenAI-style base URL (`…/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Moderations => "/moderations",
            Endpoint::ImagesGenerations => "/images/generations",
            Endpoint::ImagesEdits => "/images/edits",
            Endpoint::ImagesVariations => "/images/variations",
            Endpoint::AudioSpeech => "/audio/speech",
            Endpoint::AudioTranscriptions => "/audio/transcriptions",
            Endpoint::AudioTranslations => "/audio/translations",
            Endpoint::Batches => "/batches",
        }
    }

    /// The permission group that grants it.
    pub fn group(self) -> EndpointGroup {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => EndpointGroup::ChatCompletions,
            Endpoint::Embeddings => EndpointGroup::Embeddings,
            Endpoint::Responses => EndpointGroup::Responses,
            Endpoint::Moderations => EndpointGroup::Moderations,
            Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
                EndpointGroup::Images
            }
            Endpoint::AudioSpeech | Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => {
                EndpointGroup::Audio
            }
            Endpoint::Batches => EndpointGroup::Batch,
        }
    }

    /// Whether its request body is `multipart/form-data` (an uploaded
    /// image or audio file) rather than JSON.
    pub fn multipart(self) -> bool {
        matches!(
            self,
            Endpoint::ImagesEdits
                | Endpoint::ImagesVariations
                | Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
        )
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
        assert_eq!(Endpoint::parse("realtime"), None);
    }
}
