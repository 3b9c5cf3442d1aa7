//! End-to-end encrypted chat messages: OMEMO (XEP-0384, both the 0.3
//! `eu.siacs.conversations.axolotl` namespace and `urn:xmpp:omemo:2`),
//! OpenPGP for XMPP (XEP-0373/0374), legacy OpenPGP (XEP-0027) and OTR
//! (XEP-0364), named as XEP-0380 Explicit Message Encryption names them.
//!
//! The gateway holds no key of the recipient's, so it can never mail what
//! such a message says: only its fallback text, which would tell the
//! recipient nothing and the author that something private had been sent.

use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

use crate::xml_text::one_line;

/// XEP-0380 Explicit Message Encryption.
pub const NS_EME: &str = "urn:xmpp:eme:0";
/// OMEMO as first deployed (XEP-0384 0.3), by Conversations and others.
pub const NS_OMEMO_AXOLOTL: &str = "eu.siacs.conversations.axolotl";
/// OMEMO 1 (XEP-0384 0.4–0.7).
pub const NS_OMEMO_1: &str = "urn:xmpp:omemo:1";
/// OMEMO 2 (XEP-0384 0.8 and later).
pub const NS_OMEMO_2: &str = "urn:xmpp:omemo:2";
/// OpenPGP for XMPP (XEP-0373, XEP-0374).
pub const NS_OPENPGP: &str = "urn:xmpp:openpgp:0";
/// Legacy OpenPGP (XEP-0027).
pub const NS_LEGACY_OPENPGP: &str = "jabber:x:encrypted";
/// OTR (XEP-0364).
pub const NS_OTR: &str = "urn:xmpp:otr:0";

/// The schemes XEP-0380 lists, by namespace, with the name it gives them.
const SCHEMES: &[(&str, &str)] = &[
    (NS_OMEMO_AXOLOTL, "OMEMO"),
    (NS_OMEMO_1, "OMEMO 1"),
    (NS_OMEMO_2, "OMEMO 2"),
    (NS_OPENPGP, "OpenPGP for XMPP"),
    (NS_LEGACY_OPENPGP, "Legacy OpenPGP"),
    (NS_OTR, "OTR"),
];

/// A name longer than this, from a sender's `<encryption name=…>`, is cut.
const NAME_MAX_CHARS: usize = 40;

/// An end-to-end encrypted message, as far as the gateway can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The scheme's namespace.
    pub namespace: String,
    /// The scheme's name, for people: the one XEP-0380 gives its
    /// namespace, else the one the sender's client gives it.
    pub name: String,
    /// Whether the message carries something a person wrote: a body or an
    /// encrypted payload. OMEMO key-transport messages (a header alone)
    /// carry none and only set sessions up.
    pub content: bool,
}

/// The encryption of `message`, if it is end-to-end encrypted: named by a
/// XEP-0380 `<encryption>` element where the client sends one, else known
/// by its encrypted element (or, for OTR, by its body).
pub fn encryption(message: &Message) -> Option<Encrypted> {
    let body = message
        .bodies
        .values()
        .next()
        .map(|b| b.trim())
        .unwrap_or_default();
    let eme = message.payloads.iter().find(|p| p.is("encryption", NS_EME));
    let element = message.payloads.iter().find(|p| encrypted_element(p));
    let namespace = match (eme, element) {
        (Some(eme), _) => eme.attr("namespace").unwrap_or_default().to_owned(),
        (None, Some(element)) => element.ns(),
        // OTR data and queries travel in the body: "?OTR:…", "?OTRv23?".
        (None, None) if body.starts_with("?OTR") => NS_OTR.to_owned(),
        (None, None) => return None,
    };
    let known = SCHEMES
        .iter()
        .find(|(ns, _)| *ns == namespace)
        .map(|(_, name)| (*name).to_owned());
    let given = eme
        .and_then(|e| e.attr("name"))
        .map(|n| one_line(n).trim().chars().take(NAME_MAX_CHARS).collect())
        .filter(|n: &String| !n.is_empty());
    let name = known
        .or(given)
        .unwrap_or_else(|| "end-to-end encryption".to_owned());
    let payload =
        element.is_some_and(|e| !is_omemo(e) || e.get_child("payload", e.ns().as_str()).is_some());
    let content = !body.is_empty() || payload;
    Some(Encrypted {
        namespace,
        name,
        content,
    })
}

/// Whether `element` is an OMEMO `<encrypted>`, of any version.
fn is_omemo(element: &Element) -> bool {
    [NS_OMEMO_AXOLOTL, NS_OMEMO_1, NS_OMEMO_2]
        .iter()
        .any(|ns| element.is("encrypted", *ns))
}

/// Whether `payload` is the encrypted element of a scheme the gateway knows.
fn encrypted_element(payload: &Element) -> bool {
    is_omemo(payload) || payload.is("openpgp", NS_OPENPGP) || payload.is("x", NS_LEGACY_OPENPGP)
}

/// The text of the error that answers an encrypted message: why nothing
/// was mailed, and how to write to the contact instead.
pub fn refusal_text(encrypted: &Encrypted) -> String {
    format!(
        "this contact reads mail, and the mail gateway cannot read end-to-end encrypted \
         messages ({}): nothing was sent; to write to this contact, turn encryption off \
         for this chat and send the message again, unencrypted",
        encrypted.name
    )
}

#[cfg(test)]
mod tests;
