//! Short header values made per response (rate-limit counts and resets,
//! the processing time), written side by side into one buffer. Made one by
//! one, each value is an allocation of its own, and a gateway response
//! carries seven of them.

use std::fmt::Write;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::BytesMut;
use smallvec::SmallVec;

/// Values being written; [`HeaderText::write_to`] adds them to a response.
#[derive(Default)]
pub struct HeaderText {
    text: BytesMut,
    /// Each value's name and where its text ends in `text`.
    values: SmallVec<[(&'static HeaderName, usize); 8]>,
}

impl HeaderText {
    pub fn new() -> Self {
        HeaderText {
            text: BytesMut::with_capacity(128),
            values: SmallVec::new(),
        }
    }

    /// A value written by `write`.
    pub fn put(&mut self, name: &'static HeaderName, write: impl FnOnce(&mut BytesMut)) {
        write(&mut self.text);
        self.values.push((name, self.text.len()));
    }

    /// A number.
    pub fn number(&mut self, name: &'static HeaderName, n: u64) {
        self.put(name, |text| {
            let _ = text.write_str(itoa::Buffer::new().format(n));
        });
    }

    /// Adds the values to `headers`, replacing any of the same name.
    pub fn write_to(self, headers: &mut HeaderMap) {
        let text = self.text.freeze();
        let mut start = 0;
        for (name, end) in self.values {
            // A slice shares the buffer: no copy, no allocation.
            if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
                headers.insert(name.clone(), value);
            }
            start = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: HeaderName = HeaderName::from_static("x-a");
    static B: HeaderName = HeaderName::from_static("x-b");
    static C: HeaderName = HeaderName::from_static("x-c");

    #[test]
    fn values_are_kept_apart_and_replace_older_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(A.clone(), HeaderValue::from_static("old"));
        let mut text = HeaderText::new();
        text.number(&A, 0);
        text.put(&B, |t| t.extend_from_slice(b"250ms"));
        text.number(&C, u64::MAX);
        text.write_to(&mut headers);
        assert_eq!(headers.get_all(&A).iter().count(), 1);
        assert_eq!(headers[&A], "0");
        assert_eq!(headers[&B], "250ms");
        assert_eq!(headers[&C], "18446744073709551615");
    }

    #[test]
    fn a_value_that_is_not_header_text_is_left_out() {
        let mut headers = HeaderMap::new();
        let mut text = HeaderText::new();
        text.put(&A, |t| t.extend_from_slice(b"bad\nvalue"));
        text.number(&B, 7);
        text.write_to(&mut headers);
        assert!(headers.get(&A).is_none());
        assert_eq!(headers[&B], "7");
    }
}
