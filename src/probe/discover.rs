//! XEP-0030 discovery of XMPP-Mail gateways (doc/xmpp-mail.md §4): which
//! entity of a domain is its gateway, and whether a domain lists a given
//! gateway. Every IQ goes out from facteur's own JID and waits at most one
//! step.

use std::time::Duration;

use jid::{BareJid, Jid};
use tracing::{debug, info};
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::component::LinkHandle;
use facteur_bridge::wire::NS_MAIL;

/// Items of a domain asked about, at most.
pub const MAX_ITEMS: usize = 20;

/// Why a question has no answer: nothing came back in time, or the link
/// is down. An error answer is an answer (the entity said no).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer(pub String);

/// Asks other entities, from `own`, through `link`.
#[derive(Clone)]
pub struct Discovery {
    pub own: Jid,
    pub link: LinkHandle,
    /// Longest wait of one IQ.
    pub step: Duration,
}

impl Discovery {
    /// The payload of the answer to an IQ get; `Ok(None)` for an error
    /// answer.
    pub async fn ask(
        &self,
        to: Jid,
        query: &'static str,
        payload: Element,
    ) -> Result<Option<Element>, NoAnswer> {
        let iq = Iq::Get {
            from: Some(self.own.clone()),
            to: Some(to.clone()),
            id: String::new(),
            payload,
        };
        info!(to = %to, query, "XMPP-Mail query sent.");
        match self.link.request(iq, self.step).await {
            Some(Iq::Result { payload, .. }) => Ok(payload),
            Some(Iq::Error { error, .. }) => {
                debug!(to = %to, query, error = ?error.defined_condition, "Error answer.");
                Ok(None)
            }
            Some(_) => Ok(None),
            None => Err(NoAnswer(format!("no answer from {to} to {query}"))),
        }
    }

    /// Whether `jid` has the XMPP-Mail feature.
    pub async fn has_feature(&self, jid: &Jid) -> Result<bool, NoAnswer> {
        let answer = self
            .ask(
                jid.clone(),
                "disco#info",
                DiscoInfoQuery { node: None }.into(),
            )
            .await?;
        Ok(answer
            .and_then(|payload| DiscoInfoResult::try_from(payload).ok())
            .is_some_and(|info| info.features.iter().any(|f| f == NS_MAIL)))
    }

    /// The items `domain` lists (at most [`MAX_ITEMS`]); none for an
    /// error answer.
    pub async fn items(&self, domain: &Jid) -> Result<Vec<Jid>, NoAnswer> {
        let query = DiscoItemsQuery {
            node: None,
            rsm: None,
        };
        let answer = self
            .ask(domain.clone(), "disco#items", query.into())
            .await?;
        Ok(answer
            .and_then(|payload| DiscoItemsResult::try_from(payload).ok())
            .map(|items| {
                items
                    .items
                    .into_iter()
                    .filter(|item| item.node.is_none())
                    .map(|item| item.jid)
                    .take(MAX_ITEMS)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The XMPP-Mail gateway of `domain`: the domain itself when it has
    /// the feature, else the first of its items that has it. A domain that
    /// answers its disco#info with an error (no XMPP server there) has none.
    pub async fn gateway_of(&self, domain: &str) -> Result<Option<BareJid>, NoAnswer> {
        let Ok(server) = Jid::new(domain) else {
            return Ok(None);
        };
        let info = self
            .ask(
                server.clone(),
                "disco#info",
                DiscoInfoQuery { node: None }.into(),
            )
            .await?;
        let Some(info) = info.and_then(|payload| DiscoInfoResult::try_from(payload).ok()) else {
            return Ok(None);
        };
        if info.features.iter().any(|f| f == NS_MAIL) {
            return Ok(Some(server.to_bare()));
        }
        let items = self.items(&server).await?;
        for item in items {
            // An item that does not answer is no gateway; the others are
            // still asked.
            if let Ok(true) = self.has_feature(&item).await {
                return Ok(Some(item.to_bare()));
            }
        }
        Ok(None)
    }

    /// Whether `domain` lists `gateway` in its disco#items, and `gateway`
    /// has the XMPP-Mail feature (doc/xmpp-mail.md §7.2).
    pub async fn lists(&self, domain: &str, gateway: &BareJid) -> Result<bool, NoAnswer> {
        let Ok(server) = Jid::new(domain) else {
            return Ok(false);
        };
        let listed = self
            .items(&server)
            .await?
            .iter()
            .any(|item| item.to_bare() == *gateway);
        if !listed {
            return Ok(false);
        }
        self.has_feature(&gateway.clone().into()).await
    }
}
