//! The one DNS resolver of the daemon (hickory), shared by MX delivery and
//! the inbound SPF/DKIM/DMARC checks: the system's name servers, or those
//! `[dns] nameservers` names.

use anyhow::Context;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::DnsConfig;

/// Builds the resolver `config` describes.
pub fn resolver(config: &DnsConfig) -> anyhow::Result<TokioResolver> {
    let mut builder = if config.nameservers.is_empty() {
        TokioResolver::builder_tokio().context("Reading the system's DNS configuration")?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = addr.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = config.timeout;
    options.attempts = 2;
    options.cache_size = 4096;
    // Most senders publish no DMARC record and many no SPF: an answer
    // without an SOA would otherwise not be cached at all, and every mail
    // would ask again.
    options.negative_min_ttl = Some(std::time::Duration::from_secs(60));
    builder.build().context("Starting the DNS resolver")
}
