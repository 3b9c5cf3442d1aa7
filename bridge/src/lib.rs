//! Pure translation between Internet mail (RFC 5321/5322) and XMPP message
//! stanzas: no sockets, no database, no clock. Time and stored facts come in
//! as arguments.
#![warn(missing_docs)]

pub mod address;
pub mod attach;
pub mod body;
pub mod bounce;
pub mod correct;
pub mod encryption;
mod error;
pub mod mdn;
pub mod native;
pub mod quote;
pub mod reaction;
pub mod retract;
#[cfg(test)]
mod testing;
pub mod threading;
pub mod to_mail;
pub mod to_xmpp;
pub mod wire;
mod xml_text;

pub use address::{jid_to_mailbox, mailbox_to_jid, MailAddress};
pub use error::Error;
