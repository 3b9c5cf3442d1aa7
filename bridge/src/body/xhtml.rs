//! XHTML-IM (XEP-0071) of sanitised HTML, for users who ask for it.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

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
