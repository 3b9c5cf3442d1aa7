//! Message bodies: format=flowed text (RFC 3676) unwrapped, HTML turned
//! into readable text with XEP-0393 styling, and HTML sanitised (ammonia)
//! before it travels as XEP-0481 content.

use std::cell::RefCell;
use std::collections::BTreeMap;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Unwraps format=flowed text (RFC 3676 §4): a line ending in a space
/// continues on the next line of the same quote depth. Quote depth is
/// kept as `> ` prefixes; space-stuffing is undone; the signature
/// separator `-- ` never flows.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut paragraph: Option<(usize, String)> = None;
    let flush = |out: &mut String, paragraph: &mut Option<(usize, String)>| {
        if let Some((depth, line)) = paragraph.take() {
            if depth > 0 {
                out.push_str(&"> ".repeat(depth));
            }
            out.push_str(line.trim_end_matches(' '));
            out.push('\n');
        }
    };
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = raw.chars().take_while(|c| *c == '>').count();
        let mut line = raw.get(depth..).unwrap_or_default();
        line = line.strip_prefix(' ').unwrap_or(line);
        let flowed = line.ends_with(' ') && line != "-- ";
        match &mut paragraph {
            Some((d, joined)) if *d == depth => joined.push_str(line),
            _ => {
                flush(&mut out, &mut paragraph);
                paragraph = Some((depth, line.to_owned()));
            }
        }
        if flowed {
            if delsp {
                if let Some((_, joined)) = &mut paragraph {
                    joined.pop();
                }
            }
        } else {
            flush(&mut out, &mut paragraph);
        }
    }
    flush(&mut out, &mut paragraph);
    out.trim_end_matches('\n').to_owned()
}

/// Longest line of flowed text, before its soft-break space (RFC 3676
/// recommends 78 including it).
const FLOW_WIDTH: usize = 76;

