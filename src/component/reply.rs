//! The component's answers to a stanza (RFC 6120 §8.3 stanza errors), the
//! twin of `smtp/reply.rs`: the builders, and the errors given in more than
//! one place, named once.

use std::borrow::Cow;

use tokio_xmpp::xmlstream::RawStanzaHeader;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::receipts::Received;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// A stanza error as sent: its type, condition and English text.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub type_: ErrorType,
    pub condition: DefinedCondition,
    pub text: Cow<'static, str>,
}

impl Fault {
    pub const fn new(type_: ErrorType, condition: DefinedCondition, text: &'static str) -> Fault {
        Fault {
            type_,
            condition,
            text: Cow::Borrowed(text),
        }
    }

    /// A fault whose text names the case at hand.
    pub fn with_text(type_: ErrorType, condition: DefinedCondition, text: String) -> Fault {
        Fault {
            type_,
            condition,
            text: Cow::Owned(text),
        }
    }

    fn stanza_error(self) -> StanzaError {
        StanzaError::new(self.type_, self.condition, "en", self.text)
    }
}

/// A stanza without `from`: nobody to act for.
pub const NO_SENDER: Fault =
    Fault::new(ErrorType::Modify, DefinedCondition::BadRequest, "no sender");
/// A result or error where a get or set was due.
pub const NOT_A_REQUEST: Fault = Fault::new(
    ErrorType::Modify,
    DefinedCondition::BadRequest,
    "not a request",
);
/// The store cannot answer now.
pub const TRY_LATER: Fault = Fault::new(
    ErrorType::Wait,
    DefinedCondition::InternalServerError,
    "try again later",
);
/// A user's own request (feedback, her commands) from someone not
/// registered at the gateway.
pub const NOT_REGISTERED: Fault = Fault::new(
    ErrorType::Auth,
    DefinedCondition::RegistrationRequired,
    "register with the gateway first",
);
/// The store cannot take an outgoing mail now.
pub const NOT_QUEUED: Fault = Fault::new(
    ErrorType::Wait,
    DefinedCondition::InternalServerError,
    "the mail could not be queued, try again later",
);
/// The intake is swamped; the link must not block.
pub const BUSY: Fault = Fault::new(
    ErrorType::Wait,
    DefinedCondition::ResourceConstraint,
    "the gateway is busy, try again shortly",
);
/// A request this gateway does not implement.
pub const UNSUPPORTED: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::ServiceUnavailable,
    "not supported by this gateway",
);

/// A result IQ answering `iq`.
pub fn result(iq: &Iq, payload: Option<Element>) -> Iq {
    Iq::Result {
        from: iq.to().cloned(),
        to: iq.from().cloned(),
        id: iq.id().to_owned(),
        payload,
    }
}

/// An error IQ answering `iq`.
pub fn error(iq: &Iq, fault: Fault) -> Iq {
    Iq::Error {
        from: iq.to().cloned(),
        to: iq.from().cloned(),
        id: iq.id().to_owned(),
        error: fault.stanza_error(),
        payload: None,
    }
}

/// An error message answering `message`.
pub fn message_error(message: &Message, fault: Fault) -> Message {
    let mut reply = Message::new_with_type(MessageType::Error, message.from.clone());
    reply.from = message.to.clone();
    reply.id = message.id.clone();
    reply.payloads.push(fault.stanza_error().into());
    reply
}

/// The `wait` answer for a stanza the intake cannot take now.
pub fn busy(stanza: Stanza) -> Option<Stanza> {
    match stanza {
        Stanza::Iq(iq) => Some(error(&iq, BUSY).into()),
        Stanza::Message(m) if m.type_ != MessageType::Error => Some(message_error(&m, BUSY).into()),
        _ => None,
    }
}

/// The answer to a stanza that could not be parsed: `bad-request` to its
/// sender, unless it was itself an error or a result (never answer those).
pub fn invalid_stanza(kind: &str, header: &RawStanzaHeader, reason: &str) -> Option<Stanza> {
    let from = header.to.as_deref().and_then(|j| Jid::new(j).ok());
    let to = Some(Jid::new(header.from.as_deref()?).ok()?);
    let type_ = header.type_.as_deref().unwrap_or_default();
    let error = Fault::with_text(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        reason.to_owned(),
    )
    .stanza_error();
    match kind {
        "iq" if type_ == "get" || type_ == "set" => Some(
            Iq::Error {
                from,
                to,
                id: header.id.clone()?,
                error,
                payload: None,
            }
            .into(),
        ),
        "message" if type_ != "error" => {
            let mut reply = Message::new_with_type(MessageType::Error, to);
            reply.from = from;
            reply.id = header.id.clone().map(xmpp_parsers::message::Id);
            reply.payloads.push(error.into());
            Some(reply.into())
        }
        _ => None,
    }
}

/// The XEP-0184 receipt `message` asks for, owed until its mail is
/// delivered: who it goes to, from whom, and the id it names.
pub fn receipt_owed(message: &Message) -> Option<(String, String, String)> {
    let asked = message
        .payloads
        .iter()
        .any(|p| p.is("request", ns::RECEIPTS));
    let id = message.id.as_ref()?.0.clone();
    match asked && !id.is_empty() {
        true => Some((
            message.from.as_ref()?.to_string(),
            message.to.as_ref()?.to_string(),
            id,
        )),
        false => None,
    }
}

/// The XEP-0184 receipt naming `id`, from `from` to `to`.
pub fn receipt_for(from: Jid, to: Jid, id: String) -> Message {
    let mut reply = Message::new_with_type(MessageType::Normal, Some(to));
    reply.from = Some(from);
    reply.payloads.push(Received { id }.into());
    reply
}

/// The XEP-0184 receipt for `message`, if it asked for one.
pub fn receipt(message: &Message) -> Option<Message> {
    let asked = message
        .payloads
        .iter()
        .any(|p| p.is("request", ns::RECEIPTS));
    let id = message.id.as_ref()?.0.clone();
    if !asked {
        return None;
    }
    let mut reply = Message::new_with_type(MessageType::Normal, message.from.clone());
    reply.from = message.to.clone();
    reply.payloads.push(Received { id }.into());
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Message {
        let mut message = Message::new_with_type(
            MessageType::Chat,
            Some(Jid::new("bob\\40example.net@mail.example.test").expect("jid")),
        );
        message.from = Some(Jid::new("alice@example.test/phone").expect("jid"));
        message.id = Some(xmpp_parsers::message::Id("m1".into()));
        message
    }

    #[test]
    fn a_busy_message_is_asked_to_wait() {
        let Some(Stanza::Message(reply)) = busy(Stanza::Message(chat())) else {
            panic!("expected an error message");
        };
        let xml = String::from(&Element::from(reply));
        assert!(xml.contains("type='error'"), "{xml}");
        assert!(xml.contains("type='wait'"), "{xml}");
        assert!(xml.contains("<resource-constraint"), "{xml}");
        assert!(xml.contains("to='alice@example.test/phone'"), "{xml}");
        assert!(xml.contains("id='m1'"), "{xml}");
    }

    #[test]
    fn errors_are_never_answered() {
        let mut error = chat();
        error.type_ = MessageType::Error;
        assert!(busy(Stanza::Message(error)).is_none());
    }
}
