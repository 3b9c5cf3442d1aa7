//! XEP-0393 message styling turned into HTML, for the HTML part of mail
//! written from a stanza.

/// HTML for text with XEP-0393 styling, when it has any: `*strong*`,
/// `_emphasis_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks and `>`
/// quotes. `None` for text without styling: plain text says it all.
pub fn styled_to_html(text: &str) -> Option<String> {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    fn spans(line: &str) -> String {
        let chars: Vec<char> = line.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            let tag = match c {
                '*' => Some("strong"),
                '_' => Some("em"),
                '~' => Some("s"),
                '`' => Some("code"),
                _ => None,
            };
            let opens = tag.is_some()
                && (i == 0
                    || chars
                        .get(i - 1)
                        .is_some_and(|p| p.is_whitespace() || "([{\"'".contains(*p)))
                && chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
            if let (Some(tag), true) = (tag, opens) {
                let close = (i + 2..chars.len()).find(|&j| {
                    chars.get(j) == Some(&c) && chars.get(j - 1).is_some_and(|p| !p.is_whitespace())
                });
                if let Some(close) = close {
                    let inner: String = chars
                        .get(i + 1..close)
                        .map(|s| s.iter().collect())
                        .unwrap_or_default();
                    let inner = if tag == "code" {
                        escape(&inner)
                    } else {
                        spans(&inner)
                    };
                    out.push_str(&format!("<{tag}>{inner}</{tag}>"));
                    i = close + 1;
                    continue;
                }
            }
            out.push_str(&escape(&c.to_string()));
            i += 1;
        }
        out
    }

    let mut html = String::new();
    let mut styled = false;
    let mut depth = 0;
    let mut in_pre = false;
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
            html.push_str(&escape(line));
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
        let rendered = spans(content);
        if rendered != escape(content) {
            styled = true;
        }
        html.push_str(&rendered);
        html.push_str("<br>\n");
    }
    if in_pre {
        html.push_str("</pre>");
    }
    while depth > 0 {
        html.push_str("</blockquote>");
        depth -= 1;
    }
    styled.then(|| format!("<html><body>{html}</body></html>"))
}
