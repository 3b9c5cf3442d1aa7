//! The configuration in force, and what a reload may change in it.
//!
//! Every key is either applied by a reload or read once at start
//! ([`Apply::Restart`]: listeners, the component link, the store, the
//! resolver, ...). A reload swaps in the new file's configuration as a
//! whole, with each restart-only key kept at its running value, so that
//! what runs is always one configuration that passed every check.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::Config;

/// The configuration in force, replaced whole by a reload. Readers take a
/// snapshot with [`Live::get`] and hold it for one unit of work (an SMTP
/// session, a stanza, a delivery), so that each sees one configuration.
#[derive(Clone, Debug)]
pub struct Live(watch::Receiver<Arc<Config>>);

impl Live {
    /// The configuration `config`, and the sender a reload swaps through.
    pub fn new(config: Arc<Config>) -> (watch::Sender<Arc<Config>>, Live) {
        let (tx, rx) = watch::channel(config);
        (tx, Live(rx))
    }

    /// A configuration that never changes.
    #[cfg(test)]
    pub fn fixed(config: Arc<Config>) -> Live {
        Live::new(config).1
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }
}

/// When a change of a key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// At the next reload.
    Reload,
    /// Only at the next start; a reload keeps the running value.
    Restart,
}

/// Every key (as written in the file, `section.key`), when it applies, and
/// its value in `c` in a form fit only for comparison (secrets included:
/// never log it).
fn keys(c: &Config) -> Vec<(&'static str, Apply, String)> {
    use Apply::{Reload as L, Restart as R};
    let retry = |r: &facteur_policy::retry::RetrySchedule| {
        [
            format!("{:?}", r.initial),
            format!("{:?}", r.max),
            format!("{:?}", r.lifetime),
        ]
    };
    let [out_initial, out_max, out_lifetime] = retry(&c.outbound.retry);
    let [xmpp_initial, xmpp_max, xmpp_lifetime] = retry(&c.xmpp.retry);
    let tls = c.inbound.tls.as_ref();
    let dkim: BTreeMap<_, _> = c.dkim.iter().collect();
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    vec![
        ("component.jid", R, d(&c.component.jid)),
        ("component.server", R, d(&c.component.server)),
        ("component.secret", R, d(&c.component.secret)),
        ("component.ping_interval", R, d(&c.component.ping_interval)),
        ("component.reconnect_max", R, d(&c.component.reconnect_max)),
        ("component.admins", L, d(&c.component.admins)),
        ("mail.domains", R, d(&c.mail.domains)),
        ("mail.users", L, d(&c.mail.users)),
        ("inbound.listen", R, d(&c.inbound.listen)),
        ("inbound.hostname", R, d(&c.inbound.hostname)),
        (
            "inbound.max_message_size",
            L,
            d(&c.inbound.max_message_size),
        ),
        ("inbound.max_recipients", L, d(&c.inbound.max_recipients)),
        ("inbound.max_connections", R, d(&c.inbound.max_connections)),
        ("inbound.idle_timeout", L, d(&c.inbound.idle_timeout)),
        ("inbound.data_timeout", L, d(&c.inbound.data_timeout)),
        ("inbound.tls_cert", L, d(&tls.map(|t| &t.cert))),
        ("inbound.tls_key", L, d(&tls.map(|t| &t.key))),
        ("inbound.xforward_from", L, d(&c.inbound.xforward_from)),
        ("outbound.relay", R, d(&c.outbound.relay)),
        ("outbound.hostname", R, d(&c.outbound.hostname)),
        ("outbound.retry_initial", L, out_initial),
        ("outbound.retry_max", L, out_max),
        ("outbound.max_lifetime", L, out_lifetime),
        ("outbound.timeout", R, d(&c.outbound.timeout)),
        (
            "outbound.jabber_id_header",
            L,
            d(&c.outbound.jabber_id_header),
        ),
        ("outbound.mx_port", R, d(&c.outbound.mx_port)),
        (
            "outbound.destination_concurrency",
            R,
            d(&c.outbound.destination_concurrency),
        ),
        ("xmpp.retry_initial", L, xmpp_initial),
        ("xmpp.retry_max", L, xmpp_max),
        ("xmpp.max_lifetime", L, xmpp_lifetime),
        ("xmpp_mail.enabled", L, d(&c.xmpp_mail.enabled)),
        ("xmpp_mail.step_timeout", R, d(&c.xmpp_mail.step_timeout)),
        ("xmpp_mail.budget", R, d(&c.xmpp_mail.budget)),
        ("xmpp_mail.ttl_accept", L, d(&c.xmpp_mail.ttl.accept)),
        ("xmpp_mail.ttl_reject", L, d(&c.xmpp_mail.ttl.reject)),
        (
            "xmpp_mail.ttl_unsupported",
            L,
            d(&c.xmpp_mail.ttl.unsupported),
        ),
        ("xmpp_mail.ttl_error", L, d(&c.xmpp_mail.ttl.error)),
        ("xmpp_mail.probes_per_minute", L, d(&c.xmpp_mail.probes)),
        ("xmpp_mail.max_size", L, d(&c.xmpp_mail.max_size)),
        ("spam.blocklist_max_age", L, d(&c.spam.blocklist_max_age)),
        ("spam.held_for", L, d(&c.spam.held_for)),
        ("spam.digest_interval", L, d(&c.spam.digest_interval)),
        // Subscribed to, and weights started, when the daemon starts.
        ("spam.lists", R, d(&c.spam.lists)),
        ("spam.dnsbl", R, d(&c.spam.dnsbl)),
        ("spam.domain_blocklists", R, d(&c.spam.domain_blocklists)),
        ("spam.dns_timeout", L, d(&c.spam.dns_timeout)),
        ("spam.publish", L, d(&c.spam.publish)),
        ("spam.publish_threshold", L, d(&c.spam.publish_threshold)),
        ("http.listen", R, d(&c.http.listen)),
        ("http.public_url", R, d(&c.http.public_url)),
        ("http.storage", R, d(&c.http.storage)),
        ("http.retention", R, d(&c.http.retention)),
        ("http.fetch_hosts", R, d(&c.http.fetch_hosts)),
        ("http.fetch_private", R, d(&c.http.fetch_private)),
        ("http.fetch_max_size", R, d(&c.http.fetch_max_size)),
        ("http.fetch_timeout", R, d(&c.http.fetch_timeout)),
        ("http.wkd_port", R, d(&c.http.wkd_port)),
        ("http.wkd_https", R, d(&c.http.wkd_https)),
        ("imap.secret", R, d(&c.imap.key.as_ref().map(|k| k.id()))),
        ("imap.poll_interval", R, d(&c.imap.poll_interval)),
        ("imap.idle", R, d(&c.imap.idle)),
        ("dkim", R, d(&dkim)),
        ("store.url", R, d(&c.store.url)),
        ("store.poll_interval", R, d(&c.store.poll_interval)),
        ("store.keep_finished", R, d(&c.store.keep_finished)),
        ("store.keep_threads", R, d(&c.store.keep_threads)),
        ("store.sweep_interval", R, d(&c.store.sweep_interval)),
        ("store.lease", R, d(&c.store.lease)),
        ("dns.nameservers", R, d(&c.dns.nameservers)),
        ("dns.timeout", R, d(&c.dns.timeout)),
        ("auth.verify", R, d(&c.auth.verify)),
        ("auth.dmarc_reject", L, d(&c.auth.rules.dmarc_reject)),
        (
            "auth.dmarc_quarantine",
            L,
            d(&c.auth.rules.dmarc_quarantine),
        ),
        ("auth.spf_fail", L, d(&c.auth.rules.spf_fail)),
        (
            "auth.trusted_arc_sealers",
            L,
            d(&c.auth.rules.trusted_arc_sealers),
        ),
        ("limits.sender_mails_per_hour", L, d(&c.limits.sender_mails)),
        (
            "limits.client_connections",
            L,
            d(&c.limits.client_connections),
        ),
        (
            "limits.client_mails_per_minute",
            L,
            d(&c.limits.client_mails),
        ),
        (
            "limits.client_exceptions",
            L,
            d(&c.limits.client_exceptions),
        ),
        ("log.format", R, d(&c.log.format)),
    ]
}

