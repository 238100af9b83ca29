//! Scanning one input: a file read in fixed chunks (so a huge file costs no
//! more memory than a small one), or a buffer already in memory (a git
//! blob). Line numbers are counted only up to each hit, with a vectorised
//! newline count, so clean text pays for nothing but the prefix search and
//! the newline count of the chunks it passes through.

use std::io::{self, Read};

use keyward_core::PlainKey;

use crate::matcher::{KeyMatch, Matcher, MAX_KEY_LEN};

/// How much of a file is read at once: small enough to stay in a core's L2
/// cache while it is searched, large enough that system calls do not show.
const CHUNK: usize = 256 << 10;

/// Files with a NUL byte this early are binary, as git and ripgrep decide.
const BINARY_SNIFF: usize = 8 << 10;

/// A key found in one input.
#[derive(Debug, Clone)]
pub struct Hit {
    /// 1-based.
    pub line: u64,
    pub key: PlainKey,
}

/// What scanning one input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A NUL byte in the first 8 KiB: skipped.
    Binary,
    /// Searched whole; this many bytes.
    Text { bytes: u64 },
}

/// Whether `head` (an input's first bytes) marks it as binary.
pub fn is_binary(head: &[u8]) -> bool {
    memchr::memchr(0, &head[..head.len().min(BINARY_SNIFF)]).is_some()
}

/// Searches whole in-memory inputs.
pub fn scan_slice(matcher: &Matcher, data: &[u8], hits: &mut Vec<Hit>) -> Outcome {
    if is_binary(data) {
        return Outcome::Binary;
    }
    let mut lines = LineCounter::default();
    matcher.each_key(data, 0, data.len(), |m| {
        hits.extend(hit(data, m, &mut lines))
    });
    Outcome::Text {
        bytes: data.len() as u64,
    }
}

/// One thread's scanner: the prefix searcher and a read buffer reused for
/// every file the thread scans.
pub struct StreamScanner {
    matcher: Matcher,
    buf: Vec<u8>,
}

impl Default for StreamScanner {
    fn default() -> Self {
        StreamScanner {
            matcher: Matcher::default(),
            buf: vec![0; CHUNK],
        }
    }
}

impl StreamScanner {
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Searches `input` to its end, pushing what it finds onto `hits`.
    ///
    /// Each round fills the buffer, searches every position whose key would
    /// end (with its right boundary byte) inside it, then moves the
    /// unsearched tail, plus one byte of left context, to the front.
    pub fn scan_reader(
        &mut self,
        mut input: impl Read,
        hits: &mut Vec<Hit>,
    ) -> io::Result<Outcome> {
        let StreamScanner { matcher, buf } = self;
        let mut len = 0;
        let mut bytes = 0u64;
        let mut from = 0;
        let mut lines = LineCounter::default();
        loop {
            let read = fill(&mut input, &mut buf[len..])?;
            bytes += read as u64;
            len += read;
            let at_end = len < buf.len();
            if bytes == read as u64 && is_binary(&buf[..len]) {
                return Ok(Outcome::Binary);
            }
            let data = &buf[..len];
            let until = if at_end { len } else { len - (MAX_KEY_LEN + 1) };
            matcher.each_key(data, from, until, |m| hits.extend(hit(data, m, &mut lines)));
            if at_end {
                return Ok(Outcome::Text { bytes });
            }
            let keep = until - 1;
            lines.forget(data, keep);
            buf.copy_within(keep..len, 0);
            len -= keep;
            from = 1;
        }
    }
}

/// The matcher verified the bytes as a key, so they are ASCII and parse;
/// `None` is unreachable but costs nothing to handle.
fn hit(data: &[u8], m: KeyMatch, lines: &mut LineCounter) -> Option<Hit> {
    let line = lines.line_at(data, m.start);
    let text = std::str::from_utf8(&data[m.start..m.end()]).ok()?;
    let key = PlainKey::parse(text).ok()?;
    Some(Hit { line, key })
}

