//! One supervised task per attached mailbox: log in, take what is new in
//! each followed folder (by UID, each message queued for the user in the
//! transaction that advances the folder), then wait for more: IDLE
//! (RFC 2177) where the server has it, re-issued before the 29 minutes
//! after which a server may drop the connection, or a poll otherwise.
//!
//! A lost connection comes back after a jittered, capped back-off; three
//! refused logins in a row pause the mailbox and tell the user once. The
//! supervisor reads the store every few seconds, so that a mailbox
//! attached, attached again, paused or detached (from the command line
//! too) is followed, restarted or dropped without a restart. A mailbox
//! that waits holds one connection and one sleeping task, nothing more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::UnsolicitedResponse;
use jid::BareJid;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::connect::{login_mailbox, server_words, ImapSession, LoginError};
use super::folders::{self, Special};
use super::new_messages;
use super::seal::SealKey;
use crate::config::Live;
use crate::store::{
    ImapMailbox, InboundMail, MailboxState, Millis, Notice, SeenToSet, Store, Taken,
};

/// How often the supervisor looks for mailboxes attached, changed or
/// detached.
const REFRESH: Duration = Duration::from_secs(2);
/// IDLE is ended and issued again after this long (RFC 2177: servers
/// may log a client out after 30 minutes).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Consecutive refused logins that pause a mailbox.
pub const PAUSE_AFTER: u32 = 3;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long one command may take before the connection counts as lost.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What every follower needs.
pub struct Followers {
    pub store: Store,
    pub key: SealKey,
    pub config: Live,
    /// The gateway, the sender of notices.
    pub gateway: BareJid,
}

