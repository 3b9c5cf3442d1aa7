//! DNS lists (RFC 5782) through facteur's resolver: `[spam] dnsbl` zones
//! for the client IP, `domain_blocklists` for the sender's and the links'
//! domains. Every question is asked at once, and none waits longer than
//! `[spam] dns_timeout`: an error or a late answer lists nothing, so that
//! a DNS fault never refuses a mail.

use std::net::IpAddr;
use std::time::Duration;

use facteur_policy::spam::shared::{dnsbl_domain_name, dnsbl_ip_name, dnsbl_listed};
use hickory_resolver::TokioResolver;
use tracing::debug;

use crate::config::SpamConfig;

/// Link domains asked, at most, per mail: a mail full of links must not
/// make a storm of queries.
const MAX_DOMAINS: usize = 8;

/// One DNS list that named the mail: its weight name (`dns:ZONE`) and
/// what it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHit {
    pub list: String,
    pub what: String,
}

/// Asks every DNS list of `config` about the client and the domains.
pub async fn ask(
    resolver: &TokioResolver,
    config: &SpamConfig,
    client: Option<IpAddr>,
    domains: &[String],
) -> Vec<DnsHit> {
    let mut questions: Vec<(String, String, String)> = Vec::new();
    if let Some(ip) = client {
        for zone in &config.dnsbl {
            questions.push((
                zone.name(),
                ip.to_canonical().to_string(),
                dnsbl_ip_name(ip, &zone.zone),
            ));
        }
    }
    for domain in domains.iter().take(MAX_DOMAINS) {
        for zone in &config.domain_blocklists {
            if let Some(name) = dnsbl_domain_name(domain, &zone.zone) {
                questions.push((zone.name(), domain.to_ascii_lowercase(), name));
            }
        }
    }
    let asked = questions.into_iter().map(|(list, what, name)| async move {
        listed(resolver, &name, config.dns_timeout)
            .await
            .then_some(DnsHit { list, what })
    });
    let mut hits: Vec<DnsHit> = futures_util::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect();
    hits.dedup();
    hits
}

/// Whether `name` has an A record that lists it; errors and time-outs
/// list nothing.
async fn listed(resolver: &TokioResolver, name: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, resolver.lookup_ip(name)).await {
        Ok(Ok(lookup)) => lookup.iter().any(|ip| match ip {
            IpAddr::V4(v4) => dnsbl_listed(v4),
            IpAddr::V6(_) => false,
        }),
        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => false,
        Ok(Err(e)) => {
            debug!(name, error = %e, "DNS list not asked; counted as not listed.");
            false
        }
        Err(_) => {
            debug!(name, "DNS list too slow; counted as not listed.");
            false
        }
    }
}