/// Encodes text as format=flowed (RFC 3676 §4.2): long lines are broken
/// at spaces with a trailing space (a soft break), lines that could be
/// mistaken for a soft break or a quote are space-stuffed, `> ` quote
/// prefixes are kept on every piece of a quoted line.
pub fn flow(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split('\n') {
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_end_matches(' ');
        let depth = line.chars().take_while(|c| *c == '>').count();
        let quote = ">".repeat(depth);
        let mut rest = line.get(depth..).unwrap_or_default();
        if depth > 0 {
            rest = rest.strip_prefix(' ').unwrap_or(rest);
        }
        let prefix = if depth > 0 {
            format!("{quote} ")
        } else {
            String::new()
        };
        let stuff = |piece: &str| {
            depth == 0
                && (piece.starts_with(' ') || piece.starts_with("From ") || piece.starts_with('>'))
        };
        let width = FLOW_WIDTH.saturating_sub(prefix.len()).max(20);
        let mut pieces = Vec::new();
        while rest.len() > width {
            // Break after the last space that fits; an unbreakable word
            // stays whole.
            let cut = rest
                .char_indices()
                .take_while(|(i, _)| *i < width)
                .filter(|(_, c)| *c == ' ')
                .map(|(i, _)| i + 1)
                .last()
                .or_else(|| rest.find(' ').map(|i| i + 1));
            match cut {
                Some(cut) if cut < rest.len() => {
                    let (piece, tail) = rest.split_at(cut);
                    pieces.push(piece);
                    rest = tail;
                }
                _ => break,
            }
        }
        pieces.push(rest);
        for piece in pieces {
            out.push_str(&prefix);
            if stuff(piece) {
                out.push(' ');
            }
            out.push_str(piece);
            out.push_str("\r\n");
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

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

/// The HTML, sanitised: no scripts, styles, forms, event handlers or
/// remote images (tracking pixels); links open without referrer.
/// `cid_urls` maps the Content-ID of an inline part to its URL.
pub fn sanitize_html(html: &str, cid_urls: &BTreeMap<String, String>) -> String {
    let cid_urls = cid_urls.clone();
    let mut builder = ammonia::Builder::default();
    builder
        .link_rel(Some("noopener noreferrer nofollow"))
        .add_url_schemes(["cid"])
        .attribute_filter(
            move |element, attribute, value| match (element, attribute) {
                ("img", "src") => match value.strip_prefix("cid:") {
                    Some(content_id) => cid_urls.get(content_id).cloned().map(Into::into),
                    // Remote images tell the sender when the mail is read.
                    None if value.starts_with("data:") => Some(value.into()),
                    None => None,
                },
                (_, "href") if value.starts_with("cid:") => None,
                _ => Some(value.into()),
            },
        );
    builder.clean(html).to_string()
}

/// Readable text of an HTML body, styled per XEP-0393: `*strong*`,
/// `_emphasis_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks, `> `
/// quotes; lists as `- ` and `1. `; links as `text <url>`.
pub fn html_to_text(html: &str) -> String {
    // Sanitising first leaves no script or style content for the
    // tokenizer to mistake for text.
    let clean = ammonia::Builder::default()
        .add_clean_content_tags(["title", "head"])
        .clean(html)
        .to_string();
    let sink = TextSink(RefCell::new(Renderer::default()));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from(clean.as_str()));
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    tokenizer.sink.0.into_inner().finish()
}

struct TextSink(RefCell<Renderer>);

impl TokenSink for TextSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut renderer = self.0.borrow_mut();
        match token {
            Token::CharacterTokens(text) => renderer.text(&text),
            Token::TagToken(tag) => renderer.tag(&tag),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// An open styled span or link: where its text starts in the output.
enum Open {
    Span {
        marker: &'static str,
        at: usize,
        inner: usize,
    },
    Link {
        href: Option<String>,
        at: usize,
    },
}

#[derive(Default)]
struct Renderer {
    out: String,
    /// Quote depth, and whether the current line has content yet.
    depth: usize,
    line_open: bool,
    pending_space: bool,
    /// Line ends wanted before the next content.
    breaks: usize,
    lists: Vec<Option<u32>>,
    preformatted: usize,
    open: Vec<(String, Open)>,
}

const BLOCKS: [&str; 20] = [
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "section", "article", "header",
    "footer", "address", "center", "dl", "dt", "dd", "form",
];

impl Renderer {
    fn finish(self) -> String {
        let mut text = String::with_capacity(self.out.len());
        let mut blank = 0;
        for line in self.out.lines().map(str::trim_end) {
            if line.is_empty() {
                blank += 1;
                if blank > 1 {
                    continue;
                }
            } else {
                blank = 0;
            }
            text.push_str(line);
            text.push('\n');
        }
        text.trim().to_owned()
    }

    /// Ends the current line; `blank_lines` empty lines before the next.
    fn block_break(&mut self, blank_lines: usize) {
        if !self.out.is_empty() {
            self.breaks = self.breaks.max(blank_lines + 1);
        }
        self.line_open = false;
        self.pending_space = false;
    }

    fn start_content(&mut self) {
        if !self.line_open {
            if !self.out.is_empty() {
                for _ in 0..self.breaks.max(1) {
                    self.out.push('\n');
                }
            }
            self.breaks = 0;
            self.out.push_str(&"> ".repeat(self.depth));
            self.line_open = true;
            self.pending_space = false;
        } else if self.pending_space {
            self.out.push(' ');
            self.pending_space = false;
        }
    }

    fn text(&mut self, text: &str) {
        if self.preformatted > 0 {
            for (n, line) in text.split('\n').enumerate() {
                if n > 0 {
                    self.line_open = false;
                    self.breaks = 1;
                }
                if !line.is_empty() {
                    self.start_content();
                    self.out.push_str(line);
                }
            }
            return;
        }
        if text.starts_with(char::is_whitespace) && self.line_open {
            self.pending_space = true;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return;
        }
        self.start_content();
        self.out.push_str(&words.join(" "));
        self.pending_space = text.ends_with(char::is_whitespace);
    }

    fn tag(&mut self, tag: &Tag) {
        let name = tag.name.to_string().to_ascii_lowercase();
        let attr = |wanted: &str| {
            tag.attrs
                .iter()
                .find(|a| &*a.name.local == wanted)
                .map(|a| a.value.to_string())
        };
        let start = tag.kind == TagKind::StartTag;
        match (name.as_str(), start) {
            ("br", true) => {
                self.line_open = false;
                self.breaks = 1;
                if self.out.is_empty() {
                    self.out.push('\n');
                }
            }
            ("hr", true) => {
                self.block_break(1);
                self.start_content();
                self.out.push_str("----");
                self.block_break(1);
            }
            ("img", true) => {
                if let Some(alt) = attr("alt").filter(|a| !a.trim().is_empty()) {
                    self.start_content();
                    self.out.push_str(&format!("[{}]", alt.trim()));
                }
            }
            ("b" | "strong", _) => self.span(&name, start, "*"),
            ("i" | "em", _) => self.span(&name, start, "_"),
            ("s" | "strike" | "del", _) => self.span(&name, start, "~"),
            ("code" | "tt" | "kbd", _) if self.preformatted == 0 => self.span(&name, start, "`"),
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", _) => {
                self.block_break(1);
                self.span(&name, start, "*");
                if !start {
                    self.block_break(1);
                }
            }
            ("pre", true) => {
                self.block_break(1);
                self.start_content();
                self.out.push_str("```");
                self.line_open = false;
                self.breaks = 1;
                self.preformatted += 1;
            }
            ("pre", false) if self.preformatted > 0 => {
                self.preformatted -= 1;
                self.line_open = false;
                self.breaks = 1;
                self.start_content();
                self.out.push_str("```");
                self.block_break(1);
            }
            ("blockquote", true) => {
                self.block_break(0);
                self.depth += 1;
            }
            ("blockquote", false) => {
                self.block_break(0);
                self.depth = self.depth.saturating_sub(1);
            }
            ("ul" | "ol", true) => {
                self.block_break(if self.lists.is_empty() { 1 } else { 0 });
                self.lists.push((name == "ol").then_some(0));
            }
            ("ul" | "ol", false) => {
                self.lists.pop();
                self.block_break(if self.lists.is_empty() { 1 } else { 0 });
            }
            ("li", true) => {
                self.block_break(0);
                self.start_content();
                let indent = "  ".repeat(self.lists.len().saturating_sub(1));
                let bullet = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{indent}{n}. ")
                    }
                    _ => format!("{indent}- "),
                };
                self.out.push_str(&bullet);
            }
            ("li", false) => self.block_break(0),
            ("a", true) => {
                let href = attr("href").filter(|h| !h.starts_with('#'));
                let at = self.out.len();
                self.open.push((name, Open::Link { href, at }));
            }
            ("a", false) => {
                if let Some(Open::Link {
                    href: Some(href),
                    at,
                }) = self.close("a")
                {
                    let shown = self.out.get(at..).unwrap_or_default().trim().to_owned();
                    let bare = href.strip_prefix("mailto:").unwrap_or(&href);
                    if shown.is_empty() {
                        self.start_content();
                        self.out.push_str(&href);
                    } else if shown != href && shown != bare {
                        self.start_content();
                        self.out.push_str(&format!(" <{href}>"));
                    }
                }
            }
            ("td" | "th", false) => self.pending_space = true,
            (block, _) if BLOCKS.contains(&block) => self.block_break(1),
            _ => {}
        }
    }

    /// Removes the innermost open element named `name` (and anything
    /// opened after it and left unclosed).
    fn close(&mut self, name: &str) -> Option<Open> {
        let position = self.open.iter().rposition(|(n, _)| n == name)?;
        self.open.drain(position..).next().map(|(_, open)| open)
    }

    fn span(&mut self, name: &str, start: bool, marker: &'static str) {
        if start {
            self.start_content();
            let at = self.out.len();
            self.out.push_str(marker);
            let inner = self.out.len();
            self.open
                .push((name.to_owned(), Open::Span { marker, at, inner }));
            return;
        }
        let Some(Open::Span { marker, at, inner }) = self.close(name) else {
            return;
        };
        let text = self.out.get(inner..).unwrap_or_default();
        if text.trim().is_empty() || text.contains('\n') {
            // Nothing to style, or a span across lines (not XEP-0393).
            self.out.replace_range(at..inner, "");
            return;
        }
        let trimmed = self.out.trim_end().len();
        let trailing = self.out.len() - trimmed;
        self.out.truncate(trimmed);
        self.out.push_str(marker);
        if trailing > 0 {
            self.pending_space = true;
        }
    }
}

