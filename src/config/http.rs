//! The `[http]` section: the HTTP server that hands out attachments of
//! inbound mail, and what outgoing mail may fetch (XEP-0066, XEP-0447).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{address, Problems};

/// The HTTP server for attachments, and what may be fetched for
/// outgoing mail.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base of the URLs handed to clients, without trailing slash.
    pub public_url: String,
    /// Where attachment files are kept (content-addressed).
    pub storage: PathBuf,
    pub retention: Duration,
    /// Hosts outgoing mail may fetch attachments from.
    pub fetch_hosts: Vec<String>,
    /// Whether private, loopback and link-local addresses may be fetched.
    pub fetch_private: bool,
    pub fetch_max_size: usize,
    pub fetch_timeout: Duration,
    /// Port of the WKD servers asked for recipients' keys (443).
    pub wkd_port: u16,
    /// Whether WKD is asked over HTTPS (plain HTTP only for test networks).
    pub wkd_https: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    listen: String,
    public_url: Option<String>,
    storage: PathBuf,
    retention: String,
    fetch_hosts: Vec<String>,
    fetch_private: bool,
    fetch_max_size: usize,
    fetch_timeout: String,
    wkd_port: u16,
    wkd_https: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8025".into(),
            public_url: None,
            storage: "/var/lib/facteur/files".into(),
            retention: "30d".into(),
            fetch_hosts: Vec::new(),
            fetch_private: false,
            fetch_max_size: 20 * 1024 * 1024,
            fetch_timeout: "30s".into(),
            wkd_port: 443,
            wkd_https: true,
        }
    }
}

impl RawHttp {
    pub(super) fn check(self, p: &mut Problems) -> HttpConfig {
        // A stand-in after a bad listen address: the problem refuses the file.
        let listen = address::listen(p, "http.listen", &self.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8025)));
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{listen}/files"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            p.add("http.public_url", "must be an http:// or https:// URL");
        }
        if self.wkd_port == 0 {
            p.add("http.wkd_port", "must be from 1 to 65535");
        }
        HttpConfig {
            listen,
            public_url,
            storage: self.storage,
            retention: p.duration("http.retention", &self.retention),
            fetch_hosts: self
                .fetch_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            fetch_private: self.fetch_private,
            fetch_max_size: self.fetch_max_size,
            fetch_timeout: p.duration("http.fetch_timeout", &self.fetch_timeout),
            wkd_port: self.wkd_port,
            wkd_https: self.wkd_https,
        }
    }
}
