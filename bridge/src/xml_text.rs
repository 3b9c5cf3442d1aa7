//! Text that may go into XML or onto one header line: XML 1.0 forbids most
//! C0 controls, and one of them in a stanza makes the server close the
//! whole component stream; a CR or LF in a header value starts a header.

/// Returns `text` with characters XML 1.0 cannot carry replaced by U+FFFD
/// (tab, line feed and carriage return are kept).
pub(crate) fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect()
}

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
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
