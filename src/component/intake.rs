//! The intake: what needs the store. XEP-0077 registration, vCards of
//! mail contacts, and chat messages to them, which become queued outgoing
//! mail; from other domains' gateways, XMPP-Mail probes and handoffs;
//! from administrators, ad-hoc commands; from users and their servers,
//! spam feedback.
//! Stanzas are taken in batches, so that the mails of a burst are queued
//! in one transaction.
//!
//! The loop serves every user, so it never awaits another server: whatever
//! must wait on one runs beside it (see `outgoing`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use facteur_policy::limits::Limiter;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza::Stanza;

use super::handoff::{self, Handoffs};
use super::key_command;
use super::keys::{self, KeyRequests};
use super::lookups::Lookups;
use super::outgoing::{Intaken, Outgoing, Prepared};
use super::pep::{PepKeys, Refreshed};
use super::probe::{self, Probes};
use super::{commands, feedback, registration, vcard, LinkHandle};
use crate::config::Live;
use crate::dkim::Signers;
use crate::fetch::Fetcher;
use crate::keys::finder::KeyFinder;
use crate::probe::discover::Discovery;
use crate::reload::Reloader;
use crate::spam::{lists, publish, Listings};
use crate::store::Store;

/// Stanzas taken, at most, per batch.
const BATCH: usize = 64;

pub struct Intake {
    config: Live,
    store: Store,
    link: LinkHandle,
    outgoing: Arc<Outgoing>,
    probes: Probes,
    keys: KeyRequests,
    handoffs: Arc<Handoffs>,
    /// Mails prepared beside the loop, to be queued by it.
    prepared: mpsc::Receiver<Prepared>,
    /// What the `reload` command runs; none where nothing can reload.
    reloader: Option<Reloader>,
    /// Where commands that wait on other servers run.
    tracker: TaskTracker,
    /// Mailbox commands running at once (each may log in somewhere).
    mailbox_commands: Arc<Semaphore>,
    /// Reads users' XEP-0373 PEP keys.
    pep: Arc<PepKeys>,
    /// The spam lists, for the administrators' "Check the spam lists".
    listings: Listings,
}

/// Mailbox commands the gateway runs at once; more are refused with `wait`.
const MAILBOX_COMMANDS: usize = 32;

