//! Pure decisions of facteur: who may send as whom, which recipients are
//! served, when to retry, how a mail travels (XMPP-Mail or SMTP), what
//! failed authentication leads to, how fast each sender may go, which senders a user blocked. No I/O: facts and the current time come in as
//! arguments, verdicts go out as data; the daemon maps them to SMTP codes
//! and stanza errors in one place.
#![warn(missing_docs)]

pub mod auth;
pub mod bayes;
pub mod limits;
pub mod relay;
pub mod retry;
pub mod route;
pub mod spam;
