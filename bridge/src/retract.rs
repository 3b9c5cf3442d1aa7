//! XEP-0424 Message Retraction: which earlier message a retraction names,
//! in its current form (`urn:xmpp:message-retract:1`) and in the form of
//! XEP-0424 0.3 (`urn:xmpp:message-retract:0` inside a XEP-0422
//! `<apply-to>`). Its body is the XEP-0428 fallback for clients without
//! retraction ("/me retracted a previous message…"): a retraction is never
//! a message of its own, whatever its fallback says.

use xmpp_parsers::message::Message;

/// XEP-0424 Message Retraction, since 0.4.
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0424 Message Retraction 0.3.
pub const NS_RETRACT_0: &str = "urn:xmpp:message-retract:0";
/// XEP-0422 Message Fastening, which carried retractions until 0.3.
pub const NS_FASTEN: &str = "urn:xmpp:fasten:0";

/// The id of the message `message` retracts, if it is a retraction: the
/// XEP-0359 origin-id the author's client gave it (or its stanza id).
/// `Some("")` for a retraction that names no message.
pub fn retracted_id(message: &Message) -> Option<String> {
    message.payloads.iter().find_map(|p| {
        if p.is("retract", NS_RETRACT) {
            return Some(p.attr("id").unwrap_or_default().to_owned());
        }
        if p.is("apply-to", NS_FASTEN) && p.has_child("retract", NS_RETRACT_0) {
            return Some(p.attr("id").unwrap_or_default().to_owned());
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{client_stanza, parse};

    #[test]
    fn conversations_retraction() {
        let message = client_stanza("conversations-retract");
        assert_eq!(
            retracted_id(&message).as_deref(),
            Some("4e0cfd2a-60d5-4a5c-b1a9-2b2b8e7e4d11")
        );
    }

    #[test]
    fn fastened_retraction_of_xep_0424_0_3() {
        let message = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='retract-message-1'>\
             <apply-to id='origin-id-1' xmlns='urn:xmpp:fasten:0'>\
             <retract xmlns='urn:xmpp:message-retract:0'/></apply-to>\
             <fallback xmlns='urn:xmpp:fallback:0'/>\
             <body>This person attempted to retract a previous message, but it's unsupported by your client.</body>\
             </message>",
        );
        assert_eq!(retracted_id(&message).as_deref(), Some("origin-id-1"));
    }

    #[test]
    fn other_fastenings_and_plain_messages_retract_nothing() {
        let message = parse(
            "<message xmlns='jabber:component:accept' type='chat'>\
             <apply-to id='x' xmlns='urn:xmpp:fasten:0'><external name='body'/></apply-to>\
             <body>/me retracted a previous message, but it's unsupported by your client.</body></message>",
        );
        assert_eq!(retracted_id(&message), None);
        let message = parse(
            "<message xmlns='jabber:component:accept' type='chat'>\
             <retract xmlns='urn:xmpp:message-retract:1'/></message>",
        );
        assert_eq!(retracted_id(&message).as_deref(), Some(""));
    }
}
