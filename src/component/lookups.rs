//! What the gateway asks of users' servers: display names from vCards
//! (XEP-0054) and HTTP upload services (XEP-0363, found with XEP-0030),
//! each remembered a while in a [`TtlCache`].
//!
//! A lookup may wait on a slow server for seconds, so only tasks beside the
//! intake loop await one; the loop itself only peeks at what is known.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::{BareJid, Jid};
use tokio::sync::OnceCell;
use tracing::debug;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::vcard::VCardQuery;

use super::LinkHandle;

/// How long discovered upload services and display names are kept.
const CACHE_TIME: Duration = Duration::from_secs(3600);
/// How long a user's server gets to answer.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(3);
/// Past this many entries, stale ones are dropped.
const CACHE_SIZE: usize = 10_000;
/// Upload services asked about, at most, per server.
const MAX_ITEMS: usize = 16;

/// When a value was asked for, and the value once fetched.
type Entry<V> = (Instant, Arc<OnceCell<V>>);

/// Values fetched once per key and kept for a while. Callers asking for a
/// key while it is being fetched share that one fetch.
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value, if fetched and still fresh; never waits.
    pub fn peek(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (at, cell) = entries.get(key)?;
        if at.elapsed() >= self.ttl {
            return None;
        }
        cell.get().cloned()
    }

    /// The value, fetched with `fetch` unless fresh or being fetched.
    pub async fn get_or_fetch<F, Fut>(&self, key: K, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = match self.entries.lock() {
            Ok(mut entries) => {
                if entries.len() > CACHE_SIZE {
                    entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
                }
                let fresh = entries
                    .get(&key)
                    .filter(|(at, _)| at.elapsed() < self.ttl)
                    .map(|(_, cell)| cell.clone());
                fresh.unwrap_or_else(|| {
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(key, (Instant::now(), cell.clone()));
                    cell
                })
            }
            // A poisoned cache only costs the sharing.
            Err(_) => Arc::new(OnceCell::new()),
        };
        cell.get_or_init(fetch).await.clone()
    }
}

/// Lookups at users' servers, on behalf of the gateway's JID.
pub struct Lookups {
    gateway: Jid,
    link: LinkHandle,
    names: TtlCache<BareJid, Option<String>>,
    uploads: TtlCache<String, Vec<String>>,
}

impl Lookups {
    pub fn new(gateway: Jid, link: LinkHandle) -> Lookups {
        Lookups {
            gateway,
            link,
            names: TtlCache::new(CACHE_TIME),
            uploads: TtlCache::new(CACHE_TIME),
        }
    }

    /// The display name of `user`, if already looked up (`Some(None)`: it
    /// has none).
    pub fn known_name(&self, user: &BareJid) -> Option<Option<String>> {
        self.names.peek(user)
    }

    /// The display name in the sender's vCard (XEP-0054), for From.
    pub async fn display_name(&self, user: &BareJid) -> Option<String> {
        self.names
            .get_or_fetch(user.clone(), || async {
                let vcard = self.ask(user.clone().into(), VCardQuery.into()).await;
                vcard.as_ref().and_then(vcard_name)
            })
            .await
    }

    /// The hosts of the HTTP upload services (XEP-0363) the sender's
    /// server lists in disco#items.
    pub async fn upload_hosts(&self, domain: &str) -> Vec<String> {
        self.uploads
            .get_or_fetch(domain.to_owned(), || self.find_upload_hosts(domain))
            .await
    }

    async fn find_upload_hosts(&self, domain: &str) -> Vec<String> {
        let Ok(server) = Jid::new(domain) else {
            return Vec::new();
        };
        let query = DiscoItemsQuery {
            node: None,
            rsm: None,
        };
        let items = self.ask(server, query.into()).await;
        let items = match items.map(DiscoItemsResult::try_from) {
            Some(Ok(items)) => items.items,
            Some(Err(e)) => {
                debug!(domain, error = %e, "Unreadable disco#items.");
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut hosts = Vec::new();
        for item in items.into_iter().take(MAX_ITEMS) {
            let info = self
                .ask(item.jid.clone(), DiscoInfoQuery { node: None }.into())
                .await;
            if info.is_some_and(offers_upload) {
                hosts.push(item.jid.to_string().to_ascii_lowercase());
            }
        }
        hosts
    }

    /// The payload of the answer to an IQ get from the gateway, if any.
    async fn ask(&self, to: Jid, payload: Element) -> Option<Element> {
        let iq = Iq::Get {
            from: Some(self.gateway.clone()),
            to: Some(to),
            id: String::new(),
            payload,
        };
        match self.link.request(iq, LOOKUP_WAIT).await? {
            Iq::Result { payload, .. } => payload,
            _ => None,
        }
    }
}

/// The name a vCard gives: its full name, else its nickname. Read from the
/// element: xmpp-parsers' `VCard` types only the photo.
fn vcard_name(vcard: &Element) -> Option<String> {
    ["FN", "NICKNAME"]
        .iter()
        .filter_map(|field| {
            vcard
                .get_child(field, ns::VCARD)
                .map(|e| e.text().trim().to_owned())
        })
        .find(|n| !n.is_empty())
}

/// Whether a disco#info answer announces HTTP upload.
fn offers_upload(info: Element) -> bool {
    match DiscoInfoResult::try_from(info) {
        Ok(info) => info.features.contains(ns::HTTP_UPLOAD),
        Err(e) => {
            debug!(error = %e, "Unreadable disco#info.");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_fetch_serves_everyone_until_it_expires() {
        let cache: TtlCache<&str, u32> = TtlCache::new(Duration::from_millis(200));
        assert_eq!(cache.peek(&"a"), None);
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
        };
        let (one, two) = tokio::join!(
            cache.get_or_fetch("a", fetch),
            cache.get_or_fetch("a", fetch)
        );
        assert_eq!((one, two), (1, 1), "one fetch, shared");
        assert_eq!(cache.peek(&"a"), Some(1));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.peek(&"a"), None, "expired");
        assert_eq!(cache.get_or_fetch("a", fetch).await, 2);
    }

    #[test]
    fn a_vcard_names_its_owner() {
        let vcard: Element =
            "<vCard xmlns='vcard-temp'><FN> </FN><NICKNAME>Ally</NICKNAME></vCard>"
                .parse()
                .expect("xml");
        assert_eq!(vcard_name(&vcard).as_deref(), Some("Ally"));
        let empty: Element = "<vCard xmlns='vcard-temp'/>".parse().expect("xml");
        assert_eq!(vcard_name(&empty), None);
    }

    #[test]
    fn prosody_upload_services_are_recognised() {
        // As mod_http_file_share answers.
        let info: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity type='file' name='HTTP File Upload' category='store'/>\
            <feature var='urn:xmpp:http:upload:0'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <x type='result' xmlns='jabber:x:data'>\
            <field type='hidden' var='FORM_TYPE'><value>urn:xmpp:http:upload:0</value></field>\
            <field type='text-single' var='max-file-size'><value>10485760</value></field>\
            </x></query>"
            .parse()
            .expect("xml");
        assert!(offers_upload(info));
        let muc: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity type='text' category='conference'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>"
            .parse()
            .expect("xml");
        assert!(!offers_upload(muc));
    }
}
