//! Reply quotes as clients send them.

use super::*;
use crate::testing::parse;

fn body(message: &Message) -> String {
    message.bodies.values().next().cloned().unwrap_or_default()
}

#[test]
fn the_xep_0461_example() {
    let message = parse(
        "<message xmlns='jabber:component:accept' to='anna@example.com' id='message-id2' type='chat'>\
         <body>&gt; Anna wrote:\n&gt; We should bake a cake\nGreat idea!</body>\
         <reply to='anna@example.com/tablet' id='message-id1' xmlns='urn:xmpp:reply:0'/>\
         <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='38'/></fallback>\
         </message>",
    );
    let quoted = reply_quote(&message, &body(&message)).expect("a quote");
    assert_eq!(quoted.quote, ["Anna wrote:", "We should bake a cake"]);
    assert_eq!(quoted.text, "Great idea!");
    assert_eq!(
        quoted.body(),
        "> Anna wrote:\n> We should bake a cake\nGreat idea!"
    );
    assert_eq!(
        quoted.blockquote(),
        "<blockquote><p>Anna wrote:<br>We should bake a cake</p></blockquote>"
    );
}

#[test]
fn ranges_count_code_points_and_markers_are_normalised() {
    // "»" and "é" are one code point each, two bytes in UTF-8.
    let message = parse(
        "<message xmlns='jabber:component:accept' type='chat'>\
         <body>&gt;Café » at nine\n&gt;&gt; older\n\nYes!</body>\
         <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='26'/></fallback>\
         </message>",
    );
    let quoted = reply_quote(&message, &body(&message)).expect("a quote");
    assert_eq!(quoted.quote, ["Café » at nine", "> older"]);
    assert_eq!(quoted.text, "Yes!");
    assert_eq!(quoted.body(), "> Café » at nine\n>> older\nYes!");
}

#[test]
fn no_quote_without_a_reply_fallback_or_with_a_bad_range() {
    for fallback in [
        "",
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>",
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='5' end='500'/></fallback>",
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='3' end='3'/></fallback>",
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='x' end='3'/></fallback>",
    ] {
        let message = parse(&format!(
            "<message xmlns='jabber:component:accept' type='chat'><body>&gt; q\nhello</body>{fallback}</message>"
        ));
        assert_eq!(reply_quote(&message, &body(&message)), None, "{fallback}");
    }
}
