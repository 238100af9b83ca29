//! Server-sent events from an upstream, passed to the client as they come.
//! A copy is split into events (on blank lines) only to read `usage`; the
//! scan resumes where it stopped, so a long stream costs linear time.

use bytes::{Bytes, BytesMut};

/// What an upstream reported using, in any of OpenAI's shapes: chat's
/// `prompt_tokens`/`completion_tokens`, the Responses API's (and images')
/// `input_tokens`/`output_tokens` with their cached part, or a
/// transcription's `{"type":"duration","seconds":…}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "ReportedUsage")]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The part of `prompt_tokens` served from the upstream's cache.
    pub cached_tokens: i64,
    /// Audio transcribed, in milliseconds.
    pub audio_ms: i64,
}

impl Usage {
    /// Input and output tokens only.
    pub fn tokens(prompt_tokens: i64, completion_tokens: i64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        }
    }
}

impl From<crate::translate::ResponsesUsage> for Usage {
    fn from(u: crate::translate::ResponsesUsage) -> Usage {
        Usage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            cached_tokens: u.cached_tokens,
            audio_ms: 0,
        }
    }
}

/// `usage` as it comes, whichever shape.
#[derive(serde::Deserialize)]
struct ReportedUsage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    prompt_tokens_details: Option<TokenDetails>,
    input_tokens_details: Option<TokenDetails>,
    seconds: Option<f64>,
}

#[derive(serde::Deserialize)]
struct TokenDetails {
    cached_tokens: Option<i64>,
}

impl From<ReportedUsage> for Usage {
    fn from(r: ReportedUsage) -> Usage {
        let details = r.input_tokens_details.or(r.prompt_tokens_details);
        Usage {
            prompt_tokens: r.prompt_tokens.or(r.input_tokens).unwrap_or(0),
            completion_tokens: r.completion_tokens.or(r.output_tokens).unwrap_or(0),
            cached_tokens: details.and_then(|d| d.cached_tokens).unwrap_or(0),
            audio_ms: r.seconds.map_or(0, seconds_to_ms),
        }
    }
}

/// What an answer counted besides tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Images in an image endpoint's `data`.
    pub images: Option<i64>,
    /// A transcription's or translation's `duration` (verbose_json).
    pub audio_ms: i64,
}

/// Reads the images and audio duration out of a whole answer of the image
/// and audio endpoints; `None` for other endpoints or other bodies.
pub fn units_of(endpoint: keyward_core::Endpoint, body: &[u8]) -> Option<Counted> {
    use keyward_core::Endpoint::*;
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Option<Vec<serde::de::IgnoredAny>>,
        duration: Option<f64>,
    }
    if !matches!(
        endpoint,
        ImagesGenerations
            | ImagesEdits
            | ImagesVariations
            | AudioTranscriptions
            | AudioTranslations
    ) {
        return None;
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    Some(Counted {
        images: answer
            .data
            .map(|d| i64::try_from(d.len()).unwrap_or(i64::MAX)),
        audio_ms: answer.duration.map_or(0, seconds_to_ms),
    })
}

/// Seconds of audio as whole milliseconds, rounded up; nonsense is zero.
pub fn seconds_to_ms(seconds: f64) -> i64 {
    if seconds.is_finite() && seconds > 0.0 {
        // `as` saturates at i64::MAX.
        (seconds * 1000.0).ceil() as i64
    } else {
        0
    }
}

