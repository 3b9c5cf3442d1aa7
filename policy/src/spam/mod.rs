//! Spam decisions: pure, facts in and verdicts out. So far, what a user's
//! blocklist (XEP-0191) means for mail: an item at the gateway names a
//! mail address (`spammer\40evil.test@gateway`) or a whole mail domain
//! (`evil.test@gateway`), and mail from a blocked sender is refused at
//! RCPT for that user only.

mod block;
pub mod shared;

pub use block::{BlockItem, BlockSource};
