//! SMTP both ways: the RFC 5321 receiver for inbound mail (`server`,
//! `session`) and delivery of outgoing mail with lettre (`client`).

pub mod auth;
pub mod client;
mod reply;
pub mod server;
pub mod session;
