//! Spam feedback from users (doc/xmpp-mail.md §7.4, the README's "Spam"):
//! blocks, unblocks and XEP-0377 reports that the user's own server
//! forwards to the gateway (facteur's Prosody module
//! `deploy/prosody/mod_mail_feedback.lua`, or prosody-modules'
//! mod_report_forward), and the `<feedback/>` IQ of clients that know
//! facteur.
//!
//! A forwarded block is believed only from a served domain itself (the
//! server, which alone sends as its bare domain: Prosody keeps other
//! components and users to their own addresses), for a user of that
//! domain who is registered. Anything else is ignored with a log line.

use facteur_bridge::jid_to_mailbox;
use facteur_bridge::native::NS_FORWARD;
use facteur_bridge::wire::NS_MAIL;
use facteur_policy::spam::{BlockItem, BlockSource};
use jid::BareJid;
use tracing::{debug, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::spam::bayes::Models;
use crate::spam::NotASender;
use crate::store::{Store, Verdict};

/// XEP-0377 (Blocking Command Reports).
pub const NS_REPORTING: &str = "urn:xmpp:reporting:1";
/// XEP-0377's reasons that make a block a report.
const REASON_SPAM: &str = "urn:xmpp:reporting:spam";
const REASON_ABUSE: &str = "urn:xmpp:reporting:abuse";
/// A JID as text (mod_report_forward's `<jid/>` inside `<report/>`).
pub const NS_JID: &str = "urn:xmpp:jid:0";

/// What a forwarded message asks, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// `user` blocked `item`; `reported` when with a spam or abuse
    /// report, about the mail with `message_id` when one is known.
    Block {
        user: BareJid,
        item: BlockItem,
        reported: bool,
        message_id: String,
    },
    /// `user` unblocked `item`, or everything (`None`).
    Unblock {
        user: BareJid,
        item: Option<BlockItem>,
    },
}

/// Why a forwarded message is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// Not from a served domain itself: forged, or another component.
    NotFromServer,
    /// About a JID that is not a mail sender at this gateway.
    NotOurs,
    /// Nothing says which user blocked or reported.
    NoReporter,
    /// Malformed: what is wrong.
    Malformed(&'static str),
}

/// Whether `message` carries a forwarded block, unblock or report.
pub fn is_forwarded(message: &Message) -> bool {
    message.payloads.iter().any(|p| {
        p.is("report", NS_REPORTING) || p.is("blocked", NS_MAIL) || p.is("unblocked", NS_MAIL)
    })
}

/// Whether `iq` is the `<feedback/>` request.
pub fn is_feedback(iq: &Iq) -> bool {
    matches!(iq, Iq::Set { payload, .. } if payload.is("feedback", NS_MAIL))
}

/// Reads a forwarded message: from the server of a served domain, about
/// a JID of this gateway.
pub fn read(config: &Config, message: &Message) -> Result<Forwarded, Ignored> {
    let server = message.from.as_ref().ok_or(Ignored::NotFromServer)?;
    if server.node().is_some()
        || server.resource().is_some()
        || !config.mail.serves(server.domain().as_str())
    {
        return Err(Ignored::NotFromServer);
    }
    let server = server.domain().as_str();
    let user_of = |text: Option<&str>| -> Result<BareJid, Ignored> {
        let user = text
            .and_then(|t| BareJid::new(t.trim()).ok())
            .ok_or(Ignored::NoReporter)?;
        if user.node().is_none() || !user.domain().as_str().eq_ignore_ascii_case(server) {
            return Err(Ignored::NoReporter);
        }
        Ok(user)
    };
    let payload = |name: &str, ns: &str| message.payloads.iter().find(|p| p.is(name, ns));
    let report = payload("report", NS_REPORTING);
    let forwarded =
        payload("forwarded", NS_FORWARD).and_then(|f| f.children().find(|c| c.name() == "message"));
    let message_id = forwarded
        .and_then(|m| m.children().find(|c| c.is("mail", NS_MAIL)))
        .and_then(|mail| mail.attr("message-id"))
        .unwrap_or_default()
        .to_owned();
    let reported = report.is_some_and(|r| {
        matches!(r.attr("reason"), Some(REASON_SPAM | REASON_ABUSE))
            // XEP-0377 before 0.3 named the reason as a child.
            || r.children().any(|c| c.name() == "spam" || c.name() == "abuse")
    });
    if let Some(unblocked) = payload("unblocked", NS_MAIL) {
        let user = user_of(unblocked.attr("by"))?;
        let item = match unblocked.attr("jid") {
            Some(jid) => Some(gateway_item(config, jid)?),
            None => None,
        };
        return Ok(Forwarded::Unblock { user, item });
    }
    let (user, jid) = match (payload("blocked", NS_MAIL), report) {
        (Some(blocked), _) => (
            user_of(blocked.attr("by"))?,
            blocked
                .attr("jid")
                .ok_or(Ignored::Malformed("<blocked/> without a jid"))?
                .to_owned(),
        ),
        // mod_report_forward names no reporter: the reported message, when
        // it comes along, was sent to them.
        (None, Some(report)) => {
            let jid = report
                .children()
                .find(|c| c.is("jid", NS_JID))
                .map(Element::text)
                .ok_or(Ignored::Malformed("<report/> without a <jid/>"))?;
            let item = gateway_item(config, &jid)?;
            let to = forwarded.and_then(|m| m.attr("to"));
            let user = user_of(to.map(|to| to.split('/').next().unwrap_or(to)))?;
            return Ok(Forwarded::Block {
                user,
                item,
                reported,
                message_id,
            });
        }
        (None, None) => return Err(Ignored::Malformed("no block, unblock or report")),
    };
    Ok(Forwarded::Block {
        user,
        item: gateway_item(config, &jid)?,
        reported,
        message_id,
    })
}

