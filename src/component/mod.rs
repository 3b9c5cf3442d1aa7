//! The XEP-0114 link to the XMPP server: a supervisor that connects,
//! keeps the link alive with pings, notices when it dies and reconnects
//! with capped, jittered back-off.
//!
//! A stanza handed to the server counts as delivered only once a later IQ
//! on the same stream has been answered: the server handles a stream in
//! order, so by then it has routed (or bounced) everything sent before.
//!
//! What comes in over the link is answered at once when it needs no store
//! (`answers`), else handed to the `intake`, which keeps one file per
//! protocol role: `registration`, `vcard`, `outgoing` mail and the
//! `lookups` it makes at users' servers, and for other domains' gateways
//! XMPP-Mail `probe` answers and `handoff`s; for anyone, the users'
//! OpenPGP `keys`; ad-hoc `commands`: its administrators', and
//! "OpenPGP key" for users (`key_command`); users' spam `feedback` and
//! blocks their server forwards. `listing` checks that the served domains list the
//! gateway. Stanza errors are built in `reply`.
//! A new role gets a file of its own beside these.

mod acks;
mod answers;
mod commands;
mod feedback;
pub mod handoff;
pub mod handover;
pub mod intake;
mod key_command;
mod keys;
pub mod listing;
mod lookups;
mod outgoing;
pub mod pep;
pub mod privilege;
mod probe;
mod registration;
pub mod reply;
mod stream;
#[cfg(test)]
mod tests;
mod vcard;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamElementError, XmppStreamElement,
};
use tracing::{debug, error, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ping::Ping;
use xmpp_parsers::stanza::Stanza;

use crate::config::Live;
use crate::telemetry::meters;
use acks::Acks;
pub use acks::Refusal;
use handover::Handover;
pub use privilege::Privileges;
use stream::{LinkStream, LoginError};

/// Commands taken, at most, per write to the stream.
const COMMAND_BATCH: usize = 256;

/// What the rest of the daemon asks of the link.
enum Command {
    /// Send a message and report once the server has surely handled it.
    Deliver {
        message: Message,
        done: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Send a stanza, no report.
    Send(Stanza),
    /// Send an IQ request and hand back its answer.
    Request { iq: Iq, done: oneshot::Sender<Iq> },
}

/// The daemon's side of the link; cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
    up: watch::Receiver<bool>,
    privileges: watch::Receiver<Privileges>,
}

/// Why a delivery has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Undelivered {
    /// The server refused the stanza.
    Refused(Refusal),
    /// The link went down before the server confirmed it.
    LinkLost,
}

impl LinkHandle {
    /// Sends `message`; the returned future resolves once the server has
    /// routed it, or refused it, or the link went down first.
    pub async fn deliver(
        &self,
        message: Message,
    ) -> impl std::future::Future<Output = Result<(), Undelivered>> {
        let (done, answer) = oneshot::channel();
        let sent = self.commands.send(Command::Deliver { message, done }).await;
        async move {
            if sent.is_err() {
                return Err(Undelivered::LinkLost);
            }
            match answer.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(refusal)) => Err(Undelivered::Refused(refusal)),
                Err(_) => Err(Undelivered::LinkLost),
            }
        }
    }

    /// Sends a stanza if the link is up; replies to a user are lost with
    /// the stream they answer anyway.
    pub async fn send(&self, stanza: impl Into<Stanza>) {
        let _ = self.commands.send(Command::Send(stanza.into())).await;
    }

    /// Sends an IQ request from the gateway and waits for the answer
    /// (result or error), at most `wait`. `None` when there is none.
    pub async fn request(&self, iq: Iq, wait: Duration) -> Option<Iq> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Request { iq, done })
            .await
            .ok()?;
        tokio::time::timeout(wait, answer).await.ok()?.ok()
    }

    /// Watches whether the link is up.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.up.clone()
    }

    /// What the XMPP server lets the gateway do, as announced on the
    /// current stream (nothing while the link is down).
    pub fn privileges(&self) -> Privileges {
        self.privileges.borrow().clone()
    }

    /// Watches what the XMPP server lets the gateway do.
    pub fn watch_privileges(&self) -> watch::Receiver<Privileges> {
        self.privileges.clone()
    }
}

