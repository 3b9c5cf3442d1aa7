//! Files shared in outgoing stanzas, fetched to be attached to the mail.
//!
//! Only from allowed hosts (`http.fetch_hosts`; by default the HTTP upload
//! services (XEP-0363) the sender's own server lists in service discovery),
//! never from private, loopback or link-local addresses unless the
//! operator allows them (every address a name resolves to is checked, and
//! IP literals too), redirects checked one by one, a size cap and a
//! timeout. What cannot be fetched stays a link in the text.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url};

use crate::config::HttpConfig;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug)]
pub struct Fetched {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The host or address may not be fetched from.
    NotAllowed(String),
    /// Larger than `http.fetch_max_size`.
    TooLarge,
    Failed(String),
}

/// Addresses no fetch may reach unless the operator says so.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden(IpAddr::V4(v4)),
            None => {
                let first = v6.segments().first().copied().unwrap_or(0);
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Resolves names, with `resolver` (the daemon's DNS settings) or else
/// the system's, keeping only addresses a fetch may reach.
struct GuardedResolver {
    resolver: Option<TokioResolver>,
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.resolver.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = match resolver {
                Some(resolver) => resolver
                    .lookup_ip(name.as_str())
                    .await?
                    .iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect(),
                None => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
            };
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| allow_private || !forbidden(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{} resolves to no address that may be fetched",
                    name.as_str()
                )
                .into();
                return Err(refused);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// `builder` guarded for fetches: names resolved by `resolver` (else the
/// system) to addresses a fetch may reach only (private ones too where
/// `allow_private`), no redirect followed (each is checked by the
/// caller), facteur named as the user agent.
pub fn guarded(
    builder: reqwest::ClientBuilder,
    resolver: Option<TokioResolver>,
    allow_private: bool,
) -> reqwest::ClientBuilder {
    builder
        .dns_resolver(Arc::new(GuardedResolver {
            resolver,
            allow_private,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("facteur/", env!("CARGO_PKG_VERSION")))
}

pub struct Fetcher {
    client: reqwest::Client,
    hosts: Vec<String>,
    allow_private: bool,
    max_size: usize,
}

impl Fetcher {
    pub fn new(config: &HttpConfig) -> anyhow::Result<Fetcher> {
        Self::with_client(config, reqwest::Client::builder())
    }

    /// A fetcher whose HTTP client starts from `builder` (tests pin names
    /// to addresses with it).
    fn with_client(
        config: &HttpConfig,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<Fetcher> {
        let client = guarded(builder, None, config.fetch_private)
            .timeout(config.fetch_timeout)
            .build()?;
        Ok(Fetcher {
            client,
            hosts: config.fetch_hosts.clone(),
            allow_private: config.fetch_private,
            max_size: config.fetch_max_size,
        })
    }

    /// Whether the configured list decides which hosts are allowed (else
    /// the sender's upload services do).
    pub fn has_host_list(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether a URL may be fetched; `upload_hosts` are the sender's
    /// upload services, used when no list is configured.
    pub fn allowed(&self, url: &Url, upload_hosts: &[String]) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "https" | "http") {
            return Err(FetchError::NotAllowed(format!("scheme {}", url.scheme())));
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let listed = match self.hosts.is_empty() {
            true => upload_hosts.contains(&host),
            false => self.hosts.contains(&host),
        };
        if !listed {
            return Err(FetchError::NotAllowed(format!(
                "host {host} is not allowed"
            )));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.allow_private && forbidden(ip) {
                return Err(FetchError::NotAllowed(format!("address {ip} is private")));
            }
        }
        Ok(())
    }

    /// Fetches a shared file, following redirects to allowed hosts only.
    pub async fn fetch(&self, url: &str, upload_hosts: &[String]) -> Result<Fetched, FetchError> {
        let mut url = Url::parse(url).map_err(|e| FetchError::Failed(format!("{url}: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            self.allowed(&url, upload_hosts)?;
            let mut response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| FetchError::Failed(e.to_string()))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| FetchError::Failed("redirect without Location".into()))?;
                url = url
                    .join(location)
                    .map_err(|e| FetchError::Failed(e.to_string()))?;
                continue;
            }
            if response.status() != StatusCode::OK {
                return Err(FetchError::Failed(format!("{url}: {}", response.status())));
            }
            if response
                .content_length()
                .is_some_and(|len| len > self.max_size as u64)
            {
                return Err(FetchError::TooLarge);
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| v.contains('/'))
                .unwrap_or_else(|| "application/octet-stream".into());
            let mut data = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| FetchError::Failed(e.to_string()))?
            {
                if data.len() + chunk.len() > self.max_size {
                    return Err(FetchError::TooLarge);
                }
                data.extend_from_slice(&chunk);
            }
            let name = url
                .path_segments()
                .and_then(|mut segments| segments.next_back().map(str::to_owned))
                .map(|segment| percent_decode(&segment))
                .unwrap_or_default();
            return Ok(Fetched {
                name,
                content_type,
                data,
            });
        }
        Err(FetchError::Failed("too many redirects".into()))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
