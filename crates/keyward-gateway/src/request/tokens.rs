//! Counting a prompt's tokens before the call, for token-per-minute limits
//! and budget reservations; the upstream's own count settles both after.
//!
//! Text is counted with OpenAI's `o200k_base` encoding: the text of
//! `messages[].content` (a string, or the `text` of its parts) and `name`,
//! plus the framing OpenAI adds per message and per reply; or the strings
//! of `prompt` / `input`, with token ids given as numbers counted one each.
//! Tool definitions, tool calls and images are not counted.
//!
//! The work is bounded, because o200k tokenising runs at only about 15-40
//! MB/s (about 70 µs per KiB on a busy core here): a request's first
//! [`EXACT_BYTES`] of text are counted exactly. A string longer than what is
//! left of that is sampled in four windows spread over it (whitespace-aligned,
//! together the bytes left) and extrapolated at their tokens per byte, so a
//! long document in another script than the instructions before it is
//! estimated at its own rate; strings after that use the rate seen so far.
//! Pieces handed to the tokenizer are at most [`PIECE_BYTES`], cut at
//! whitespace where there is some (BPE is quadratic in a piece's length).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Endpoint;

/// Text tokenised per request; the rest is extrapolated.
pub const EXACT_BYTES: usize = 2048;
/// The longest piece handed to the tokenizer at once.
pub const PIECE_BYTES: usize = 256;
/// The longest piece without whitespace in it (a run of one BPE word).
const UNSPACED_PIECE_BYTES: usize = 64;
/// Windows a long string is sampled in.
const WINDOWS: usize = 4;
/// Tokens OpenAI adds around each chat message (its framing and role).
const PER_MESSAGE: u64 = 4;
/// Tokens a message's `name` adds besides its text.
const PER_NAME: u64 = 1;
/// Tokens that prime the reply of a chat.
const PER_REPLY: u64 = 3;

/// Builds the encoder (about 0.2 s) so that the first request does not pay for it.
pub fn warm() {
    let _ = tiktoken_rs::o200k_base_singleton().count_ordinary("warm");
}

/// Tokens of `text` alone, as `o200k_base` encodes it (work bounded as above).
pub fn count_text(text: &str) -> u64 {
    let mut p = Prompt {
        on: true,
        ..Prompt::default()
    };
    p.text(text);
    p.total().unwrap_or(0)
}

/// The running count of one request's prompt.
#[derive(Debug, Default)]
pub struct Prompt {
    on: bool,
    /// Framing tokens and token ids given as numbers.
    fixed: u64,
    /// Text tokens, counted or extrapolated.
    text_tokens: u64,
    /// Text handed to the tokenizer, and its tokens (the rate for extrapolating).
    sampled_bytes: u64,
    sampled_tokens: u64,
}

impl Prompt {
    /// A counter for `endpoint`; `on: false` skips counting (the parse still checks types).
    pub fn new(endpoint: Endpoint, on: bool) -> Self {
        let fixed = match endpoint {
            Endpoint::ChatCompletions => PER_REPLY,
            _ => 0,
        };
        // Other endpoints' inputs (Responses items, images, speech) are
        // estimated from the body's size instead.
        let counted = matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings
        );
        Prompt {
            on: on && counted,
            fixed,
            ..Prompt::default()
        }
    }

    /// The estimate, if counting was on.
    pub fn total(&self) -> Option<u64> {
        self.on.then_some(self.fixed + self.text_tokens)
    }

    fn add(&mut self, n: u64) {
        if self.on {
            self.fixed += n;
        }
    }

    fn text(&mut self, text: &str) {
        if !self.on || text.is_empty() {
            return;
        }
        let room = EXACT_BYTES.saturating_sub(self.sampled_bytes as usize);
        let len = text.len() as u64;
        if text.len() <= room {
            let n = count_pieces(text);
            self.sampled_bytes += len;
            self.sampled_tokens += n;
            self.text_tokens += n;
        } else if room >= WINDOWS * 64 {
            let (bytes, n) = sample(text, room);
            self.sampled_bytes += bytes;
            self.sampled_tokens += n;
            self.text_tokens += (len * n).div_ceil(bytes.max(1));
        } else if self.sampled_bytes > 0 {
            self.text_tokens += (len * self.sampled_tokens).div_ceil(self.sampled_bytes);
        } else {
            self.text_tokens += len.div_ceil(4);
        }
    }
}

