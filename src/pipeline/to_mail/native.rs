//! Mail that travels as XMPP-Mail (doc/xmpp-mail.md §7): the route is
//! decided (policy::route, on what the prober learnt) and recorded before
//! the mail goes, so that a mail that went one way never goes the other.
//! Then the mail goes as the author's own message where the server lets
//! the gateway send as its users, else handed to the recipient's gateway.
//! Errors that the other side sends later arrive through `late_errors`.

use std::time::Duration;

use facteur_bridge::native::{self, from_xml};
use facteur_bridge::{mailbox_to_jid, MailAddress};
use facteur_policy::route::{decide, worth_asking, Facts, Route, Via};
use jid::BareJid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xmpp_parsers::message::{Id, Message};
use xmpp_parsers::stanza_error::DefinedCondition;

use super::ToMail;
use crate::component::{LateError, Undelivered};
use crate::store::{MailOutcome, MailRoute, Millis, Notice, Refused, Store, ToMailItem, Told};
use crate::telemetry::meters;

/// How long the server may take to confirm a message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Room the privilege wrapper or the handoff addresses add to a stanza.
const ENVELOPE_BYTES: usize = 512;
/// Prefix of the ids of messages sent as XMPP-Mail.
const ID_PREFIX: &str = "xmpp-mail-";

/// Where a queued mail goes now.
pub(super) enum Decision {
    Smtp,
    Xmpp(Box<NativeRoute>),
    /// The route could not be recorded: try again later.
    NotNow,
}

/// How a mail goes as XMPP.
pub(super) struct NativeRoute {
    via: Via,
    author: BareJid,
    rcpt: BareJid,
    /// The recipient's gateway (for a handoff).
    gateway: Option<BareJid>,
    message: Message,
}

impl ToMail {
    /// Decides, and records, how `item` goes.
    pub(super) async fn native_route(&self, item: &ToMailItem) -> Decision {
        let settings = &self.config.get().xmpp_mail;
        let message = (!item.stanza.is_empty())
            .then(|| from_xml(&item.stanza))
            .flatten();
        let has_author = !item.mail_from.is_empty();
        let size = message.as_ref().map(|_| item.stanza.len() + ENVELOPE_BYTES);
        let (Some(message), Ok(author), Ok(rcpt)) = (
            message.filter(|_| worth_asking(settings.enabled, has_author, size)),
            BareJid::new(&item.sender),
            BareJid::new(&item.rcpt),
        ) else {
            return Decision::Smtp;
        };
        let probed = self.prober.probe(&rcpt).await;
        let privileged = self
            .link
            .privileges()
            .outgoing_messages(author.domain().as_str())
            .is_some();
        let route = decide(&Facts {
            enabled: settings.enabled,
            has_author,
            stanza_size: size,
            privileged,
            answer: probed.answer,
        });
        let (recorded, decision) = match (route, probed.gateway) {
            (Route::Xmpp(via), gateway) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, route = "xmpp", reason = via.as_str(), "Route chosen.");
                (
                    MailRoute::Xmpp,
                    Decision::Xmpp(Box::new(NativeRoute {
                        via,
                        author,
                        rcpt,
                        gateway,
                        message,
                    })),
                )
            }
            (Route::Smtp(reason), _) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, route = "smtp", reason, "Route chosen.");
                (MailRoute::Smtp, Decision::Smtp)
            }
        };
        if item.route == recorded {
            return decision;
        }
        match self
            .outcomes
            .commit(MailOutcome::Routed {
                id: item.id,
                route: recorded,
            })
            .await
        {
            Ok(()) => decision,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    queue_id = item.id,
                    "Store unavailable; the mail waits."
                );
                Decision::NotNow
            }
        }
    }

    /// Sends `item` as XMPP, and records what became of it.
    pub(super) async fn send_native(&self, item: &ToMailItem, route: Box<NativeRoute>) {
        let gateway = &self.config.get().component.jid;
        let id = format!("{ID_PREFIX}{}-{}", item.id, item.created_at.0);
        let NativeRoute {
            via,
            author,
            rcpt,
            gateway: rcpt_gateway,
            message,
        } = *route;
        let privilege = self
            .link
            .privileges()
            .outgoing_messages(author.domain().as_str());
        let (mut stanza, via) = match (via, privilege, rcpt_gateway) {
            (Via::Privilege, Some(ns), _) => {
                let server =
                    BareJid::new(author.domain().as_str()).unwrap_or_else(|_| gateway.clone());
                let wrapped = native::privileged(message, ns, gateway, &server, &author, &rcpt);
                (wrapped, Via::Privilege)
            }
            (_, _, Some(to_gateway)) => (
                native::handoff(message, gateway, &to_gateway, &author, &rcpt),
                Via::Handoff,
            ),
            // The privilege went away and there is no gateway to hand to.
            (_, _, None) => {
                let outcome = MailOutcome::Rerouted {
                    id: item.id,
                    error: "XMPP-Mail not possible now".into(),
                };
                return self.record(item, Ok(outcome)).await;
            }
        };
        stanza.id = Some(Id(id));
        let confirmation = self.link.deliver(stanza).await;
        let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, confirmation).await {
            Ok(Ok(())) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, message_id = %item.message_id, via = via.as_str(), "Sent as XMPP-Mail.");
                let told = (via == Via::Privilege)
                    .then(|| self.told(&author, &rcpt))
                    .flatten();
                Ok(MailOutcome::SentAsXmpp { id: item.id, told })
            }
            Ok(Err(Undelivered::Refused(refusal))) if refusal.permanent => {
                self.fail(item, &refusal.to_string())
            }
            Ok(Err(Undelivered::Refused(refusal))) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, error = %refusal, "XMPP-Mail refused for now; the mail goes by SMTP.");
                Ok(MailOutcome::Rerouted {
                    id: item.id,
                    error: refusal.to_string(),
                })
            }
            // Sent again (same ids) once the link is back.
            Ok(Err(Undelivered::LinkLost)) | Err(_) => Ok(MailOutcome::Retry {
                id: item.id,
                at: Millis::now().after(Duration::from_secs(5)),
                error: "the XMPP link went down".into(),
            }),
        };
        self.record(item, outcome).await;
    }

    /// The notice that tells `author`, once, that `rcpt` reads mail over
    /// XMPP, in her conversation with `rcpt`'s mail contact.
    fn told(&self, author: &BareJid, rcpt: &BareJid) -> Option<Told> {
        let address = MailAddress::parse(rcpt.as_str()).ok()?;
        let from = mailbox_to_jid(&address, self.config.get().component.jid.domain()).ok()?;
        Some(Told {
            peer: rcpt.to_string(),
            notice: Notice {
                recipient: author.clone(),
                from,
                subject: "Mail over XMPP".into(),
                body: format!("{rcpt} reads mail over XMPP: you can write to {rcpt} directly."),
            },
        })
    }
}