/// The mail sender a blocklist JID of this gateway stands for.
fn gateway_item(config: &Config, jid: &str) -> Result<BlockItem, Ignored> {
    crate::spam::gateway_item(config, jid).map_err(|e| match e {
        NotASender::Invalid => Ignored::Malformed("an invalid JID"),
        NotASender::NotOurs => Ignored::NotOurs,
    })
}

/// Takes a forwarded block, unblock or report into the store.
pub async fn take(config: &Config, store: &Store, message: &Message) {
    let from = message.from.as_ref().map(ToString::to_string);
    let forwarded = match read(config, message) {
        Ok(forwarded) => forwarded,
        Err(Ignored::NotFromServer) => {
            return warn!(
                from,
                "Ignored spam feedback not sent by a served domain's server."
            );
        }
        Err(Ignored::NotOurs) => {
            return debug!(from, "Ignored a block of a JID that is not a mail sender.")
        }
        Err(Ignored::NoReporter) => {
            return info!(
                from,
                "Ignored a forwarded report that names no user of its server."
            );
        }
        Err(Ignored::Malformed(what)) => {
            return info!(from, what, "Ignored malformed spam feedback.");
        }
    };
    let user = match &forwarded {
        Forwarded::Block { user, .. } | Forwarded::Unblock { user, .. } => user,
    };
    match store.is_registered(user).await {
        Ok(true) => {}
        Ok(false) => {
            return info!(user = %user, "Ignored spam feedback for a user who is not registered.")
        }
        Err(e) => {
            return warn!(error = format!("{e:#}"), user = %user, "Store unavailable; spam feedback lost.")
        }
    }
    let done = match &forwarded {
        Forwarded::Block {
            user,
            item,
            reported,
            message_id,
        } => {
            let source = if *reported {
                BlockSource::Report
            } else {
                BlockSource::Block
            };
            let stored = match store.block_sender(user, item, source, *reported).await {
                Ok(()) if *reported => match item {
                    BlockItem::Address(sender) => {
                        match store
                            .record_feedback(user, sender, message_id, Verdict::Spam)
                            .await
                        {
                            Ok(()) => {
                                crate::spam::weigh_feedback(store, sender, true).await;
                                train(store, user, Some(message_id), sender, Verdict::Spam).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    BlockItem::Domain(_) => Ok(()),
                },
                other => other,
            };
            // Logged once stored: the block is in force from this line on.
            if stored.is_ok() {
                info!(user = %user, item = %item, reported, message_id = %message_id, "Sender blocked.");
            }
            if stored.is_ok() && *reported && !message_id.is_empty() {
                to_junk(store, user, message_id).await;
            }
            stored
        }
        Forwarded::Unblock { user, item } => {
            let stored = match item {
                Some(item) => match store.unblock_sender(user, item).await {
                    Ok(_) => match item {
                        BlockItem::Address(sender) => {
                            train(store, user, None, sender, Verdict::Ham).await
                        }
                        BlockItem::Domain(_) => Ok(()),
                    },
                    Err(e) => Err(e),
                },
                None => store.unblock_all(user).await.map(|_| ()),
            };
            if stored.is_ok() {
                info!(user = %user, item = ?item.as_ref().map(ToString::to_string), "Sender unblocked.");
            }
            stored
        }
    };
    if let Err(e) = done {
        warn!(error = format!("{e:#}"), user = %user, "Store unavailable; spam feedback lost.");
    }
}

/// Answers a user's `<feedback verdict='spam|ham' message-id='…'/>` on a
/// mail they received: the verdict is recorded (a spam verdict blocks
/// nothing: blocking is the client's XEP-0191 block).
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let Iq::Set { from, payload, .. } = &iq else {
        return error(&iq, reply::NOT_A_REQUEST);
    };
    let Some(user) = from.as_ref().map(|f| f.to_bare()) else {
        return error(&iq, reply::NO_SENDER);
    };
    let bad =
        |text: &'static str| Fault::new(ErrorType::Modify, DefinedCondition::BadRequest, text);
    let verdict = match payload.attr("verdict") {
        Some("spam") => Verdict::Spam,
        Some("ham") => Verdict::Ham,
        _ => return error(&iq, bad("verdict is spam or ham")),
    };
    let Some(message_id) = payload.attr("message-id").filter(|m| !m.is_empty()) else {
        return error(&iq, bad("message-id names the mail"));
    };
    let failed = |e: anyhow::Error| {
        warn!(error = format!("{e:#}"), "Store unavailable for feedback.");
        error(&iq, reply::TRY_LATER)
    };
    match store.is_registered(&user).await {
        Ok(true) => {}
        Ok(false) => return error(&iq, reply::NOT_REGISTERED),
        Err(e) => return failed(e),
    }
    let gateway = config.component.jid.domain();
    let record = match store.message_by_id(&user, message_id).await {
        Ok(record) => record,
        Err(e) => return failed(e),
    };
    // Only mail the user received has a mail sender to judge.
    let Some(sender) = record.and_then(|r| jid_to_mailbox(&r.author, gateway).ok()) else {
        return error(
            &iq,
            Fault::with_text(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                format!("no mail {message_id} came to you"),
            ),
        );
    };
    let sender = sender.to_string();
    // The same verdict again on the same mail moves no list weight twice.
    let before = match store.feedback_verdict(&user, &sender, message_id).await {
        Ok(before) => before,
        Err(e) => return failed(e),
    };
    if let Err(e) = store
        .record_feedback(&user, &sender, message_id, verdict)
        .await
    {
        return failed(e);
    }
    if let Err(e) = train(store, &user, Some(message_id), &sender, verdict).await {
        return failed(e);
    }
    info!(user = %user, sender, verdict = verdict.name(), "Spam feedback recorded.");
    if verdict == Verdict::Spam {
        to_junk(store, &user, message_id).await;
    }
    if before.as_deref() != Some(verdict.name()) {
        crate::spam::weigh_feedback(store, &sender, verdict == Verdict::Spam).await;
    }
    result(&iq, None)
}

/// Trains `user`'s model with the mail feedback is about (by its
/// Message-ID, else the newest from `sender`) when it is among her recent
/// mail; nothing to learn otherwise.
pub(crate) async fn train(
    store: &Store,
    user: &BareJid,
    message_id: Option<&str>,
    sender: &str,
    verdict: Verdict,
) -> anyhow::Result<()> {
    match crate::spam::learn::find(store, user, message_id, Some(sender)).await? {
        Some(mail) => {
            crate::spam::learn::learn(store, &Models::shared(), user, &mail, verdict).await?;
        }
        None => debug!(user = %user, sender, "No recent mail to learn from."),
    }
    Ok(())
}

/// A mail reported as spam that came from an attached IMAP mailbox is
/// moved to its Junk folder, by the mailbox's follower; what goes wrong
/// is only logged.
async fn to_junk(store: &Store, user: &BareJid, message_id: &str) {
    match store.imap_junk_wanted(user, message_id).await {
        Ok(Some(mailbox)) => {
            info!(user = %user, mailbox, message_id, "Reported as spam: to be moved to Junk.");
        }
        Ok(None) => {}
        Err(e) => warn!(
            error = format!("{e:#}"),
            user = %user,
            "Store unavailable; the mail is not moved to Junk."
        ),
    }
}

#[cfg(test)]
mod tests;
