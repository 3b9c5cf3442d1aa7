//! Spam decisions: pure, facts in and verdicts out. So far, what a user's
//! blocklist (XEP-0191) means for mail: an item at the gateway names a
//! mail address (`spammer\40evil.test@gateway`) or a whole mail domain
//! (`evil.test@gateway`), and mail from a blocked sender is refused at
//! RCPT for that user only. And the spam score of a mail for one user,
//! with the verdict it leads to (`verdict`).

mod block;
pub mod shared;
mod verdict;

pub use block::{BlockItem, BlockSource};
pub use verdict::{
    mail_decision, score, Facts, Listing, MailDecision, Score, Thresholds, Verdict, AUTH_POINTS,
    BAYES_HAM_POINTS, BAYES_POINTS, LISTING_POINTS,
};
