//! What a user's spam and ham feedback does: her own Bayesian model
//! learns the mail (from the tokens kept with her recent mail), and the
//! report is recorded with the sender, its domain and the client IP, for
//! lists shared with other servers.

use jid::BareJid;
use tracing::info;

use super::bayes::Models;
use crate::store::{RecentMail, Store, Verdict};

/// How many of a user's recent mails are searched for a sender.
const SEARCHED: i64 = 200;

/// The recent mail feedback is about: the one with `message_id` when
/// given, else the newest from `sender`.
pub async fn find(
    store: &Store,
    user: &BareJid,
    message_id: Option<&str>,
    sender: Option<&str>,
) -> anyhow::Result<Option<RecentMail>> {
    if let Some(message_id) = message_id.filter(|m| !m.is_empty()) {
        if let Some(found) = store.recent_mail(user, None, Some(message_id)).await? {
            return Ok(Some(found));
        }
    }
    let Some(sender) = sender.map(|s| s.trim().to_ascii_lowercase()) else {
        return Ok(None);
    };
    Ok(store
        .recent_mails(user, SEARCHED)
        .await?
        .into_iter()
        .find(|m| m.sender == sender))
}

/// Trains `user`'s model with `mail` as spam or ham and records the
/// report. A mail learnt the same way before is not learnt twice; one
/// learnt the other way is unlearnt first. Whether the model learnt.
pub async fn learn(
    store: &Store,
    models: &Models,
    user: &BareJid,
    mail: &RecentMail,
    verdict: Verdict,
) -> anyhow::Result<bool> {
    store
        .record_report(
            user,
            &mail.sender,
            &mail.message_id,
            &mail.client_ip,
            verdict,
        )
        .await?;
    if mail.trained == verdict.name() {
        return Ok(false);
    }
    let spam = verdict == Verdict::Spam;
    models
        .train(store, user, &mail.tokens, spam, !mail.trained.is_empty())
        .await?;
    store.mark_trained(mail.id, verdict.name()).await?;
    info!(user = %user, sender = %mail.sender, verdict = verdict.name(), "Spam model trained.");
    Ok(true)
}
