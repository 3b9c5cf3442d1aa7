//! The users' own spam commands: "Spam settings" (the thresholds of the
//! verdicts), "Not spam" (the quarantine: list, release, train as ham) and
//! "Report spam" (choose among the last mails' senders: train as spam and
//! record the report). Any registered user of a served domain runs them,
//! for herself only.

use facteur_policy::spam::Thresholds;
use jid::BareJid;
use tracing::info;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{
    choose, chosen_done, complete_actions, field, field_values, form, note, store_failed, Fault,
    NS_COMMANDS,
};
use crate::component::reply;
use crate::spam::bayes::Models;
use crate::spam::learn;
use crate::store::{Millis, Store, Verdict};

/// "Spam settings".
pub const SETTINGS_NODE: &str = "spam-settings";
pub const SETTINGS_NAME: &str = "Spam settings";
/// "Not spam".
pub const NOT_SPAM_NODE: &str = "not-spam";
pub const NOT_SPAM_NAME: &str = "Not spam";
/// "Report spam".
pub const REPORT_NODE: &str = "report-spam";
pub const REPORT_NAME: &str = "Report spam";

/// How many recent mails "Report spam" offers.
const OFFERED: i64 = 20;

/// Whether `node` is one of these commands.
pub fn is_node(node: &str) -> bool {
    [SETTINGS_NODE, NOT_SPAM_NODE, REPORT_NODE].contains(&node)
}

/// The name of one of these commands.
pub fn name(node: &str) -> Option<&'static str> {
    match node {
        SETTINGS_NODE => Some(SETTINGS_NAME),
        NOT_SPAM_NODE => Some(NOT_SPAM_NAME),
        REPORT_NODE => Some(REPORT_NAME),
        _ => None,
    }
}

/// Runs the command at `node` for `user`. `Ok((completed, children))`.
pub async fn run(
    node: &str,
    store: &Store,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    if !store.is_registered(user).await.map_err(store_failed)? {
        return Err(reply::NOT_REGISTERED);
    }
    let models = Models::shared();
    match node {
        SETTINGS_NODE => settings(store, user, submitted).await,
        NOT_SPAM_NODE => not_spam(store, &models, user, submitted).await,
        _ => report(store, &models, user, submitted).await,
    }
}

/// The threshold fields, with their labels.
const THRESHOLDS: [(&str, &str); 3] = [
    (
        "mark",
        "Mark as [Spam?] from this score (points; 0 turns it off)",
    ),
    (
        "quarantine",
        "Hold in quarantine from this score (points; 0 turns it off)",
    ),
    (
        "reject",
        "Refuse the mail from this score (points; 0 turns it off)",
    ),
];

/// The threshold fields of a form, filled with `thresholds`.
pub fn threshold_fields(thresholds: &Thresholds) -> Vec<Element> {
    let values = [thresholds.mark, thresholds.quarantine, thresholds.reject];
    THRESHOLDS
        .iter()
        .zip(values)
        .map(|((var, label), value)| field(var, "text-single", label, &[format!("{value}")]))
        .collect()
}

/// The thresholds a submitted form sets, `base` for the fields it leaves
/// out; an error names a value that is no number of points.
pub fn submitted_thresholds(form: &Element, base: Thresholds) -> Result<Thresholds, String> {
    let mut t = base;
    for (var, _) in THRESHOLDS {
        let Some(value) = field_values(form, var).into_iter().next() else {
            continue;
        };
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{var}: {value:?} is not a number of points"))?;
        match var {
            "mark" => t.mark = value,
            "quarantine" => t.quarantine = value,
            _ => t.reject = value,
        }
    }
    t.check()?;
    Ok(t)
}