/// Applies the stanza errors that other domains send for mail already
/// sent as XMPP: a permanent one fails the mail and tells its author, a
/// temporary one (type `wait`, or `<remote-server-timeout/>`) sends it by
/// SMTP instead.
pub async fn late_errors(
    store: Store,
    gateway: BareJid,
    mut errors: mpsc::Receiver<LateError>,
    shutdown: CancellationToken,
) {
    loop {
        let (id, refusal) = tokio::select! {
            error = errors.recv() => match error {
                Some(error) => error,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let Some((queue_id, created_at)) = parse_id(&id) else {
            continue;
        };
        let permanent =
            refusal.permanent && refusal.condition != DefinedCondition::RemoteServerTimeout;
        match store
            .xmpp_mail_refused(
                queue_id,
                created_at,
                permanent,
                &refusal.to_string(),
                &gateway,
            )
            .await
        {
            Ok(Refused::Failed { rcpt }) => {
                meters().to_mail_bounced.increment(1);
                warn!(queue_id, rcpt, error = %refusal, "XMPP-Mail refused by the recipient's side.")
            }
            Ok(Refused::Rerouted) => {
                meters().xmpp_mail_rerouted.increment(1);
                info!(queue_id, error = %refusal, "XMPP-Mail failed for now; the mail goes by SMTP.")
            }
            Ok(Refused::Nothing) => {}
            Err(e) => warn!(
                error = format!("{e:#}"),
                queue_id, "Store unavailable; a late error is lost."
            ),
        }
    }
}

/// The queue id and creation time an XMPP-Mail message id names.
fn parse_id(id: &str) -> Option<(i64, Millis)> {
    let (queue_id, created_at) = id.strip_prefix(ID_PREFIX)?.split_once('-')?;
    Some((queue_id.parse().ok()?, Millis(created_at.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_name_their_queue_entry() {
        assert_eq!(
            parse_id("xmpp-mail-42-1764547200000"),
            Some((42, Millis(1_764_547_200_000)))
        );
        for other in ["facteur-42-1", "xmpp-mail-x-1", "xmpp-mail-42", "mail-abc"] {
            assert_eq!(parse_id(other), None, "{other}");
        }
    }
}