/// XHTML-IM (XEP-0071) of sanitised HTML: the recommended profile's
/// elements and attributes only (`a href`, `img src alt`, `p`, `br`,
/// `em`, `strong`, `blockquote`, `cite`, `ul`, `ol`, `li`, `span`); the
/// text of anything else is kept. For users who ask for it: XEP-0071 is
/// deprecated.
pub fn xhtml_im(html: &str) -> xmpp_parsers::minidom::Element {
    use xmpp_parsers::minidom::Element;
    const NS_XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
    const NS_XHTML: &str = "http://www.w3.org/1999/xhtml";
    const ALLOWED: [&str; 12] = [
        "a",
        "blockquote",
        "br",
        "cite",
        "em",
        "img",
        "li",
        "ol",
        "p",
        "span",
        "strong",
        "ul",
    ];

    struct XhtmlSink(RefCell<Vec<Element>>);
    impl TokenSink for XhtmlSink {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            let mut stack = self.0.borrow_mut();
            match token {
                Token::CharacterTokens(text) => {
                    if let Some(top) = stack.last_mut() {
                        top.append_text_node(text.to_string());
                    }
                }
                Token::TagToken(tag) => {
                    let name = tag.name.to_string().to_ascii_lowercase();
                    let name = match name.as_str() {
                        "b" => "strong".to_owned(),
                        "i" => "em".to_owned(),
                        _ => name,
                    };
                    if !ALLOWED.contains(&name.as_str()) {
                        return TokenSinkResult::Continue;
                    }
                    let void = matches!(name.as_str(), "br" | "img");
                    if tag.kind == TagKind::StartTag {
                        let mut element = Element::bare(name.clone(), NS_XHTML);
                        for attr in &tag.attrs {
                            use xmpp_parsers::minidom::rxml::{xml_ncname, Namespace};
                            let kept = match (name.as_str(), &*attr.name.local) {
                                ("a", "href") => Some(xml_ncname!("href")),
                                ("img", "src") => Some(xml_ncname!("src")),
                                ("img", "alt") => Some(xml_ncname!("alt")),
                                _ => None,
                            };
                            if let Some(attribute) = kept {
                                element.set_attr(
                                    Namespace::NONE,
                                    attribute.into(),
                                    attr.value.to_string(),
                                );
                            }
                        }
                        if void || tag.self_closing {
                            if let Some(top) = stack.last_mut() {
                                top.append_child(element);
                            }
                        } else {
                            stack.push(element);
                        }
                    } else if !void
                        && stack.len() > 1
                        && stack.last().is_some_and(|e| e.name() == name)
                    {
                        if let Some(done) = stack.pop() {
                            if let Some(top) = stack.last_mut() {
                                top.append_child(done);
                            }
                        }
                    }
                }
                _ => {}
            }
            TokenSinkResult::Continue
        }
    }

    let sink = XhtmlSink(RefCell::new(vec![Element::bare("body", NS_XHTML)]));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from(html));
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    let mut stack = tokenizer.sink.0.into_inner();
    // Close what the HTML left open.
    while stack.len() > 1 {
        if let Some(done) = stack.pop() {
            if let Some(top) = stack.last_mut() {
                top.append_child(done);
            }
        }
    }
    let body = stack
        .pop()
        .unwrap_or_else(|| Element::bare("body", NS_XHTML));
    let mut html = Element::bare("html", NS_XHTML_IM);
    html.append_child(body);
    html
}

#[cfg(test)]
mod tests;
