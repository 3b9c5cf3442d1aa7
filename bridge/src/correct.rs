//! XEP-0308 Last Message Correction, as mail. A correction of a mail that
//! has left goes out as a reply to it: In-Reply-To and References name the
//! original, the Subject stays, and the text opens with a line saying that
//! it corrects the previous message (mail cannot change what was sent). A
//! correction of a mail still queued takes its place in the queue.

use mail_parser::MessageParser;
use xmpp_parsers::message::{Lang, Message};

/// XEP-0308 Last Message Correction.
pub const NS_CORRECT: &str = "urn:xmpp:message-correct:0";

/// The line a correction mailed as a reply opens with.
pub const CORRECTION_LINE: &str = "Correction of my previous message:";

/// The id of the message `message` corrects, if it is a correction: the
/// id the author's client gave the original (XEP-0308 §4: the stanza id,
/// which Conversations, Gajim and Dino also use as the XEP-0359 origin-id).
pub fn replaced_id(message: &Message) -> Option<String> {
    message
        .payloads
        .iter()
        .find(|p| p.is("replace", NS_CORRECT))
        .and_then(|p| p.attr("id"))
        .map(str::to_owned)
        .filter(|id| !id.is_empty())
}

/// The text of a correction mailed as a reply: the correction line, a
/// blank line, the corrected text.
pub fn correction_text(body: &str) -> String {
    format!("{CORRECTION_LINE}\n\n{body}")
}

/// The Subject of a stored mail, decoded.
pub fn subject_of(raw: &[u8]) -> Option<String> {
    MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(str::to_owned))
        .filter(|s| !s.is_empty())
}

/// `message` as the stanza of its mail would carry it: `body` for its
/// text, and `subject` unless it has one of its own.
pub fn with_text(message: &Message, body: &str, subject: Option<&str>) -> Message {
    let mut message = message.clone();
    message.bodies.clear();
    message.bodies.insert(Lang::default(), body.to_owned());
    if let (true, Some(subject)) = (message.subjects.is_empty(), subject) {
        message.subjects.insert(Lang::default(), subject.to_owned());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{client_stanza, parse};

    #[test]
    fn conversations_correction() {
        let message = client_stanza("conversations-correction");
        assert_eq!(
            replaced_id(&message).as_deref(),
            Some("4e0cfd2a-60d5-4a5c-b1a9-2b2b8e7e4d11")
        );
        let plain = parse("<message xmlns='jabber:component:accept'><body>x</body></message>");
        assert_eq!(replaced_id(&plain), None);
    }

    #[test]
    fn the_subject_of_a_stored_mail() {
        let raw = b"From: a@x\r\nSubject: =?utf-8?q?D=C3=AEner?=\r\n\r\nbody\r\n";
        assert_eq!(subject_of(raw).as_deref(), Some("Dîner"));
        assert_eq!(subject_of(b"From: a@x\r\n\r\nbody\r\n"), None);
    }

    #[test]
    fn the_text_of_a_correction_mailed_as_a_reply() {
        assert_eq!(
            correction_text("at ten"),
            "Correction of my previous message:\n\nat ten"
        );
        let message = with_text(
            &parse("<message xmlns='jabber:component:accept'><body>at ten</body></message>"),
            "new",
            Some("Dinner"),
        );
        assert_eq!(
            message.bodies.values().next().map(String::as_str),
            Some("new")
        );
        assert_eq!(
            message.subjects.values().next().map(String::as_str),
            Some("Dinner")
        );
    }
}
