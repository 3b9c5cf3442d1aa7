//! The quarantine's upkeep, once per cluster: every `[spam]
//! digest_interval`, held mail older than `[spam] held_for` is dropped,
//! and each user with mail held since the last digest gets a message from
//! the gateway naming it (sender, subject, date), with how to release it.

use std::collections::BTreeMap;
use std::time::Duration;

use jid::BareJid;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Live;
use crate::store::{HeldMail, Millis, Notice, Store};

/// The digest message for `user`.
pub fn digest(gateway: &BareJid, user: &BareJid, held: &[&HeldMail], held_for: Duration) -> Notice {
    let mut body = format!(
        "{} mail{} held as spam for you:\n",
        held.len(),
        if held.len() == 1 { " was" } else { "s were" }
    );
    for mail in held {
        body.push_str(&format!(
            "- {}\n",
            crate::spam::mail_line(mail.held_at, &mail.sender, &mail.subject)
        ));
    }
    body.push_str(&format!(
        "Release what is not spam with the gateway's \"Not spam\" command; held mail is dropped after {} days.",
        held_for.as_secs() / 86_400
    ));
    Notice {
        recipient: user.clone(),
        from: gateway.clone(),
        subject: "Mail held as spam".into(),
        body,
    }
}

/// One round: expiry, then the digests. How many digests were queued.
pub async fn round(store: &Store, gateway: &BareJid, held_for: Duration) -> anyhow::Result<usize> {
    let expired = store.expire_spam(Millis::now().before(held_for)).await?;
    if expired > 0 {
        info!(expired, "Held mail expired.");
    }
    let held = store.held_mails(None, true).await?;
    let mut by_user: BTreeMap<&str, Vec<&HeldMail>> = BTreeMap::new();
    for mail in &held {
        by_user.entry(mail.user.as_str()).or_default().push(mail);
    }
    let mut sent = 0;
    for (user, mails) in by_user {
        let Ok(user) = BareJid::new(user) else {
            continue;
        };
        let notice = digest(gateway, &user, &mails, held_for);
        let ids: Vec<i64> = mails.iter().map(|m| m.id).collect();
        store.queue_digest(&notice, &ids).await?;
        info!(user = %user, held = ids.len(), "Quarantine digest queued.");
        sent += 1;
    }
    Ok(sent)
}

/// Runs the rounds every `[spam] digest_interval` (read again after each
/// round: a reload applies) until `shutdown`; of the instances sharing a
/// store, the one holding the job's lease runs. The first round waits one
/// interval.
pub async fn run(store: Store, config: Live, shutdown: CancellationToken) {
    loop {
        let every = config.get().spam.digest_interval;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        if !store
            .runs_job("spam-digest", every, "Quarantine digest failed.")
            .await
        {
            continue;
        }
        let now = config.get();
        if let Err(e) = round(&store, &now.component.jid, now.spam.held_for).await {
            warn!(error = format!("{e:#}"), "Quarantine digest failed.");
        }
    }
}