/// Tokens of `text`, handed to the tokenizer piece by piece.
fn count_pieces(mut text: &str) -> u64 {
    let mut n = 0;
    while !text.is_empty() {
        let (now, later) = text.split_at(piece_end(text));
        n += encode_count(now);
        text = later;
    }
    n
}

/// Counts [`WINDOWS`] windows spread over `text`, `room` bytes in all;
/// returns the bytes counted and their tokens.
fn sample(text: &str, room: usize) -> (u64, u64) {
    let width = room / WINDOWS;
    let (mut bytes, mut tokens) = (0, 0);
    for i in 0..WINDOWS {
        let mut start = floor_boundary(text, i * text.len() / WINDOWS);
        let mut end = floor_boundary(text, start + width);
        let window = &text.as_bytes()[start..end];
        // Whole words only, where the window has spaces in it.
        if let Some(first) = window.iter().position(u8::is_ascii_whitespace) {
            if i > 0 {
                start += first;
            }
        }
        if let Some(last) = text.as_bytes()[start..end]
            .iter()
            .rposition(u8::is_ascii_whitespace)
        {
            if last > 0 && end < text.len() {
                end = start + last;
            }
        }
        if end > start {
            bytes += (end - start) as u64;
            tokens += count_pieces(&text[start..end]);
        }
    }
    (bytes, tokens)
}

/// Where the next piece of `text` ends: all of it if short, else at the
/// last whitespace before [`PIECE_BYTES`], else (no whitespace) at a
/// character boundary near [`UNSPACED_PIECE_BYTES`].
fn piece_end(text: &str) -> usize {
    if text.len() <= PIECE_BYTES {
        return text.len();
    }
    let cut = floor_boundary(text, PIECE_BYTES);
    match text.as_bytes()[..cut]
        .iter()
        .rposition(u8::is_ascii_whitespace)
    {
        Some(i) if i > 0 => i,
        _ => floor_boundary(text, UNSPACED_PIECE_BYTES),
    }
}

fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut i = at;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Pieces whose counts each thread remembers.
const MEMO_SLOTS: usize = 4096;

/// The counts of pieces seen lately on this thread. System prompts, tool
/// instructions and a conversation's history come back with every call;
/// tokenizing them again costs far more than hashing them. Direct-mapped:
/// a slot holds the last piece that hashed to it, known by a 64-bit hash
/// with a random per-thread seed (so no client can aim for a collision;
/// a chance one would only skew an estimate that the upstream's own count
/// settles).
struct Memo {
    seed: foldhash::quality::RandomState,
    /// (hash, tokens); hash 0 marks an empty slot.
    slots: Box<[(u64, u64)]>,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo {
        seed: foldhash::quality::RandomState::default(),
        slots: vec![(0, 0); MEMO_SLOTS].into_boxed_slice(),
    });
}

fn encode_count(text: &str) -> u64 {
    use std::hash::BuildHasher;
    MEMO.with_borrow_mut(|memo| {
        let hash = memo.seed.hash_one(text) | 1;
        let slot = &mut memo.slots[(hash >> 32) as usize % MEMO_SLOTS];
        if slot.0 != hash {
            *slot = (hash, tokenize_count(text));
        }
        slot.1
    })
}

fn tokenize_count(text: &str) -> u64 {
    // The tokenizer's regex engine panics when it gives up backtracking;
    // an estimate must never fail a request, so fall back to bytes.
    catch_unwind(AssertUnwindSafe(|| {
        tiktoken_rs::o200k_base_singleton().count_ordinary(text) as u64
    }))
    .unwrap_or_else(|_| (text.len() as u64).div_ceil(4))
}

