//! The image and audio endpoints' `multipart/form-data` bodies: the
//! gateway reads the text fields it routes and prices by (`model`, `n`,
//! `stream`) and the uploaded file's size; the body goes upstream as it
//! came, except for the model's name when the route renames it.

use std::ops::Range;

use super::{default_model, Endpoint, Head};
use crate::error::ApiError;

/// One part of a form: its name and where its value lies in the body.
struct Part {
    name: String,
    is_file: bool,
    value: Range<usize>,
}

/// What the gateway knows of an image or audio form.
pub struct Form {
    pub head: Head,
    /// Where the `model` field's value lies in the body, for renaming.
    model_at: Option<Range<usize>>,
}

impl Form {
    /// The body to send upstream: as it came, or with the model renamed.
    pub fn upstream_body(&self, raw: &bytes::Bytes, rename: Option<&str>) -> bytes::Bytes {
        match (rename, &self.model_at) {
            (Some(name), Some(at)) => {
                let mut body = Vec::with_capacity(raw.len() + name.len());
                body.extend_from_slice(&raw[..at.start]);
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(&raw[at.end..]);
                body.into()
            }
            _ => raw.clone(),
        }
    }
}

fn bad_form(message: impl Into<String>) -> ApiError {
    ApiError::invalid(None, message)
}

/// Reads `content_type`'s boundary and the form's fields; 400 naming the
/// field otherwise.
pub fn parse(endpoint: Endpoint, content_type: Option<&str>, raw: &[u8]) -> Result<Form, ApiError> {
    let boundary = content_type
        .filter(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
        })
        .and_then(boundary_of)
        .ok_or_else(|| {
            bad_form(format!(
                "/v1{} takes a multipart/form-data body (with its boundary in Content-Type), as OpenAI's SDKs send it.",
                endpoint.path()
            ))
        })?;
    let parts = parts(raw, boundary.as_bytes())?;
    let text = |name: &str| -> Result<Option<(&str, Range<usize>)>, ApiError> {
        match parts.iter().find(|p| p.name == name && !p.is_file) {
            None => Ok(None),
            Some(p) => std::str::from_utf8(&raw[p.value.clone()])
                .map(|v| Some((v.trim(), p.value.clone())))
                .map_err(|_| {
                    ApiError::invalid(Some(name.into()), format!("'{name}' must be text."))
                }),
        }
    };
    let file_field = match endpoint {
        Endpoint::ImagesEdits | Endpoint::ImagesVariations => "image",
        _ => "file",
    };
    let file_bytes: usize = parts
        .iter()
        .filter(|p| p.is_file && p.name.trim_end_matches("[]") == file_field)
        .map(|p| p.value.len())
        .sum();
    if file_bytes == 0 {
        return Err(ApiError::invalid(
            Some(file_field.into()),
            format!("Missing required parameter: '{file_field}' (a file)."),
        ));
    }
    let (model, model_at) = match text("model")? {
        Some((m, at)) if !m.is_empty() => (m.to_owned(), Some(at)),
        _ => match default_model(endpoint) {
            Some(m) => (m.to_owned(), None),
            None => {
                return Err(ApiError::invalid(
                    Some("model".into()),
                    "you must provide a model parameter",
                ))
            }
        },
    };
    let n = match text("n")? {
        None => 1,
        Some((v, _)) => match v.parse::<i64>() {
            Ok(n) if (1..=super::MAX_IMAGES).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    Some("n".into()),
                    format!(
                        "Invalid 'n': {v}. It must be an integer from 1 to {}.",
                        super::MAX_IMAGES
                    ),
                ))
            }
        },
    };
    let stream = text("stream")?.is_some_and(|(v, _)| v == "true");
    let mut units = keyward_core::Measure::default();
    match endpoint {
        Endpoint::ImagesEdits | Endpoint::ImagesVariations => units.images = n,
        // Until the upstream reports the duration: about 16 kB a second
        // (128 kbit/s audio), for the reservation only.
        _ => units.audio_ms = i64::try_from(file_bytes / 16).unwrap_or(i64::MAX),
    }
    Ok(Form {
        head: Head {
            endpoint,
            model,
            stream: stream
                && matches!(
                    endpoint,
                    Endpoint::AudioTranscriptions | Endpoint::ImagesEdits
                ),
            include_usage: false,
            max_tokens: None,
            max_tokens_differ: false,
            max_tokens_param: "max_tokens",
            choices: 1,
            prompt_tokens: None,
            units,
            previous_response_id: None,
            store: false,
            background: false,
        },
        model_at,
    })
}

/// The `boundary` parameter of a multipart content type, unquoted.
fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

