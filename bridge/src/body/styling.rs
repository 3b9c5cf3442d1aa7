//! XEP-0393 message styling turned into HTML, for the HTML part of mail
//! written from a stanza.
//!
//! Linear in the text: each line's characters are read once per nesting
//! level, and the closing marker of a span is found with one forward
//! cursor per marker (never a fresh scan to the end of the line).

/// The span markers and their elements.
const MARKERS: [(char, &str); 4] = [('*', "strong"), ('_', "em"), ('~', "s"), ('`', "code")];

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

fn push_escaped_str(out: &mut String, text: &str) {
    text.chars().for_each(|c| push_escaped(out, c));
}

/// Writes the spans of `chars[start..end]` to `out`; says whether any
/// span was styled.
fn spans(chars: &[char], start: usize, end: usize, out: &mut String) -> bool {
    // Per marker: no closing marker lies in [searched from, cursor).
    let mut cursor = [start; MARKERS.len()];
    let mut styled = false;
    let mut i = start;
    while let Some(&c) = chars.get(i).filter(|_| i < end) {
        let marker = MARKERS.iter().position(|(m, _)| *m == c);
        let opens = marker.is_some()
            && (i == start
                || chars
                    .get(i - 1)
                    .is_some_and(|p| p.is_whitespace() || "([{\"'".contains(*p)))
            && i + 1 < end
            && chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
        let found = marker.filter(|_| opens).and_then(|m| {
            let at = cursor.get_mut(m)?;
            *at = (*at).max(i + 2);
            while *at < end
                && !(chars.get(*at) == Some(&c)
                    && chars.get(*at - 1).is_some_and(|p| !p.is_whitespace()))
            {
                *at += 1;
            }
            let tag = MARKERS.get(m)?.1;
            (*at < end).then_some((*at, tag))
        });
        if let Some((close, tag)) = found {
            out.push('<');
            out.push_str(tag);
            out.push('>');
            if tag == "code" {
                chars
                    .get(i + 1..close)
                    .unwrap_or_default()
                    .iter()
                    .for_each(|c| push_escaped(out, *c));
            } else {
                spans(chars, i + 1, close, out);
            }
            out.push_str("</");
            out.push_str(tag);
            out.push('>');
            styled = true;
            i = close + 1;
            continue;
        }
        push_escaped(out, c);
        i += 1;
    }
    styled
}

/// HTML for text with XEP-0393 styling, when it has any: `*strong*`,
/// `_emphasis_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks and `>`
/// quotes. `None` for text without styling: plain text says it all.
pub fn styled_to_html(text: &str) -> Option<String> {
    let mut html = String::with_capacity(text.len() + text.len() / 8 + 32);
    html.push_str("<html><body>");
    let mut styled = false;
    let mut depth = 0;
    let mut in_pre = false;
    let mut chars = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            while depth > 0 && !in_pre {
                html.push_str("</blockquote>");
                depth -= 1;
            }
            styled = true;
            html.push_str(if in_pre { "</pre>" } else { "<pre>" });
            in_pre = !in_pre;
            continue;
        }
        if in_pre {
            push_escaped_str(&mut html, line);
            html.push('\n');
            continue;
        }
        let quote = line.chars().take_while(|c| *c == '>').count();
        while depth < quote {
            html.push_str("<blockquote>");
            depth += 1;
            styled = true;
        }
        while depth > quote {
            html.push_str("</blockquote>");
            depth -= 1;
        }
        let content = line.get(quote..).unwrap_or_default().trim_start();
        chars.clear();
        chars.extend(content.chars());
        if spans(&chars, 0, chars.len(), &mut html) {
            styled = true;
        }
        html.push_str("<br>\n");
    }
    if in_pre {
        html.push_str("</pre>");
    }
    while depth > 0 {
        html.push_str("</blockquote>");
        depth -= 1;
    }
    html.push_str("</body></html>");
    styled.then_some(html)
}