impl Intake {
    /// An intake answering through `link`; tasks that wait on other
    /// servers run under `tracker`.
    pub fn new(
        config: Live,
        store: Store,
        link: LinkHandle,
        signers: Arc<Signers>,
        fetcher: Fetcher,
        tracker: TaskTracker,
        reloader: Option<Reloader>,
    ) -> Intake {
        let now = config.get();
        let lookups = Lookups::new(now.component.jid.clone().into(), link.clone());
        let (ready, prepared) = mpsc::channel(BATCH * 4);
        let handoffs = Handoffs {
            config: config.clone(),
            store: store.clone(),
            discovery: Discovery {
                own: now.component.jid.clone().into(),
                link: link.clone(),
                step: now.xmpp_mail.step_timeout,
            },
            link: link.clone(),
            tracker: tracker.clone(),
        };
        let finder = match KeyFinder::new(config.clone(), store.clone(), link.clone()) {
            Ok(finder) => Some(Arc::new(finder)),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Recipients' keys will not be looked up elsewhere."
                );
                None
            }
        };
        let pep = Arc::new(PepKeys {
            own: now.component.jid.clone().into(),
            link: link.clone(),
            store: store.clone(),
        });
        let outgoing = Outgoing {
            sender_mails: Mutex::new(Limiter::new(now.limits.sender_mails)),
            config: config.clone(),
            store: store.clone(),
            signers,
            fetcher,
            lookups,
            link: link.clone(),
            tracker: tracker.clone(),
            ready,
            finder,
        };
        Intake {
            probes: Probes::new(now.xmpp_mail.probes),
            keys: KeyRequests::new(&now),
            reloader,
            config,
            store,
            link,
            outgoing: Arc::new(outgoing),
            handoffs: Arc::new(handoffs),
            prepared,
            tracker,
            mailbox_commands: Arc::new(Semaphore::new(MAILBOX_COMMANDS)),
            pep,
            listings: Listings::default(),
        }
    }

    /// The same intake, asking `listings` for "Check the spam lists".
    pub fn with_listings(mut self, listings: Listings) -> Intake {
        self.listings = listings;
        self
    }

    pub async fn run(mut self, mut stanzas: mpsc::Receiver<Stanza>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut ready = Vec::with_capacity(BATCH);
        let daily = PepKeys {
            own: self.pep.own.clone(),
            link: self.link.clone(),
            store: self.store.clone(),
        };
        self.tracker.spawn(daily.run(shutdown.clone()));
        loop {
            // What is waiting is queued in one transaction.
            let open = tokio::select! {
                taken = stanzas.recv_many(&mut batch, BATCH) => taken > 0,
                // Never closed: `outgoing` holds a sender.
                _ = self.prepared.recv_many(&mut ready, BATCH) => true,
                () = shutdown.cancelled() => false,
            };
            if !open {
                return self.finish(ready).await;
            }
            for stanza in batch.drain(..) {
                let config = self.config.get();
                let reply = match stanza {
                    Stanza::Iq(iq) if probe::is_probe(&iq) => Some(Stanza::Iq(
                        self.probes
                            .answer(&config, &self.store, iq, Instant::now())
                            .await,
                    )),
                    // Attaching waits on the user's IMAP server: beside the loop.
                    // Bounded: a flood of them waits its turn here.
                    Stanza::Iq(iq) if commands::is_mailbox_command(&iq) => {
                        match self.mailbox_commands.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let (store, link) = (self.store.clone(), self.link.clone());
                                self.tracker.spawn(async move {
                                    let reply = commands::answer_mailbox(&config, &store, iq).await;
                                    link.send(reply).await;
                                    drop(permit);
                                });
                                None
                            }
                            Err(_) => Some(Stanza::Iq(commands::busy(&iq))),
                        }
                    }
                    Stanza::Iq(iq) if keys::is_keys(&iq) => Some(Stanza::Iq(
                        self.keys
                            .answer(&config, &self.store, iq, Instant::now())
                            .await,
                    )),
                    // Waits on the user's server: beside the loop.
                    Stanza::Iq(iq) if key_command::is_refresh(&iq) => {
                        let (store, link, pep) =
                            (self.store.clone(), self.link.clone(), self.pep.clone());
                        self.tracker.spawn(async move {
                            let reply = key_command::refresh(&config, &store, &pep, iq).await;
                            link.send(reply).await;
                        });
                        None
                    }
                    Stanza::Iq(iq) if publish::is_request(&config, &iq) => {
                        Some(Stanza::Iq(publish::answer(&config, &self.store, iq).await))
                    }
                    Stanza::Iq(iq) if commands::is_command(&iq) => Some(Stanza::Iq(
                        commands::answer(
                            &config,
                            &self.store,
                            self.reloader.as_ref(),
                            &self.listings,
                            iq,
                        )
                        .await,
                    )),
                    Stanza::Iq(iq) if feedback::is_feedback(&iq) => {
                        Some(Stanza::Iq(feedback::answer(&config, &self.store, iq).await))
                    }
                    Stanza::Iq(iq) if vcard::is_request(&iq) => {
                        Some(Stanza::Iq(vcard::answer(&config, &self.store, iq).await))
                    }
                    Stanza::Iq(iq) => {
                        let registering = registration::is_registering(&iq);
                        let answer = registration::answer(&config, &self.store, iq).await;
                        // A new or returning user's PEP key is read now.
                        if let (Some(user), Iq::Result { .. }) = (registering, &answer) {
                            let pep = self.pep.clone();
                            self.tracker.spawn(async move {
                                if let Refreshed::Published(key) = pep.refresh(&user).await {
                                    info!(user = %user, fingerprint = %key.fingerprint, "PEP key published at registration.");
                                }
                            });
                        }
                        Some(Stanza::Iq(answer))
                    }
                    Stanza::Message(message) if lists::is_event(&message) => {
                        lists::take_event(&config, &self.store, &message).await;
                        None
                    }
                    Stanza::Message(message) if feedback::is_forwarded(&message) => {
                        feedback::take(&config, &self.store, &message).await;
                        None
                    }
                    Stanza::Message(message) if handoff::is_handoff(&config, &message) => {
                        self.handoffs.take(message).await.map(Stanza::Message)
                    }
                    Stanza::Message(message) => match self.outgoing.message(message).await {
                        Intaken::Answer(reply) => reply.map(Stanza::Message),
                        Intaken::Ready(prepared) => {
                            ready.push(prepared);
                            None
                        }
                    },
                    Stanza::Presence(_) => None,
                };
                if let Some(reply) = reply {
                    self.link.send(reply).await;
                }
            }
            self.queue(std::mem::take(&mut ready)).await;
        }
    }

    async fn queue(&self, ready: Vec<Prepared>) {
        for reply in self.outgoing.queue(ready).await.into_iter().flatten() {
            self.link.send(reply).await;
        }
    }

    /// Queues the mails prepared beside the loop that it has not taken
    /// yet; tasks still preparing one queue it themselves.
    async fn finish(mut self, mut ready: Vec<Prepared>) {
        self.prepared.close();
        while let Ok(prepared) = self.prepared.try_recv() {
            ready.push(prepared);
        }
        self.queue(ready).await;
    }
}