/// What a reload does with a new file.
#[derive(Debug)]
pub struct Merged {
    /// The configuration to put in force: the new file's, with the
    /// restart-only keys at their running values.
    pub config: Config,
    /// Keys whose new value is in force now.
    pub applied: Vec<&'static str>,
    /// Restart-only keys the file changes, kept at their running value.
    pub need_restart: Vec<&'static str>,
}

/// Puts `new` beside `running`: takes the reloadable keys of `new`, keeps
/// the restart-only keys of `running`, and names the keys that differ.
pub fn merge(running: &Config, mut new: Config) -> Merged {
    let before = keys(running);
    let wanted = keys(&new);
    let mut applied = Vec::new();
    let mut need_restart = Vec::new();
    for ((key, apply, old), (_, _, value)) in before.iter().zip(&wanted) {
        if old != value {
            match apply {
                Apply::Reload => applied.push(*key),
                Apply::Restart => need_restart.push(*key),
            }
        }
    }
    keep_restart_only(running, &mut new);
    Merged {
        config: new,
        applied,
        need_restart,
    }
}

/// Copies every [`Apply::Restart`] key of `running` into `new`. A test
/// checks this against `keys`, in both directions.
fn keep_restart_only(running: &Config, new: &mut Config) {
    let r = running;
    let admins = std::mem::take(&mut new.component.admins);
    new.component = r.component.clone();
    new.component.admins = admins;
    new.mail.domains = r.mail.domains.clone();
    new.inbound.listen = r.inbound.listen.clone();
    new.inbound.hostname = r.inbound.hostname.clone();
    new.inbound.max_connections = r.inbound.max_connections;
    let (retry, jabber_id_header) = (new.outbound.retry, new.outbound.jabber_id_header);
    new.outbound = r.outbound.clone();
    new.outbound.retry = retry;
    new.outbound.jabber_id_header = jabber_id_header;
    new.xmpp_mail.step_timeout = r.xmpp_mail.step_timeout;
    new.xmpp_mail.budget = r.xmpp_mail.budget;
    new.http = r.http.clone();
    new.imap = r.imap.clone();
    new.dkim = r.dkim.clone();
    new.store = r.store.clone();
    new.dns = r.dns.clone();
    new.auth.verify = r.auth.verify;
    new.log = r.log.clone();
    new.spam.lists = r.spam.lists.clone();
    new.spam.dnsbl = r.spam.dnsbl.clone();
    new.spam.domain_blocklists = r.spam.domain_blocklists.clone();
}

#[cfg(test)]
mod tests;