/// Splits the body at `--boundary` lines into named parts.
fn parts(raw: &[u8], boundary: &[u8]) -> Result<Vec<Part>, ApiError> {
    let malformed = || {
        bad_form(
            "The multipart/form-data body is malformed: a part or its closing boundary is missing.",
        )
    };
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let find = |from: usize| {
        raw.get(from..)?
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_slice())
            .map(|i| from + i)
    };
    let mut at = find(0).ok_or_else(malformed)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if raw.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        let start = after + line_end(raw, after).ok_or_else(malformed)?;
        let next = find(start).ok_or_else(malformed)?;
        // The value ends at the line break before the next delimiter.
        let end = if raw[..next].ends_with(b"\r\n") {
            next - 2
        } else if raw[..next].ends_with(b"\n") {
            next - 1
        } else {
            return Err(malformed());
        };
        let head_end = find_blank_line(raw, start, end).ok_or_else(malformed)?;
        let headers = std::str::from_utf8(&raw[start..head_end.0]).map_err(|_| malformed())?;
        let (name, is_file) = disposition(headers).ok_or_else(malformed)?;
        parts.push(Part {
            name,
            is_file,
            value: head_end.1..end.max(head_end.1),
        });
        at = next;
    }
}

/// The length of the line break at `at` (after a delimiter).
fn line_end(raw: &[u8], at: usize) -> Option<usize> {
    if raw.get(at..at + 2) == Some(b"\r\n") {
        Some(2)
    } else if raw.get(at..at + 1) == Some(b"\n") {
        Some(1)
    } else {
        None
    }
}

/// Where a part's headers end and its value starts.
fn find_blank_line(raw: &[u8], from: usize, to: usize) -> Option<(usize, usize)> {
    let section = raw.get(from..to.max(from))?;
    if let Some(i) = section.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((from + i, from + i + 4));
    }
    section
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (from + i, from + i + 2))
}

/// A part's `name` and whether it carries a `filename`.
fn disposition(headers: &str) -> Option<(String, bool)> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let mut name = None;
    let mut is_file = false;
    for param in line.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v.trim().trim_matches('"').to_owned()),
            "filename" | "filename*" => is_file = true,
            _ => {}
        }
    }
    Some((name?, is_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, value) in fields {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.push(b'"');
            if let Some(f) = filename {
                body.extend_from_slice(
                    format!("; filename=\"{f}\"\r\nContent-Type: audio/mpeg").as_bytes(),
                );
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    const CT: Option<&str> = Some("multipart/form-data; boundary=XyZ");

    #[test]
    fn reads_model_and_file_and_renames() {
        let audio = vec![7u8; 32_000];
        let raw = form(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a.mp3"), &audio),
        ]);
        let f = parse(Endpoint::AudioTranscriptions, CT, &raw).unwrap();
        assert_eq!(f.head.model, "whisper-1");
        assert_eq!(f.head.units.audio_ms, 2_000);
        let renamed = f.upstream_body(&bytes::Bytes::from(raw.clone()), Some("whisper-large"));
        let again = parse(Endpoint::AudioTranscriptions, CT, &renamed).unwrap();
        assert_eq!(again.head.model, "whisper-large");
        assert_eq!(
            renamed.len(),
            raw.len() + "whisper-large".len() - "whisper-1".len()
        );
    }

    #[test]
    fn images_count_and_default_model() {
        let raw = form(&[
            ("image", Some("a.png"), b"\x89PNG"),
            ("n", None, b"3"),
            ("prompt", None, b"a cat"),
        ]);
        let f = parse(Endpoint::ImagesEdits, CT, &raw).unwrap();
        assert_eq!(
            (f.head.model.as_str(), f.head.units.images),
            ("dall-e-2", 3)
        );
        let raw = form(&[("image[]", Some("a.png"), b"x"), ("n", None, b"11")]);
        let e = parse(Endpoint::ImagesEdits, CT, &raw).err().unwrap();
        assert_eq!(e.param(), Some("n"));
    }

    #[test]
    fn refuses_what_is_not_a_form_by_name() {
        let raw = form(&[("model", None, b"whisper-1")]);
        let e = parse(Endpoint::AudioTranscriptions, CT, &raw)
            .err()
            .unwrap();
        assert_eq!(e.param(), Some("file"));
        assert!(parse(
            Endpoint::AudioTranscriptions,
            Some("application/json"),
            b"{}"
        )
        .is_err());
        assert!(parse(Endpoint::AudioTranscriptions, None, &raw).is_err());
        let e = parse(
            Endpoint::AudioTranslations,
            CT,
            &form(&[("file", Some("a"), b"x")]),
        )
        .err()
        .unwrap();
        assert_eq!(e.param(), Some("model"));
        // Truncated anywhere: a 400, never a panic.
        let raw = form(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a.mp3"), b"abc"),
        ]);
        for cut in 0..raw.len() {
            let _ = parse(Endpoint::AudioTranscriptions, CT, &raw[..cut]);
        }
    }
}
