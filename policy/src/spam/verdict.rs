//! The spam score of a mail for one recipient, and what it leads to.
//!
//! The score is in points, as SpamAssassin's: the sum of what each piece
//! of evidence adds.
//!
//! - **Authentication**: a failure that the authentication rules mark
//!   rather than refuse (SPF or DMARC under a lenient policy) adds
//!   [`AUTH_POINTS`].
//! - **Listings**: each list that names the sender, its domain, the client
//!   IP or a link domain adds [`LISTING_POINTS`] times the list's weight,
//!   in [0, 1]. A list whose weight fell to 0 adds nothing.
//! - **Bayes**: the content's spam probability `p` (the global model plus
//!   the user's own from its 20th feedback) adds `(p − 0.5) × 2 ×`
//!   [`BAYES_POINTS`] when `p > 0.5`, and takes off `(0.5 − p) × 2 ×`
//!   [`BAYES_HAM_POINTS`] when `p < 0.5`: clear ham weighs against a
//!   listing, but less than clear spam weighs for one. No model: no points.
//!
//! Each user has three thresholds ([`Thresholds`]); the highest one the
//! score reaches decides: deliver, mark, quarantine or reject. By default
//! a confident Bayes alone marks, Bayes with a full-weight listing
//! quarantines, and it takes more (two listings and confident Bayes, or a
//! failed authentication besides) to reject.

use std::fmt;

/// Points a marked authentication failure adds.
pub const AUTH_POINTS: f64 = 3.0;
/// Points one listing adds at weight 1.
pub const LISTING_POINTS: f64 = 5.0;
/// Points a Bayes probability of 1 adds.
pub const BAYES_POINTS: f64 = 8.0;
/// Points a Bayes probability of 0 takes off.
pub const BAYES_HAM_POINTS: f64 = 4.0;

/// One listing that matched this mail: the list (a configured pubsub list, facteur's own, or a DNSBL zone)
/// and its weight now, in [0, 1]. A list whose weight fell to 0 does not count.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The list, as configured or as the DNSBL zone.
    pub list: String,
    /// What it listed: the address, domain, IP or link domain.
    pub what: String,
    /// The list's weight now, in [0, 1].
    pub weight: f64,
}

/// What is known of a mail for one recipient.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The authentication failure that the rules mark (empty: none).
    pub auth_warning: &'a str,
    /// The listings that matched.
    pub listings: &'a [Listing],
    /// The Bayes probability that the content is spam, in [0, 1]; `None`
    /// when no model judges it (nothing trained, or not yet counting).
    pub bayes: Option<f64>,
}

/// A user's thresholds, in points. A threshold of 0 or less is off: that
/// verdict never comes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// From here, delivered with `[Spam?]` and a `<spam/>` element.
    pub mark: f64,
    /// From here, held in quarantine.
    pub quarantine: f64,
    /// From here, refused with 550 5.7.1.
    pub reject: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            mark: 5.0,
            quarantine: 10.0,
            reject: 15.0,
        }
    }
}

impl Thresholds {
    /// Whether each threshold is a finite number, at most 1000 points.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("mark", self.mark),
            ("quarantine", self.quarantine),
            ("reject", self.reject),
        ] {
            if !value.is_finite() || value.abs() > 1000.0 {
                return Err(format!(
                    "The {name} threshold must be a number of points up to 1000 (0 turns it off)"
                ));
            }
        }
        Ok(())
    }
}

/// What becomes of a mail for one recipient, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Delivered as it is.
    Deliver,
    /// Delivered, marked as likely spam.
    Mark,
    /// Stored, not delivered, until the user releases it.
    Quarantine,
    /// Refused at end of DATA.
    Reject,
}

impl Verdict {
    /// The name logged and stored.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Deliver => "deliver",
            Verdict::Mark => "mark",
            Verdict::Quarantine => "quarantine",
            Verdict::Reject => "reject",
        }
    }
}

/// A mail's score for one recipient, and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Score {
    /// The points, rounded to a tenth.
    pub points: f64,
    /// What added or took off points, in a short form (`bayes:0.99`,
    /// `auth`, `list:NAME:WHAT`), in the order they counted.
    pub reasons: Vec<String>,
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.points)?;
        if !self.reasons.is_empty() {
            write!(f, " ({})", self.reasons.join(", "))?;
        }
        Ok(())
    }
}

/// Scores a mail for one recipient.
pub fn score(facts: &Facts<'_>) -> Score {
    let mut points = 0.0;
    let mut reasons = Vec::new();
    if !facts.auth_warning.is_empty() {
        points += AUTH_POINTS;
        reasons.push("auth".to_owned());
    }
    for listing in facts.listings {
        let weight = if listing.weight.is_finite() {
            listing.weight.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if weight > 0.0 {
            points += LISTING_POINTS * weight;
            reasons.push(format!("list:{}:{}", listing.list, listing.what));
        }
    }
    if let Some(p) = facts.bayes.filter(|p| p.is_finite()) {
        let p = p.clamp(0.0, 1.0);
        let add = if p >= 0.5 {
            (p - 0.5) * 2.0 * BAYES_POINTS
        } else {
            -(0.5 - p) * 2.0 * BAYES_HAM_POINTS
        };
        if add.abs() >= 0.05 {
            points += add;
            reasons.push(format!("bayes:{p:.2}"));
        }
    }
    Score {
        points: (points * 10.0).round() / 10.0,
        reasons,
    }
}

impl Score {
    /// The verdict the recipient's thresholds give this score: the
    /// highest one reached.
    pub fn verdict(&self, thresholds: &Thresholds) -> Verdict {
        let reached = |t: f64| t > 0.0 && self.points >= t;
        if reached(thresholds.reject) {
            Verdict::Reject
        } else if reached(thresholds.quarantine) {
            Verdict::Quarantine
        } else if reached(thresholds.mark) {
            Verdict::Mark
        } else {
            Verdict::Deliver
        }
    }
}

/// What the mail as a whole gets at end of DATA, from its recipients'
/// verdicts: refused (550 5.7.1) only when every recipient rejects it;
/// else accepted, and the recipients who would have rejected it get it in
/// quarantine instead (the sending server cannot be told of a partial
/// refusal after DATA without a report, which would be backscatter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailDecision {
    /// Refuse the whole mail.
    Reject,
    /// Accept, with these verdicts per recipient, in order (never Reject).
    Accept(Vec<Verdict>),
}

