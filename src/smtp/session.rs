//! One inbound SMTP session (RFC 5321), generic over the byte stream so
//! that tests drive it over `tokio::io::duplex`.
//!
//! Commands are parsed by smtp-proto, DATA is dot-unstuffed by its
//! `DataReceiver`. Replies to pipelined commands (RFC 2920) are flushed
//! only when no more input is buffered. `250` after DATA is written only
//! once the mail is committed to the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facteur_bridge::MailAddress;
use facteur_policy::limits::{Concurrency, Decision, Limiter};
use facteur_policy::relay::{rcpt_verdict, AddressFacts, RcptVerdict};
use jid::BareJid;
use smtp_proto::{EhloResponse, Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::reader::Reader;
use super::reply::{self, Reply};
use super::verify::Verifier;
use super::xforward::{self, Forwarded};
use crate::config::{Config, Live};
use crate::return_path::ReturnPaths;
use crate::store::{Committer, Store};
use crate::telemetry::meters;

mod data;

/// Longest command line accepted (RFC 5321 asks for at least 512).
const MAX_COMMAND_LINE: usize = 4096;
/// Errors after which the client is disconnected.
const MAX_ERRORS: u32 = 10;

/// What the receiver needs from the rest of the daemon.
pub struct Reception {
    /// Each session takes the configuration in force when it opens.
    pub config: Live,
    pub store: Store,
    /// Makes accepted mail durable, grouping concurrent commits.
    pub committer: Committer,
    /// SPF/DKIM/DMARC/ARC verification; none when `auth.verify` is off.
    pub verifier: Option<Verifier>,
    /// Mails per client IP address.
    pub client_mails: Mutex<Limiter<IpAddr>>,
    /// Connections per client IP address.
    pub client_connections: Mutex<Concurrency<IpAddr>>,
    /// Recognises the return paths of mail facteur sent.
    pub return_paths: ReturnPaths,
    /// The spam check at end of DATA.
    pub spam: crate::spam::Judge,
}

impl Reception {
    /// The committing task runs on `tasks` until the reception is gone.
    pub fn new(
        config: Live,
        store: Store,
        verifier: Option<Verifier>,
        return_paths: ReturnPaths,
        tasks: &TaskTracker,
    ) -> Reception {
        let now = config.get();
        Reception {
            return_paths,
            committer: Committer::inbound(store.clone(), tasks),
            verifier,
            client_mails: Mutex::new(Limiter::new(now.limits.client_mails)),
            client_connections: Mutex::new(Concurrency::new(now.limits.client_connections)),
            config,
            store,
            spam: crate::spam::Judge::default(),
        }
    }
}

/// How a session ended.
pub enum Ended<S> {
    /// The connection is done.
    Closed,
    /// The client asked for STARTTLS: the stream, with nothing buffered.
    StartTls(S, Progress),
}

/// What survives a STARTTLS: nothing of the transaction (RFC 3207 §4.2),
/// only the error count.
#[derive(Default)]
pub struct Progress {
    errors: u32,
}

#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    recipients: Vec<BareJid>,
    /// Queue ids of sent mail this one reports on (to return paths).
    bounces: Vec<i64>,
    /// The client an MTA in front got the mail from (XFORWARD).
    forwarded: Forwarded,
}

/// A command line, or why there is none.
enum Line {
    Command(Vec<u8>),
    TooLong,
    Eof,
}

