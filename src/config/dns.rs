//! The `[dns]` section: where MX, address, SPF, DKIM and DMARC questions
//! go (RFC 1035 servers), and how long one may take.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{address, Problems};

/// Where DNS questions go.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers; empty for the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Time for one DNS question.
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDns {
    nameservers: Vec<String>,
    timeout: String,
}

impl Default for RawDns {
    fn default() -> Self {
        RawDns {
            nameservers: Vec::new(),
            timeout: "5s".into(),
        }
    }
}

impl RawDns {
    pub(super) fn check(self, p: &mut Problems) -> DnsConfig {
        DnsConfig {
            nameservers: self
                .nameservers
                .iter()
                .filter_map(|server| address::nameserver(p, "dns.nameservers", server))
                .collect(),
            timeout: p.duration("dns.timeout", &self.timeout),
        }
    }
}
