//! Outgoing SMTP delivery with lettre's SMTP connection: to the configured
//! smarthost, or to the recipient domain's MX hosts (RFC 5321 §5.1) in
//! preference order, with opportunistic STARTTLS, connections reused per
//! destination and a limit of simultaneous deliveries per destination.
//!
//! Through a smarthost, a mail whose author asked for a XEP-0184 receipt
//! asks for RFC 3461 delivery status notifications (`NOTIFY=SUCCESS,FAILURE`,
//! `RET=HDRS`, an `ENVID`, the `ORCPT`) when the smarthost offers DSN: its
//! `250` only says that the smarthost took the mail, and the success
//! report that comes back later says that it was delivered.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter,
};
use lettre::Address;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::config::OutboundConfig;

/// Idle connections kept per destination.
const IDLE_PER_DESTINATION: usize = 16;
/// How long an idle connection is kept: servers close theirs after a few
/// minutes (RFC 5321 §4.5.3.2), and one they closed holds a descriptor
/// until dropped.
const IDLE_TIME: Duration = Duration::from_secs(30);
/// Destinations whose delivery slots are kept before idle ones are dropped.
const DESTINATIONS_KEPT: usize = 1024;

/// A host and port mail is delivered to.
type Destination = (String, u16);

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// 5xx, or a domain that takes no mail: retrying will not help.
    pub permanent: bool,
    /// The remote reply or the local reason.
    pub text: String,
}

impl SendFailure {
    fn transient(text: impl Into<String>) -> Self {
        SendFailure {
            permanent: false,
            text: text.into(),
        }
    }

    fn permanent(text: impl Into<String>) -> Self {
        SendFailure {
            permanent: true,
            text: text.into(),
        }
    }
}

/// A connection, and whether its server offers DSN (RFC 3461); known
/// only for a smarthost, where facteur may ask for reports.
struct Connection {
    smtp: AsyncSmtpConnection,
    dsn: bool,
}

/// What the server that took a mail said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its reply.
    pub reply: String,
    /// Whether delivery status notifications were asked for (RFC 3461):
    /// the success report, not this reply, says the mail was delivered.
    pub report_asked: bool,
}

/// Delivers messages, reusing connections per destination.
pub struct Sender {
    relay: Option<Destination>,
    hostname: String,
    timeout: Duration,
    resolver: TokioResolver,
    mx_port: u16,
    per_destination: usize,
    /// How long an idle connection is kept ([`IDLE_TIME`]).
    idle_time: Duration,
    idle: Mutex<HashMap<Destination, Vec<(Instant, Connection)>>>,
    busy: Mutex<HashMap<Destination, Arc<Semaphore>>>,
}

