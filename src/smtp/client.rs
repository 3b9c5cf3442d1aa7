//! Outgoing SMTP delivery with lettre's SMTP connection: to the configured
//! smarthost, or to the recipient domain's MX hosts (RFC 5321 §5.1) in
//! preference order, with opportunistic STARTTLS, connections reused per
//! destination and a limit of simultaneous deliveries per destination.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
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
    idle: Mutex<HashMap<Destination, Vec<(Instant, AsyncSmtpConnection)>>>,
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

    /// Sends `raw` from `mail_from` (`None`: the null sender) to `rcpt`;
    /// returns the server's reply.
    pub async fn send(
        &self,
        mail_from: Option<&str>,
        rcpt: &str,
        raw: &[u8],
    ) -> Result<String, SendFailure> {
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
        let hosts = match &self.relay {
            Some((host, port)) => vec![(host.clone(), *port)],
            None => self
                .mx_hosts(to.domain())
                .await?
                .into_iter()
                .map(|h| (h, self.mx_port))
                .collect(),
        };
        self.send_to(&hosts, &envelope, raw).await
    }

    /// Tries each destination in turn until one takes the mail.
    async fn send_to(
        &self,
        hosts: &[Destination],
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<String, SendFailure> {
        let mut last = SendFailure::transient("no mail host answered");
        for destination in hosts {
            match self.attempt(destination, envelope, raw).await {
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
    ) -> Result<String, SendFailure> {
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
        match tokio::time::timeout(self.timeout * 2, connection.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                self.park(destination, connection);
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(format!("{name} said: {} {text}", response.code()))
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
    async fn connection(&self, destination: &Destination) -> Result<AsyncSmtpConnection, String> {
        loop {
            let parked = self
                .idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.get_mut(destination)?.pop());
            let Some((parked_at, mut connection)) = parked else {
                break;
            };
            if parked_at.elapsed() < self.idle_time && connection.test_connected().await {
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
        Ok(connection)
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
    fn park(&self, destination: &Destination, connection: AsyncSmtpConnection) {
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

#[cfg(test)]
mod tests;
