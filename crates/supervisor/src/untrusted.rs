//! Text from outside the process made safe to store and to log.
//!
//! Brokers send reason strings and properties that may hold any byte (NUL
//! included, which Postgres `text` rejects), error texts quote what a peer
//! sent, and row values are echoed in validation messages. Everything of the
//! kind passes through [`clean`] before it reaches a log line, a state row or
//! an event: control and bidirectional-formatting characters are escaped (so
//! nothing can forge a log line or hide text), and the length is capped at
//! [`MAX_TEXT_BYTES`].

use std::fmt::Write;

/// Longest cleaned text, in bytes, before the `…` that marks a cut.
pub const MAX_TEXT_BYTES: usize = 1024;

/// `s` with control, line-separator and bidirectional-formatting characters
/// escaped (`\n`, `\t`, `\0`, `\u{202e}`) and cut to at most
/// [`MAX_TEXT_BYTES`] bytes (plus `…`) on a character boundary.
pub fn clean(s: &str) -> String {
    cap(s, MAX_TEXT_BYTES)
}

/// Like [`clean`] with another length bound (for short echoes of values).
pub fn cap(s: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_bytes) + 4);
    for c in s.chars() {
        let before = out.len();
        push_escaped(&mut out, c);
        if out.len() > max_bytes {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// Bytes that should be UTF-8 but may not be: decoded lossily, then cleaned.
pub fn clean_bytes(b: &[u8]) -> String {
    clean(&String::from_utf8_lossy(b))
}

/// True when `c` would be escaped by [`clean`].
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// Line separators and the bidirectional controls that reorder how a log
/// line is displayed.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if is_unsafe(c) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_break_a_row_or_a_log_line() {
        assert_eq!(clean("a\0b"), "a\\0b");
        assert_eq!(clean("line\nERROR fake"), "line\\nERROR fake");
        assert_eq!(clean("tab\there\r"), "tab\\there\\r");
        assert_eq!(clean("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(clean("abc\u{202e}cba"), "abc\\u{202e}cba");
        assert_eq!(clean("\u{7f}\u{85}"), "\\u{7f}\\u{85}");
        assert_eq!(clean("plain text, ünïcode ok"), "plain text, ünïcode ok");
    }

    #[test]
    fn caps_length_on_a_character_boundary() {
        let long = "é".repeat(2_000);
        let out = clean(&long);
        assert!(
            out.len() <= MAX_TEXT_BYTES + '…'.len_utf8(),
            "{}",
            out.len()
        );
        assert!(out.ends_with('…'));
        let nuls = "\0".repeat(5_000);
        let out = clean(&nuls);
        assert!(out.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert!(!out.contains('\0'));
        assert_eq!(cap("abcdef", 3), "abc…");
        assert_eq!(cap("abc", 3), "abc");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(clean_bytes(b"ok\xff\0"), "ok\u{fffd}\\0");
    }
}
