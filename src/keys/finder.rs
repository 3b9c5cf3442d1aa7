//! Finding the key of a recipient elsewhere before sending
//! (doc/xmpp-mail.md §12.1, draft-koch-openpgp-webkey-service §3.1): what
//! was found before (kept with an expiry, failures too), then the key IQ
//! of the recipient domain's XMPP-Mail gateway, then WKD over HTTPS, the
//! advanced form (`openpgpkey.<domain>`) then the direct one.
//!
//! WKD requests go through the same guard as the attachment fetcher: no
//! private, loopback or link-local address unless `http.fetch_private`
//! allows them, no redirects, a short timeout and a size cap. The whole
//! lookup has a budget of a few seconds: past it, the mail goes with what
//! is known, and the lookup counts as having found nothing.

use std::time::{Duration, SystemTime};

use base64::Engine;
use facteur_bridge::wire::NS_MAIL;
use facteur_bridge::MailAddress;
use jid::{BareJid, Jid};
use reqwest::{StatusCode, Url};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;
use tracing::{debug, info};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;

use crate::component::LinkHandle;
use crate::config::Live;
use crate::fetch::guarded;
use crate::store::{AnswerKind, AnswerStatus, CachedKey, Millis, Store};

/// The longest a lookup delays a mail.
pub const BUDGET: Duration = Duration::from_secs(4);
/// The longest one question (an IQ, an HTTP request) waits.
const STEP: Duration = Duration::from_secs(2);
/// The longest the key IQ, with the discovery of the gateway, may take.
const IQ_BUDGET: Duration = Duration::from_millis(3500);
/// How long a found key is believed.
const FOUND_FOR: Duration = Duration::from_secs(86400);
/// How long nothing found is believed.
const MISSING_FOR: Duration = Duration::from_secs(3600);

/// Where a key was found, as kept.
const NONE: &str = "none";

/// Finds recipients' keys elsewhere, and keeps what it found.
pub struct KeyFinder {
    config: Live,
    store: Store,
    link: LinkHandle,
    client: reqwest::Client,
}

impl KeyFinder {
    pub fn new(config: Live, store: Store, link: LinkHandle) -> anyhow::Result<KeyFinder> {
        let now = config.get();
        let resolver = crate::dns::resolver(&now.dns)?;
        let client = guarded(
            reqwest::Client::builder(),
            Some(resolver),
            now.http.fetch_private,
        )
        .timeout(STEP)
        .connect_timeout(STEP)
        .build()?;
        Ok(KeyFinder {
            config,
            store,
            link,
            client,
        })
    }

    /// A key `rcpt` can be encrypted to now, found before or found now
    /// within [`BUDGET`].
    pub async fn find(&self, rcpt: &MailAddress) -> Option<Vec<u8>> {
        let addr = rcpt.to_string().to_lowercase();
        let now = SystemTime::now();
        match self.store.cached_key(&addr, Millis::now()).await {
            Ok(Some(kept)) => {
                debug!(rcpt = %addr, source = %kept.source, "Key lookup answered from the cache.");
                return usable(&kept.cert, &addr, now);
            }
            Ok(None) => {}
            Err(e) => {
                debug!(error = format!("{e:#}"), "Keys found before unreadable.");
            }
        }
        let found = match tokio::time::timeout(BUDGET, self.look_up(rcpt, &addr)).await {
            Ok(found) => found,
            Err(_) => {
                info!(rcpt = %addr, "Key lookup ran out of time.");
                None
            }
        };
        info!(
            rcpt = %addr,
            source = found.as_ref().map_or(NONE, |(source, _)| *source),
            "Key lookup done."
        );
        let (kept, lasts) = match &found {
            Some((source, cert)) => (
                CachedKey {
                    source: (*source).to_owned(),
                    fingerprint: Cert::from_bytes(cert)
                        .map(|c| c.fingerprint().to_hex())
                        .unwrap_or_default(),
                    cert: cert.clone(),
                },
                FOUND_FOR,
            ),
            None => (
                CachedKey {
                    source: NONE.to_owned(),
                    fingerprint: String::new(),
                    cert: Vec::new(),
                },
                MISSING_FOR,
            ),
        };
        let until = Millis(Millis::now().0 + i64::try_from(lasts.as_millis()).unwrap_or(0));
        if let Err(e) = self.store.cache_key(&addr, &kept, until).await {
            debug!(error = format!("{e:#}"), "A key found could not be kept.");
        }
        found.map(|(_, cert)| cert)
    }

    /// The key IQ of the domain's gateway, else WKD (both asked at
    /// once): where a usable key was found, and the key.
    async fn look_up(&self, rcpt: &MailAddress, addr: &str) -> Option<(&'static str, Vec<u8>)> {
        let now = SystemTime::now();
        let by_iq = tokio::time::timeout(IQ_BUDGET, self.by_key_iq(rcpt));
        let (by_iq, by_wkd) = tokio::join!(by_iq, self.by_wkd(rcpt, addr, now));
        if let Some(cert) = by_iq.ok().flatten().and_then(|c| usable(&c, addr, now)) {
            return Some(("iq", cert));
        }
        by_wkd
    }

