//! Names as the scanner prints them. A file name may hold any byte but `/`
//! and NUL, so a name carrying an escape sequence could recolour or clear
//! the terminal, and one carrying a newline could print a fake finding.
//! Control characters (C0, DEL, C1), bidirectional overrides, line
//! separators, bytes that are not UTF-8 and the backslash itself are written
//! as escapes: every name prints as one inert line, and two different names
//! never print alike.

use std::fmt::Write;
use std::path::Path;

/// `path` with every character a terminal could act on escaped; bytes that
/// are not UTF-8 show as `\xNN`.
pub fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_encoded_bytes().utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// `text` with every character a terminal could act on escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// Serialised JSON made safe for a terminal. JSON already escapes C0
/// characters, `"` and `\`, but passes DEL, C1 controls and bidirectional
/// overrides through raw; they can only sit inside strings (JSON's own
/// syntax is ASCII), where `\uXXXX` means the same character, so decoders
/// read exactly the same values.
pub fn inert_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // Pretty-printing puts raw newlines between values; every other
        // ASCII control JSON has escaped already.
        if c == '\u{7f}' || (!c.is_ascii() && acted_on(c)) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if acted_on(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Whether a terminal (or a text viewer) may do something with `c` other
/// than draw it: controls, the Unicode line and paragraph separators, and
/// the bidirectional marks, embeddings, overrides and isolates that can make
/// text display in another order than it is stored.
fn acted_on(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_unchanged() {
        for name in [
            "src/config.py",
            "dir with spaces/ünïcödé.env",
            "日本/鍵.txt",
        ] {
            assert_eq!(escape(name), name);
            assert_eq!(escape_path(Path::new(name)), name);
        }
    }

    #[test]
    fn controls_print_as_escapes() {
        assert_eq!(escape("red\x1b[31m.env"), "red\\x1b[31m.env");
        assert_eq!(
            escape("a.env:1: sk-kw-fake\nb.env"),
            "a.env:1: sk-kw-fake\\nb.env"
        );
        assert_eq!(escape("t\tr\rbell\x07del\x7f"), "t\\tr\\rbell\\x07del\\x7f");
        // C1 CSI, a right-to-left override, a line separator.
        assert_eq!(
            escape("csi\u{9b}31m rlo\u{202e}ls\u{2028}"),
            "csi\\u{9b}31m rlo\\u{202e}ls\\u{2028}"
        );
        // A literal backslash cannot pass for an escape.
        assert_eq!(escape("a\\x1b"), "a\\\\x1b");
    }

    #[test]
    fn bytes_that_are_not_utf8_print_as_hex() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"bad\xff\x9b[2J.env"));
        assert_eq!(escape_path(path), "bad\\xff\\x9b[2J.env");
    }

    #[test]
    fn json_keeps_its_values_and_loses_its_raw_controls() {
        let name = "csi\u{9b}2J del\u{7f} rlo\u{202e} esc\x1b nl\n back\\slash";
        let json = serde_json::to_string_pretty(&serde_json::json!([{ "file": name }])).unwrap();
        let inert = inert_json(&json);
        assert!(
            inert.chars().all(|c| c == '\n' || !acted_on(c)),
            "{inert:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(back[0]["file"], name);
    }
}