/// The line number at a position of the current buffer, advanced lazily.
#[derive(Debug)]
struct LineCounter {
    /// Where counting stopped, in the current buffer.
    pos: usize,
    /// The 1-based line `pos` is on.
    line: u64,
}

impl Default for LineCounter {
    fn default() -> Self {
        LineCounter { pos: 0, line: 1 }
    }
}

impl LineCounter {
    fn line_at(&mut self, data: &[u8], pos: usize) -> u64 {
        self.line += memchr::memchr_iter(b'\n', &data[self.pos..pos]).count() as u64;
        self.pos = pos;
        self.line
    }

    /// Counts up to `keep`, which becomes position 0 of the next buffer.
    fn forget(&mut self, data: &[u8], keep: usize) {
        self.line_at(data, keep);
        self.pos = 0;
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::KeyKind;

    /// Reads one byte at a time, to show chunking does not change results.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn lines_of(hits: &[Hit]) -> Vec<u64> {
        hits.iter().map(|h| h.line).collect()
    }

    #[test]
    fn keys_across_chunk_edges_are_found_once_with_their_lines() {
        let key = PlainKey::generate(KeyKind::Project);
        let admin = PlainKey::generate(KeyKind::Admin);
        // Put keys at every offset around the first chunk boundaries.
        for shift in 0..(MAX_KEY_LEN + 4) {
            let mut text = Vec::new();
            let mut expected = Vec::new();
            let mut line = 1;
            while text.len() < 3 * CHUNK {
                let gap = CHUNK - MAX_KEY_LEN - 3 + shift;
                let filler_lines = gap / 64;
                for _ in 0..filler_lines {
                    text.extend_from_slice(&[b'.'; 63]);
                    text.push(b'\n');
                }
                line += filler_lines as u64;
                text.extend_from_slice(&vec![b' '; gap % 64]);
                let k = if line % 2 == 0 { &key } else { &admin };
                text.extend_from_slice(k.expose().as_bytes());
                expected.push(line);
            }
            let mut hits = Vec::new();
            let outcome = StreamScanner::default()
                .scan_reader(&text[..], &mut hits)
                .unwrap();
            assert_eq!(
                outcome,
                Outcome::Text {
                    bytes: text.len() as u64
                }
            );
            assert_eq!(lines_of(&hits), expected, "shift {shift}");
            let mut in_memory = Vec::new();
            scan_slice(&Matcher::default(), &text, &mut in_memory);
            assert_eq!(lines_of(&in_memory), expected, "shift {shift}");
        }
    }

    #[test]
    fn short_reads_change_nothing() {
        let key = PlainKey::generate(KeyKind::Project);
        let text = format!("one\ntwo {}\nthree\n\nfive={}", key.expose(), key.expose());
        let mut hits = Vec::new();
        StreamScanner::default()
            .scan_reader(Trickle(text.as_bytes()), &mut hits)
            .unwrap();
        assert_eq!(lines_of(&hits), vec![2, 5]);
        assert_eq!(hits[0].key.expose(), key.expose());
    }

    #[test]
    fn a_nul_byte_early_makes_an_input_binary() {
        let key = PlainKey::generate(KeyKind::Project);
        let mut data = b"\x7fELF\0".to_vec();
        data.extend_from_slice(key.expose().as_bytes());
        let mut hits = Vec::new();
        assert_eq!(
            StreamScanner::default()
                .scan_reader(&data[..], &mut hits)
                .unwrap(),
            Outcome::Binary
        );
        assert_eq!(
            scan_slice(&Matcher::default(), &data, &mut hits),
            Outcome::Binary
        );
        assert!(hits.is_empty());
        // A NUL past the first 8 KiB does not.
        let mut late = vec![b'a'; BINARY_SNIFF];
        late.push(b'\n');
        late.push(0);
        late.extend_from_slice(key.expose().as_bytes());
        scan_slice(&Matcher::default(), &late, &mut hits);
        assert_eq!(lines_of(&hits), vec![2]);
    }
}
