//! Text that a caller or a user controls, made safe to put on one line of a terminal or a
//! log: control characters, line and paragraph separators, bidirectional overrides and
//! other invisible characters become visible escapes (`\n`, `\u{1b}`, `\u{202e}`), and so
//! do `\` and `"`, so that a quoted value cannot be closed early or a field forged.

/// The longest stretch of one value kept; longer text is cut and marked with `…`.
pub const MAX_FIELD_CHARS: usize = 256;

/// `text` (at most `max_chars` of it) on one line, every character that is invisible,
/// moves the cursor or could end a quoted value escaped as Rust's `escape_debug` does.
pub fn escape(text: &str, max_chars: usize) -> String {
    // An apostrophe closes nothing here (values are in double quotes) and is common in
    // messages ("alice's"), so it stays as it is.
    escape_all_but(text, max_chars, &['\''])
}

/// A whole line of prose on one line of a terminal: escaped as [`escape`] escapes, but
/// quotes and backslashes kept, as its values were quoted when it was composed.
pub fn visible(text: &str) -> String {
    escape_all_but(text, usize::MAX, &['\'', '"', '\\'])
}

fn escape_all_but(text: &str, max_chars: usize, kept: &[char]) -> String {
    let mut chars = text.chars();
    let mut out = String::new();
    for c in chars.by_ref().take(max_chars) {
        if kept.contains(&c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// `"text"`, escaped and cut at [`MAX_FIELD_CHARS`]: the form of every value in a log line.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escape(text, MAX_FIELD_CHARS))
}

/// A name that goes where syslog expects a bare word (the program name before `[pid]:`,
/// the service in `pam_otp(SERVICE:auth)`): letters, digits and `._+@-` stay, every other
/// byte becomes `\xHH`, so no space, colon, bracket or line break can reach the header.
pub fn bare_word(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes().take(MAX_FIELD_CHARS) {
        if byte.is_ascii_alphanumeric() || b"._+@-".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_invisible_characters_are_escaped() {
        let hostile = "\u{1b}[2J\u{1b}]0;owned\u{7}\nuser: x\r\t\u{7f}\u{85}\u{9b}";
        assert_eq!(
            escape(hostile, 1000),
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nuser: x\\r\\t\\u{7f}\\u{85}\\u{9b}"
        );
        for invisible in [
            '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200b}', '\u{200e}', '\u{200f}',
            '\u{061c}', '\u{feff}', '\u{ad}',
        ] {
            let shown = escape(&format!("a{invisible}b"), 100);
            assert_eq!(
                shown,
                format!("a\\u{{{:x}}}b", invisible as u32),
                "{invisible:?}"
            );
        }
    }

    #[test]
    fn visible_prose_keeps_its_quotes_and_escapes_the_rest() {
        assert_eq!(
            visible("is \"required\" in C:\\x, alice's\u{1b}]0;x\u{7}\u{202e}\u{2028}"),
            "is \"required\" in C:\\x, alice's\\u{1b}]0;x\\u{7}\\u{202e}\\u{2028}"
        );
    }

    #[test]
    fn quotes_and_backslashes_cannot_close_a_value() {
        assert_eq!(
            quoted("10.9.9.9\" user=\"root"),
            "\"10.9.9.9\\\" user=\\\"root\""
        );
        assert_eq!(quoted("a\\\"b"), "\"a\\\\\\\"b\"");
        assert_eq!(quoted("plain-host.example"), "\"plain-host.example\"");
        assert_eq!(quoted("héllo wörld"), "\"héllo wörld\"");
    }

    #[test]
    fn long_values_are_cut_visibly() {
        let long = "x".repeat(300);
        let shown = escape(&long, MAX_FIELD_CHARS);
        assert_eq!(shown.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(escape("short", MAX_FIELD_CHARS), "short");
    }

    #[test]
    fn bare_words_keep_only_word_characters() {
        assert_eq!(bare_word("sshd"), "sshd");
        assert_eq!(bare_word("pam-otp_test.1+x@y"), "pam-otp_test.1+x@y");
        assert_eq!(
            bare_word("y\nsshd[1]: Acc"),
            "y\\x0asshd\\x5b1\\x5d\\x3a\\x20Acc"
        );
        assert_eq!(bare_word("é"), "\\xc3\\xa9");
    }
}
