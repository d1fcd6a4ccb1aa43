//! The two rules of JSON text that serde_json checks only in the strings it reads, applied to the
//! whole body, including `currency` and unknown fields, which it skips:
//!
//! - the text is UTF-8 (RFC 8259 section 8.1): serde_json skips an ignored string's bytes
//!   without decoding them, so `"currency":"\xff"` would be charged;
//! - every `\u` escape is a Unicode character: a UTF-16 surrogate (`\uD800`–`\uDFFF`) only as a
//!   leading one followed at once by a trailing one. RFC 8259 (section 8.2) lets the grammar
//!   through and calls the result unpredictable; I-JSON (RFC 7493, section 2.1) forbids it; and
//!   serde_json refuses it in every string it reads (`lone leading surrogate in hex escape`), but
//!   not in a string it skips. So the provider refuses it wherever it stands.
//!
//! Errors name the place as serde_json's do, `at line L column C`, plus the byte offset.

use std::fmt;

/// `body` as text, or the message naming the first byte that is not UTF-8.
pub(super) fn utf8(body: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(body).map_err(|e| {
        let at = e.valid_up_to();
        format!(
            "invalid charge request: invalid UTF-8 byte 0x{:02x} at {}: JSON text must be UTF-8",
            body[at],
            Position::of(body, at)
        )
    })
}

/// Checks that no `\u` escape of `json` is a lone surrogate.
///
/// `json` must already have parsed as JSON: then a backslash can only start an escape inside a
/// string, and `\u` is always followed by four hex digits, so the scan needs no other grammar.
pub(super) fn no_lone_surrogates(json: &str) -> Result<(), String> {
    let bytes = json.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        // `\uXXXX` at `at`: the code unit, or `None` for any other escape.
        let hex = bytes.get(at..at + 6)?.strip_prefix(b"\\u")?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut from = 0;
    // Antaeus's bodies have no backslash: one fast search and done.
    while let Some(found) = bytes[from..].iter().position(|&b| b == b'\\') {
        let at = from + found;
        from = match unit(at) {
            None => at + 2,
            Some(0xD800..=0xDBFF) if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) => at + 12,
            Some(code @ 0xD800..=0xDFFF) => {
                return Err(format!(
                    "invalid charge request: lone surrogate \\u{code:04x} in a string at {}: \
                     JSON strings must be Unicode text (a surrogate only as a pair)",
                    Position::of(bytes, at)
                ));
            }
            Some(_) => at + 6,
        };
    }
    Ok(())
}

/// Where a byte is, as serde_json reports it: 1-based line and column (in bytes), and the
/// 0-based byte offset.
struct Position {
    line: usize,
    column: usize,
    offset: usize,
}

impl Position {
    fn of(text: &[u8], offset: usize) -> Position {
        let before = &text[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        Position {
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            column: offset - line_start + 1,
            offset,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {} (byte offset {})",
            self.line, self.column, self.offset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_that_is_not_utf8_is_named_by_line_column_and_offset() {
        let err = utf8(b"{\"currency\":\"\xff\xfe\"}").unwrap_err();
        assert_eq!(
            err,
            "invalid charge request: invalid UTF-8 byte 0xff at line 1 column 14 (byte offset 13): JSON text must be UTF-8"
        );
        let err = utf8(b"{\n  \"a\": 1,\n  \"b\": \"\xc3\x28\"}").unwrap_err();
        assert!(
            err.contains("byte 0xc3 at line 3 column 9 (byte offset 20)"),
            "{err}"
        );
    }

    #[test]
    fn encoded_surrogates_overlong_forms_and_truncated_characters_are_not_utf8() {
        for bad in [
            &b"\"\xed\xa0\x80\""[..],
            b"\"\xc0\xaf\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xe2\x82\"",
        ] {
            assert!(utf8(bad).is_err(), "{bad:?}");
        }
        assert_eq!(utf8("\"ünï €𝄞\"".as_bytes()), Ok("\"ünï €𝄞\""));
    }

    #[test]
    fn a_lone_surrogate_escape_is_refused_where_it_stands() {
        for (json, at) in [
            (
                r#"{"currency":"\ud800"}"#,
                "\\ud800 in a string at line 1 column 14",
            ),
            (
                r#"{"currency":"\uDC00"}"#,
                "\\udc00 in a string at line 1 column 14",
            ),
            (
                r#"{"c":"\ud800\u0041"}"#,
                "\\ud800 in a string at line 1 column 7",
            ),
            (r#"{"c":"\ud800\n"}"#, "\\ud800"),
            (r#"{"c":"x\udbff"}"#, "\\udbff"),
            (
                r#"{"c":"\ud83d\ude00\ude00"}"#,
                "\\ude00 in a string at line 1 column 19",
            ),
            (
                "{\n\"c\":[\"\\udead\"]}",
                "\\udead in a string at line 2 column 7",
            ),
        ] {
            let err = no_lone_surrogates(json).unwrap_err();
            assert!(err.contains(at), "{json}: {err}");
        }
    }

    #[test]
    fn pairs_other_escapes_and_escaped_backslashes_pass() {
        for json in [
            r#"{"currency":{}}"#,
            r#"{"c":"\ud83d\ude00"}"#,
            r#"{"c":"\uD834\uDD1E and \u00e9 and \u0000"}"#,
            r#"{"c":"\\ud800"}"#,
            r#"{"c":"\\\ud83d\ude00\\"}"#,
            r#"{"c":"\"\/\b\f\n\r\t"}"#,
        ] {
            assert_eq!(no_lone_surrogates(json), Ok(()), "{json}");
        }
    }
}