    /// The key WKD serves for `rcpt`, advanced form then direct.
    async fn by_wkd(
        &self,
        rcpt: &MailAddress,
        addr: &str,
        now: SystemTime,
    ) -> Option<(&'static str, Vec<u8>)> {
        let http = self.config.get().http.clone();
        for (source, url) in wkd_urls(rcpt, http.wkd_https, http.wkd_port) {
            match self.wkd_get(url).await {
                Ok(cert) => match usable(&cert, addr, now) {
                    Some(cert) => return Some((source, cert)),
                    None => info!(rcpt = %addr, source, "WKD key not usable."),
                },
                Err(reason) => info!(rcpt = %addr, source, reason, "WKD lookup failed."),
            }
        }
        None
    }

    /// The key the gateway of `rcpt`'s domain serves for it, when that
    /// domain is known to have an XMPP-Mail gateway.
    async fn by_key_iq(&self, rcpt: &MailAddress) -> Option<Vec<u8>> {
        let config = self.config.get();
        if !config.xmpp_mail.enabled {
            return None;
        }
        let gateway = self.gateway(rcpt.domain()).await?;
        let user = BareJid::new(&rcpt.to_string().to_lowercase()).ok()?;
        let iq = Iq::Get {
            from: Some(config.component.jid.clone().into()),
            to: Some(gateway.clone()),
            id: String::new(),
            payload: Element::builder("keys", NS_MAIL)
                .attr(xml_ncname!("jid").into(), user.to_string())
                .build(),
        };
        let Some(Iq::Result {
            payload: Some(keys),
            ..
        }) = self.link.request(iq, STEP).await
        else {
            debug!(gateway = %gateway, "No key IQ answer.");
            return None;
        };
        let key = keys.get_child("key", NS_MAIL)?;
        if key.attr("revoked") == Some("true") {
            return None;
        }
        let text: String = key.text().split_ascii_whitespace().collect();
        if text.len() > super::MAX_KEY_BYTES / 3 * 4 + 4 {
            return None;
        }
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .ok()
    }

    /// The XMPP-Mail gateway of `domain`: as the store knows it, else as
    /// discovery finds it.
    async fn gateway(&self, domain: &str) -> Option<Jid> {
        let now = Millis::now();
        if let Ok(Some(answer)) = self
            .store
            .xmpp_mail_answer(AnswerKind::Domain, domain, now)
            .await
        {
            return match answer.status {
                AnswerStatus::Gateway => Jid::new(&answer.gateway).ok(),
                _ => None,
            };
        }
        let config = self.config.get();
        let discovery = crate::probe::discover::Discovery {
            own: config.component.jid.clone().into(),
            link: self.link.clone(),
            step: STEP,
        };
        discovery
            .gateway_of(domain)
            .await
            .ok()
            .flatten()
            .map(Jid::from)
    }

    /// The body of a WKD answer, at most a key's size.
    async fn wkd_get(&self, url: Url) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("{e:#}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("{url}: {}", response.status()));
        }
        let too_large = || format!("{url}: larger than {} bytes", super::MAX_KEY_BYTES);
        if response
            .content_length()
            .is_some_and(|len| len > super::MAX_KEY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut data = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{e:#}"))? {
            if data.len() + chunk.len() > super::MAX_KEY_BYTES {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }
}

/// The WKD URLs of `rcpt`, advanced form first.
fn wkd_urls(rcpt: &MailAddress, https: bool, port: u16) -> Vec<(&'static str, Url)> {
    let Ok(hash) = super::wkd::hash(rcpt.local()) else {
        return Vec::new();
    };
    let domain = rcpt.domain().to_ascii_lowercase();
    let scheme = if https { "https" } else { "http" };
    let forms = [
        (
            "wkd-advanced",
            format!(
                "{scheme}://openpgpkey.{domain}:{port}/.well-known/openpgpkey/{domain}/hu/{hash}"
            ),
        ),
        (
            "wkd-direct",
            format!("{scheme}://{domain}:{port}/.well-known/openpgpkey/hu/{hash}"),
        ),
    ];
    forms
        .into_iter()
        .filter_map(|(source, base)| {
            let mut url = Url::parse(&base).ok()?;
            url.query_pairs_mut().append_pair("l", rcpt.local());
            Some((source, url))
        })
        .collect()
}

/// `cert` (binary or armored) if it can be encrypted to at `now` and has
/// a user ID naming `addr`; binary.
pub fn usable(cert: &[u8], addr: &str, now: SystemTime) -> Option<Vec<u8>> {
    super::encryptable(cert, now)?;
    let cert = Cert::from_bytes(cert).ok()?;
    let wanted = addr.to_lowercase();
    let named = cert.userids().any(|ua| {
        ua.userid()
            .email()
            .ok()
            .flatten()
            .is_some_and(|e| e.to_lowercase() == wanted)
            || ua
                .userid()
                .uri()
                .ok()
                .flatten()
                .and_then(|u| u.to_lowercase().strip_prefix("xmpp:").map(str::to_owned))
                .is_some_and(|u| u == wanted)
    });
    if !named {
        return None;
    }
    use sequoia_openpgp::serialize::SerializeInto;
    cert.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_then_direct() {
        let rcpt: MailAddress = "Joe.Doe@Example.ORG".parse().expect("address");
        let urls: Vec<(&str, String)> = wkd_urls(&rcpt, true, 443)
            .into_iter()
            .map(|(s, u)| (s, u.to_string()))
            .collect();
        assert_eq!(
            urls,
            [
                (
                    "wkd-advanced",
                    "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/\
                     iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
                        .to_owned()
                ),
                (
                    "wkd-direct",
                    "https://example.org/.well-known/openpgpkey/hu/\
                     iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
                        .to_owned()
                ),
            ]
        );
    }
}
