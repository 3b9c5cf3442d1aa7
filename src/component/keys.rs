//! The key IQ (doc/xmpp-mail.md §12): `<keys xmlns='urn:xmpp:mail:0'/>`.
//! A `get` naming a user of a served domain is answered to anyone with
//! the key she published (base64 of the binary, minimised certificate),
//! rate-limited per requesting domain; a `set` from the user herself
//! publishes or removes her key. Publishing checks and minimises the key
//! (`crate::keys`), the same for the ad-hoc command "OpenPGP key".

use std::time::{Instant, SystemTime};

use base64::Engine;
use facteur_bridge::wire::NS_MAIL;
use facteur_policy::limits::{Decision, Limiter};
use facteur_policy::relay::{sender_verdict, AddressFacts, SenderVerdict};
use jid::{BareJid, Jid};
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::probe::user_jid;
use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::keys::{self, Published, Refused};
use crate::store::{KeySource, Store};

/// Whether `iq` is a key IQ.
pub fn is_keys(iq: &Iq) -> bool {
    matches!(iq, Iq::Get { payload, .. } | Iq::Set { payload, .. } if payload.is("keys", NS_MAIL))
}

/// Answers key IQs, counting lookups per requester.
pub struct KeyRequests {
    limiter: Limiter<String>,
}

impl KeyRequests {
    pub fn new(config: &Config) -> KeyRequests {
        KeyRequests {
            limiter: Limiter::new(config.xmpp_mail.probes),
        }
    }

    /// The answer to a key IQ received at `now`.
    pub async fn answer(&mut self, config: &Config, store: &Store, iq: Iq, now: Instant) -> Iq {
        let Some(from) = iq.from().cloned() else {
            return error(&iq, reply::NO_SENDER);
        };
        let answer = match &iq {
            Iq::Get { payload, .. } => self.lookup(config, store, &from, payload, now).await,
            Iq::Set { payload, .. } => change(config, store, &from, payload).await,
            _ => Err(reply::NOT_A_REQUEST),
        };
        match answer {
            Ok(keys) => result(&iq, Some(keys)),
            Err(fault) => error(&iq, fault),
        }
    }

    /// The key of the user a `get` names.
    async fn lookup(
        &mut self,
        config: &Config,
        store: &Store,
        from: &Jid,
        payload: &Element,
        now: Instant,
    ) -> Result<Element, Fault> {
        let named = payload.attr("jid").unwrap_or_default();
        let user = user_jid(named).ok_or_else(|| {
            Fault::with_text(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                format!("<keys jid='{named}'/> is not a bare JID with a local part"),
            )
        })?;
        if !config.mail.serves(user.domain().as_str()) {
            return Err(Fault::with_text(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                format!("{} is not a domain of this gateway", user.domain()),
            ));
        }
        // Other domains share one allowance each; the served domains'
        // own users have one each, not their whole domain's.
        let requester = if config.mail.serves(from.domain().as_str()) {
            from.to_bare().to_string()
        } else {
            from.domain().as_str().to_ascii_lowercase()
        };
        self.limiter.set_rate(config.xmpp_mail.probes);
        if let Decision::Deny { retry_after } = self.limiter.check(&requester, 1, now) {
            info!(from = %from, "Key lookups over their rate.");
            return Err(Fault::with_text(
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                format!(
                    "too many key lookups; try again in {} seconds",
                    retry_after.as_secs().max(1)
                ),
            ));
        }
        let key = store.key(&user).await.map_err(|e| {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for a key lookup."
            );
            reply::TRY_LATER
        })?;
        info!(from = %from, user = %user, found = key.is_some(), "Key lookup answered.");
        Ok(keys_element(
            &user,
            key.map(|k| (k.fingerprint, k.revoked, Some(k.cert))),
        ))
    }
}

