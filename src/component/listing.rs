//! Whether the served domains list the gateway in their disco#items
//! (doc/xmpp-mail.md §4): other domains find the gateway there, and check
//! handoffs from it there. Asked each time the link comes up; a domain
//! that does not list it is an operator's matter, said once per link-up.

use jid::{BareJid, Jid};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::probe::discover::{Discovery, NoAnswer};

/// Asks the disco#items of each of `domains` whenever the link comes up.
pub async fn run(discovery: Discovery, domains: Vec<String>, shutdown: CancellationToken) {
    let mut up = discovery.link.watch();
    let own = discovery.own.to_bare();
    loop {
        tokio::select! {
            changed = up.wait_for(|up| *up) => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        for domain in &domains {
            let Ok(server) = Jid::new(domain) else {
                continue;
            };
            let listed = tokio::select! {
                listed = lists(&discovery, &server, &own) => listed,
                () = shutdown.cancelled() => return,
            };
            match listed {
                Ok(true) => {
                    info!(domain = %domain, gateway = %own, "The served domain lists the gateway.")
                }
                Ok(false) => warn!(
                    domain = %domain,
                    gateway = %own,
                    "The served domain does not list the gateway in its disco#items; other domains cannot find it."
                ),
                Err(NoAnswer(reason)) => {
                    info!(domain = %domain, reason, "The served domain's disco#items not checked.")
                }
            }
        }
        tokio::select! {
            changed = up.wait_for(|up| !*up) => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether `server`'s disco#items name `own`.
async fn lists(discovery: &Discovery, server: &Jid, own: &BareJid) -> Result<bool, NoAnswer> {
    Ok(discovery
        .items(server)
        .await?
        .iter()
        .any(|item| item.to_bare() == *own))
}