async fn settings(
    store: &Store,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    let now = store.spam_thresholds(user).await.map_err(store_failed)?;
    let Some(submitted) = submitted else {
        return Ok((
            false,
            vec![
                complete_actions(),
                form("form", NS_COMMANDS, SETTINGS_NAME, threshold_fields(&now)),
            ],
        ));
    };
    let thresholds = submitted_thresholds(submitted, now)
        .map_err(|text| Fault::with_text(ErrorType::Modify, DefinedCondition::BadRequest, text))?;
    store
        .set_spam_thresholds(user, &thresholds)
        .await
        .map_err(store_failed)?;
    info!(user = %user, mark = thresholds.mark, quarantine = thresholds.quarantine, reject = thresholds.reject, "Spam thresholds set.");
    Ok((
        true,
        vec![note(
            "info",
            &format!(
                "Spam thresholds: mark from {}, quarantine from {}, refuse from {} points.",
                thresholds.mark, thresholds.quarantine, thresholds.reject
            ),
        )],
    ))
}

async fn not_spam(
    store: &Store,
    models: &Models,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    let Some(submitted) = submitted else {
        let held = store
            .held_mails(Some(user), false)
            .await
            .map_err(store_failed)?;
        if held.is_empty() {
            return Ok((true, vec![note("info", "No mail is held for you.")]));
        }
        let options = held.iter().map(|mail| {
            let points = format!(" ({} points)", mail.points);
            mail_option(mail.held_at, &mail.sender, &mail.subject, &points, mail.id)
        });
        return Ok(choose(
            NOT_SPAM_NAME,
            "release",
            "Choose the mails to release (they are delivered, and your spam filter learns they are not spam)",
            options,
        ));
    };
    let mut lines = Vec::new();
    for value in field_values(submitted, "release") {
        let Ok(id) = value.trim().parse::<i64>() else {
            lines.push(format!("{value:?} names no held mail."));
            continue;
        };
        match store.release_held(user, id).await.map_err(store_failed)? {
            Some(mail) => {
                info!(user = %user, sender = %mail.sender, "Held mail released.");
                learn::learn(store, models, user, &mail, Verdict::Ham)
                    .await
                    .map_err(store_failed)?;
                crate::spam::weigh_feedback(store, &mail.sender, false).await;
                lines.push(format!(
                    "Released the mail from {}: {}.",
                    mail.sender, mail.subject
                ));
            }
            None => lines.push(format!("No mail {id} is held for you.")),
        }
    }
    Ok(chosen_done(lines, None))
}

/// A mail to choose (label, value): its line, then `more`; its id.
fn mail_option(at: Millis, sender: &str, subject: &str, more: &str, id: i64) -> (String, String) {
    let line = crate::spam::mail_line(at, sender, subject);
    (format!("{line}{more}"), id.to_string())
}

async fn report(
    store: &Store,
    models: &Models,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    let Some(submitted) = submitted else {
        let recent = store
            .recent_mails(user, OFFERED)
            .await
            .map_err(store_failed)?;
        if recent.is_empty() {
            return Ok((true, vec![note("info", "No recent mail to report.")]));
        }
        let options = recent.iter().map(|mail| {
            let reported = if mail.trained == "spam" {
                " (reported)"
            } else {
                ""
            };
            mail_option(
                mail.received_at,
                &mail.sender,
                &mail.subject,
                reported,
                mail.id,
            )
        });
        return Ok(choose(
            REPORT_NAME,
            "report",
            "Choose the spam (your spam filter learns from it, and the report is recorded)",
            options,
        ));
    };
    let mut lines = Vec::new();
    for value in field_values(submitted, "report") {
        let found = match value.trim().parse::<i64>() {
            Ok(id) => store
                .recent_mail(user, Some(id), None)
                .await
                .map_err(store_failed)?,
            Err(_) => None,
        };
        let Some(mail) = found else {
            lines.push(format!("{value:?} names no recent mail of yours."));
            continue;
        };
        learn::learn(store, models, user, &mail, Verdict::Spam)
            .await
            .map_err(store_failed)?;
        crate::spam::weigh_feedback(store, &mail.sender, true).await;
        lines.push(format!(
            "Reported the mail from {}: {}.",
            mail.sender, mail.subject
        ));
    }
    Ok(chosen_done(lines, None))
}
