//! A string that never prints itself.

use std::fmt;

/// What a [`Secret`] prints instead of its value.
pub const REDACTED: &str = "[redacted]";

/// The first character of `secret` that no editor shows and no secret typed or generated
/// as text holds, with its byte offset: a Unicode format character (zero-width space,
/// byte-order mark, direction marks, soft hyphen) or white space other than the ASCII
/// space (no-break space, line separator). Pasted from a web console, a chat or a
/// document with the secret, it would be signed with and fail every request obscurely.
pub fn invisible_character(secret: &str) -> Option<(usize, char)> {
    secret
        .char_indices()
        .find(|(_, c)| crate::key::is_format_character(*c) || (c.is_whitespace() && !c.is_ascii()))
}

/// A secret value (S3 secret key, signing secret…). Debug and Display print
/// [`REDACTED`]; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call it only where the value is handed to the code that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG");
        for text in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{secret:#?}"),
        ] {
            assert!(!text.contains("wJalr"), "{text}");
            assert_eq!(text, REDACTED);
        }
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG");
    }
}