pub struct Session<'a, S> {
    reader: Reader<S>,
    out: Vec<u8>,
    reception: &'a Reception,
    /// The configuration in force when the session opened (or restarted
    /// after STARTTLS).
    config: Arc<Config>,
    peer: SocketAddr,
    tls_active: bool,
    tls_available: bool,
    helo: Option<String>,
    extended: bool,
    tx: Transaction,
    errors: u32,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Session<'a, S> {
    pub fn new(
        stream: S,
        reception: &'a Reception,
        peer: SocketAddr,
        tls_active: bool,
        tls_available: bool,
        progress: Progress,
    ) -> Self {
        Session {
            reader: Reader::new(stream),
            out: Vec::with_capacity(512),
            config: reception.config.get(),
            reception,
            peer,
            tls_active,
            tls_available,
            helo: None,
            extended: false,
            tx: Transaction::default(),
            errors: progress.errors,
        }
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn reply<T: std::fmt::Display>(&mut self, reply: Reply<T>) {
        reply.write(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let stream = self.reader.get_mut();
            stream.write_all(&self.out).await?;
            stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Runs the session to its end. `greet` is false after STARTTLS.
    pub async fn run(
        mut self,
        greet: bool,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Ended<S>> {
        if greet {
            let greeting = reply::greeting(&self.config().inbound.hostname);
            self.reply(greeting);
            self.flush().await?;
        }
        let idle = self.config().inbound.idle_timeout;
        loop {
            if self.reader.buffer().is_empty() {
                self.flush().await?;
            }
            let line = tokio::select! {
                line = tokio::time::timeout(idle, self.read_line()) => line,
                () = shutdown.cancelled() => {
                    self.reply(reply::SHUTTING_DOWN);
                    self.flush().await?;
                    return Ok(Ended::Closed);
                }
            };
            let line = match line {
                Ok(line) => line?,
                Err(_) => {
                    self.timed_out().await?;
                    return Ok(Ended::Closed);
                }
            };
            let line = match line {
                Line::Eof => return Ok(Ended::Closed),
                Line::TooLong => {
                    self.reply(reply::LINE_TOO_LONG);
                    if self.count_error() {
                        return self.too_many_errors().await;
                    }
                    continue;
                }
                Line::Command(line) => line,
            };
            if xforward::is_xforward(&line) {
                self.xforward(&line);
                continue;
            }
            let request = Request::parse(&mut line.iter()).map(Request::into_owned);
            match request {
                Ok(Request::Quit) => {
                    self.reply(reply::BYE);
                    self.flush().await?;
                    return Ok(Ended::Closed);
                }
                Ok(Request::StartTls) => {
                    if self.tls_active {
                        self.reply(reply::TLS_ALREADY_ACTIVE);
                    } else if !self.tls_available {
                        self.reply(reply::TLS_NOT_AVAILABLE);
                    } else {
                        self.reply(reply::READY_FOR_TLS);
                        self.flush().await?;
                        let progress = Progress {
                            errors: self.errors,
                        };
                        // Bytes the client sent before the handshake are dropped with the buffer.
                        return Ok(Ended::StartTls(self.reader.into_inner(), progress));
                    }
                }
                // Boxed, as the commit is: an idle connection's future
                // holds none of the state of a command being handled.
                Ok(Request::Data) => {
                    if !Box::pin(self.data()).await? {
                        return Ok(Ended::Closed);
                    }
                }
                Ok(request) => Box::pin(self.command(request)).await,
                Err(error) => {
                    self.protocol_error(error);
                    if self.count_error() {
                        return self.too_many_errors().await;
                    }
                }
            }
        }
    }

    /// Says why the connection closes: too slow (RFC 5321 §4.5.3.2).
    async fn timed_out(&mut self) -> std::io::Result<()> {
        let timed_out = reply::timed_out(&self.config().inbound.hostname);
        self.reply(timed_out);
        self.flush().await
    }

    fn count_error(&mut self) -> bool {
        self.errors += 1;
        self.errors >= MAX_ERRORS
    }

    async fn too_many_errors(mut self) -> std::io::Result<Ended<S>> {
        self.reply(reply::TOO_MANY_ERRORS);
        self.flush().await?;
        Ok(Ended::Closed)
    }

    /// Reads one line ending in LF, up to `MAX_COMMAND_LINE` bytes; the
    /// rest of a longer line is read and discarded.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Eof);
            }
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(pos) => (available.get(..=pos).unwrap_or(available), true),
                None => (available, false),
            };
            let used = chunk.len();
            if !too_long && line.len() + used <= MAX_COMMAND_LINE {
                line.extend_from_slice(chunk);
            } else {
                too_long = true;
                line.clear();
            }
            self.reader.consume(used);
            if done {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Command(line)
                });
            }
        }
    }

    fn protocol_error(&mut self, error: ProtoError) {
        match error {
            ProtoError::UnknownCommand => self.reply(reply::UNKNOWN_COMMAND),
            ProtoError::InvalidSenderAddress => self.reply(reply::BAD_SENDER),
            ProtoError::InvalidRecipientAddress => self.reply(reply::BAD_RECIPIENT),
            ProtoError::SyntaxError { syntax } => self.reply(reply::bad_syntax(syntax)),
            ProtoError::InvalidParameter { param } => self.reply(reply::invalid_parameter(param)),
            ProtoError::UnsupportedParameter { param } => {
                self.reply(reply::unsupported_parameter(param))
            }
            ProtoError::ResponseTooLong => self.reply(reply::LINE_TOO_LONG),
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.reply(reply::SYNTAX_ERROR)
            }
        }
    }

    async fn command(&mut self, request: Request<String>) {
        match request {
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.helo = Some(host);
                self.extended = true;
                self.tx = Transaction::default();
                let hostname = self.config().inbound.hostname.clone();
                let mut ehlo = EhloResponse::new(hostname.as_str());
                ehlo.capabilities = smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SMTP_UTF8
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES;
                if self.tls_available && !self.tls_active {
                    ehlo.capabilities |= smtp_proto::EXT_START_TLS;
                }
                ehlo.size = self.config().inbound.max_message_size;
                let start = self.out.len();
                // Writing into a Vec cannot fail.
                let _ = ehlo.write(&mut self.out);
                if self.xforward_allowed() {
                    self.advertise_xforward(start);
                }
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.extended = false;
                self.tx = Transaction::default();
                let helo = reply::helo(&self.config().inbound.hostname);
                self.reply(helo);
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    self.reply(reply::HELO_FIRST);
                } else if self.tx.mail_from.is_some() {
                    self.reply(reply::SENDER_ALREADY_GIVEN);
                } else if from.size > self.config().inbound.max_message_size {
                    meters().smtp_refused.too_big.increment(1);
                    self.reply(reply::TOO_BIG);
                } else if !from.address.is_empty() && MailAddress::parse(&from.address).is_err() {
                    self.reply(reply::BAD_SENDER);
                } else if let Decision::Deny { retry_after } = self.count_mail() {
                    info!(peer = %self.peer, "Client over its mail rate.");
                    meters().smtp_refused.rate_limited.increment(1);
                    self.reply(reply::rate_limited(
                        self.peer.ip(),
                        retry_after.as_secs().max(1),
                    ));
                } else {
                    debug!(mail_from = %from.address, "MAIL FROM.");
                    self.tx.mail_from = Some(from.address);
                    self.reply(reply::SENDER_OK);
                }
            }
            Request::Rcpt { to } => self.rcpt(&to.address).await,
            Request::Rset => {
                self.tx = Transaction::default();
                self.reply(reply::OK);
            }
            Request::Noop { .. } => self.reply(reply::OK),
            Request::Vrfy { .. } => self.reply(reply::CANNOT_VRFY),
            Request::Help { .. } => self.reply(reply::HELP),
            Request::Expn { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Bdat { .. } => self.reply(reply::NOT_IMPLEMENTED),
            Request::Quit | Request::StartTls | Request::Data => {}
        }
    }

    /// Whether the client is an MTA in front whose XFORWARD is believed.
    fn xforward_allowed(&self) -> bool {
        self.config().inbound.xforward_from.contains(self.peer.ip())
    }

    /// Adds XFORWARD to the EHLO reply written from `start` of the output
    /// (smtp-proto does not know the extension): the last line becomes a
    /// continuation line.
    fn advertise_xforward(&mut self, start: usize) {
        let end = self.out.len().saturating_sub(2);
        let last = self
            .out
            .get(start..end)
            .and_then(|reply| reply.iter().rposition(|&b| b == b'\n'))
            .map_or(start, |newline| start + newline + 1);
        if let Some(separator) = self.out.get_mut(last + 3) {
            *separator = b'-';
        }
        self.out
            .extend_from_slice(format!("250 XFORWARD {}\r\n", xforward::ATTRIBUTES).as_bytes());
    }

    /// XFORWARD: before MAIL FROM, from an MTA in `inbound.xforward_from`.
    fn xforward(&mut self, line: &[u8]) {
        if !self.xforward_allowed() {
            return self.reply(reply::XFORWARD_NOT_ALLOWED);
        }
        if self.tx.mail_from.is_some() {
            return self.reply(reply::XFORWARD_IN_TRANSACTION);
        }
        match xforward::parse(line, &mut self.tx.forwarded) {
            Ok(()) => self.reply(reply::OK),
            Err(refusal) => self.reply(refusal),
        }
    }

    async fn rcpt(&mut self, address: &str) {
        if self.tx.mail_from.is_none() {
            return self.reply(reply::MAIL_BEFORE_RCPT);
        }
        if self.tx.recipients.len() + self.tx.bounces.len() >= self.config().inbound.max_recipients
        {
            return self.reply(reply::TOO_MANY_RECIPIENTS);
        }
        let Ok(mailbox) = MailAddress::parse(address) else {
            return self.reply(reply::BAD_RECIPIENT);
        };
        let domain_served = self.config().mail.serves(mailbox.domain());
        if let Some(id) = domain_served
            .then(|| self.reception.return_paths.queue_id(&mailbox))
            .flatten()
        {
            if !self.tx.bounces.contains(&id) {
                self.tx.bounces.push(id);
            }
            return self.reply(reply::RECIPIENT_OK);
        }
        let jid = BareJid::new(&mailbox.to_string()).ok();
        let registered = match (&jid, domain_served) {
            (Some(jid), true) => match self.reception.store.is_registered(jid).await {
                Ok(known) => known,
                Err(error) => {
                    warn!(error = format!("{error:#}"), "Store unavailable at RCPT.");
                    meters().smtp_refused.store.increment(1);
                    return self.reply(reply::STORE_UNAVAILABLE);
                }
            },
            _ => false,
        };
        let facts = AddressFacts {
            domain_served,
            registered,
        };
        match (rcpt_verdict(self.config().mail.users, facts), jid) {
            (RcptVerdict::Accept, Some(jid)) => {
                let sender = self.tx.mail_from.as_deref().unwrap_or_default();
                match self.reception.store.blocks_sender(&jid, sender).await {
                    Ok(false) => {}
                    Ok(true) => {
                        info!(peer = %self.peer, mail_from = %sender, rcpt = %jid, "Refused a sender the recipient blocked.");
                        meters().smtp_refused.blocked.increment(1);
                        return self.reply(reply::SENDER_BLOCKED);
                    }
                    Err(error) => {
                        warn!(error = format!("{error:#}"), "Store unavailable at RCPT.");
                        meters().smtp_refused.store.increment(1);
                        return self.reply(reply::STORE_UNAVAILABLE);
                    }
                }
                if !self.tx.recipients.contains(&jid) {
                    self.tx.recipients.push(jid);
                }
                self.reply(reply::RECIPIENT_OK);
            }
            (RcptVerdict::RelayDenied, _) => {
                meters().smtp_refused.relay_denied.increment(1);
                self.reply(reply::RELAY_DENIED);
            }
            (RcptVerdict::UnknownUser | RcptVerdict::Accept, _) => {
                meters().smtp_refused.unknown_user.increment(1);
                self.reply(reply::NO_SUCH_USER);
            }
        }
    }

    /// Counts one mail against the client's rate.
    fn count_mail(&self) -> Decision {
        if self
            .config()
            .limits
            .client_exceptions
            .contains(self.peer.ip())
        {
            return Decision::Allow;
        }
        match self.reception.client_mails.lock() {
            Ok(mut limiter) => {
                limiter.set_rate(self.config.limits.client_mails);
                limiter.check(&self.peer.ip(), 1, Instant::now())
            }
            Err(_) => Decision::Allow,
        }
    }
}