/// A `set`: the sender publishes (`<key>`) or removes (`<remove/>`) her key.
async fn change(
    config: &Config,
    store: &Store,
    from: &Jid,
    payload: &Element,
) -> Result<Element, Fault> {
    let user = publisher(config, store, from).await?;
    if let Some(named) = payload.attr("jid") {
        if user_jid(named).as_ref() != Some(&user) {
            return Err(Fault::new(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "a user publishes her own key only",
            ));
        }
    }
    if payload.has_child("remove", NS_MAIL) {
        let removed = store.remove_key(&user).await.map_err(store_failed)?;
        info!(user = %user, removed, "Key removed by its user.");
        return Ok(keys_element(&user, None));
    }
    let Some(key) = payload.get_child("key", NS_MAIL) else {
        return Err(Fault::new(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "a set carries <key/> or <remove/>",
        ));
    };
    let text: String = key.text().split_ascii_whitespace().collect();
    // Base64 is 4/3 of the bytes: refuse before decoding a flood.
    if text.len() > keys::MAX_KEY_BYTES / 3 * 4 + 4 {
        return Err(refused(&Refused::TooLarge));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|_| {
            Fault::new(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "<key/> holds no base64",
            )
        })?;
    let published = publish(store, &user, &bytes, KeySource::Iq)
        .await?
        .map_err(|why| refused(&why))?;
    Ok(keys_element(
        &user,
        Some((published.fingerprint, published.revoked, None)),
    ))
}

/// The user `from` is, if she may publish a key: a user of a served
/// domain who has mail here.
pub async fn publisher(config: &Config, store: &Store, from: &Jid) -> Result<BareJid, Fault> {
    let user = from.to_bare();
    let registered = store.is_registered(&user).await.map_err(store_failed)?;
    let facts = AddressFacts {
        domain_served: config.mail.serves(user.domain().as_str()) && user.node().is_some(),
        registered,
    };
    match sender_verdict(config.mail.users, facts) {
        SenderVerdict::Allow => Ok(user),
        SenderVerdict::ForeignDomain => Err(Fault::with_text(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            format!(
                "only users of {} publish keys here",
                config.mail.domains.join(", ")
            ),
        )),
        SenderVerdict::NotRegistered => Err(Fault::with_text(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            format!(
                "register with {} (XEP-0077) before publishing a key",
                config.component.jid
            ),
        )),
    }
}

/// Checks and stores `input` as `user`'s key: the store failing is the
/// outer error, the key refused the inner one.
pub async fn publish(
    store: &Store,
    user: &BareJid,
    input: &[u8],
    source: KeySource,
) -> Result<Result<Published, Refused>, Fault> {
    let stored = store.key(user).await.map_err(store_failed)?;
    let published = match keys::accept(
        user,
        input,
        stored.as_ref().map(|k| k.cert.as_slice()),
        SystemTime::now(),
    ) {
        Ok(published) => published,
        Err(why) => {
            info!(user = %user, source = source.as_str(), reason = %why, "Key refused.");
            return Ok(Err(why));
        }
    };
    store
        .put_key(user, &published, source)
        .await
        .map_err(store_failed)?;
    info!(
        user = %user,
        source = source.as_str(),
        fingerprint = %published.fingerprint,
        revoked = published.revoked,
        "Key published."
    );
    Ok(Ok(published))
}

fn store_failed(e: anyhow::Error) -> Fault {
    warn!(error = format!("{e:#}"), "Store unavailable for a key.");
    reply::TRY_LATER
}

fn refused(why: &Refused) -> Fault {
    Fault::with_text(
        ErrorType::Modify,
        DefinedCondition::NotAcceptable,
        why.to_string(),
    )
}

/// `<keys jid=…>` with the user's key, if any: its fingerprint, whether
/// it is revoked, and (in answers to `get`) the key itself in base64.
fn keys_element(user: &BareJid, key: Option<(String, bool, Option<Vec<u8>>)>) -> Element {
    let mut keys =
        Element::builder("keys", NS_MAIL).attr(xml_ncname!("jid").into(), user.to_string());
    if let Some((fingerprint, revoked, cert)) = key {
        let mut element =
            Element::builder("key", NS_MAIL).attr(xml_ncname!("fingerprint").into(), fingerprint);
        if revoked {
            element = element.attr(xml_ncname!("revoked").into(), "true");
        }
        if let Some(cert) = cert {
            element = element.append(base64::engine::general_purpose::STANDARD.encode(cert));
        }
        keys = keys.append(element.build());
    }
    keys.build()
}

#[cfg(test)]
mod tests;
