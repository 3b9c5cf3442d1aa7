//! The quote a client puts at the head of a reply (XEP-0461), marked as
//! fallback text by XEP-0428 (`<fallback for='urn:xmpp:reply:0'>` with a
//! `<body start end/>` range in Unicode code points). In mail it becomes a
//! proper quoted block: `> ` lines in text/plain (RFC 3676 quote depth,
//! whatever marker the client used) and a `<blockquote>` in HTML; the
//! quoted text appears once, as the quote, never again as text.

use xmpp_parsers::message::Message;

use crate::wire::NS_REPLY;

/// XEP-0428 Fallback Indication.
pub const NS_FALLBACK: &str = "urn:xmpp:fallback:0";

/// A reply's text taken apart: the quoted lines, without the client's
/// quote marker (deeper quotes keep theirs), and what the author wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    /// The quoted lines.
    pub quote: Vec<String>,
    /// The rest of the body.
    pub text: String,
}

/// The quote of a reply, if `message` marks one in `body`.
pub fn reply_quote(message: &Message, body: &str) -> Option<Quoted> {
    let range = message
        .payloads
        .iter()
        .filter(|p| p.is("fallback", NS_FALLBACK) && p.attr("for") == Some(NS_REPLY))
        .find_map(|p| p.get_child("body", NS_FALLBACK))?;
    let number = |name: &str| {
        range
            .attr(name)
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let (start, end) = (number("start")?, number("end")?);
    let chars: Vec<char> = body.chars().collect();
    if start >= end || end > chars.len() {
        return None;
    }
    let quoted: String = chars.get(start..end)?.iter().collect();
    let before: String = chars.get(..start)?.iter().collect();
    let after: String = chars.get(end..)?.iter().collect();
    let quote: Vec<String> = quoted
        .lines()
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line.strip_prefix('>').unwrap_or(line);
            line.strip_prefix(' ').unwrap_or(line).to_owned()
        })
        .collect();
    // Blank lines that only framed the quote say nothing.
    let first = quote.iter().position(|l| !l.trim().is_empty())?;
    let last = quote.iter().rposition(|l| !l.trim().is_empty())?;
    let quote = quote.get(first..=last)?.to_vec();
    let text = format!(
        "{}{}",
        before.trim_end(),
        after.trim_start_matches(['\r', '\n'])
    );
    Some(Quoted { quote, text })
}

impl Quoted {
    /// The body as mail carries it: the quote as `> ` lines, then the
    /// text. A line quoted twice already stays `>>`.
    pub fn body(&self) -> String {
        let mut out = String::new();
        for line in &self.quote {
            match line.starts_with('>') {
                true => out.push('>'),
                false => out.push_str("> "),
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&self.text);
        out
    }

    /// The quote as an HTML `<blockquote>`, escaped.
    pub fn blockquote(&self) -> String {
        let lines: Vec<String> = self
            .quote
            .iter()
            .map(|l| {
                l.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            })
            .collect();
        format!("<blockquote><p>{}</p></blockquote>", lines.join("<br>"))
    }
}

#[cfg(test)]
mod tests;