impl Sender {
    pub fn new(config: &OutboundConfig, resolver: TokioResolver) -> Sender {
        let relay = config.relay.as_ref().map(|relay| {
            let (host, port) = relay.rsplit_once(':').unwrap_or((relay.as_str(), "25"));
            (
                host.trim_matches(['[', ']']).to_owned(),
                port.parse().unwrap_or(25),
            )
        });
        Sender {
            relay,
            hostname: config.hostname.clone(),
            timeout: config.timeout,
            resolver,
            mx_port: config.mx_port,
            per_destination: config.destination_concurrency,
            idle_time: IDLE_TIME,
            idle: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// The slots of simultaneous deliveries to one destination.
    fn slots(&self, destination: &Destination) -> Arc<Semaphore> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy.len() >= DESTINATIONS_KEPT {
            // Destinations nobody is delivering to need no slots.
            busy.retain(|_, slots| Arc::strong_count(slots) > 1);
        }
        busy.entry(destination.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone()
    }

    /// Whether mail goes through a smarthost.
    pub fn relays(&self) -> bool {
        self.relay.is_some()
    }

    /// Sends `raw` from `mail_from` (`None`: the null sender) to `rcpt`;
    /// returns the server's reply. With `report` (an RFC 3461 ENVID), a
    /// smarthost that offers DSN is asked for success and failure
    /// reports.
    pub async fn send(
        &self,
        mail_from: Option<&str>,
        rcpt: &str,
        raw: &[u8],
        report: Option<&str>,
    ) -> Result<Accepted, SendFailure> {
        let from: Option<Address> = mail_from
            .map(|sender| {
                sender
                    .parse()
                    .map_err(|e| SendFailure::permanent(format!("sender address {sender}: {e}")))
            })
            .transpose()?;
        let to: Address = rcpt
            .parse()
            .map_err(|e| SendFailure::permanent(format!("recipient address {rcpt}: {e}")))?;
        let envelope = Envelope::new(from, vec![to.clone()])
            .map_err(|e| SendFailure::permanent(e.to_string()))?;
        // Reports go to the return path: the null sender gets none.
        let report = report.filter(|_| self.relay.is_some() && mail_from.is_some());
        let hosts = match &self.relay {
            Some((host, port)) => vec![(host.clone(), *port)],
            None => self
                .mx_hosts(to.domain())
                .await?
                .into_iter()
                .map(|h| (h, self.mx_port))
                .collect(),
        };
        self.send_to(&hosts, &envelope, raw, report).await
    }

    /// Tries each destination in turn until one takes the mail.
    async fn send_to(
        &self,
        hosts: &[Destination],
        envelope: &Envelope,
        raw: &[u8],
        report: Option<&str>,
    ) -> Result<Accepted, SendFailure> {
        let mut last = SendFailure::transient("no mail host answered");
        for destination in hosts {
            match self.attempt(destination, envelope, raw, report).await {
                Ok(reply) => return Ok(reply),
                // A 5xx is the domain's answer: another MX of it would
                // say the same. An unreachable host or a 4xx (busy, out
                // of space, shutting down) says nothing of the others, so
                // the next MX is tried (RFC 5321 §5.1).
                Err(failure) if failure.permanent => return Err(failure),
                Err(failure) => last = failure,
            }
        }
        Err(last)
    }

    async fn attempt(
        &self,
        destination: &Destination,
        envelope: &Envelope,
        raw: &[u8],
        report: Option<&str>,
    ) -> Result<Accepted, SendFailure> {
        let name = format!("{}:{}", destination.0, destination.1);
        let slots = self.slots(destination);
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| SendFailure::transient("shutting down"))?;
        let mut connection = self
            .connection(destination)
            .await
            .map_err(|e| SendFailure::transient(format!("{name}: {e}")))?;
        debug!(host = %name, "Sending.");
        let report = report.filter(|_| connection.dsn);
        let sent = match report {
            Some(envid) => {
                let sending = send_with_report(&mut connection.smtp, envelope, raw, envid);
                tokio::time::timeout(self.timeout * 2, sending).await
            }
            None => {
                tokio::time::timeout(self.timeout * 2, connection.smtp.send(envelope, raw)).await
            }
        };
        match sent {
            Ok(Ok(response)) => {
                self.park(destination, connection);
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(Accepted {
                    reply: format!("{name} said: {} {text}", response.code()),
                    report_asked: report.is_some(),
                })
            }
            Ok(Err(e)) if e.is_permanent() => {
                Err(SendFailure::permanent(format!("{name} said: {e}")))
            }
            Ok(Err(e)) => Err(SendFailure::transient(format!("{name}: {e}"))),
            Err(_) => Err(SendFailure::transient(format!("{name}: timed out"))),
        }
    }

    /// An idle connection to the destination that still answers, or a
    /// new one: TCP without Nagle's delay (the small last write of a mail
    /// must not wait for the peer's delayed ACK), EHLO, then STARTTLS
    /// whenever offered.
    async fn connection(&self, destination: &Destination) -> Result<Connection, String> {
        loop {
            let parked = self
                .idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.get_mut(destination)?.pop());
            let Some((parked_at, mut connection)) = parked else {
                break;
            };
            if parked_at.elapsed() < self.idle_time && connection.smtp.test_connected().await {
                return Ok(connection);
            }
        }
        let (host, port) = destination;
        let tcp = self.connect(host, *port).await?;
        let _ = tcp.set_nodelay(true);
        let hello = ClientId::Domain(self.hostname.clone());
        let mut connection = tokio::time::timeout(
            self.timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello),
        )
        .await
        .map_err(|_| "greeting timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        if connection.can_starttls() {
            // Opportunistic TLS is encryption without authentication
            // (Postfix's "may" level): an unverifiable certificate still
            // beats plain text.
            let tls = TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true)
                .build_rustls()
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(self.timeout, connection.starttls(tls, &hello))
                .await
                .map_err(|_| "STARTTLS timed out".to_owned())?
                .map_err(|e| format!("STARTTLS failed: {e}"))?;
        }
        // lettre keeps only the EHLO keywords it knows: a smarthost is
        // asked again, to learn whether it offers DSN (RFC 3461 §4).
        let dsn = match self.relay.as_ref() == Some(destination) {
            true => tokio::time::timeout(self.timeout, connection.command(Ehlo::new(hello)))
                .await
                .map_err(|_| "EHLO timed out".to_owned())?
                .map_err(|e| format!("EHLO failed: {e}"))?
                .message()
                .any(|line| line.split_whitespace().next() == Some("DSN")),
            false => false,
        };
        Ok(Connection {
            smtp: connection,
            dsn,
        })
    }

    /// A TCP connection to the first address of `host` that answers; its
    /// A and AAAA records come from the gateway's resolver, like its MX.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.timeout, self.resolver.lookup_ip(host))
                .await
                .map_err(|_| format!("looking up {host} timed out"))?
                .map_err(|e| format!("looking up {host}: {e}"))?
                .iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        };
        let mut last = format!("{host} has no address");
        for address in addresses {
            match tokio::time::timeout(self.timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => last = format!("connection to {address} failed: {e}"),
                Err(_) => last = format!("connection to {address} timed out"),
            }
        }
        Err(last)
    }

    /// Keeps a connection that just worked for the next mail.
    fn park(&self, destination: &Destination, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            for parked in idle.values_mut() {
                parked.retain(|(at, _)| at.elapsed() < self.idle_time);
            }
            idle.retain(|_, parked| !parked.is_empty());
            let parked = idle.entry(destination.clone()).or_default();
            if parked.len() < IDLE_PER_DESTINATION {
                parked.push((Instant::now(), connection));
            }
        }
    }

    /// MX hosts of `domain` in preference order; the domain itself when it
    /// has none (RFC 5321 §5.1); none at all for a null MX (RFC 7505).
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, SendFailure> {
        let resolver = &self.resolver;
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8())),
                        _ => None,
                    })
                    .collect();
                mx.sort();
                if mx.iter().any(|(_, host)| host == "." || host.is_empty()) {
                    return Err(SendFailure::permanent(format!(
                        "{domain} accepts no mail (null MX)"
                    )));
                }
                if mx.is_empty() {
                    return Ok(vec![domain.to_owned()]);
                }
                Ok(mx
                    .into_iter()
                    .map(|(_, host)| host.trim_end_matches('.').to_owned())
                    .collect())
            }
            Err(e) if e.is_nx_domain() => {
                Err(SendFailure::permanent(format!("{domain}: no such domain")))
            }
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_owned()]),
            Err(e) => Err(SendFailure::transient(format!(
                "MX lookup for {domain}: {e}"
            ))),
        }
    }
}

