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
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{field, field_values, form, note, Fault, NS_COMMANDS};
use crate::component::reply;
use crate::store::{Store, Verdict};

/// The command's node.
pub const NODE: &str = "blocked-senders";
/// Its name in lists.
pub const NAME: &str = "Blocked senders";
/// The form field listing the blocks, whose chosen values are unblocked.
const FIELD: &str = "unblock";

/// The command for a user who is not registered.
const NOT_REGISTERED: Fault = Fault::new(
    ErrorType::Auth,
    DefinedCondition::RegistrationRequired,
    "register with the gateway first",
);

/// Runs the command for `user`: the list as a form when nothing is
/// submitted, else the unblocking of what the submitted form chose.
/// `Ok((completed, children))`.
pub async fn run(
    store: &Store,
    user: &BareJid,
    submitted: Option<&Element>,
) -> Result<(bool, Vec<Element>), Fault> {
    let failed = |e: anyhow::Error| {
        warn!(error = format!("{e:#}"), "Store unavailable for a command.");
        reply::TRY_LATER
    };
    if !store.is_registered(user).await.map_err(failed)? {
        return Err(NOT_REGISTERED);
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
        let mut list = field(FIELD, "list-multi", "Choose the senders to unblock", &[]);
        for sender in &blocked {
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
            list.append_child(
                Element::builder("option", ns::DATA_FORMS)
                    .attr(xml_ncname!("label").into(), label)
                    .append(
                        Element::builder("value", ns::DATA_FORMS)
                            .append(sender.item.as_str())
                            .build(),
                    )
                    .build(),
            );
        }
        let actions = Element::builder("actions", NS_COMMANDS)
            .attr(xml_ncname!("execute").into(), "complete")
            .append(Element::builder("complete", NS_COMMANDS).build())
            .build();
        return Ok((
            false,
            vec![actions, form("form", NS_COMMANDS, NAME, vec![list])],
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
    if lines.is_empty() {
        lines.push("Nothing chosen: nothing changed.".to_owned());
    } else {
        lines.push(
            "Unblock them in your client too, or your server keeps refusing their messages."
                .to_owned(),
        );
    }
    Ok((true, vec![note("info", &lines.join("\n"))]))
}
