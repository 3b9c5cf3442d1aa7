//! HTML bodies of mail: sanitised (ammonia) before they travel as
//! XEP-0481 content, and rendered as readable text with XEP-0393 styling
//! for the stanza's `<body>`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// The HTML, sanitised: no scripts, styles, forms, event handlers or
/// remote images (tracking pixels); links open without referrer.
/// `cid_urls` maps the Content-ID of an inline part to its URL.
pub fn sanitize_html(html: &str, cid_urls: &BTreeMap<String, String>) -> String {
    CID_URLS.with(|urls| urls.borrow_mut().clone_from(cid_urls));
    let clean = SANITIZER.clean(html).to_string();
    CID_URLS.with(|urls| urls.borrow_mut().clear());
    clean
}

thread_local! {
    /// The Content-ID → URL map of the mail being sanitised on this
    /// thread, for [`SANITIZER`]'s attribute filter.
    static CID_URLS: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// The sanitiser, built once: building one costs more than cleaning a
/// short mail.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .link_rel(Some("noopener noreferrer nofollow"))
        .add_url_schemes(["cid"])
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            ("img", "src") => match value.strip_prefix("cid:") {
                Some(content_id) => CID_URLS
                    .with(|urls| urls.borrow().get(content_id).cloned())
                    .map(Into::into),
                // Remote images tell the sender when the mail is read.
                None if value.starts_with("data:") => Some(value.into()),
                None => None,
            },
            (_, "href") if value.starts_with("cid:") => None,
            _ => Some(value.into()),
        });
    builder
});

/// What [`html_to_text`] cleans first, built once.
static TEXT_CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder.add_clean_content_tags(["title", "head"]);
    builder
});

/// Readable text of an HTML body, styled per XEP-0393: `*strong*`,
/// `_emphasis_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks, `> `
/// quotes; lists as `- ` and `1. `; links as `text <url>`.
pub fn html_to_text(html: &str) -> String {
    // Sanitising first leaves no script or style content for the
    // tokenizer to mistake for text.
    let clean = TEXT_CLEANER.clean(html).to_string();
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
