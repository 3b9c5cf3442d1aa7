//! SMTP both ways: the RFC 5321 receiver for inbound mail (`server`,
//! `session`, with `verify` for SPF/DKIM/DMARC/ARC and `xforward` for an
//! MTA in front) and delivery of outgoing mail with lettre (`client`, and
//! `submit` through the outgoing server of an attached IMAP mailbox).

pub mod client;
mod reader;
mod reply;
pub mod server;
pub mod session;
pub mod submit;
pub mod verify;
mod xforward;