/// `messages`: an array of messages, counted; its length is returned.
/// Elements that are not objects are skipped (the upstream judges them).
pub struct Messages<'p>(pub &'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Messages<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_option(self)
    }
}

/// The visitor methods that skip scalars where text may stand: they are
/// not text, and judging the request is the upstream's job, not the
/// estimate's.
macro_rules! skip_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

impl<'de> Visitor<'de> for Messages<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut n = 0;
        while seq.next_element_seed(Message(&mut *self.0))?.is_some() {
            n += 1;
        }
        Ok(Some(n))
    }
}

struct Message<'p>(&'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    skip_scalars!();

    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.add(PER_MESSAGE);
        while let Some(field) = map.next_key::<MessageField>()? {
            match field {
                MessageField::Content => map.next_value_seed(Content(&mut *self.0))?,
                MessageField::Name => {
                    self.0.add(PER_NAME);
                    map.next_value_seed(Text(&mut *self.0))?
                }
                MessageField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| ())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// Keys of a message, or of a content part, that carry countable text.
enum MessageField {
    Content,
    Name,
    Other,
}

impl<'de> de::Deserialize<'de> for MessageField {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MessageField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MessageField, E> {
                Ok(match s {
                    "content" => MessageField::Content,
                    "name" => MessageField::Name,
                    _ => MessageField::Other,
                })
            }
        }
        de.deserialize_identifier(V)
    }
}

/// A message's `content`: a string, or parts whose `text` is counted.
struct Content<'p>(&'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Content<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Content<'_> {
    skip_scalars!();

    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message content")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.text(s);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Part(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        IgnoredAny.visit_map(map).map(|_| ())
    }
}

/// One content part: its `text`, if any, is counted.
struct Part<'p>(&'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Part<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part<'_> {
    skip_scalars!();

    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<PartField>()? {
            match key {
                PartField::Text => map.next_value_seed(Text(&mut *self.0))?,
                PartField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.text(s);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| ())
    }
}

enum PartField {
    Text,
    Other,
}

impl<'de> de::Deserialize<'de> for PartField {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PartField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PartField, E> {
                Ok(if s == "text" {
                    PartField::Text
                } else {
                    PartField::Other
                })
            }
        }
        de.deserialize_identifier(V)
    }
}

/// A value whose string, if it is one, is counted; anything else is skipped.
struct Text<'p>(&'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        match de.deserialize_any(Input(self.0))? {
            Some(()) | None => Ok(()),
        }
    }
}

