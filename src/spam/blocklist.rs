//! Reads registered users' blocklists (XEP-0191) with XEP-0356 privileged
//! IQs, where their server grants IQ permission `get` on
//! `urn:xmpp:blocking`: soon after registration, and again once the last
//! read is older than `[spam] blocklist_max_age`. The mail senders in it
//! are refused at RCPT like the blocks the server forwards. Where nothing
//! is granted, nothing is read.
//!
//! The loop asks one user's server at a time, each with a bounded wait, in
//! a task of its own: no other user's work waits on it.

use std::time::Duration;

use facteur_bridge::native::{NS_FORWARD, NS_PRIVILEGE_2};
use facteur_policy::spam::BlockItem;
use jid::{BareJid, Jid};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;

use crate::component::privilege::NS_BLOCKING;
use crate::component::LinkHandle;
use crate::config::{Config, Live};
use crate::store::{Millis, Store};

/// How often due blocklists are looked for, besides registrations and
/// new grants.
const TICK: Duration = Duration::from_secs(60);
/// Users read, at most, per domain and round.
const BATCH: i64 = 20;
/// Longest wait for one user's server.
const WAIT: Duration = Duration::from_secs(10);

pub struct Reader {
    pub config: Live,
    pub store: Store,
    pub link: LinkHandle,
}

impl Reader {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut grants = self.link.watch_privileges();
        let mut watching = true;
        loop {
            let full = self.read_due().await;
            let pause = if full { Duration::from_secs(1) } else { TICK };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
                () = self.store.user_registered() => {}
                changed = grants.changed(), if watching => watching = changed.is_ok(),
            }
        }
    }

    /// Reads the blocklists due, a batch per domain that grants it;
    /// whether a batch was full (more may be due).
    async fn read_due(&self) -> bool {
        let config = self.config.get();
        let before = Millis::now().before(config.spam.blocklist_max_age);
        let mut full = false;
        for domain in self.link.privileges().blocklist_domains() {
            let users = match self.store.blocklists_to_read(&domain, before, BATCH).await {
                Ok(users) => users,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "Store unavailable; blocklists not read."
                    );
                    return false;
                }
            };
            full |= users.len() as i64 >= BATCH;
            for user in users {
                self.read(&config, &user).await;
            }
        }
        full
    }

    async fn read(&self, config: &Config, user: &BareJid) {
        let iq = request(config, user);
        let items = match self.link.request(iq, WAIT).await {
            Some(Iq::Result {
                payload: Some(payload),
                ..
            }) => blocklist_items(config, &payload),
            Some(Iq::Error { error, .. }) => {
                info!(user = %user, error = ?error.defined_condition, "The server refused to give a blocklist.");
                None
            }
            _ => None,
        };
        // Unread, it is asked again next round; read, it is noted.
        let Some(items) = items else {
            return debug!(user = %user, "No blocklist read.");
        };
        match self.store.replace_read_blocks(user, &items).await {
            Ok(()) => info!(user = %user, senders = items.len(), "Blocklist read."),
            Err(e) => {
                warn!(error = format!("{e:#}"), user = %user, "Store unavailable; blocklist not kept.")
            }
        }
    }
}

/// The privileged IQ that gets `user`'s blocklist from her server.
fn request(config: &Config, user: &BareJid) -> Iq {
    let inner = Element::builder("iq", "jabber:client")
        .attr(xml_ncname!("type").into(), "get")
        .attr(xml_ncname!("id").into(), "blocklist")
        .append(Element::builder("blocklist", NS_BLOCKING).build())
        .build();
    Iq::Get {
        from: Some(Jid::from(config.component.jid.clone())),
        to: Some(Jid::from(user.clone())),
        id: String::new(),
        payload: Element::builder("privileged_iq", NS_PRIVILEGE_2)
            .append(inner)
            .build(),
    }
}

/// The mail senders of the blocklist in a privileged IQ's answer
/// (`<privilege><forwarded><iq type='result'><blocklist>`); `None` when
/// the answer holds no blocklist. Items that are no mail sender at this
/// gateway are left out.
pub fn blocklist_items(config: &Config, answer: &Element) -> Option<Vec<BlockItem>> {
    if !answer.is("privilege", NS_PRIVILEGE_2) {
        return None;
    }
    let inner = answer
        .get_child("forwarded", NS_FORWARD)?
        .children()
        .find(|c| c.name() == "iq" && c.attr("type") == Some("result"))?;
    let blocklist = inner.get_child("blocklist", NS_BLOCKING)?;
    let mut items: Vec<BlockItem> = blocklist
        .children()
        .filter(|c| c.is("item", NS_BLOCKING))
        .filter_map(|c| c.attr("jid"))
        .filter_map(|jid| super::gateway_item(config, jid).ok())
        .collect();
    items.sort();
    items.dedup();
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"a.test\"]\n",
        )
        .expect("config")
    }

    #[test]
    fn the_mail_senders_of_a_forwarded_blocklist_are_read() {
        let answer: Element = "<privilege xmlns='urn:xmpp:privilege:2'>\
            <forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='blocklist'>\
            <blocklist xmlns='urn:xmpp:blocking'>\
            <item jid='spammer\\40evil.test@mail.a.test'/><item jid='evil.test@mail.a.test'/>\
            <item jid='troll@b.test'/><item jid='mail.a.test'/></blocklist></iq></forwarded></privilege>"
            .parse()
            .expect("xml");
        assert_eq!(
            blocklist_items(&config(), &answer),
            Some(vec![
                BlockItem::Address("spammer@evil.test".into()),
                BlockItem::Domain("evil.test".into()),
            ])
        );
        let error: Element = "<privilege xmlns='urn:xmpp:privilege:2'>\
            <forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='error' id='blocklist'/>\
            </forwarded></privilege>"
            .parse()
            .expect("xml");
        assert_eq!(blocklist_items(&config(), &error), None);
    }

    #[test]
    fn the_request_wraps_a_blocklist_get_for_the_user() {
        let user = BareJid::new("alice@a.test").expect("jid");
        let xml = String::from(&Element::from(request(&config(), &user)));
        assert!(
            xml.contains("to='alice@a.test'") && xml.contains("from='mail.a.test'"),
            "{xml}"
        );
        assert!(
            xml.contains("<privileged_iq xmlns='urn:xmpp:privilege:2'><iq xmlns='jabber:client' id='blocklist' type='get'><blocklist xmlns='urn:xmpp:blocking'/>"),
            "{xml}"
        );
    }
}
