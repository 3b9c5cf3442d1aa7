//! Text that may go into XML or onto one header line: XML 1.0 forbids most
//! C0 controls, and one of them in a stanza makes the server close the
//! whole component stream; a CR or LF in a header value starts a header.

/// Returns `text` with characters XML 1.0 cannot carry replaced by U+FFFD
/// (tab, line feed and carriage return are kept).
pub(crate) fn xml_safe(text: &str) -> String {
    cleaned(text, false)
}

/// `xml_safe(&text.replace("\r\n", "\n"))` in one pass: XMPP bodies end
/// lines with LF alone.
pub(crate) fn xml_safe_lf(text: &str) -> String {
    cleaned(text, true)
}

/// One pass over the bytes, copying runs of clean text whole: a C0
/// control other than tab, LF and CR, or U+FFFE / U+FFFF (EF BF BE/BF;
/// `str` holds no surrogates) becomes U+FFFD; with `lf`, a CR before an
/// LF goes. Runs start and end at ASCII bytes or before a 3-byte
/// character: always character boundaries.
fn cleaned(text: &str, lf: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut run = 0;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        let (skip, replace) = match b {
            b'\r' if lf && bytes.get(at + 1) == Some(&b'\n') => (1, false),
            b'\t' | b'\n' | b'\r' => (0, false),
            0..=0x1f => (1, true),
            0xef if matches!(bytes.get(at + 1..at + 3), Some([0xbf, 0xbe | 0xbf])) => (3, true),
            _ => (0, false),
        };
        if skip == 0 {
            at += 1;
            continue;
        }
        out.push_str(text.get(run..at).unwrap_or_default());
        if replace {
            out.push('\u{FFFD}');
        }
        at += skip;
        run = at;
    }
    out.push_str(text.get(run..).unwrap_or_default());
    out
}

/// The characters XML 1.0 can carry (the rule [`cleaned`] applies).
#[cfg(test)]
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || ('\u{20}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c)
        || c >= '\u{10000}'
}

/// One line of text: controls (CR, LF, NUL…) become spaces, runs of white
/// space one space.
pub(crate) fn one_line(value: &str) -> String {
    let spaced: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_replaced() {
        assert_eq!(xml_safe("a\0b\u{1b}c\td\r\n"), "a\u{FFFD}b\u{FFFD}c\td\r\n");
        assert_eq!(xml_safe("\u{FFFE}"), "\u{FFFD}");
    }

    #[test]
    fn the_fast_paths_agree_with_the_char_by_char_rules() {
        for text in [
            "",
            "plain",
            "a\r\nb\r\n",
            "lone\rcr\r\r\n",
            "nul\0 and esc\u{1b}",
            "\u{FFFE}x\u{FFFF}y\u{FFFD}\u{EFBF}",
            "é日本\u{10000}\r\n\u{7f}\u{85}",
            "tail\r",
        ] {
            let slow: String = text
                .chars()
                .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect();
            assert_eq!(xml_safe(text), slow, "{text:?}");
            let slow_lf: String = text
                .replace("\r\n", "\n")
                .chars()
                .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect();
            assert_eq!(xml_safe_lf(text), slow_lf, "{text:?}");
        }
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
