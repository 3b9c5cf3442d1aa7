//! The spam decision at end of DATA, before the 250: each recipient's
//! score (authentication, listings, Bayes) against her thresholds, and
//! what the mail as a whole gets ([`facteur_policy::spam::mail_decision`]).

use std::net::IpAddr;

use facteur_policy::spam::{self, Facts, MailDecision, Verdict};
use jid::BareJid;
use mail_parser::MessageParser;
use tracing::{info, warn};

use super::bayes::{self, Models};
use super::Listings;
use crate::store::{MailSpam, RecipientSpam, Store};

/// The spam check of the SMTP reception; cheap to clone.
#[derive(Clone)]
pub struct Judge {
    pub listings: Listings,
    pub models: Models,
}

impl Default for Judge {
    fn default() -> Self {
        Judge {
            listings: Listings::default(),
            models: Models::shared(),
        }
    }
}

/// What the spam check decided for a mail.
#[derive(Debug)]
pub enum Judged {
    /// Every recipient rejects it: 550 5.7.1, with the scores for the log.
    Reject(String),
    /// Accepted: deliver to these recipients (the quarantined ones are
    /// left out), with what to store.
    Accept(Vec<BareJid>, MailSpam),
}

/// The hosts of the links in a mail's bytes (`http://host`, `https://host`),
/// lower case, distinct, at most 20.
pub fn link_domains(raw: &[u8]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let text = String::from_utf8_lossy(raw);
    for (at, _) in text.match_indices("://") {
        let scheme = text.get(at.saturating_sub(5)..at).unwrap_or_default();
        if !(scheme.ends_with("http") || scheme.ends_with("https")) {
            continue;
        }
        let after = text.get(at + 3..).unwrap_or_default();
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(after.len());
        let host = after
            .get(..end)
            .unwrap_or_default()
            .trim_matches('.')
            .to_ascii_lowercase();
        if host.contains('.') && !hosts.contains(&host) {
            hosts.push(host);
            if hosts.len() >= 20 {
                break;
            }
        }
    }
    hosts
}

impl Judge {
    /// Scores a mail for each recipient and decides. A store error never
    /// refuses a mail: that recipient gets the default thresholds, and
    /// content that cannot be judged counts nothing.
    pub async fn judge(
        &self,
        store: &Store,
        mail_from: &str,
        client: IpAddr,
        raw: &[u8],
        recipients: &[BareJid],
        auth_warning: &str,
    ) -> Judged {
        let tokens = bayes::tokens(raw);
        let listings = self
            .listings
            .lookup(mail_from, client, &link_domains(raw))
            .await;
        let mut scored = Vec::with_capacity(recipients.len());
        for rcpt in recipients {
            let thresholds = match store.spam_thresholds(rcpt).await {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = format!("{e:#}"), user = %rcpt, "Spam thresholds unavailable; the defaults apply.");
                    spam::Thresholds::default()
                }
            };
            let score = spam::score(&Facts {
                auth_warning,
                listings: &listings,
                bayes: self.models.probability(store, rcpt, &tokens).await,
            });
            let verdict = score.verdict(&thresholds);
            scored.push((rcpt, score, verdict));
        }
        let verdicts: Vec<Verdict> = scored.iter().map(|s| s.2).collect();
        let verdicts = match spam::mail_decision(&verdicts) {
            MailDecision::Reject => {
                let scores = scored
                    .iter()
                    .map(|(rcpt, score, _)| format!("{rcpt}: {score}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Judged::Reject(scores);
            }
            MailDecision::Accept(verdicts) => verdicts,
        };
        let headers = MessageParser::new().parse_headers(raw);
        let short = |text: Option<&str>| text.unwrap_or_default().chars().take(200).collect();
        let mut spam = MailSpam {
            message_id: short(headers.as_ref().and_then(|m| m.message_id())),
            subject: short(headers.as_ref().and_then(|m| m.subject())),
            tokens,
            recipients: Vec::with_capacity(scored.len()),
        };
        let mut delivered = Vec::with_capacity(scored.len());
        for ((rcpt, score, _), verdict) in scored.into_iter().zip(verdicts) {
            if verdict != Verdict::Deliver {
                info!(user = %rcpt, mail_from, score = %score, verdict = verdict.name(), "Spam verdict.");
            }
            if verdict != Verdict::Quarantine {
                delivered.push(rcpt.clone());
            }
            spam.recipients.push(RecipientSpam {
                recipient: rcpt.clone(),
                points: score.points,
                reasons: score.reasons.join(","),
                verdict,
            });
        }
        Judged::Accept(delivered, spam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_domains_are_the_hosts_of_web_links() {
        let raw = b"Subject: x\r\n\r\nSee https://Cheap.Pills.test/buy and http://cheap.pills.test/x,\r\nftp://no.test and https://nodot or <a href=\"http://b.example\">.\r\n";
        assert_eq!(
            link_domains(raw),
            vec!["cheap.pills.test".to_owned(), "b.example".to_owned()]
        );
    }
}
