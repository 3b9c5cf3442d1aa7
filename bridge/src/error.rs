//! The one error type of the translation layer.

/// Why a translation could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A mail address that cannot be used (syntax, length, characters).
    #[error("invalid mail address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A JID that does not stand for a mail address of this gateway.
    #[error("JID {jid} does not name a mail address: {reason}")]
    NotAMailJid {
        /// The JID as given.
        jid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bytes are not a message that can be parsed at all.
    #[error("the message cannot be parsed as RFC 5322 mail")]
    Unparsable,
    /// A stanza without the text a mail needs.
    #[error("the stanza has no body to send")]
    EmptyStanza,
}
