//! "Blocked senders", the users' own command: the mail senders they
//! blocked (by XEP-0191 through their server, or read from their
//! blocklist), listed, and unblocked at the gateway: their mail is taken
//! again at RCPT. The user's server may still block them (her client's
//! blocklist is there): what it refuses then is still never reported to
//! the sender. Any registered user of a served domain runs it, for
//! herself only.

use facteur_policy::spam::BlockItem;
use jid::BareJid;
use tracing::{info, warn};
use xmpp_parsers::minidom::Element;

use super::{choose, chosen_done, field_values, note, store_failed, Fault};
use crate::component::reply;
use crate::store::{Store, Verdict};

/// The command's node.
pub const NODE: &str = "blocked-senders";
/// Its name in lists.
pub const NAME: &str = "Blocked senders";
/// The form field listing the blocks, whose chosen values are unblocked.
const FIELD: &str = "unblock";

/// Runs the command for `user`: the list as a form when nothing is
/// submitted, else the unblocking of what the submitted form chose.
/// `Ok((completed, children))`.
pub async fn run(
    store: &Store,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    let failed = store_failed;
    if !store.is_registered(user).await.map_err(failed)? {
        return Err(reply::NOT_REGISTERED);
    }
    let Some(submitted) = submitted else {
        let blocked: Vec<_> = store
            .blocked_senders(user)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|b| b.refused)
            .collect();
        if blocked.is_empty() {
            return Ok((true, vec![note("info", "You block no mail sender.")]));
        }
        let options = blocked.iter().map(|sender| {
            let label = format!(
                "{}{} ({})",
                sender.item,
                if sender.reported {
                    ", reported as spam"
                } else {
                    ""
                },
                sender.source.name()
            );
            (label, sender.item.as_str().to_owned())
        });
        return Ok(choose(
            NAME,
            FIELD,
            "Choose the senders to unblock",
            options,
        ));
    };
    let mut lines = Vec::new();
    for value in field_values(submitted, FIELD) {
        let Some(item) = BlockItem::from_local_part(&value) else {
            lines.push(format!("{value} is no mail address or domain."));
            continue;
        };
        if store.stop_refusing(user, &item).await.map_err(failed)? {
            info!(user = %user, item = %item, "Sender unblocked by the user's command.");
            // As an unblock through her server: the sender's last mail
            // to her was not spam after all.
            if let BlockItem::Address(sender) = &item {
                let trained =
                    crate::component::feedback::train(store, user, None, sender, Verdict::Ham)
                        .await;
                if let Err(e) = trained {
                    warn!(error = format!("{e:#}"), user = %user, "Store unavailable; the unblock taught nothing.");
                }
            }
            lines.push(format!("Unblocked {item}."));
        } else {
            lines.push(format!("{item} was not blocked."));
        }
    }
    Ok(chosen_done(
        lines,
        Some("Unblock them in your client too, or your server keeps refusing their messages."),
    ))
}
