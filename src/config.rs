//! The TOML configuration: parsed with `deny_unknown_fields`, one file per
//! section beside this one, then checked as a whole so that every problem
//! is reported at once.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

mod address;
mod auth;
mod component;
mod dkim;
mod dns;
mod http;
mod imap;
mod inbound;
mod limits;
mod live;
mod log;
mod mail;
mod outbound;
mod retry;
mod spam;
mod store;
mod xmpp;
mod xmpp_mail;

pub use auth::AuthConfig;
pub use component::ComponentConfig;
pub use dkim::DkimKey;
pub use dns::DnsConfig;
pub use http::HttpConfig;
pub use imap::ImapConfig;
pub use inbound::{InboundConfig, TlsFiles};
pub use limits::LimitsConfig;
pub use live::{merge, Live};
pub use log::{LogConfig, LogFormat};
pub use mail::MailConfig;
pub use outbound::OutboundConfig;
pub use spam::{SharedList, SpamConfig};
pub use store::StoreConfig;
pub use xmpp::XmppConfig;
pub use xmpp_mail::XmppMailConfig;

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Config {
    pub component: ComponentConfig,
    pub mail: MailConfig,
    pub inbound: InboundConfig,
    pub outbound: OutboundConfig,
    pub xmpp: XmppConfig,
    pub xmpp_mail: XmppMailConfig,
    pub spam: SpamConfig,
    pub http: HttpConfig,
    pub imap: ImapConfig,
    /// DKIM key per served domain.
    pub dkim: HashMap<String, DkimKey>,
    pub store: StoreConfig,
    pub dns: DnsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    /// What still works but should change (deprecated keys), one line each;
    /// `run` logs them at start and `check-config` prints them.
    pub warnings: Vec<String>,
}

/// The file as written. `[component]` and `[mail]` have required keys, so
/// the sections themselves are required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component: component::RawComponent,
    mail: mail::RawMail,
    #[serde(default)]
    inbound: inbound::RawInbound,
    #[serde(default)]
    outbound: outbound::RawOutbound,
    #[serde(default)]
    xmpp: xmpp::RawXmpp,
    #[serde(default)]
    xmpp_mail: xmpp_mail::RawXmppMail,
    #[serde(default)]
    spam: spam::RawSpam,
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    imap: imap::RawImap,
    #[serde(default)]
    dkim: dkim::RawDkim,
    #[serde(default)]
    store: store::RawStore,
    #[serde(default)]
    dns: dns::RawDns,
    #[serde(default)]
    auth: auth::RawAuth,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    log: log::RawLog,
}

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

        let component = raw.component.check(&mut p);
        // Without a valid jid (already a problem) the sections that default
        // to it are still checked, against no domain.
        let domain = component
            .as_ref()
            .map(|c| c.jid.domain().to_string())
            .unwrap_or_default();
        let mail = raw.mail.check(&mut p, &domain);
        let inbound = raw.inbound.check(&mut p, &domain);
        // Read before `[outbound]` is checked: deliveries to XMPP fall back
        // on the retry keys it sets.
        let outbound_retry = raw.outbound.retry_keys();
        let outbound = raw.outbound.check(&mut p, &inbound.hostname);
        let xmpp = raw.xmpp.check(&mut p, &outbound_retry);
        let xmpp_mail = raw.xmpp_mail.check(&mut p);
        let spam = raw.spam.check(&mut p);
        let http = raw.http.check(&mut p);
        let imap = raw.imap.check(&mut p);
        let dkim = raw.dkim.check(&mut p, &mail);
        let store = raw.store.check(&mut p);
        let dns = raw.dns.check(&mut p);
        let auth = raw.auth.check(&mut p);
        let limits = raw.limits.check(&mut p);
        let log = raw.log.check(&mut p);

        let Some(component) = component.filter(|_| p.errors.is_empty()) else {
            return Err(ConfigErrors(p.errors));
        };
        Ok(Config {
            component,
            mail,
            inbound,
            outbound,
            xmpp,
            xmpp_mail,
            spam,
            http,
            imap,
            dkim,
            store,
            dns,
            auth,
            limits,
            log,
            warnings: p.warnings,
        })
    }
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

/// Collects problems and warnings while checking, so that all are reported
/// together.
#[derive(Default)]
struct Problems {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Problems {
    fn add(&mut self, key: &str, problem: impl fmt::Display) {
        self.errors.push(format!("{key}: {problem}"));
    }

    fn warn(&mut self, key: &str, warning: impl fmt::Display) {
        self.warnings.push(format!("{key}: {warning}"));
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

#[cfg(test)]
mod tests;