/// Reads `usage` out of a whole JSON response body.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    if let Some(usage) = trailing_usage(body) {
        return Some(usage);
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// `usage` read from where OpenAI-compatible APIs put it, among the last
/// members of the response object (after `choices`), without parsing the
/// rest: the completion itself can be many kilobytes. None when the last
/// `"usage"` in the body is not a member of the outermost object; the whole
/// body is parsed then.
///
/// Inside a JSON string a quote is escaped, so `"usage"` followed by `:`
/// is a key; it belongs to the outermost object if what follows its value
/// is only more members and that object's closing brace.
fn trailing_usage(body: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let at = body.windows(KEY.len()).rposition(|w| w == KEY)?;
    let before = body[..at].iter().rev().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(before, b'{' | b',') {
        return None;
    }
    let value = body[at + KEY.len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(value).into_iter::<Usage>();
    let usage = values.next()?.ok()?;
    let rest = value[values.byte_offset()..].trim_ascii_start();
    let closes_outermost = match rest.split_first() {
        Some((b'}', after)) => after.trim_ascii().is_empty(),
        Some((b',', members)) => {
            // `{` + the remaining members must be one whole object.
            let mut object = Vec::with_capacity(members.len() + 1);
            object.push(b'{');
            object.extend_from_slice(members);
            serde_json::from_slice::<serde::de::IgnoredAny>(&object).is_ok()
        }
        _ => false,
    };
    closes_outermost.then_some(usage)
}

/// Watches a stream for its usage chunk; optionally removes that chunk.
/// Reads chat streams (a usage chunk), the Responses API's (usage in the
/// terminal `response.*` event, and the response's id from the first)
/// and images' (usage in each `*.completed` event).
pub struct UsageTap {
    pending: BytesMut,
    scanned: usize,
    strip_usage: bool,
    pub usage: Option<Usage>,
    /// Data events seen, about one output token each: the estimate used
    /// when a stream ends before its usage chunk.
    pub events: i64,
    /// `data: [DONE]` (or a Responses stream's terminal event) has
    /// passed: the client has the whole stream.
    pub done: bool,
    /// A Responses stream's response id, from `response.created`.
    pub response_id: Option<String>,
    /// Images an image stream completed.
    pub images: i64,
}

impl UsageTap {
    pub fn new(strip_usage: bool) -> Self {
        UsageTap {
            pending: BytesMut::new(),
            scanned: 0,
            strip_usage,
            usage: None,
            events: 0,
            done: false,
            response_id: None,
            images: 0,
        }
    }

    /// Takes a chunk from upstream; returns what to send to the client now.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        self.pending.extend_from_slice(&chunk);
        if !self.strip_usage {
            // The client gets the bytes untouched; events are parsed from the copy.
            while let Some(event) = self.next_event() {
                self.inspect(&event);
            }
            return chunk;
        }
        let mut out = BytesMut::new();
        while let Some(event) = self.next_event() {
            if !self.inspect(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// What is left when the upstream ends (an unterminated last event).
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split().freeze();
        if self.strip_usage && !rest.is_empty() && self.inspect(&rest) {
            return Bytes::new();
        }
        if self.strip_usage {
            rest
        } else {
            Bytes::new()
        }
    }

    /// The next complete event, including its terminating blank line.
    fn next_event(&mut self) -> Option<Bytes> {
        let buf = &self.pending[..];
        let from = self.scanned.saturating_sub(3);
        let end = (from..buf.len()).find_map(|i| {
            if buf[i..].starts_with(b"\n\n") {
                Some(i + 2)
            } else if buf[i..].starts_with(b"\r\n\r\n") {
                Some(i + 4)
            } else {
                None
            }
        });
        match end {
            Some(end) => {
                self.scanned = 0;
                Some(self.pending.split_to(end).freeze())
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// Records usage found in `event`; true when it is the usage-only chunk
    /// (empty `choices`) that should be removed.
    fn inspect(&mut self, event: &[u8]) -> bool {
        if event.starts_with(b"data:") {
            if contains(event, b"[DONE]") {
                self.done = true;
            } else {
                self.events += 1;
            }
        }
        if !contains(event, b"\"usage\"") {
            return false;
        }
        #[derive(serde::Deserialize)]
        struct Chunk {
            usage: Option<Usage>,
            #[serde(default)]
            choices: Vec<serde::de::IgnoredAny>,
            #[serde(rename = "type")]
            kind: Option<String>,
            response: Option<Response>,
        }
        #[derive(serde::Deserialize)]
        struct Response {
            id: Option<String>,
            usage: Option<Usage>,
        }
        let data: Vec<u8> = event
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .flat_map(|d| d.trim_ascii().iter().copied())
            .collect();
        let Ok(chunk) = serde_json::from_slice::<Chunk>(&data) else {
            return false;
        };
        if let Some(response) = chunk.response {
            // Responses API: the id comes first, usage in the terminal event.
            if self.response_id.is_none() {
                self.response_id = response.id;
            }
            if response.usage.is_some() {
                self.usage = response.usage;
                self.done = true;
            }
            return false;
        }
        let kind = chunk.kind.as_deref().unwrap_or_default();
        if kind.starts_with("image_") && kind.ends_with(".completed") {
            self.images += 1;
            if let Some(u) = chunk.usage {
                let sum = self.usage.unwrap_or_default();
                self.usage = Some(Usage::tokens(
                    sum.prompt_tokens.saturating_add(u.prompt_tokens),
                    sum.completion_tokens.saturating_add(u.completion_tokens),
                ));
            }
            return false;
        }
        match chunk.usage {
            Some(u) => {
                self.usage = Some(u);
                chunk.choices.is_empty() && kind.is_empty()
            }
            None => false,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n\
data: [DONE]\n\n";

    fn run(strip: bool, split_at: &[usize]) -> (String, Option<Usage>) {
        let mut tap = UsageTap::new(strip);
        let mut out = Vec::new();
        let mut last = 0;
        for &i in split_at.iter().chain(std::iter::once(&STREAM.len())) {
            out.extend_from_slice(&tap.feed(Bytes::copy_from_slice(&STREAM.as_bytes()[last..i])));
            last = i;
        }
        out.extend_from_slice(&tap.finish());
        (String::from_utf8(out).unwrap(), tap.usage)
    }

    fn tokens(prompt_tokens: i64, completion_tokens: i64) -> Option<Usage> {
        Some(Usage::tokens(prompt_tokens, completion_tokens))
    }

    #[test]
    fn every_usage_shape_reads() {
        let read = |body: &str| usage_of(body.as_bytes()).unwrap();
        let responses = r#"{"id":"resp_1","object":"response","usage":{"input_tokens":40,"input_tokens_details":{"cached_tokens":16},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":49},"status":"completed"}"#;
        let u = read(responses);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (40, 9, 16)
        );
        let chat = r#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(read(chat).cached_tokens, 4);
        let whisper = r#"{"text":"hi","usage":{"type":"duration","seconds":61.25}}"#;
        assert_eq!(read(whisper).audio_ms, 61_250);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(seconds_to_ms(bad), 0);
        }
        assert_eq!(seconds_to_ms(1e300), i64::MAX, "saturates");
    }

    #[test]
    fn a_responses_stream_gives_its_id_first_and_usage_last() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_9\",\"status\":\"in_progress\",\"usage\":null,\"output\":[{\"text\":\"the word \\\"usage\\\"\"}]}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"usage\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_9\",\"usage\":{\"input_tokens\":12,\"output_tokens\":3}}}\n\n";
        for cut in 0..stream.len() {
            let mut tap = UsageTap::new(false);
            let mut out = Vec::new();
            out.extend_from_slice(&tap.feed(Bytes::copy_from_slice(&stream.as_bytes()[..cut])));
            assert!(!tap.done || cut == stream.len());
            out.extend_from_slice(&tap.feed(Bytes::copy_from_slice(&stream.as_bytes()[cut..])));
            out.extend_from_slice(&tap.finish());
            assert_eq!(out, stream.as_bytes(), "passed through untouched");
            assert_eq!(tap.response_id.as_deref(), Some("resp_9"));
            assert_eq!(tap.usage, tokens(12, 3));
            assert!(tap.done);
        }
    }

    #[test]
    fn an_image_stream_counts_its_images() {
        let stream = "event: image_generation.partial_image\ndata: {\"type\":\"image_generation.partial_image\",\"b64_json\":\"AA\"}\n\n\
event: image_generation.completed\ndata: {\"type\":\"image_generation.completed\",\"b64_json\":\"AA\",\"usage\":{\"input_tokens\":10,\"output_tokens\":100}}\n\n";
        let mut tap = UsageTap::new(false);
        tap.feed(Bytes::from_static(stream.as_bytes()));
        assert_eq!((tap.images, tap.usage), (1, tokens(10, 100)));
    }

    #[test]
    fn usage_is_read_from_a_whole_body() {
        let u = r#"{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}"#;
        let choices = r#"[{"index":0,"message":{"role":"assistant","content":"Hi"}}]"#;
        for (body, expected) in [
            // Last, or followed by more members, spaced or not.
            (format!(r#"{{"id":"c","choices":{choices},"usage":{u}}}"#), tokens(26, 9)),
            (
                format!("{{\"choices\": {choices},\n  \"usage\" : {u} ,\n \"system_fingerprint\": \"fp\", \"x\": [1, {{\"y\": null}}]\n}}\n"),
                tokens(26, 9),
            ),
            // First, with a nested `usage` later on: the outermost one counts.
            (
                format!(r#"{{"usage":{u},"choices":[{{"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}]}}"#),
                tokens(26, 9),
            ),
            (
                format!(r#"{{"usage":{u},"meta":{{"usage":{{"prompt_tokens":1}}}}}}"#),
                tokens(26, 9),
            ),
            // Only a nested one, or `usage` as a value or inside a string.
            (
                r#"{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#.into(),
                None,
            ),
            (r#"{"object":"usage","n":1}"#.into(), None),
            (r#"{"content":"the \"usage\": {\"prompt_tokens\": 5}"}"#.into(), None),
            (r#"{"usage":null}"#.into(), None),
            // Not JSON, or cut short.
            (format!(r#"{{"usage":{u}"#), None),
            ("usage".into(), None),
            (String::new(), None),
        ] {
            assert_eq!(usage_of(body.as_bytes()), expected, "{body}");
        }
        // Where it can, the last members are read without the rest; where
        // the last `"usage"` is nested, the whole body is parsed.
        let last = format!(r#"{{"choices":{choices},"usage":{u},"n":[1]}}"#);
        assert_eq!(trailing_usage(last.as_bytes()), tokens(26, 9));
        let nested_last = format!(r#"{{"usage":{u},"choices":[{{"usage":{u}}}]}}"#);
        assert_eq!(trailing_usage(nested_last.as_bytes()), None);
        assert_eq!(usage_of(nested_last.as_bytes()), tokens(26, 9));
    }

    #[test]
    fn passes_through_and_reads_usage() {
        let (out, usage) = run(false, &[5, 70, 71, 120]);
        assert_eq!(out, STREAM);
        assert_eq!(usage, tokens(7, 2));
    }

    #[test]
    fn counts_events_for_streams_cut_short() {
        let mut tap = UsageTap::new(false);
        let cut = STREAM.find("data: {\"choices\":[]").unwrap();
        tap.feed(Bytes::copy_from_slice(&STREAM.as_bytes()[..cut]));
        assert_eq!((tap.events, tap.usage), (1, None));
    }

    #[test]
    fn strips_the_usage_chunk_when_asked() {
        for splits in [vec![], vec![1, 2, 3], vec![60, 61, 62, 63, 64, 65]] {
            let (out, usage) = run(true, &splits);
            assert!(!out.contains("prompt_tokens"), "{out}");
            assert!(
                out.contains("\"Hi\"") && out.ends_with("data: [DONE]\n\n"),
                "{out}"
            );
            assert_eq!(usage.unwrap().completion_tokens, 2);
        }
    }
}
