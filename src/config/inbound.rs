//! The `[inbound]` section: the SMTP receiver (RFC 5321 server), its
//! listen addresses, limits, timeouts and STARTTLS (RFC 3207) files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use facteur_policy::limits::Networks;
use serde::Deserialize;

use super::{address, Problems};

/// The SMTP receiver.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub tls: Option<TlsFiles>,
    /// MTAs in front whose XFORWARD (Postfix) names the client they got
    /// the mail from: SPF and the other checks then judge that client.
    pub xforward_from: Networks,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawInbound {
    listen: Vec<String>,
    hostname: Option<String>,
    max_message_size: usize,
    max_recipients: usize,
    max_connections: usize,
    idle_timeout: String,
    data_timeout: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    xforward_from: Vec<String>,
}

impl Default for RawInbound {
    fn default() -> Self {
        RawInbound {
            listen: vec!["127.0.0.1:2525".into()],
            hostname: None,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 200,
            idle_timeout: "5m".into(),
            data_timeout: "10m".into(),
            tls_cert: None,
            tls_key: None,
            xforward_from: Vec::new(),
        }
    }
}

impl RawInbound {
    /// The hostname defaults to `component_domain`.
    pub(super) fn check(self, p: &mut Problems, component_domain: &str) -> InboundConfig {
        let listen = self
            .listen
            .iter()
            .filter_map(|l| address::listen(p, "inbound.listen", l))
            .collect();
        if self.max_message_size < 1024 {
            p.add("inbound.max_message_size", "must be at least 1024 bytes");
        }
        if self.max_recipients == 0 {
            p.add("inbound.max_recipients", "must be at least 1");
        }
        if self.max_connections == 0 {
            p.add("inbound.max_connections", "must be at least 1");
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => {
                for (k, f) in [("inbound.tls_cert", &cert), ("inbound.tls_key", &key)] {
                    if let Err(e) = std::fs::metadata(f) {
                        p.add(k, format!("{}: {e}", f.display()));
                    }
                }
                Some(TlsFiles { cert, key })
            }
            (None, None) => None,
            _ => {
                p.add("inbound", "tls_cert and tls_key go together");
                None
            }
        };
        let xforward_from = Networks::parse(self.xforward_from.iter().map(String::as_str))
            .unwrap_or_else(|problem| {
                p.add("inbound.xforward_from", problem);
                Networks::default()
            });
        InboundConfig {
            listen,
            xforward_from,
            hostname: self.hostname.unwrap_or_else(|| component_domain.to_owned()),
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_connections: self.max_connections,
            idle_timeout: p.duration("inbound.idle_timeout", &self.idle_timeout),
            data_timeout: p.duration("inbound.data_timeout", &self.data_timeout),
            tls,
        }
    }
}