impl Followers {
    /// Follows every active mailbox until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let tracker = TaskTracker::new();
        // The running followers, by mailbox id, with the version they run.
        let mut running: HashMap<i64, (Millis, CancellationToken)> = HashMap::new();
        let mut seen: Option<(i64, i64, i64)> = None;
        loop {
            match this.store.imap_fingerprint().await {
                Ok(now) if seen == Some(now) => {}
                Ok(now) => match this.store.imap_mailboxes(None).await {
                    Ok(mailboxes) => {
                        seen = Some(now);
                        this.reconcile(mailboxes, &mut running, &tracker, &shutdown);
                    }
                    Err(e) => warn!(
                        error = format!("{e:#}"),
                        "Store unavailable; mailboxes not read."
                    ),
                },
                Err(e) => warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; mailboxes not read."
                ),
            }
            running.retain(|_, (_, cancel)| !cancel.is_cancelled());
            tokio::select! {
                () = tokio::time::sleep(REFRESH) => {}
                () = shutdown.cancelled() => break,
            }
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Starts, restarts and stops followers to match `mailboxes`.
    fn reconcile(
        self: &Arc<Self>,
        mailboxes: Vec<ImapMailbox>,
        running: &mut HashMap<i64, (Millis, CancellationToken)>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let active: HashMap<i64, ImapMailbox> = mailboxes
            .into_iter()
            .filter(|m| m.state == MailboxState::Active)
            .map(|m| (m.id, m))
            .collect();
        running.retain(|id, (version, cancel)| {
            let keep = active.get(id).is_some_and(|m| m.updated_at == *version);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for (id, mailbox) in active {
            if running.contains_key(&id) {
                continue;
            }
            let cancel = shutdown.child_token();
            running.insert(id, (mailbox.updated_at, cancel.clone()));
            tracker.spawn(self.clone().follow(mailbox, cancel));
        }
    }

    /// Follows one mailbox until `cancel`, or until it is paused.
    async fn follow(self: Arc<Self>, mailbox: ImapMailbox, cancel: CancellationToken) {
        let mut backoff = BACKOFF_FIRST;
        let mut last_problem = String::new();
        info!(mailbox = mailbox.id, user = %mailbox.user, host = %mailbox.host, "Following a mailbox.");
        loop {
            let outcome = tokio::select! {
                outcome = self.connected(&mailbox, &mut backoff, &mut last_problem) => outcome,
                () = cancel.cancelled() => return,
            };
            match outcome {
                Ok(()) => return,
                Err(problem) => {
                    if problem != last_problem {
                        warn!(mailbox = mailbox.id, user = %mailbox.user, host = %mailbox.host, problem = %problem, "Mailbox unreachable; trying again.");
                        last_problem = problem;
                    }
                }
            }
            let wait = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// One connection: logs in, takes what is new, waits for more, again
    /// and again. `Ok` when the mailbox is paused; the problem otherwise.
    async fn connected(
        &self,
        mailbox: &ImapMailbox,
        backoff: &mut Duration,
        last_problem: &mut String,
    ) -> Result<(), String> {
        let login = login_mailbox(&self.key, mailbox)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let mut session = match login {
            Ok(session) => session,
            Err(LoginError::Refused(words)) => return self.refused(mailbox, &words).await,
            Err(LoginError::Failed(why)) => return Err(why),
        };
        if mailbox.auth_failures > 0 || !last_problem.is_empty() {
            self.store
                .imap_login_ok(mailbox.id)
                .await
                .map_err(|e| format!("{e:#}"))?;
        }
        if !last_problem.is_empty() {
            info!(mailbox = mailbox.id, user = %mailbox.user, host = %mailbox.host, "Mailbox reachable again.");
            last_problem.clear();
        }
        let config = self.config.get();
        let idle = config.imap.idle && timed(session.capabilities()).await?.has_str("IDLE");
        let poll = config.imap.poll_interval;
        debug!(mailbox = mailbox.id, idle, "Logged in.");
        // Folders the server said it does not have (deleted, renamed):
        // logged once, looked for again each round.
        let mut missing: HashSet<String> = HashSet::new();
        let wake = self.store.imap_waker(mailbox.id);
        loop {
            // The first folder there is, and the highest UID known in it.
            let mut first: Option<(&str, u32)> = None;
            for folder in &mailbox.folders {
                match self.take_new(&mut session, mailbox, folder).await? {
                    Ok(last) => {
                        if missing.remove(folder) {
                            info!(mailbox = mailbox.id, folder = %folder, "Folder there again.");
                        }
                        first.get_or_insert((folder, last));
                    }
                    Err(words) => {
                        if missing.insert(folder.clone()) {
                            warn!(mailbox = mailbox.id, user = %mailbox.user, host = %mailbox.host, folder = %folder, server_said = %words, "Folder unavailable; the others are followed.");
                        }
                    }
                }
            }
            self.set_seen(&mut session, mailbox).await?;
            self.move_junk(&mut session, mailbox).await?;
            *backoff = BACKOFF_FIRST;
            session = if let (true, Some((first, taken))) = (idle, first) {
                // Several folders: the others are looked at between IDLEs.
                let renew = if mailbox.folders.len() > 1 {
                    poll.min(IDLE_RENEW)
                } else {
                    IDLE_RENEW
                };
                // What came between the fetch and now: IDLE would not
                // tell of it.
                while session.unsolicited_responses.try_recv().is_ok() {}
                let selected = timed(session.examine(first)).await?;
                if selected
                    .uid_next
                    .is_some_and(|next| next > taken.saturating_add(1))
                {
                    continue;
                }
                wait_idle(session, renew, &wake).await?
            } else {
                // A NOOP now and then keeps a long wait's connection up
                // (servers may close one silent for 30 minutes).
                let mut left = poll.mul_f64(rand::rng().random_range(0.9..=1.1));
                while !left.is_zero() {
                    let step = left.min(IDLE_RENEW);
                    tokio::select! {
                        () = tokio::time::sleep(step) => {}
                        // Flags to set: the wait is over.
                        () = wake.notified() => break,
                    }
                    left = left.saturating_sub(step);
                    if !left.is_zero() {
                        timed(session.noop()).await?;
                    }
                }
                session
            };
        }
    }

    /// A refused login: counted, and the third in a row pauses the
    /// mailbox with one notice to the user.
    async fn refused(&self, mailbox: &ImapMailbox, words: &str) -> Result<(), String> {
        let reason = format!("the server refused the login {PAUSE_AFTER} times in a row: {words}");
        let notice = Notice {
            recipient: mailbox.user.clone(),
            from: self.gateway.clone(),
            subject: "Mailbox paused".into(),
            body: format!(
                "Mail from the mailbox {} at {} no longer comes here: {reason}\n\
                 If its password changed, attach the mailbox again with the new one \
                 (the command \"Attach a mailbox\" of {}); until then nothing is fetched from it.",
                mailbox.username, mailbox.host, self.gateway
            ),
        };
        let (count, paused) = self
            .store
            .imap_login_refused(mailbox.id, PAUSE_AFTER, &reason, &notice)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if paused {
            warn!(mailbox = mailbox.id, user = %mailbox.user, host = %mailbox.host, refused = count, server_said = %words, "Mailbox paused: login refused; the user is told.");
            return Ok(());
        }
        Err(format!("login refused ({count} in a row): {words}"))
    }

    /// Sets \Seen on the messages the user read here, folder by folder,
    /// where the folder's UIDVALIDITY is still the one they were taken
    /// under (under another, their UIDs name nothing any more). `Err`
    /// when the connection failed.
    async fn set_seen(
        &self,
        session: &mut ImapSession,
        mailbox: &ImapMailbox,
    ) -> Result<(), String> {
        let err = |e: anyhow::Error| format!("{e:#}");
        let wanted = self.store.imap_seen_to_set(mailbox.id).await.map_err(err)?;
        for (folder, validity, messages) in by_folder(&wanted) {
            let done: Vec<String> = messages.iter().map(|m| m.stanza_id.clone()).collect();
            if select_taken(session, mailbox.id, folder, validity, false, &SEEN_UNDONE).await? {
                let uids = uid_set(&messages);
                let stored = async {
                    use futures_util::TryStreamExt;
                    session
                        .uid_store(&uids, "+FLAGS.SILENT (\\Seen)")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                };
                timed(stored).await?;
                info!(mailbox = mailbox.id, user = %mailbox.user, folder, count = done.len(), "Marked seen on the server.");
            }
            self.store
                .imap_seen_set(mailbox.id, &done)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Moves the messages the user reported as spam to the Junk folder
    /// (SPECIAL-USE `\Junk`, else "Junk", created if missing): MOVE (RFC
    /// 6851) where the server has it, else COPY, `\Deleted` and UID
    /// EXPUNGE (RFC 4315; without UIDPLUS the copy stays marked deleted,
    /// for the user's client to expunge), folder by folder, where the
    /// folder's UIDVALIDITY is still the one they were taken under. `Err`
    /// when the connection failed.
    async fn move_junk(
        &self,
        session: &mut ImapSession,
        mailbox: &ImapMailbox,
    ) -> Result<(), String> {
        let err = |e: anyhow::Error| format!("{e:#}");
        let wanted = self
            .store
            .imap_junk_to_move(mailbox.id)
            .await
            .map_err(err)?;
        if wanted.is_empty() {
            return Ok(());
        }
        let junk = timed_any(folders::find(session, Special::Junk)).await?;
        let capabilities = timed(session.capabilities()).await?;
        let can_move = capabilities.has_str("MOVE");
        let uidplus = capabilities.has_str("UIDPLUS");
        for (folder, validity, messages) in by_folder(&wanted) {
            let done: Vec<String> = messages.iter().map(|m| m.stanza_id.clone()).collect();
            let in_junk = folder == junk;
            if select_taken(session, mailbox.id, folder, validity, in_junk, &JUNK_UNDONE).await? {
                let uids = uid_set(&messages);
                let mut moved = timed(transfer(session, &uids, &junk, can_move, uidplus)).await;
                if let Err(first) = &moved {
                    // No such folder: created, then tried once more.
                    debug!(mailbox = mailbox.id, junk = %junk, error = %first, "Creating the Junk folder.");
                    let _ = timed(session.create(&junk)).await;
                    moved = timed(transfer(session, &uids, &junk, can_move, uidplus)).await;
                }
                match moved {
                    Ok(()) => {
                        info!(mailbox = mailbox.id, user = %mailbox.user, folder, junk = %junk, count = done.len(), "Moved to Junk on the server.");
                    }
                    Err(words) => {
                        warn!(mailbox = mailbox.id, folder, junk = %junk, server_said = %words, "Mail reported as spam not moved to Junk.");
                    }
                }
            }
            self.store
                .imap_junk_moved(mailbox.id, &done)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Takes the messages of `folder` above the highest UID taken;
    /// returns the highest UID it knows of now, or the server's words
    /// when it has no such folder. `Err` when the connection failed.
    async fn take_new(
        &self,
        session: &mut ImapSession,
        mailbox: &ImapMailbox,
        folder: &str,
    ) -> Result<Result<u32, String>, String> {
        let err = |e: anyhow::Error| format!("{e:#}");
        let selected = match refusable(session.examine(folder)).await? {
            Ok(selected) => selected,
            Err(words) => return Ok(Err(words)),
        };
        let Some(mut state) = self
            .store
            .imap_folders(mailbox.id)
            .await
            .map_err(err)?
            .into_iter()
            .find(|f| f.name == folder)
        else {
            return Ok(Ok(0));
        };
        let validity = selected.uid_validity.unwrap_or(0);
        if validity != state.uid_validity {
            info!(
                mailbox = mailbox.id,
                folder,
                old = state.uid_validity,
                new = validity,
                after = state.last_date.0,
                "UIDVALIDITY changed: taking only the mail that arrived after the latest taken."
            );
            self.store
                .imap_resync(mailbox.id, folder, validity)
                .await
                .map_err(err)?;
            state.since_date = state.last_date;
            state.last_uid = 0;
        }
        let found = timed_any(new_messages(session, state.last_uid)).await?;
        let max_size = self.config.get().inbound.max_message_size;
        let mut last = state.last_uid;
        for (uid, date, size) in found {
            last = last.max(uid);
            let date = Millis(date);
            if state.since_date.0 > 0 && date <= state.since_date {
                self.store
                    .imap_take(mailbox.id, folder, validity, uid, date, Taken::Skip)
                    .await
                    .map_err(err)?;
                continue;
            }
            if u64::from(size) > max_size as u64 {
                let notice = Notice {
                    recipient: mailbox.user.clone(),
                    from: self.gateway.clone(),
                    subject: "Mail too large".into(),
                    body: format!(
                        "A mail of {size} bytes in {folder} of {} at {} is over the limit of \
                         {max_size} bytes; it was not fetched. Read it with a mail client.",
                        mailbox.username, mailbox.host
                    ),
                };
                info!(
                    mailbox = mailbox.id,
                    folder, uid, size, "Mail over the size limit; the user is told."
                );
                self.store
                    .imap_take(
                        mailbox.id,
                        folder,
                        validity,
                        uid,
                        date,
                        Taken::Notice(&notice),
                    )
                    .await
                    .map_err(err)?;
                continue;
            }
            let raw = timed_any(fetch_raw(session, uid)).await?;
            let Some(raw) = raw else {
                // Expunged meanwhile, or a server that sends no body:
                // passed over, so that it is not asked for forever.
                warn!(
                    mailbox = mailbox.id,
                    folder, uid, "Message gone or without a body; passed over."
                );
                self.store
                    .imap_take(mailbox.id, folder, validity, uid, date, Taken::Skip)
                    .await
                    .map_err(err)?;
                continue;
            };
            let (mail, message_id) = imap_mail(mailbox, raw);
            if self
                .store
                .imap_take(
                    mailbox.id,
                    folder,
                    validity,
                    uid,
                    date,
                    Taken::Mail(&mail, message_id.as_deref()),
                )
                .await
                .map_err(err)?
            {
                info!(mailbox = mailbox.id, user = %mailbox.user, folder, uid, mail_from = %mail.mail_from, size = mail.raw.len(), "Took mail from IMAP.");
            }
        }
        if state.since_date.0 > 0 {
            self.store
                .imap_caught_up(mailbox.id, folder, validity, last)
                .await
                .map_err(err)?;
        }
        // Every UID below UIDNEXT as it was before the fetch was fetched
        // (or expunged): UIDs are not dense.
        Ok(Ok(
            last.max(selected.uid_next.unwrap_or(1).saturating_sub(1))
        ))
    }
}

/// What is logged when messages taken from a folder are let go with
/// nothing done on the server.
struct Undone {
    /// The folder is unavailable (the server said NO).
    unavailable: &'static str,
    /// Its UIDVALIDITY changed, or the work is done there already.
    changed: &'static str,
}

const SEEN_UNDONE: Undone = Undone {
    unavailable: "Folder unavailable; messages read here not marked seen there.",
    changed: "UIDVALIDITY changed: messages read here not marked seen there.",
};

const JUNK_UNDONE: Undone = Undone {
    unavailable: "Folder unavailable; mail reported as spam not moved to Junk.",
    changed: "Mail reported as spam is gone from its folder or in Junk already.",
};

/// Selects `folder`, whose messages were taken under `validity`: `true`
/// when they can be worked on there; `false`, logged with `undone`'s
/// words, when the folder is unavailable, its UIDVALIDITY changed (their
/// UIDs name nothing any more) or `done_there`. `Err` when the connection
/// failed.
async fn select_taken(
    session: &mut ImapSession,
    mailbox: i64,
    folder: &str,
    validity: u32,
    done_there: bool,
    undone: &Undone,
) -> Result<bool, String> {
    match refusable(session.select(folder)).await? {
        Err(words) => {
            warn!(mailbox, folder, server_said = %words, "{}", undone.unavailable);
            Ok(false)
        }
        Ok(selected) if selected.uid_validity.unwrap_or(0) != validity || done_there => {
            info!(mailbox, folder, "{}", undone.changed);
            Ok(false)
        }
        Ok(_) => Ok(true),
    }
}

/// Messages (in folder order) by folder and UIDVALIDITY.
fn by_folder(wanted: &[SeenToSet]) -> Vec<(&str, u32, Vec<&SeenToSet>)> {
    let mut folders: Vec<(&str, u32, Vec<&SeenToSet>)> = Vec::new();
    for message in wanted {
        match folders.last_mut() {
            Some((folder, validity, messages))
                if *folder == message.folder && *validity == message.uid_validity =>
            {
                messages.push(message);
            }
            _ => folders.push((&message.folder, message.uid_validity, vec![message])),
        }
    }
    folders
}

/// The UIDs of `messages`, as a UID set.
fn uid_set(messages: &[&SeenToSet]) -> String {
    messages
        .iter()
        .map(|m| m.uid.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Moves messages `uids` of the selected folder to `junk`: MOVE, else
/// COPY, `\Deleted` and (with UIDPLUS) UID EXPUNGE of those only.
async fn transfer(
    session: &mut ImapSession,
    uids: &str,
    junk: &str,
    can_move: bool,
    uidplus: bool,
) -> async_imap::error::Result<()> {
    use futures_util::TryStreamExt;
    if can_move {
        return session.uid_mv(uids, junk).await;
    }
    session.uid_copy(uids, junk).await?;
    session
        .uid_store(uids, "+FLAGS.SILENT (\\Deleted)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    if uidplus {
        session
            .uid_expunge(uids)
            .await?
            .try_collect::<Vec<_>>()
            .await?;
    }
    Ok(())
}

/// Message `raw` of `mailbox`, to be relayed to its user, and its
/// Message-ID (without angle brackets), which the user's client knows
/// the mail by.
pub(super) fn imap_mail(mailbox: &ImapMailbox, raw: Vec<u8>) -> (InboundMail, Option<String>) {
    let (mail_from, message_id) = sender_and_id(&raw);
    let mail = InboundMail {
        mail_from,
        client_ip: format!("imap:{}", mailbox.host),
        raw,
        recipients: vec![mailbox.user.clone()],
        auth: String::new(),
        warning: String::new(),
        spam: Default::default(),
    };
    (mail, message_id)
}

/// The address in From, for logs and as the sender of last resort, and
/// the Message-ID.
fn sender_and_id(raw: &[u8]) -> (String, Option<String>) {
    let Some(headers) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return (String::new(), None);
    };
    let from = headers
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .map(str::to_owned)
        .unwrap_or_default();
    let message_id = headers
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    (from, message_id)
}

/// The whole message `uid` of the selected folder, unless it is gone.
/// PEEK: reading it does not mark it seen.
pub(super) async fn fetch_raw(
    session: &mut ImapSession,
    uid: u32,
) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context;
    use futures_util::TryStreamExt;
    let fetched: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
        .await
        .with_context(|| format!("Fetching message {uid}"))?
        .try_collect()
        .await
        .with_context(|| format!("Reading message {uid}"))?;
    Ok(fetched
        .iter()
        .find(|f| f.uid == Some(uid))
        .and_then(|f| f.body())
        .map(<[u8]>::to_vec))
}

/// IDLE until the server tells of a change, `renew` passes, or `wake`
/// says there is work.
async fn wait_idle(
    session: ImapSession,
    renew: Duration,
    wake: &tokio::sync::Notify,
) -> Result<ImapSession, String> {
    let news = session.unsolicited_responses.clone();
    let mut handle = session.idle();
    timed(handle.init()).await?;
    // News the server sent before it was idling: no need to wait.
    let mut early = false;
    while let Ok(response) = news.try_recv() {
        early |= matches!(
            response,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    if early {
        debug!("IDLE: news before idling.");
        return timed(handle.done()).await;
    }
    debug!("IDLE: waiting.");
    let outcome = {
        let (wait, stop) = handle.wait_with_timeout(renew);
        let mut wait = std::pin::pin!(wait);
        tokio::select! {
            outcome = &mut wait => outcome,
            () = wake.notified() => {
                debug!("IDLE: work to do.");
                drop(stop);
                wait.await
            }
        }
    };
    match outcome {
        Ok(IdleResponse::NewData(_)) => debug!("IDLE: news."),
        Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt) => {}
        Err(e) => return Err(format!("IDLE: {e}")),
    }
    timed(handle.done()).await
}

/// An IMAP command, bounded in time.
async fn timed<T>(
    command: impl std::future::Future<Output = async_imap::error::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", COMMAND_TIMEOUT.as_secs())),
    }
}

/// An IMAP command a server refuses (NO) for a folder it does not have,
/// bounded in time: the server's words in the inner `Err`.
async fn refusable<T>(
    command: impl std::future::Future<Output = async_imap::error::Result<T>>,
) -> Result<Result<T, String>, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(done)) => Ok(Ok(done)),
        Ok(Err(async_imap::error::Error::No(words))) => Ok(Err(server_words(&words))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", COMMAND_TIMEOUT.as_secs())),
    }
}

async fn timed_any<T>(
    command: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {}s", COMMAND_TIMEOUT.as_secs())),
    }
}
