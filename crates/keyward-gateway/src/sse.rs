//! Server-sent events from an upstream, passed to the client as they come.
//! A copy is split into events (on blank lines) only to read `usage`; the
//! scan resumes where it stopped, so a long stream costs linear time.

use bytes::{Bytes, BytesMut};

/// Token counts reported by an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
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
pub struct UsageTap {
    pending: BytesMut,
    scanned: usize,
    strip_usage: bool,
    pub usage: Option<Usage>,
    /// Data events seen, about one output token each: the estimate used
    /// when a stream ends before its usage chunk.
    pub events: i64,
    /// `data: [DONE]` has passed: the client has the whole stream.
    pub done: bool,
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
        }
        let data: Vec<u8> = event
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .flat_map(|d| d.trim_ascii().iter().copied())
            .collect();
        match serde_json::from_slice::<Chunk>(&data) {
            Ok(Chunk {
                usage: Some(u),
                choices,
            }) => {
                self.usage = Some(u);
                choices.is_empty()
            }
            _ => false,
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
        Some(Usage {
            prompt_tokens,
            completion_tokens,
        })
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
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 2
            })
        );
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