/// `prompt` or `input`: a string, token ids, or arrays of either.
/// `None` when absent or null.
pub struct Input<'p>(pub &'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Input<'_> {
    type Value = Option<()>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Input<'_> {
    type Value = Option<()>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text or token ids")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.0.text(s);
        Ok(Some(()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.0.add(1);
        Ok(Some(()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.0.add(1);
        Ok(Some(()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Input(&mut *self.0))?.is_some() {}
        Ok(Some(()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Some(()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    fn chat(body: &str) -> u64 {
        parse(Endpoint::ChatCompletions, body.as_bytes(), true)
            .unwrap()
            .prompt_tokens
            .unwrap()
    }

    #[test]
    fn remembered_counts_equal_fresh_ones() {
        // More distinct pieces than slots, each counted twice: first
        // (tokenized or remembered) and again (remembered or, if evicted,
        // tokenized); both must equal the tokenizer's own count.
        let pieces: Vec<String> = (0..MEMO_SLOTS + 500)
            .map(|i| format!("piece {i} of {} words", "many ".repeat(i % 7)))
            .collect();
        for round in 0..2 {
            for p in &pieces {
                assert_eq!(encode_count(p), tokenize_count(p), "round {round}: {p}");
            }
        }
        assert_eq!(encode_count("hello world"), 2);
        assert_eq!(encode_count("hello world"), 2);
    }

    #[test]
    fn text_is_counted_with_o200k() {
        assert_eq!(count_text(""), 0);
        assert_eq!(count_text("hello world"), 2);
        // 2 + 4 framing + 3 reply
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"user","content":"hello world"}]}"#),
            9
        );
    }

    #[test]
    fn parts_names_and_escapes_count() {
        let plain = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"line one\nline \"two\""}]}"#,
        );
        assert_eq!(plain, count_text("line one\nline \"two\"") + 7);
        let parts = chat(
            r#"{"messages":[{"role":"user","name":"bob","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"x"}}]}],"model":"m"}"#,
        );
        assert_eq!(parts, 2 + count_text("bob") + 1 + 7);
        // Odd shapes are the upstream's to judge; they count nothing.
        assert_eq!(
            chat(r#"{"model":"m","messages":[1,{"content":null},{"content":{"a":1}}]}"#),
            3 + 4 + 4
        );
    }

    #[test]
    fn prompt_and_input_shapes() {
        let count = |endpoint, body: &str| {
            parse(endpoint, body.as_bytes(), true)
                .unwrap()
                .prompt_tokens
                .unwrap()
        };
        assert_eq!(
            count(
                Endpoint::Completions,
                r#"{"model":"m","prompt":"hello world"}"#
            ),
            2
        );
        assert_eq!(
            count(
                Endpoint::Completions,
                r#"{"model":"m","prompt":["hello world","hello"]}"#
            ),
            3
        );
        assert_eq!(
            count(
                Endpoint::Embeddings,
                r#"{"model":"m","input":[[1,2,3],[4]]}"#
            ),
            4
        );
        assert_eq!(
            count(Endpoint::Embeddings, r#"{"model":"m","input":[5,6]}"#),
            2
        );
    }

    #[test]
    fn off_counts_nothing_and_falls_back_to_bytes() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello world"}]}"#;
        let head = parse(Endpoint::ChatCompletions, body, false).unwrap();
        assert_eq!(head.prompt_tokens, None);
        assert_eq!(
            head.prompt_estimate(body.len()),
            (body.len() as u64).div_ceil(4)
        );
    }

    fn exact(text: &str) -> u64 {
        tiktoken_rs::o200k_base_singleton().count_ordinary(text) as u64
    }

    fn assert_close(estimate: u64, exact: u64, tolerance: f64) {
        let error = (estimate as f64 - exact as f64).abs() / exact as f64;
        assert!(error < tolerance, "estimate {estimate} vs exact {exact}");
    }

    #[test]
    fn long_text_is_sampled_and_close() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let text = sentence.repeat(20_000); // 900 kB
        assert_close(count_text(&text), exact(&text), 0.02);
        // Up to EXACT_BYTES of text is exact.
        let short = sentence.repeat(EXACT_BYTES / sentence.len());
        assert_eq!(count_text(&short), exact(&short));
    }

    #[test]
    fn a_long_document_is_estimated_at_its_own_rate() {
        let instructions =
            "Summarise the document below in three sentences, in English. ".repeat(10);
        let document = "第一章介绍了系统的设计目标和主要约束条件。".repeat(2_000);
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": instructions},
            {"role": "user", "content": document},
        ]});
        let got = chat(&body.to_string());
        assert_close(got, exact(&instructions) + exact(&document) + 11, 0.05);
    }

    /// BPE's cost grows faster than the length of the word it is given, so
    /// text without whitespace goes to the tokenizer in short pieces (how
    /// long counting takes is for `benches/prompt_tokens.rs`, not a test).
    #[test]
    fn text_without_spaces_is_cut_into_pieces() {
        for text in ["a".repeat(100_000), "é".repeat(40_000)] {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let end = piece_end(rest);
                assert!(end > 0 && end <= PIECE_BYTES, "a piece of {end} bytes");
                if end < rest.len() {
                    assert!(end <= UNSPACED_PIECE_BYTES, "a piece of {end} bytes");
                }
                // Multi-byte characters are never split (split_at would panic).
                rest = rest.split_at(end).1;
            }
            assert!(count_text(&text) > 0);
        }
    }
}
