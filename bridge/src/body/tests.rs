//! Cases for the body conversions.

use super::*;

#[test]
fn flowed_lines_are_joined() {
    let text = "This is a long \r\nparagraph that \r\nflows.\r\nHard break.\r\n> quoted and \r\n> flowing\r\n>> deeper\r\n \r\n-- \r\nSig";
    assert_eq!(
        unflow(text, false),
        "This is a long paragraph that flows.\nHard break.\n> quoted and flowing\n> > deeper\n\n-- \nSig".replace("-- \n", "--\n")
    );
}

#[test]
fn delsp_removes_the_soft_space() {
    assert_eq!(
        unflow("Kompositions \r\nwort\r\n", true),
        "Kompositionswort"
    );
    assert_eq!(unflow(" >not a quote\r\n", false), ">not a quote");
}

#[test]
fn html_becomes_styled_text() {
    let html = r#"<html><head><title>T</title><style>p{color:red}</style></head><body>
        <h1>Agenda</h1>
        <p>Hello <b>Alice</b>, this is <i>important</i> and <s>old</s> and <code>x = 1</code>.</p>
        <ul><li>first</li><li>second <a href="https://example.net/x">link</a></li></ul>
        <ol><li>one</li><li>two</li></ol>
        <blockquote><p>quoted text</p></blockquote>
        <p>Mail <a href="mailto:bob@example.net">bob@example.net</a> or see https://example.net.</p>
        <pre>  code
  block</pre>
        <script>alert(1)</script>
        </body></html>"#;
    let text = html_to_text(html);
    let expected = "*Agenda*\n\nHello *Alice*, this is _important_ and ~old~ and `x = 1`.\n\n- first\n- second link <https://example.net/x>\n\n1. one\n2. two\n\n> quoted text\n\nMail bob@example.net or see https://example.net.\n\n```\n  code\n  block\n```";
    assert_eq!(text, expected);
}

#[test]
fn html_line_breaks_and_images() {
    assert_eq!(
        html_to_text("one<br>two<br/><img alt='logo' src='x.png'>"),
        "one\ntwo\n[logo]"
    );
    assert_eq!(html_to_text("<b> </b>plain"), "plain");
}

#[test]
fn sanitising_removes_what_is_dangerous() {
    let html = r#"<p onclick="x()">Hi<script>alert(1)</script><img src="https://tracker.example/p.gif"><img src="cid:logo@x"><a href="javascript:evil()">j</a><a href="https://example.net">ok</a></p><form><input></form>"#;
    let urls = [("logo@x".to_owned(), "https://files.example/abc".to_owned())].into();
    let clean = sanitize_html(html, &urls);
    assert!(
        !clean.contains("script") && !clean.contains("onclick") && !clean.contains("javascript"),
        "{clean}"
    );
    assert!(!clean.contains("tracker.example"), "{clean}");
    assert!(
        clean.contains(r#"<img src="https://files.example/abc">"#),
        "{clean}"
    );
    assert!(
        clean
            .contains(r#"<a href="https://example.net" rel="noopener noreferrer nofollow">ok</a>"#),
        "{clean}"
    );
    assert!(!clean.contains("<input"), "{clean}");
}

#[test]
fn flowing_wraps_long_lines_and_round_trips() {
    let long = "word ".repeat(40).trim_end().to_owned();
    let text = format!("{long}\n> quoted {long}\nFrom here\n short");
    let flowed = flow(&text);
    for line in flowed.split("\r\n") {
        assert!(line.len() <= 78, "{line:?}");
    }
    assert!(flowed.contains("\r\n From here\r\n"), "{flowed}");
    assert!(flowed.contains("\r\n> quoted word"), "{flowed}");
    assert_eq!(
        unflow(&flowed, false),
        format!("{long}\n> quoted {long}\nFrom here\n short")
    );
}

#[test]
fn styling_becomes_html_only_when_there_is_some() {
    assert_eq!(styled_to_html("plain text, 2 * 3 = 6"), None);
    let html = styled_to_html("Hello *Bob*, _see_ `a<b` and ~this~\n> quoted\n```\n*raw*\n```")
        .expect("styled");
    assert_eq!(
        html,
        "<html><body>Hello <strong>Bob</strong>, <em>see</em> <code>a&lt;b</code> and <s>this</s><br>\n<blockquote>quoted<br>\n</blockquote><pre>*raw*\n</pre></body></html>"
    );
}

#[test]
fn xhtml_im_keeps_the_recommended_profile() {
    let clean = sanitize_html("<p>Hi <b>you</b>, <a href='https://example.net'>link</a><br><table><tr><td>cell</td></tr></table><i>open", &Default::default());
    let xml = String::from(&xhtml_im(&clean));
    assert_eq!(
        xml,
        "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>Hi <strong>you</strong>, <a href='https://example.net'>link</a><br/></p>cell<em>open</em></body></html>"
    );
}

/// The quadratic rendering styled_to_html replaced, kept as the reference
/// its output must match.
fn reference_styled_to_html(text: &str) -> Option<String> {
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

proptest::proptest! {
    #[test]
    fn styling_matches_the_reference(text in "[*_~`> a(\n]{0,40}") {
        proptest::prop_assert_eq!(styled_to_html(&text), reference_styled_to_html(&text));
    }
}

#[test]
fn styling_is_linear_in_unclosed_markers() {
    // Each marker opens a span that never closes: the old rendering
    // scanned to the end of the line for each (quadratic).
    let text = "*a ".repeat(100_000);
    let start = std::time::Instant::now();
    assert_eq!(styled_to_html(&text), None);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
