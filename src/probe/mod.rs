//! Asking other domains about XMPP-Mail (doc/xmpp-mail.md §4–§5): the
//! I/O of the route decision that `facteur_policy::route` makes.
//!
//! The order of questions: the answers kept in the store, then the
//! domain's `_xmpp-server._tcp` SRV records (a domain with neither SRV nor
//! address records has no XMPP server: nothing more is asked), then
//! discovery of the domain's gateway, then the probe of the recipient.
//! Each step waits at most `[xmpp_mail] step_timeout`, the whole at most
//! `budget`; mails to a domain being asked wait for that answer rather
//! than ask again.

pub mod discover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facteur_bridge::wire::NS_MAIL;
use facteur_policy::route::Answer as RouteAnswer;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use jid::{BareJid, Jid};
use tracing::{debug, info};
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;

use crate::component::LinkHandle;
use crate::config::Live;
use crate::store::{Answer, AnswerKind, AnswerStatus, Millis, Store};
use crate::telemetry::meters;
use discover::{Discovery, NoAnswer};

/// The longest an answer's own `ttl` is believed.
const MAX_TTL: Duration = Duration::from_secs(7 * 86400);

/// What is known of a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub answer: RouteAnswer,
    /// The recipient's gateway, when it answered `accept`.
    pub gateway: Option<BareJid>,
}

impl Probed {
    fn without_gateway(answer: RouteAnswer) -> Probed {
        Probed {
            answer,
            gateway: None,
        }
    }
}