/// A stanza error that came back for a message after the server had
/// confirmed it: from another domain, which answers later. The message's
/// id, and why.
pub type LateError = (String, Refusal);

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

pub struct Link {
    config: Live,
    commands: mpsc::Receiver<Command>,
    up: watch::Sender<bool>,
    privileges: watch::Sender<Privileges>,
    intake: mpsc::Sender<Stanza>,
    late_errors: mpsc::Sender<LateError>,
    handover: Option<Handover>,
}

impl Link {
    /// The same link, one of several instances bound to the component
    /// domain: its IQ ids name it, answers naming another instance go to
    /// that one through `handover`, and answers for it come back from
    /// there.
    pub fn with_handover(mut self, handover: Handover) -> Link {
        self.handover = Some(handover);
        self
    }

    fn instance(&self) -> Option<&str> {
        self.handover.as_ref().map(|h| h.instance.as_str())
    }

    /// A link whose incoming messages and registrations go to `intake`,
    /// and errors for messages it confirmed already to `late_errors`.
    pub fn new(
        config: Live,
        intake: mpsc::Sender<Stanza>,
        late_errors: mpsc::Sender<LateError>,
    ) -> (Link, LinkHandle) {
        let (tx, rx) = mpsc::channel(1024);
        let (up_tx, up_rx) = watch::channel(false);
        let (privileges_tx, privileges_rx) = watch::channel(Privileges::default());
        let link = Link {
            config,
            commands: rx,
            up: up_tx,
            privileges: privileges_tx,
            intake,
            late_errors,
            handover: None,
        };
        (
            link,
            LinkHandle {
                commands: tx,
                up: up_rx,
                privileges: privileges_rx,
            },
        )
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let component = self.config.get().component.clone();
        let mut failures: u32 = 0;
        let mut was_up = false;
        // Standing by while another instance holds the link: said once.
        let mut standing_by = false;
        loop {
            let connecting = stream::connect(&component);
            let attempt = tokio::select! {
                attempt = tokio::time::timeout(Duration::from_secs(30), connecting) => attempt,
                () = shutdown.cancelled() => return,
            };
            match attempt {
                Ok(Ok(stream)) => {
                    failures = 0;
                    standing_by = false;
                    info!(server = %component.server, jid = %component.jid, "Component link up.");
                    self.up.send_replace(true);
                    meters().link_up.set(1.0);
                    if was_up {
                        meters().reconnects.increment(1);
                    }
                    was_up = true;
                    let end = self.session(stream, &shutdown).await;
                    self.up.send_replace(false);
                    meters().link_up.set(0.0);
                    // Granted again, or not, on the next stream.
                    self.privileges.send_replace(Privileges::default());
                    match end {
                        SessionEnd::Shutdown => return,
                        SessionEnd::Lost(reason) => warn!(reason, "Component link lost."),
                    }
                }
                Ok(Err(LoginError::Refused(reason))) => error!(
                    server = %component.server,
                    jid = %component.jid,
                    reason,
                    "The XMPP server refused the component; check component.jid, component.secret and the server's component_secret."
                ),
                Ok(Err(LoginError::Taken(reason))) if !standing_by => {
                    standing_by = true;
                    info!(
                        server = %component.server,
                        jid = %component.jid,
                        reason,
                        retry_max_s = component.reconnect_max.as_secs(),
                        "Another connection holds the component; standing by to take over the link when it goes."
                    );
                }
                Ok(Err(LoginError::Taken(reason))) => {
                    debug!(reason, "The component is still held by another connection.")
                }
                Ok(Err(LoginError::Failed(e))) => {
                    warn!(server = %component.server, error = e, "Component connection failed.")
                }
                Err(_) => warn!(server = %component.server, "Component connection timed out."),
            }
            failures = failures.saturating_add(1);
            let wait = reconnect_wait(failures, component.reconnect_max, rand::rng().random());
            debug!(
                wait_ms = wait.as_millis() as u64,
                "Waiting before reconnecting."
            );
            if !self.idle(wait, &shutdown).await {
                return;
            }
        }
    }