/// Sends as lettre's `send` does, with the RFC 3461 parameters that ask
/// for success and failure reports: `RET=HDRS` and `ENVID` on MAIL,
/// `NOTIFY=SUCCESS,FAILURE` and the `ORCPT` on RCPT. A connection that
/// fails here is dropped, not parked, whatever state it is in.
async fn send_with_report(
    smtp: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    raw: &[u8],
    envid: &str,
) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
    let mut mail = vec![
        MailParameter::Other {
            keyword: "RET".into(),
            value: Some("HDRS".into()),
        },
        MailParameter::Other {
            keyword: "ENVID".into(),
            value: Some(xtext(envid)),
        },
    ];
    let addresses = envelope.from().into_iter().chain(envelope.to());
    if addresses
        .into_iter()
        .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii())
    {
        mail.push(MailParameter::SmtpUtfEight);
    }
    if !raw.is_ascii() && smtp.server_info().supports_feature(Extension::EightBitMime) {
        mail.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    smtp.command(Mail::new(envelope.from().cloned(), mail))
        .await?;
    for to in envelope.to() {
        let orcpt = format!("rfc822;{}", xtext(to.as_ref()));
        let rcpt = vec![
            RcptParameter::Other {
                keyword: "NOTIFY".into(),
                value: Some("SUCCESS,FAILURE".into()),
            },
            RcptParameter::Other {
                keyword: "ORCPT".into(),
                value: Some(orcpt),
            },
        ];
        smtp.command(Rcpt::new(to.clone(), rcpt)).await?;
    }
    smtp.command(Data).await?;
    smtp.message(raw).await
}

/// RFC 3461 §4 xtext: `+`, `=`, controls, space and what is not ASCII as
/// `+HH`.
fn xtext(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'+' && b != b'=' => char::from(b).to_string(),
            _ => format!("+{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