/// Drives a whole connection, STARTTLS included.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    reception: Arc<Reception>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = Session::new(
        stream,
        &reception,
        peer,
        false,
        tls.is_some(),
        Progress::default(),
    );
    let ended = session.run(true, &shutdown).await;
    let (plain, progress) = match ended {
        Ok(Ended::Closed) => return,
        Ok(Ended::StartTls(plain, progress)) => (plain, progress),
        Err(error) => {
            debug!(peer = %peer, error = %error, "Connection error.");
            return;
        }
    };
    let Some(acceptor) = tls else { return };
    // Boxed: the TLS state is made only for connections that ask for it.
    Box::pin(secured(
        plain, acceptor, peer, reception, progress, shutdown,
    ))
    .await;
}

/// The session after STARTTLS.
async fn secured<S>(
    plain: S,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: SocketAddr,
    reception: Arc<Reception>,
    progress: Progress,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await;
    let secure = match handshake {
        Ok(Ok(secure)) => secure,
        Ok(Err(error)) => {
            info!(peer = %peer, error = %error, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            info!(peer = %peer, "TLS handshake timed out.");
            return;
        }
    };
    let session = Session::new(secure, &reception, peer, true, true, progress);
    if let Err(error) = session.run(false, &shutdown).await {
        debug!(peer = %peer, error = %error, "Connection error.");
    }
}

#[cfg(test)]
mod tests;
