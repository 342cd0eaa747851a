//! Text from outside, as a person sees it: the one escaper for everything maskstore prints
//! that a store, a server or another tool chose — object names, content types, metadata,
//! checksums, server error codes and messages.
//!
//! Such text can carry terminal escapes (ESC, OSC: set the window title, clear the
//! screen), newlines that forge output lines, and invisible Unicode format characters
//! (bidi overrides) that make it read as something else. [`shown`] escapes exactly those,
//! plus the backslash that introduces an escape, so what is printed is unambiguous and
//! reversible; every other character, Korean and accented letters included, is printed as
//! it is. JSON output needs no escaper: serde writes exact, escaped strings.
//!
//! ```
//! use maskstore_core::shown;
//! assert_eq!(shown("mask/간/liver.nii.gz"), "mask/간/liver.nii.gz");
//! assert_eq!(shown("evil\u{1b}]0;owned\u{7}\nforged"), "evil\\u{1b}]0;owned\\u{7}\\nforged");
//! assert_eq!(shown("a\\b"), "a\\\\b");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::key::is_format_character;

/// `text` with control characters (C0, DEL, C1), Unicode format characters and `\`
/// escaped Rust-style (`\n`, `\t`, `\u{1b}`, `\\`); borrowed when nothing needed escaping.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_shown(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`shown`], cut after `max` bytes of output with the original length named
/// (`… (N bytes in all)`): for text whose length the outside chose (a server's error body,
/// a metadata value), so one answer cannot flood the screen.
pub fn shown_cut(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= max {
            let _ = write!(out, "… ({} bytes in all)", text.len());
            return out;
        }
        push_shown(&mut out, c);
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || is_format_character(c)
}

fn push_shown(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        for text in [
            "",
            "mask/a b/c+d=e&f#g?h",
            "Dr. Müller",
            "간 분할 마스크",
            "🫀",
        ] {
            assert!(matches!(shown(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn terminal_escapes_newlines_and_format_characters_are_escaped() {
        let hostile =
            "a\u{1b}[2J\u{1b}]0;title\u{7}b\r\nok: forged\u{202e}gpj.exe\u{9b}\u{7f}\u{200d}";
        let out = shown(hostile);
        assert!(
            !out.chars()
                .any(|c| c.is_control() || is_format_character(c)),
            "{out}"
        );
        assert_eq!(
            out,
            "a\\u{1b}[2J\\u{1b}]0;title\\u{7}b\\r\\nok: forged\\u{202e}gpj.exe\\u{9b}\\u{7f}\\u{200d}"
        );
    }

    #[test]
    fn a_backslash_is_doubled_so_an_escape_cannot_be_forged() {
        // The text `\u{1b}` (six characters) must not print like an escaped ESC.
        assert_eq!(shown("\\u{1b}"), "\\\\u{1b}");
        assert_ne!(shown("\\u{1b}"), shown("\u{1b}"));
    }

    #[test]
    fn cut_names_the_whole_length() {
        let long = "x".repeat(10_000);
        let out = shown_cut(&long, 100);
        assert!(out.starts_with(&"x".repeat(100)));
        assert!(out.ends_with("… (10000 bytes in all)"), "{out}");
        assert_eq!(shown_cut("short\n", 100), "short\\n");
    }
}