    /// Waits while the link is down, refusing deliveries at once.
    /// Returns false on shutdown.
    async fn idle(&mut self, wait: Duration, shutdown: &CancellationToken) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return true,
                () = shutdown.cancelled() => return false,
                command = self.commands.recv() => match command {
                    // Dropping `done` reports the link as lost.
                    Some(_) => {}
                    None => return false,
                },
            }
        }
    }

    async fn session(
        &mut self,
        mut stream: LinkStream,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let own = self.config.get().component.jid.clone();
        let server = match self
            .config
            .get()
            .mail
            .domains
            .first()
            .map(|d| jid::Jid::new(d))
        {
            Some(Ok(server)) => server,
            _ => return SessionEnd::Lost("no served domain to ping".into()),
        };
        let interval = self.config.get().component.ping_interval;
        let mut acks = Acks::for_instance(self.instance());
        let mut requests: HashMap<String, oneshot::Sender<Iq>> = HashMap::new();
        let mut tick = tokio::time::interval(interval);
        tick.reset();
        let mut batch = Vec::with_capacity(COMMAND_BATCH);
        loop {
            let mut outgoing: Vec<Stanza> = Vec::new();
            tokio::select! {
                () = shutdown.cancelled() => {
                    stream::close(&mut stream).await;
                    return SessionEnd::Shutdown;
                }
                element = stream.next() => match element {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)))) => {
                        self.incoming(stanza, &mut acks, &mut requests, &mut outgoing);
                    }
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                        return SessionEnd::Lost(e.to_string());
                    }
                    Some(Ok(FallibleStreamElement::Ok(other))) => debug!(element = ?other, "Ignoring a stream element."),
                    // One bad stanza must not cost the link: answer it, go on.
                    Some(Ok(FallibleStreamElement::Err(StreamElementError::InvalidStanza { name, header, error, .. }))) => {
                        info!(from = ?header.from, kind = %name, error = %error, "Invalid stanza received.");
                        outgoing.extend(reply::invalid_stanza(&name.to_string(), &header, &error.to_string()));
                    }
                    Some(Ok(FallibleStreamElement::Err(e))) => info!(error = %e, "Invalid element received."),
                    Some(Err(ReadError::ParseError(e))) => info!(error = %e, "Unparsable element received."),
                    Some(Err(ReadError::SoftTimeout)) => acks.want_keepalive(),
                    Some(Err(ReadError::HardError(e))) => return SessionEnd::Lost(format!("read failed: {e}")),
                    Some(Err(ReadError::StreamFooterReceived)) | None => {
                        return SessionEnd::Lost("closed by the server".into());
                    }
                },
                // Answers to this instance that reached another one.
                Some(answer) = returned(&mut self.handover) => {
                    self.incoming(Stanza::Iq(answer), &mut acks, &mut requests, &mut outgoing);
                }
                // Take what else is waiting, to confirm it all with one ping.
                taken = self.commands.recv_many(&mut batch, COMMAND_BATCH) => {
                    if taken == 0 {
                        return SessionEnd::Shutdown;
                    }
                    for command in batch.drain(..) {
                        match command {
                            Command::Deliver { message, done } => {
                                let id = message.id.as_ref().map(|id| id.0.clone()).unwrap_or_default();
                                acks.sent(id, done);
                                outgoing.push(message.into());
                            }
                            Command::Send(stanza) => outgoing.push(stanza),
                            Command::Request { mut iq, done } => {
                                let id = handover::tagged(
                                    &format!("facteur-iq-{}", rand::rng().random::<u64>()),
                                    self.handover.as_ref().map(|h| h.instance.as_str()),
                                );
                                *iq.id_mut() = id.clone();
                                // Answers that never come are forgotten with the oldest.
                                if requests.len() >= 1024 {
                                    requests.retain(|_, waiting| !waiting.is_closed());
                                }
                                requests.insert(id, done);
                                outgoing.push(iq.into());
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if acks.ping_overdue(Instant::now(), interval * 2) {
                        match acks.ping_again(Instant::now()) {
                            Some(id) => {
                                debug!(id, "No answer to ping yet; pinging again.");
                                outgoing.push(Iq::from_get(id, Ping)
                                    .with_from(own.clone().into())
                                    .with_to(server.clone())
                                    .into());
                            }
                            None => return SessionEnd::Lost("no answer to ping".into()),
                        }
                    }
                    acks.want_keepalive();
                }
            }
            if let Some(ping_id) = acks.ping_to_send(Instant::now()) {
                let ping = Iq::from_get(ping_id, Ping)
                    .with_from(own.clone().into())
                    .with_to(server.clone());
                outgoing.push(ping.into());
            }
            if let Err(e) = stream::send_all(&mut stream, outgoing).await {
                return SessionEnd::Lost(format!("write failed: {e}"));
            }
        }
    }

    fn incoming(
        &self,
        stanza: Stanza,
        acks: &mut Acks,
        requests: &mut HashMap<String, oneshot::Sender<Iq>>,
        outgoing: &mut Vec<Stanza>,
    ) {
        match stanza {
            Stanza::Iq(iq @ (Iq::Result { .. } | Iq::Error { .. })) => {
                let id = iq.id().to_owned();
                if acks.answered(&id) {
                    return;
                }
                match requests.remove(&id) {
                    Some(waiting) => {
                        let _ = waiting.send(iq);
                    }
                    None => {
                        match (&self.handover, handover::owner(&id)) {
                            (Some(handover), Some(owner)) if owner != handover.instance => {
                                if handover.strays.try_send((owner.to_owned(), iq)).is_err() {
                                    warn!(id, "IQ answer for another instance dropped: its queue is full.");
                                }
                            }
                            _ => debug!(id, "IQ answer matches nothing sent."),
                        }
                    }
                }
            }
            Stanza::Iq(iq) => match answers::answer_iq(&self.config.get(), iq) {
                answers::IqRoute::Reply(reply) => outgoing.push(reply.into()),
                answers::IqRoute::Intake(iq) => self.to_intake(Stanza::Iq(iq), outgoing),
            },
            Stanza::Message(message) if message.type_ == MessageType::Error => {
                let id = message
                    .id
                    .as_ref()
                    .map(|id| id.0.as_str())
                    .unwrap_or_default();
                let refusal = Refusal::from_error_message(&message);
                if !acks.refused(id, refusal.clone()) {
                    debug!(id, error = %refusal, "Error for a message no longer tracked.");
                    if self.late_errors.try_send((id.to_owned(), refusal)).is_err() {
                        warn!(id, "Late stanza error dropped: its queue is full.");
                    }
                }
            }
            Stanza::Message(message) => {
                let current = self.privileges.borrow().clone();
                match privilege::announcement(&self.config.get(), &current, &message) {
                    Some(granted) => {
                        info!(
                            from = ?message.from,
                            outgoing_messages = ?message.from.as_ref().and_then(|f| granted.outgoing_messages(f.domain().as_str())),
                            blocklist_reads = message.from.as_ref().is_some_and(|f| granted.blocklist_reads(f.domain().as_str())),
                            "Privileges announced."
                        );
                        self.privileges.send_replace(granted);
                    }
                    None => self.to_intake(Stanza::Message(message), outgoing),
                }
            }
            Stanza::Presence(presence) => {
                if let Some(reply) = answers::answer_presence(&self.config.get(), presence) {
                    outgoing.push(reply.into());
                }
            }
        }
    }

    /// Hands a stanza to the intake task; when it is swamped, the sender is
    /// asked to wait instead of the link blocking.
    fn to_intake(&self, stanza: Stanza, outgoing: &mut Vec<Stanza>) {
        match self.intake.try_send(stanza) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(stanza))
            | Err(mpsc::error::TrySendError::Closed(stanza)) => {
                warn!("Intake queue full; asking the sender to retry.");
                if let Some(reply) = reply::busy(stanza) {
                    outgoing.push(reply);
                }
            }
        }
    }
}

/// The next answer another instance handed over; never, without one.
async fn returned(handover: &mut Option<Handover>) -> Option<Iq> {
    match handover {
        Some(handover) => handover.returned.recv().await,
        None => std::future::pending().await,
    }
}

/// Reconnection wait: doubles from one second up to `max`, with up to a
/// quarter of jitter so that restarts do not synchronise.
fn reconnect_wait(failures: u32, max: Duration, jitter: f64) -> Duration {
    let schedule = facteur_policy::retry::RetrySchedule {
        initial: Duration::from_secs(1).min(max),
        max,
        lifetime: Duration::MAX,
    };
    let base = schedule.backoff(failures);
    base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}