/// Asks other domains, and remembers their answers in the store.
pub struct Prober {
    config: Live,
    store: Store,
    discovery: Discovery,
    resolver: TokioResolver,
    /// One question per domain at a time.
    domains: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Prober {
    pub fn new(config: Live, store: Store, link: LinkHandle, resolver: TokioResolver) -> Prober {
        let now = config.get();
        let discovery = Discovery {
            own: now.component.jid.clone().into(),
            link,
            step: now.xmpp_mail.step_timeout,
        };
        Prober {
            config,
            store,
            discovery,
            resolver,
            domains: Mutex::new(HashMap::new()),
        }
    }

    /// What `rcpt`'s domain says of it, within the budget.
    pub async fn probe(&self, rcpt: &BareJid) -> Probed {
        if let Some(known) = self.known(rcpt).await {
            return known;
        }
        let domain = rcpt.domain().as_str().to_owned();
        let asking = async {
            let lock = self.domain_lock(&domain);
            let _asking = lock.lock().await;
            // The question in flight may have answered this one.
            if let Some(known) = self.known(rcpt).await {
                return known;
            }
            self.ask(&domain, rcpt).await
        };
        match tokio::time::timeout(self.config.get().xmpp_mail.budget, asking).await {
            Ok(probed) => probed,
            Err(_) => {
                info!(rcpt = %rcpt, "XMPP-Mail probe ran out of time.");
                self.remember(
                    AnswerKind::Rcpt,
                    rcpt.as_str(),
                    AnswerStatus::Unknown,
                    "",
                    0,
                    self.config.get().xmpp_mail.ttl.error,
                )
                .await;
                Probed::without_gateway(RouteAnswer::Failed)
            }
        }
    }

    fn domain_lock(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut domains) = self.domains.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        // Locks nobody holds or waits for are forgotten.
        if domains.len() > 1024 {
            domains.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        domains.entry(domain.to_owned()).or_default().clone()
    }

    /// The answer kept for `rcpt`, or for its domain when that has no
    /// gateway, if any.
    async fn known(&self, rcpt: &BareJid) -> Option<Probed> {
        let now = Millis::now();
        let read = |kind, subject| async move {
            self.store
                .xmpp_mail_answer(kind, subject, now)
                .await
                .unwrap_or_else(|e| {
                    debug!(error = format!("{e:#}"), "XMPP-Mail answers unreadable.");
                    None
                })
        };
        let Some(kept) = read(AnswerKind::Rcpt, rcpt.as_str()).await else {
            let domain = read(AnswerKind::Domain, rcpt.domain().as_str()).await?;
            return (domain.status == AnswerStatus::None)
                .then(|| Probed::without_gateway(RouteAnswer::NoGateway));
        };
        let gateway = BareJid::new(&kept.gateway).ok();
        let answer = match (kept.status, &gateway) {
            (AnswerStatus::Accept, Some(_)) => RouteAnswer::Accept {
                max_size: kept.max_size,
                handoff: kept.handoff,
            },
            (AnswerStatus::Reject, _) => RouteAnswer::Reject,
            (AnswerStatus::None, _) => RouteAnswer::NoGateway,
            _ => RouteAnswer::Unknown,
        };
        Some(Probed { answer, gateway })
    }

    /// Asks `domain` about `rcpt`, step by step.
    async fn ask(&self, domain: &str, rcpt: &BareJid) -> Probed {
        let ttl = self.config.get().xmpp_mail.ttl;
        let now = Millis::now();
        let gateway = match self
            .store
            .xmpp_mail_answer(AnswerKind::Domain, domain, now)
            .await
            .ok()
            .flatten()
        {
            Some(kept) if kept.status == AnswerStatus::Gateway => BareJid::new(&kept.gateway).ok(),
            Some(_) => return self.no_gateway(RouteAnswer::NoGateway, None).await,
            None => {
                let found = match self.has_xmpp_server(domain).await {
                    Ok(true) => self.discovery.gateway_of(domain).await,
                    Ok(false) => {
                        info!(
                            domain,
                            "No XMPP server for the domain (no SRV, no address)."
                        );
                        return self
                            .no_gateway(RouteAnswer::NoXmppServer, Some((domain, ttl.unsupported)))
                            .await;
                    }
                    Err(e) => Err(e),
                };
                match found {
                    Ok(Some(gateway)) => {
                        self.remember(
                            AnswerKind::Domain,
                            domain,
                            AnswerStatus::Gateway,
                            gateway.as_str(),
                            0,
                            ttl.accept,
                        )
                        .await;
                        Some(gateway)
                    }
                    Ok(None) => {
                        return self
                            .no_gateway(RouteAnswer::NoGateway, Some((domain, ttl.unsupported)))
                            .await
                    }
                    Err(NoAnswer(reason)) => {
                        info!(domain, reason, "XMPP-Mail discovery failed.");
                        return self
                            .no_gateway(RouteAnswer::Failed, Some((domain, ttl.error)))
                            .await;
                    }
                }
            }
        };
        let Some(gateway) = gateway else {
            return Probed::without_gateway(RouteAnswer::NoGateway);
        };
        self.probe_rcpt(&gateway, rcpt).await
    }

    /// No gateway for `rcpt`'s domain: remembered for the domain, for
    /// `ttl`, when `domain` is given.
    async fn no_gateway(&self, answer: RouteAnswer, domain: Option<(&str, Duration)>) -> Probed {
        if let Some((domain, ttl)) = domain {
            self.remember(AnswerKind::Domain, domain, AnswerStatus::None, "", 0, ttl)
                .await;
        }
        Probed::without_gateway(answer)
    }

    /// Whether the domain has an XMPP server: SRV records (not ".") or,
    /// without them, an address (RFC 6120 §3.2.2).
    async fn has_xmpp_server(&self, domain: &str) -> Result<bool, NoAnswer> {
        let step = self.config.get().xmpp_mail.step_timeout;
        let name = format!("_xmpp-server._tcp.{}.", domain.trim_end_matches('.'));
        let srv = tokio::time::timeout(step, self.resolver.srv_lookup(name.as_str()))
            .await
            .map_err(|_| NoAnswer(format!("SRV lookup of {name} timed out")))?;
        match srv {
            Ok(lookup) => {
                let targets: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(srv.target.to_utf8()),
                        _ => None,
                    })
                    .collect();
                if !targets.is_empty() {
                    // A single "." target: the service is decidedly not there.
                    return Ok(!targets.iter().all(|t| t == "." || t.is_empty()));
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {}
            Err(e) => return Err(NoAnswer(format!("SRV lookup of {name}: {e}"))),
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let ip = tokio::time::timeout(step, self.resolver.lookup_ip(fqdn.as_str()))
            .await
            .map_err(|_| NoAnswer(format!("address lookup of {domain} timed out")))?;
        match ip {
            Ok(lookup) => Ok(lookup.iter().next().is_some()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(false),
            Err(e) => Err(NoAnswer(format!("address lookup of {domain}: {e}"))),
        }
    }

    /// The probe IQ (§5) for one recipient, and its answer remembered.
    async fn probe_rcpt(&self, gateway: &BareJid, rcpt: &BareJid) -> Probed {
        let ttl = self.config.get().xmpp_mail.ttl;
        let probe = Element::builder("probe", NS_MAIL)
            .append(
                Element::builder("rcpt", NS_MAIL)
                    .attr(xml_ncname!("jid").into(), rcpt.as_str())
                    .build(),
            )
            .build();
        let answer = match self
            .discovery
            .ask(Jid::from(gateway.clone()), "probe", probe)
            .await
        {
            Ok(answer) => answer,
            Err(NoAnswer(reason)) => {
                info!(gateway = %gateway, reason, "XMPP-Mail probe failed.");
                meters().probes_sent_failed.increment(1);
                self.remember(
                    AnswerKind::Rcpt,
                    rcpt.as_str(),
                    AnswerStatus::Unknown,
                    "",
                    0,
                    ttl.error,
                )
                .await;
                return Probed::without_gateway(RouteAnswer::Failed);
            }
        };
        let said = answer
            .as_ref()
            .and_then(|payload| read_answer(payload, rcpt));
        let (status, given_ttl, max_size) = said.unwrap_or((AnswerStatus::Unknown, None, 0));
        let default_ttl = match status {
            AnswerStatus::Accept => ttl.accept,
            AnswerStatus::Reject => ttl.reject,
            _ => ttl.error,
        };
        let kept_for = given_ttl.map_or(default_ttl, |t| t.min(MAX_TTL));
        self.remember(
            AnswerKind::Rcpt,
            rcpt.as_str(),
            status,
            gateway.as_str(),
            max_size,
            kept_for,
        )
        .await;
        let meters = meters();
        match status {
            AnswerStatus::Accept => meters.probes_sent_accept.increment(1),
            AnswerStatus::Reject => meters.probes_sent_reject.increment(1),
            _ => meters.probes_sent_unknown.increment(1),
        }
        let answer = match status {
            AnswerStatus::Accept => RouteAnswer::Accept {
                max_size,
                handoff: false,
            },
            AnswerStatus::Reject => RouteAnswer::Reject,
            _ => RouteAnswer::Unknown,
        };
        Probed {
            answer,
            gateway: Some(gateway.clone()),
        }
    }

    async fn remember(
        &self,
        kind: AnswerKind,
        subject: &str,
        status: AnswerStatus,
        gateway: &str,
        max_size: u64,
        ttl: Duration,
    ) {
        let answer = Answer {
            status,
            gateway: gateway.to_owned(),
            max_size,
            handoff: false,
            expires_at: Millis::now().after(ttl),
        };
        if let Err(e) = self
            .store
            .remember_xmpp_mail_answer(kind, subject, &answer)
            .await
        {
            debug!(error = format!("{e:#}"), "XMPP-Mail answer not kept.");
        }
    }
}

/// The status, ttl and max-size a probe answer gives `rcpt`.
fn read_answer(payload: &Element, rcpt: &BareJid) -> Option<(AnswerStatus, Option<Duration>, u64)> {
    if !payload.is("probe", NS_MAIL) {
        return None;
    }
    let item = payload
        .children()
        .filter(|c| c.is("rcpt", NS_MAIL))
        .find(|c| c.attr("jid").and_then(|j| BareJid::new(j).ok()).as_ref() == Some(rcpt))?;
    let status = match item.attr("status")? {
        "accept" => AnswerStatus::Accept,
        "reject" => AnswerStatus::Reject,
        _ => AnswerStatus::Unknown,
    };
    let ttl = item
        .attr("ttl")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let max_size = item
        .attr("max-size")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(0);
    Some((status, ttl, max_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_are_read_for_the_recipient_asked() {
        let answer: Element = "<probe xmlns='urn:xmpp:mail:0'>\
            <rcpt jid='nobody@b.test' status='reject' ttl='3600'/>\
            <rcpt jid='bob@b.test' status='accept' ttl='86400' max-size='262144'/></probe>"
            .parse()
            .unwrap();
        let bob = BareJid::new("bob@b.test").unwrap();
        assert_eq!(
            read_answer(&answer, &bob),
            Some((
                AnswerStatus::Accept,
                Some(Duration::from_secs(86400)),
                262_144
            ))
        );
        let carol = BareJid::new("carol@b.test").unwrap();
        assert_eq!(read_answer(&answer, &carol), None);
        let odd: Element =
            "<probe xmlns='urn:xmpp:mail:0'><rcpt jid='bob@b.test' status='maybe'/></probe>"
                .parse()
                .unwrap();
        assert_eq!(
            read_answer(&odd, &bob),
            Some((AnswerStatus::Unknown, None, 0))
        );
    }
}
