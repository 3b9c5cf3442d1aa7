//! Stanzas for the unit tests: parsed from text, or read from
//! `fixtures/clients/`, as the clients named there send them (a comment
//! naming the client, then the `<message/>`).

use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

/// A `<message/>` in the component namespace.
pub(crate) fn parse(xml: &str) -> Message {
    let element: Element = xml.parse().expect("xml");
    Message::try_from(element).expect("message")
}

/// The stanza of `fixtures/clients/NAME.xml`, as the component receives
/// it.
pub(crate) fn client_stanza(name: &str) -> Message {
    let path = format!(
        "{}/../fixtures/clients/{name}.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture");
    let start = text.find("<message").expect("a message");
    parse(
        &text[start..]
            .trim()
            .replace("xmlns='jabber:client'", "xmlns='jabber:component:accept'"),
    )
}