/// Combines the recipients' verdicts ([`MailDecision`]).
pub fn mail_decision(verdicts: &[Verdict]) -> MailDecision {
    if !verdicts.is_empty() && verdicts.iter().all(|v| *v == Verdict::Reject) {
        return MailDecision::Reject;
    }
    MailDecision::Accept(
        verdicts
            .iter()
            .map(|v| match v {
                Verdict::Reject => Verdict::Quarantine,
                other => *other,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(weight: f64) -> Listing {
        Listing {
            list: "xmppbl".into(),
            what: "evil.test".into(),
            weight,
        }
    }

    #[test]
    fn nothing_known_delivers() {
        let s = score(&Facts::default());
        assert_eq!(s.points, 0.0);
        assert!(s.reasons.is_empty());
        assert_eq!(s.verdict(&Thresholds::default()), Verdict::Deliver);
    }

    #[test]
    fn confident_bayes_alone_marks_by_default() {
        let s = score(&Facts {
            bayes: Some(0.99),
            ..Facts::default()
        });
        assert_eq!(s.points, 7.8);
        assert_eq!(s.reasons, vec!["bayes:0.99".to_owned()]);
        assert_eq!(s.verdict(&Thresholds::default()), Verdict::Mark);
    }

    #[test]
    fn bayes_and_a_listing_quarantine_and_more_rejects() {
        let listings = [listing(1.0)];
        let s = score(&Facts {
            listings: &listings,
            bayes: Some(1.0),
            ..Facts::default()
        });
        assert_eq!(s.points, 13.0);
        assert_eq!(s.verdict(&Thresholds::default()), Verdict::Quarantine);
        let s = score(&Facts {
            auth_warning: "SPF failed",
            listings: &listings,
            bayes: Some(1.0),
        });
        assert_eq!(s.points, 16.0);
        assert_eq!(s.reasons[0], "auth");
        assert_eq!(s.reasons[1], "list:xmppbl:evil.test");
        assert_eq!(s.verdict(&Thresholds::default()), Verdict::Reject);
    }

    #[test]
    fn listings_count_by_weight_and_not_at_zero() {
        let listings = [listing(0.5), listing(0.0), listing(f64::NAN), listing(7.0)];
        let s = score(&Facts {
            listings: &listings,
            ..Facts::default()
        });
        assert_eq!(s.points, 7.5);
        assert_eq!(s.reasons.len(), 2);
    }

    #[test]
    fn clear_ham_takes_points_off() {
        let listings = [listing(1.0)];
        let s = score(&Facts {
            listings: &listings,
            bayes: Some(0.0),
            ..Facts::default()
        });
        assert_eq!(s.points, 1.0);
        assert_eq!(s.verdict(&Thresholds::default()), Verdict::Deliver);
        // Neutral content adds nothing and is no reason.
        let s = score(&Facts {
            bayes: Some(0.5),
            ..Facts::default()
        });
        assert!(s.reasons.is_empty());
    }

    #[test]
    fn thresholds_pick_the_highest_reached_and_zero_is_off() {
        let s = Score {
            points: 6.0,
            reasons: vec![],
        };
        let t = |mark, quarantine, reject| Thresholds {
            mark,
            quarantine,
            reject,
        };
        assert_eq!(s.verdict(&t(5.0, 6.0, 7.0)), Verdict::Quarantine);
        assert_eq!(s.verdict(&t(1.0, 2.0, 3.0)), Verdict::Reject);
        assert_eq!(s.verdict(&t(0.0, 0.0, 0.0)), Verdict::Deliver);
        assert_eq!(s.verdict(&t(5.0, 0.0, 0.0)), Verdict::Mark);
        assert!(t(1.0, f64::INFINITY, 3.0).check().is_err());
        assert!(t(1.0, 2.0, 3.0).check().is_ok());
    }

    #[test]
    fn a_mail_is_refused_only_when_every_recipient_rejects() {
        use Verdict::*;
        assert_eq!(mail_decision(&[Reject, Reject]), MailDecision::Reject);
        assert_eq!(
            mail_decision(&[Reject, Deliver, Mark]),
            MailDecision::Accept(vec![Quarantine, Deliver, Mark])
        );
        assert_eq!(mail_decision(&[]), MailDecision::Accept(vec![]));
    }

    #[test]
    fn a_score_shows_its_points_and_reasons() {
        let s = Score {
            points: 7.8,
            reasons: vec!["bayes:0.99".into(), "auth".into()],
        };
        assert_eq!(s.to_string(), "7.8 (bayes:0.99, auth)");
    }
}
