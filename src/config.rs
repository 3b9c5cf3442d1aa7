//! The TOML configuration: parsed with `deny_unknown_fields`, then checked
//! as a whole so that every problem is reported at once.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use facteur_policy::relay::UserScope;
use facteur_policy::retry::RetrySchedule;
use jid::BareJid;
use serde::Deserialize;

mod security;

pub use security::{Auth, Dns, Limits};

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Config {
    pub component: Component,
    pub mail: Mail,
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub http: Http,
    /// DKIM key per served domain.
    pub dkim: HashMap<String, DkimKey>,
    pub store: Store,
    pub dns: Dns,
    pub auth: Auth,
    pub limits: Limits,
}

/// The DKIM key of a domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub selector: String,
    pub key_file: PathBuf,
}

#[derive(Clone)]
pub struct Component {
    /// The component's domain, e.g. `mail.example.test`.
    pub jid: BareJid,
    pub server: String,
    pub secret: String,
    pub ping_interval: Duration,
    pub reconnect_max: Duration,
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("jid", &self.jid)
            .field("server", &self.server)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Mail {
    /// Served domains, lower-case.
    pub domains: Vec<String>,
    pub users: UserScope,
}

impl Mail {
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

#[derive(Debug, Clone)]
pub struct Inbound {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Outbound {
    /// Smarthost `host:port`; without it, mail goes to the recipient
    /// domain's MX on port 25.
    pub relay: Option<String>,
    pub hostname: String,
    pub retry: RetrySchedule,
    pub timeout: Duration,
    /// Whether outgoing mail carries an RFC 7259 `Jabber-ID` header.
    pub jabber_id_header: bool,
    /// Port of the MX hosts (25 on the internet).
    pub mx_port: u16,
    /// Simultaneous deliveries to one host.
    pub destination_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub url: String,
}

/// The HTTP server for attachments, and what may be fetched for
/// outgoing mail.
#[derive(Debug, Clone)]
pub struct Http {
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
}

// ---- the file as written -------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component: RawComponent,
    mail: RawMail,
    #[serde(default)]
    inbound: RawInbound,
    #[serde(default)]
    outbound: RawOutbound,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    dkim: HashMap<String, DkimKey>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    dns: security::RawDns,
    #[serde(default)]
    auth: security::RawAuth,
    #[serde(default)]
    limits: security::RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http_listen")]
    listen: String,
    public_url: Option<String>,
    #[serde(default = "default_http_storage")]
    storage: PathBuf,
    #[serde(default = "default_retention")]
    retention: String,
    #[serde(default)]
    fetch_hosts: Vec<String>,
    #[serde(default)]
    fetch_private: bool,
    #[serde(default = "default_fetch_max_size")]
    fetch_max_size: usize,
    #[serde(default = "default_fetch_timeout")]
    fetch_timeout: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http_listen(),
            public_url: None,
            storage: default_http_storage(),
            retention: default_retention(),
            fetch_hosts: Vec::new(),
            fetch_private: false,
            fetch_max_size: default_fetch_max_size(),
            fetch_timeout: default_fetch_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    #[serde(default = "default_component_server")]
    server: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_ping_interval")]
    ping_interval: String,
    #[serde(default = "default_reconnect_max")]
    reconnect_max: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    domains: Vec<String>,
    #[serde(default = "default_users")]
    users: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    hostname: Option<String>,
    #[serde(default = "default_max_message_size")]
    max_message_size: usize,
    #[serde(default = "default_max_recipients")]
    max_recipients: usize,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_idle_timeout")]
    idle_timeout: String,
    #[serde(default = "default_data_timeout")]
    data_timeout: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl Default for RawInbound {
    fn default() -> Self {
        RawInbound {
            listen: default_listen(),
            hostname: None,
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            data_timeout: default_data_timeout(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    relay: Option<String>,
    hostname: Option<String>,
    #[serde(default = "default_retry_initial")]
    retry_initial: String,
    #[serde(default = "default_retry_max")]
    retry_max: String,
    #[serde(default = "default_max_lifetime")]
    max_lifetime: String,
    #[serde(default = "default_smtp_timeout")]
    timeout: String,
    #[serde(default = "default_true")]
    jabber_id_header: bool,
    #[serde(default = "default_mx_port")]
    mx_port: u16,
    #[serde(default = "default_destination_concurrency")]
    destination_concurrency: usize,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            relay: None,
            hostname: None,
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            max_lifetime: default_max_lifetime(),
            timeout: default_smtp_timeout(),
            jabber_id_header: true,
            mx_port: default_mx_port(),
            destination_concurrency: default_destination_concurrency(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_url")]
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: default_store_url(),
        }
    }
}

fn default_component_server() -> String {
    "127.0.0.1:5347".into()
}
fn default_ping_interval() -> String {
    "30s".into()
}
fn default_reconnect_max() -> String {
    "60s".into()
}
fn default_users() -> String {
    "registered".into()
}
fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:2525".into()]
}
fn default_max_message_size() -> usize {
    25 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    100
}
fn default_max_connections() -> usize {
    200
}
fn default_idle_timeout() -> String {
    "5m".into()
}
fn default_data_timeout() -> String {
    "10m".into()
}
fn default_retry_initial() -> String {
    "5m".into()
}
fn default_retry_max() -> String {
    "1h".into()
}
fn default_max_lifetime() -> String {
    "5d".into()
}
fn default_smtp_timeout() -> String {
    "5m".into()
}
fn default_true() -> bool {
    true
}
fn default_mx_port() -> u16 {
    25
}
fn default_destination_concurrency() -> usize {
    10
}
fn default_http_listen() -> String {
    "127.0.0.1:8025".into()
}
fn default_http_storage() -> PathBuf {
    "/var/lib/facteur/files".into()
}
fn default_retention() -> String {
    "30d".into()
}
fn default_fetch_max_size() -> usize {
    20 * 1024 * 1024
}
fn default_fetch_timeout() -> String {
    "30s".into()
}
fn default_store_url() -> String {
    "sqlite:///var/lib/facteur/facteur.db".into()
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `5d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Collects problems while checking, so that all are reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, problem: impl fmt::Display) {
        self.0.push(format!("{key}: {problem}"));
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.add(key, "must be more than zero");
                Duration::from_secs(1)
            }
            Ok(d) => d,
            Err(e) => {
                self.add(key, e);
                Duration::from_secs(1)
            }
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, parses and checks `path`; secrets named by `*_file` keys are
    /// read too.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("Reading {}", path.display()))?;
        Ok(Config::parse(&text)?)
    }

    /// Parses and checks the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let mut p = Problems::default();

        let component_jid = match BareJid::new(&raw.component.jid) {
            Ok(jid) if jid.node().is_none() => jid,
            Ok(_) => {
                p.add(
                    "component.jid",
                    "must be a bare domain, e.g. mail.example.org",
                );
                fallback_jid()
            }
            Err(e) => {
                p.add("component.jid", e);
                fallback_jid()
            }
        };
        if raw.component.server.rsplit_once(':').is_none() {
            p.add("component.server", "must be host:port");
        }
        let secret = match (raw.component.secret, raw.component.secret_file) {
            (Some(s), None) if !s.is_empty() => s,
            (None, Some(file)) => match std::fs::read_to_string(&file) {
                Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
                Ok(_) => {
                    p.add(
                        "component.secret_file",
                        format!("{} is empty", file.display()),
                    );
                    String::new()
                }
                Err(e) => {
                    p.add("component.secret_file", format!("{}: {e}", file.display()));
                    String::new()
                }
            },
            (Some(_), Some(_)) => {
                p.add("component", "set secret or secret_file, not both");
                String::new()
            }
            _ => {
                p.add("component", "secret or secret_file is required");
                String::new()
            }
        };
        let ping_interval = p.duration("component.ping_interval", &raw.component.ping_interval);
        let reconnect_max = p.duration("component.reconnect_max", &raw.component.reconnect_max);

        let mut domains = Vec::new();
        for d in &raw.mail.domains {
            match BareJid::new(d) {
                Ok(jid) if jid.node().is_none() => domains.push(jid.domain().to_string()),
                _ => p.add("mail.domains", format!("{d:?} is not a domain")),
            }
        }
        if domains.is_empty() {
            p.add("mail.domains", "at least one served domain is required");
        }
        if domains.iter().any(|d| d == component_jid.domain().as_str()) {
            p.add(
                "mail.domains",
                "must not contain the component's own domain",
            );
        }
        let users = match raw.mail.users.as_str() {
            "registered" => UserScope::Registered,
            "all" => UserScope::All,
            other => {
                p.add(
                    "mail.users",
                    format!("{other:?}: expected \"registered\" or \"all\""),
                );
                UserScope::Registered
            }
        };

        let mut listen = Vec::new();
        for l in &raw.inbound.listen {
            match l.parse::<SocketAddr>() {
                Ok(addr) => listen.push(addr),
                Err(_) => p.add("inbound.listen", format!("{l:?} is not ip:port")),
            }
        }
        if raw.inbound.max_message_size < 1024 {
            p.add("inbound.max_message_size", "must be at least 1024 bytes");
        }
        if raw.inbound.max_recipients == 0 {
            p.add("inbound.max_recipients", "must be at least 1");
        }
        if raw.inbound.max_connections == 0 {
            p.add("inbound.max_connections", "must be at least 1");
        }
        let idle_timeout = p.duration("inbound.idle_timeout", &raw.inbound.idle_timeout);
        let data_timeout = p.duration("inbound.data_timeout", &raw.inbound.data_timeout);
        let tls = match (raw.inbound.tls_cert, raw.inbound.tls_key) {
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
        let hostname = raw
            .inbound
            .hostname
            .unwrap_or_else(|| component_jid.domain().to_string());

        if let Some(relay) = &raw.outbound.relay {
            match relay.rsplit_once(':').map(|(_, port)| port.parse::<u16>()) {
                Some(Ok(_)) => {}
                _ => p.add("outbound.relay", format!("{relay:?} is not host:port")),
            }
        }
        let retry = RetrySchedule {
            initial: p.duration("outbound.retry_initial", &raw.outbound.retry_initial),
            max: p.duration("outbound.retry_max", &raw.outbound.retry_max),
            lifetime: p.duration("outbound.max_lifetime", &raw.outbound.max_lifetime),
        };
        if retry.max < retry.initial {
            p.add(
                "outbound.retry_max",
                "must not be shorter than retry_initial",
            );
        }
        let timeout = p.duration("outbound.timeout", &raw.outbound.timeout);
        if raw.outbound.destination_concurrency == 0 {
            p.add("outbound.destination_concurrency", "must be at least 1");
        }

        let http_listen = match raw.http.listen.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                p.add(
                    "http.listen",
                    format!("{:?} is not ip:port", raw.http.listen),
                );
                SocketAddr::from(([127, 0, 0, 1], 8025))
            }
        };
        let public_url = raw
            .http
            .public_url
            .unwrap_or_else(|| format!("http://{http_listen}/files"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            p.add("http.public_url", "must be an http:// or https:// URL");
        }
        let retention = p.duration("http.retention", &raw.http.retention);
        let fetch_timeout = p.duration("http.fetch_timeout", &raw.http.fetch_timeout);
        let fetch_hosts = raw
            .http
            .fetch_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();

        for (domain, key) in &raw.dkim {
            if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                p.add(&format!("dkim.{domain}"), "not a served domain");
            }
            if key.selector.is_empty()
                || !key
                    .selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                p.add(
                    &format!("dkim.{domain}.selector"),
                    "letters, digits, '-' and '.' only",
                );
            }
            if let Err(e) = std::fs::metadata(&key.key_file) {
                p.add(
                    &format!("dkim.{domain}.key_file"),
                    format!("{}: {e}", key.key_file.display()),
                );
            }
        }

        if !raw.store.url.starts_with("sqlite:") {
            p.add(
                "store.url",
                "only sqlite: URLs are supported, e.g. sqlite:///var/lib/facteur/facteur.db",
            );
        }

        let dns = raw.dns.check(&mut p);
        let auth = raw.auth.check(&mut p);
        let limits = raw.limits.check(&mut p);

        if !p.0.is_empty() {
            return Err(ConfigErrors(p.0));
        }
        Ok(Config {
            component: Component {
                jid: component_jid.clone(),
                server: raw.component.server,
                secret,
                ping_interval,
                reconnect_max,
            },
            mail: Mail { domains, users },
            inbound: Inbound {
                listen,
                hostname: hostname.clone(),
                max_message_size: raw.inbound.max_message_size,
                max_recipients: raw.inbound.max_recipients,
                max_connections: raw.inbound.max_connections,
                idle_timeout,
                data_timeout,
                tls,
            },
            outbound: Outbound {
                relay: raw.outbound.relay,
                hostname: raw.outbound.hostname.unwrap_or(hostname),
                retry,
                timeout,
                jabber_id_header: raw.outbound.jabber_id_header,
                mx_port: raw.outbound.mx_port,
                destination_concurrency: raw.outbound.destination_concurrency,
            },
            http: Http {
                listen: http_listen,
                public_url,
                storage: raw.http.storage,
                retention,
                fetch_hosts,
                fetch_private: raw.http.fetch_private,
                fetch_max_size: raw.http.fetch_max_size,
                fetch_timeout,
            },
            dkim: raw.dkim,
            store: Store { url: raw.store.url },
            dns,
            auth,
            limits,
        })
    }
}

fn fallback_jid() -> BareJid {
    BareJid::new("invalid.invalid").expect("a valid static domain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("readable");
                if let Err(e) = Config::parse(&text) {
                    panic!("{}: {e}", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen > 0, "no config in {}", dir.display());
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = r#"
            [component]
            jid = "user@mail.example.test"
            [mail]
            domains = []
            users = "some"
            [inbound]
            listen = ["nowhere"]
            idle_timeout = "5 parsecs"
            [outbound]
            relay = "smarthost"
            [store]
            url = "mysql://x"
        "#;
        let errors = Config::parse(text).expect_err("invalid").0;
        for key in [
            "component.jid",
            "component: secret or secret_file",
            "mail.domains",
            "mail.users",
            "inbound.listen",
            "inbound.idle_timeout",
            "outbound.relay",
            "store.url",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(key)),
                "{key} missing in {errors:#?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\nsecrt = \"typo\"\n[mail]\ndomains = [\"example.test\"]\n";
        let errors = Config::parse(text).expect_err("unknown key").0;
        assert!(errors[0].contains("unknown field `secrt`"), "{errors:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
    }
}
