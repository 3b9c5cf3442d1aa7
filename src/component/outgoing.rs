//! Chat messages to mail contacts become queued outgoing mail: checked
//! (sender, recipient, rate), built as RFC 5322 mail, DKIM-signed, and
//! queued; the sender gets an error now, or the XEP-0184 receipt once the
//! mail is delivered (the recipient's server accepted it). A XEP-0333
//! `displayed` marker may owe a read notification (`displayed.rs`).
//!
//! A message whose sender's display name is known, and which shares no
//! files, is built at once and queued with others in one transaction.
//! Anything that has to wait on another server (fetching shared files,
//! looking up the display name) waits in a task of its own beside the
//! intake loop, and the mail goes out with what is known by then: the task
//! hands it back to the loop, to be queued with the next batch.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use facteur_bridge::correct::{correction_text, with_text};
use facteur_bridge::encryption::{encryption, refusal_text, Encrypted};
use facteur_bridge::mdn::stanza_displayed;
use facteur_bridge::native::{self, MailMeta};
use facteur_bridge::reaction::stanza_reaction;
use facteur_bridge::retract::retracted_id;
use facteur_bridge::threading::{message_id_for_stanza, references_for_reply, thread_for};
use facteur_bridge::to_mail::{stanza_parts, to_rfc5322, OutgoingFile, OutgoingMail, StanzaParts};
use facteur_bridge::MailAddress;
use facteur_policy::limits::Limiter;
use jid::BareJid;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::lookups::Lookups;
use super::reply::{self, message_error, receipt_owed, Fault};
use super::LinkHandle;
use crate::config::Live;
use crate::dkim::Signers;
use crate::fetch::Fetcher;
use crate::store::{Encrypt, MessageRecord, Millis, NewMail, OwedReceipt, Store};

mod check;
mod correct;
mod displayed;
mod react;
mod retract;

pub use check::Sending;

/// A queued mail due within this long may be in the delivery runner's
/// hands already: it counts as leaving, not as still waiting, for a
/// retraction or a correction.
const LEAVING: std::time::Duration = std::time::Duration::from_secs(5);

/// What an incoming message leads to now.
// One per stanza and short-lived: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Intaken {
    /// An answer (or none): refused, ignored, or left to a task.
    Answer(Option<Message>),
    /// A mail ready to be queued with others.
    Ready(Prepared),
}

/// How long encrypting one mail may take.
const ENCRYPTING: std::time::Duration = std::time::Duration::from_secs(10);

/// What is added to a mail: the author's `Autocrypt` header field, and
/// the keys (binary) it is encrypted to; none, not encrypted.
struct Sealing {
    autocrypt: Option<String>,
    keys: Vec<Vec<u8>>,
    /// Whether it is DKIM-signed: not when it leaves from an attached
    /// mailbox's address, whose own server signs it.
    dkim: bool,
}

/// `raw` encrypted as PGP/MIME to `keys`, beside the intake loop, within
/// `ENCRYPTING`.
async fn encrypted(raw: Vec<u8>, keys: Vec<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
    let task = tokio::task::spawn_blocking(move || {
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        crate::keys::pgp_mime::encrypt(&raw, &keys, std::time::SystemTime::now())
    });
    tokio::time::timeout(ENCRYPTING, task)
        .await
        .map_err(|_| anyhow::anyhow!("Encrypting took longer than {ENCRYPTING:?}"))??
}

/// A mail built from a stanza, ready to be queued.
pub struct Prepared {
    message: Message,
    sender: BareJid,
    mail_from: String,
    rcpt: String,
    message_id: String,
    raw: Vec<u8>,
    /// The mail as an XMPP message, for XMPP-Mail; empty when disabled.
    stanza: String,
    record: MessageRecord,
    files: usize,
    /// The attached mailbox whose submission server it leaves through.
    submission: Option<i64>,
    /// For a correction of a mail that may still wait in the queue: the
    /// mail to put in its place.
    replacement: Option<Replacing>,
}

/// A mail to put in the place of a queued one.
struct Replacing {
    message_id: String,
    raw: Vec<u8>,
    stanza: String,
}

/// A fetched shared file, named.
struct Fetched {
    name: String,
    content_type: String,
    data: Vec<u8>,
}

/// Everything outgoing mail needs.
pub struct Outgoing {
    pub config: Live,
    pub store: Store,
    pub signers: Arc<Signers>,
    pub fetcher: Fetcher,
    pub lookups: Lookups,
    pub link: LinkHandle,
    /// Mails per XMPP sender.
    pub sender_mails: Mutex<Limiter<BareJid>>,
    /// Where the tasks that wait on other servers run.
    pub tracker: TaskTracker,
    /// Where those tasks hand back the mails they prepared.
    pub ready: mpsc::Sender<Prepared>,
    /// Looks recipients' keys up elsewhere (key IQ, WKD); none in tests
    /// without a network.
    pub finder: Option<Arc<crate::keys::finder::KeyFinder>>,
}

/// The id of the message a XEP-0184 receipt says was received.
fn stanza_received(message: &Message) -> Option<String> {
    message
        .payloads
        .iter()
        .find(|p| p.is("received", "urn:xmpp:receipts"))
        .and_then(|p| p.attr("id"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The receipt `message` asks for, owed by the mail (`sender`,
/// `message_id`, `rcpt`).
fn owe(message: &Message, sender: &BareJid, message_id: &str, rcpt: &str) -> Option<OwedReceipt> {
    let (author_jid, contact_jid, stanza_id) = receipt_owed(message)?;
    Some(OwedReceipt {
        sender: sender.to_string(),
        message_id: message_id.to_owned(),
        rcpt: rcpt.to_owned(),
        stanza_id,
        author_jid,
        contact_jid,
    })
}

/// The answer to an end-to-end encrypted message: nothing is mailed, and
/// its author learns why, unless it carries nothing a person wrote (an
/// OMEMO key transport), which needs no answer.
fn refuse_encrypted(message: &Message, encrypted: &Encrypted) -> Option<Message> {
    if !encrypted.content {
        return None;
    }
    info!(
        sender = ?message.from.as_ref().map(|j| j.to_bare()),
        scheme = %encrypted.namespace,
        "Encrypted message not mailed."
    );
    Some(message_error(
        message,
        Fault::with_text(
            ErrorType::Cancel,
            DefinedCondition::NotAcceptable,
            refusal_text(encrypted),
        ),
    ))
}

impl Outgoing {
    /// A message to a mail contact: checked, then built now or in a task
    /// of its own. Returns the answer to send back now, if any.
    pub async fn message(self: &Arc<Self>, message: Message) -> Intaken {
        if matches!(message.type_, MessageType::Error | MessageType::Headline) {
            return Intaken::Answer(None);
        }
        if let Some(encrypted) = encryption(&message) {
            return Intaken::Answer(refuse_encrypted(&message, &encrypted));
        }
        // A retraction is never a mail of its own, whatever its fallback
        // body says (XEP-0428).
        if let Some(id) = retracted_id(&message) {
            return Intaken::Answer(match id.is_empty() {
                true => None,
                false => self.retract(&message, &id).await,
            });
        }
        // A reaction is never a mail of text, whatever its fallback body.
        if let Some(reaction) = stanza_reaction(&message) {
            return Intaken::Answer(self.react(&message, reaction).await);
        }
        let parts = stanza_parts(&message);
        // Chat states, receipts and the like carry nothing to mail; a
        // displayed marker may owe a read notification.
        if parts.body.trim().is_empty() && parts.shared.is_empty() {
            if let Some(target) = stanza_displayed(&message) {
                self.seen(&message, &target).await;
                self.displayed(&message, &target).await;
            } else if let Some(target) = stanza_received(&message) {
                self.seen(&message, &target).await;
            }
            return Intaken::Answer(None);
        }
        let sending = match self.check(&message).await {
            Ok(sending) => sending,
            Err(refusal) => return Intaken::Answer(Some(refusal)),
        };
        // A recipient's key looked up elsewhere may take seconds: not in
        // the intake loop.
        if parts.shared.is_empty() && !self.looks_key_up(&sending.sender, &sending.rcpt).await {
            if let Some(from_name) = self.lookups.known_name(&sending.sender) {
                return match self
                    .prepare(message, parts, sending, Vec::new(), from_name)
                    .await
                {
                    Ok(prepared) => Intaken::Ready(prepared),
                    Err(refusal) => Intaken::Answer(Some(refusal)),
                };
            }
        }
        let this = self.clone();
        self.tracker.spawn(async move {
            let mut parts = parts;
            let shared = std::mem::take(&mut parts.shared);
            let (files, from_name) = tokio::join!(
                this.fetch(&sending.sender, shared, &mut parts.body),
                this.lookups.display_name(&sending.sender),
            );
            let replies = match this
                .prepare(message, parts, sending, files, from_name)
                .await
            {
                // Back to the loop, to be queued with others.
                Ok(prepared) => match this.ready.send(prepared).await {
                    Ok(()) => Vec::new(),
                    Err(mpsc::error::SendError(prepared)) => this.queue(vec![prepared]).await,
                },
                Err(refusal) => vec![Some(refusal)],
            };
            for reply in replies.into_iter().flatten() {
                this.link.send(reply).await;
            }
        });
        Intaken::Answer(None)
    }

    /// The user's client displayed (or received) the message `target`: if
    /// it came from an IMAP mailbox, \Seen is set on it there. Markers
    /// get no answer: what goes wrong is only logged.
    async fn seen(&self, message: &Message, target: &str) {
        let Some(user) = message.from.as_ref().map(|j| j.to_bare()) else {
            return;
        };
        match self.store.imap_seen_wanted(&user, target).await {
            Ok(Some(mailbox)) => debug!(user = %user, mailbox, "Read here: to be marked seen."),
            Ok(None) => {}
            Err(e) => warn!(error = format!("{e:#}"), "Store unavailable for a marker."),
        }
    }

    /// Fetches the shared files; those that cannot be fetched stay links,
    /// added to `body`.
    async fn fetch(
        &self,
        sender: &BareJid,
        shared: Vec<facteur_bridge::to_mail::SharedUrl>,
        body: &mut String,
    ) -> Vec<Fetched> {
        if shared.is_empty() {
            return Vec::new();
        }
        let upload_hosts = match self.fetcher.has_host_list() {
            true => Vec::new(),
            false => self.lookups.upload_hosts(sender.domain().as_str()).await,
        };
        let mut files = Vec::new();
        for shared in shared {
            match self.fetcher.fetch(&shared.url, &upload_hosts).await {
                Ok(fetched) => files.push(Fetched {
                    name: shared
                        .name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(fetched.name),
                    content_type: shared.content_type.clone().unwrap_or(fetched.content_type),
                    data: fetched.data,
                }),
                Err(reason) => {
                    info!(url = %shared.url, reason = ?reason, "Shared file stays a link.");
                    if !body.is_empty() {
                        body.push('\n');
                    }
                    body.push_str(&shared.url);
                }
            }
        }
        files
    }

    /// Builds the mail, and what threads its answer.
    async fn prepare(
        &self,
        message: Message,
        parts: StanzaParts,
        sending: Sending,
        files: Vec<Fetched>,
        from_name: Option<String>,
    ) -> Result<Prepared, Message> {
        let Sending {
            sender,
            to,
            from,
            rcpt,
        } = sending;
        let mut from = from;
        let config = self.config.get();
        let gateway = config.component.jid.domain();
        // A client that sends the stanza again (same origin-id or id) makes
        // the same mail, queued once.
        let message_id = match &parts.stanza_id {
            Some(id) => message_id_for_stanza(&sender, id, gateway.as_str()),
            None => format!("{:032x}@{}", rand::rng().random::<u128>(), gateway),
        };
        let original = self.corrected(&message, &sender, &to, &rcpt).await;
        let parent = match &original {
            Some(original) => Some(original.record.clone()),
            None => self.parent(&sender, &parts).await,
        };
        // An answer to mail from an attached mailbox with an outgoing
        // server leaves from the mailbox's address, through that server.
        let legacy = match &parent {
            Some(parent) => self.legacy(&sender, parent).await,
            None => None,
        };
        if let Some((_, address)) = &legacy {
            from = address.clone();
        }
        let submission = legacy.as_ref().map(|(id, _)| *id);
        let subject = parts
            .subject
            .clone()
            .or_else(|| original.as_ref().and_then(|o| o.subject.clone()));
        // A correction that goes as a mail of its own says what it is.
        let body = match &original {
            Some(_) => correction_text(&parts.body),
            None => parts.body.clone(),
        };
        let references = parent
            .as_ref()
            .map(|p| references_for_reply(&p.message_id, &p.references))
            .unwrap_or_default();
        let date = Millis::now().0 / 1000;
        let attached: Vec<OutgoingFile<'_>> = files
            .iter()
            .map(|f| OutgoingFile {
                name: &f.name,
                content_type: &f.content_type,
                data: &f.data,
            })
            .collect();
        let outgoing = OutgoingMail {
            from: &from,
            from_name: from_name.as_deref(),
            to: &rcpt,
            subject: subject.as_deref(),
            body: &body,
            message_id: &message_id,
            in_reply_to: parent.as_ref().map(|p| p.message_id.as_str()),
            references: &references,
            html: parts.html.as_deref(),
            styled: parts.styled,
            files: &attached,
            jabber_id: config.outbound.jabber_id_header.then_some(sender.as_str()),
            date,
        };
        let mut sealing = self.sealing(&message, &sender, &from, &rcpt).await?;
        sealing.dkim = submission.is_none();
        let raw = self.build(&message, &outgoing, &sealing).await?;
        let thread = parts
            .thread
            .clone()
            .or_else(|| parent.as_ref().map(|p| p.thread.clone()))
            .or_else(|| thread_for(Some(&message_id), &[], &references))
            .unwrap_or_default();
        // The message as XMPP-Mail carries it: as the client sent it, but
        // for a correction, whose text and Subject are the mail's.
        let native = |text: Option<&str>, meta: &MailMeta<'_>| {
            // Through a mailbox's own server, never as XMPP-Mail.
            if !config.xmpp_mail.enabled || submission.is_some() {
                return String::new();
            }
            let author: Cow<'_, Message> = match text {
                Some(text) => Cow::Owned(with_text(&message, text, subject.as_deref())),
                None => Cow::Borrowed(&message),
            };
            native::to_xml(&native::mail_message(&author, meta))
        };
        let stanza = native(
            original.as_ref().map(|_| body.as_str()),
            &MailMeta {
                message_id: &message_id,
                date,
                thread: &thread,
                in_reply_to: parent.as_ref().map(|p| p.message_id.as_str()),
                references: &references,
            },
        );
        // The mail to put in the original's place while it still waits:
        // the original's Message-ID and threading, the corrected text.
        let replacement = match &original {
            Some(original) => {
                let earlier = &original.record;
                let in_reply_to = earlier.references.last().map(String::as_str);
                let raw = self
                    .build(
                        &message,
                        &OutgoingMail {
                            body: &parts.body,
                            message_id: &earlier.message_id,
                            in_reply_to,
                            references: &earlier.references,
                            ..outgoing.clone()
                        },
                        &sealing,
                    )
                    .await?;
                let stanza = native(
                    Some(&parts.body),
                    &MailMeta {
                        message_id: &earlier.message_id,
                        date,
                        thread: &earlier.thread,
                        in_reply_to,
                        references: &earlier.references,
                    },
                );
                Some(Replacing {
                    message_id: earlier.message_id.clone(),
                    raw,
                    stanza,
                })
            }
            None => None,
        };
        let record = MessageRecord {
            user: sender.clone(),
            message_id: message_id.clone(),
            peer: to,
            stanza_id: parts.stanza_id.clone().unwrap_or_default(),
            author: sender.clone(),
            thread,
            references,
        };
        Ok(Prepared {
            message,
            sender,
            mail_from: from.to_string(),
            rcpt: rcpt.to_string(),
            message_id,
            raw,
            stanza,
            record,
            files: files.len(),
            submission,
            replacement,
        })
    }

    /// What is added to the mail `sender` sends from `from` to `rcpt`:
    /// her key in an `Autocrypt` header when she has one, and the keys it
    /// is encrypted to under her option `encrypt`; or, when the option
    /// requires encryption and no key of the recipient is known, the
    /// error that tells her why the mail is not sent.
    // Once per mail, as `prepare`'s own error: the size does not matter.
    #[allow(clippy::result_large_err)]
    async fn sealing(
        &self,
        message: &Message,
        sender: &BareJid,
        from: &MailAddress,
        rcpt: &MailAddress,
    ) -> Result<Sealing, Message> {
        let own = match self.store.key(sender).await {
            Ok(key) => key.filter(|k| !k.revoked).map(|k| k.cert),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "The sender's key could not be read."
                );
                None
            }
        };
        let autocrypt = own
            .as_deref()
            .map(|cert| crate::keys::autocrypt::header(&from.to_string(), cert));
        let encrypt = match self.store.user_options(sender).await {
            Ok(options) => options.unwrap_or_default().encrypt,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "The sender's options could not be read."
                );
                Encrypt::Off
            }
        };
        if encrypt == Encrypt::Off {
            return Ok(Sealing {
                autocrypt,
                keys: Vec::new(),
                dkim: true,
            });
        }
        match self.recipient_key(rcpt).await {
            Some(theirs) => Ok(Sealing {
                autocrypt,
                keys: std::iter::once(theirs).chain(own).collect(),
                dkim: true,
            }),
            None if encrypt == Encrypt::Required => Err(message_error(
                message,
                Fault::with_text(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    format!(
                        "Not sent: no OpenPGP key is known for {rcpt}, and your option \
                         'encrypt' is 'required'."
                    ),
                ),
            )),
            None => Ok(Sealing {
                autocrypt,
                keys: Vec::new(),
                dkim: true,
            }),
        }
    }

    /// A key `rcpt` can be encrypted to now: a local user's published
    /// key, else the one the Autocrypt header of her last mail carried,
    /// else one found elsewhere (kept from before, the key IQ of her
    /// domain's gateway, WKD) within a few seconds.
    async fn recipient_key(&self, rcpt: &MailAddress) -> Option<Vec<u8>> {
        if let Some(cert) = self.known_key(rcpt).await {
            return Some(cert);
        }
        if self.config.get().mail.serves(rcpt.domain()) {
            return None;
        }
        self.finder.as_ref()?.find(rcpt).await
    }

    /// Whether the mail `sender` sends to `rcpt` waits for a lookup of
    /// the recipient's key elsewhere: she encrypts, no key is known here
    /// and none was looked up lately.
    async fn looks_key_up(&self, sender: &BareJid, rcpt: &MailAddress) -> bool {
        if self.finder.is_none() || self.config.get().mail.serves(rcpt.domain()) {
            return false;
        }
        let encrypts = self
            .store
            .user_options(sender)
            .await
            .is_ok_and(|o| o.unwrap_or_default().encrypt != Encrypt::Off);
        encrypts
            && self.known_key(rcpt).await.is_none()
            && !matches!(
                self.store
                    .cached_key(&rcpt.to_string(), Millis::now())
                    .await,
                Ok(Some(_))
            )
    }

    /// A key of `rcpt` known here: a local user's published key, else
    /// the one the Autocrypt header of her last mail carried.
    async fn known_key(&self, rcpt: &MailAddress) -> Option<Vec<u8>> {
        let now = std::time::SystemTime::now();
        let usable = |cert: Vec<u8>| crate::keys::encryptable(&cert, now).map(|_| cert);
        if self.config.get().mail.serves(rcpt.domain()) {
            let jid = BareJid::new(&rcpt.to_string().to_lowercase()).ok()?;
            if let Ok(Some(key)) = self.store.key(&jid).await {
                if let Some(cert) = usable(key.cert).filter(|_| !key.revoked) {
                    return Some(cert);
                }
            }
        }
        match self.store.autocrypt_key(&rcpt.to_string()).await {
            Ok(key) => key.and_then(|k| usable(k.cert)),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "The recipient's Autocrypt key could not be read."
                );
                None
            }
        }
    }

    /// The mail's bytes, encrypted to `sealing`'s keys if any, with its
    /// `Autocrypt` header if any, DKIM-signed; or the error that answers
    /// `message`.
    // Once per mail, as `prepare`'s own error: the size does not matter.
    #[allow(clippy::result_large_err)]
    async fn build(
        &self,
        message: &Message,
        outgoing: &OutgoingMail<'_>,
        sealing: &Sealing,
    ) -> Result<Vec<u8>, Message> {
        let built = to_rfc5322(outgoing).map_err(|e| {
            message_error(
                message,
                Fault::with_text(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    e.to_string(),
                ),
            )
        })?;
        self.seal(message, outgoing.from.domain(), built, sealing)
            .await
    }

    /// The mail `built` encrypted to `sealing`'s keys if any, with its
    /// `Autocrypt` header if any, DKIM-signed for `domain`; or the error
    /// that answers `message`.
    // Once per mail, as `prepare`'s own error: the size does not matter.
    #[allow(clippy::result_large_err)]
    async fn seal(
        &self,
        message: &Message,
        domain: &str,
        built: Vec<u8>,
        sealing: &Sealing,
    ) -> Result<Vec<u8>, Message> {
        let built = match sealing.keys.is_empty() {
            true => built,
            false => encrypted(built, sealing.keys.clone()).await.map_err(|e| {
                error!(error = format!("{e:#}"), "Encrypting the mail failed.");
                message_error(
                    message,
                    Fault::new(
                        ErrorType::Wait,
                        DefinedCondition::InternalServerError,
                        "the mail could not be encrypted",
                    ),
                )
            })?,
        };
        let raw = match &sealing.autocrypt {
            Some(field) => [field.as_bytes(), &built].concat(),
            None => built,
        };
        if !sealing.dkim {
            return Ok(raw);
        }
        self.signers.sign(domain, raw).map_err(|e| {
            error!(error = format!("{e:#}"), "DKIM signing failed.");
            message_error(
                message,
                Fault::new(
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                    "the mail could not be signed",
                ),
            )
        })
    }

    /// Queues prepared mails in one transaction; the answer to each
    /// stanza: none (its receipt, if asked for, comes once the mail is
    /// delivered), or a `wait` error.
    pub async fn queue(&self, batch: Vec<Prepared>) -> Vec<Option<Message>> {
        let (corrections, batch): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|p| p.replacement.is_some());
        let mut answers = self.queue_new(batch).await;
        for prepared in corrections {
            answers.push(self.queue_correction(prepared).await);
        }
        answers
    }

    /// Queues new mails in one transaction (see [`Outgoing::queue`]).
    async fn queue_new(&self, batch: Vec<Prepared>) -> Vec<Option<Message>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let mails: Vec<(NewMail<'_>, Option<&MessageRecord>)> = batch
            .iter()
            .map(|p| {
                let mail = NewMail {
                    sender: &p.sender,
                    mail_from: &p.mail_from,
                    rcpt: &p.rcpt,
                    message_id: &p.message_id,
                    raw: &p.raw,
                    stanza: &p.stanza,
                    submission: p.submission,
                };
                (mail, Some(&p.record))
            })
            .collect();
        // Owed before the mails are queued: no delivery can outrun them.
        let owed: Vec<OwedReceipt> = batch
            .iter()
            .filter_map(|p| owe(&p.message, &p.sender, &p.message_id, &p.rcpt))
            .collect();
        let queued = match owed.is_empty() {
            true => self.store.queue_mails(&mails).await,
            false => match self.store.owe_receipts(&owed).await {
                Ok(()) => self.store.queue_mails(&mails).await,
                Err(e) => Err(e),
            },
        };
        match queued {
            Ok(ids) => {
                for (p, id) in batch.iter().zip(ids) {
                    info!(queue_id = id, sender = %p.sender, rcpt = %p.rcpt, size = p.raw.len(), files = p.files, "Queued mail.");
                }
                batch.iter().map(|_| None).collect()
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for outgoing messages."
                );
                batch
                    .iter()
                    .map(|p| Some(message_error(&p.message, reply::NOT_QUEUED)))
                    .collect()
            }
        }
    }

    /// The attached mailbox (its id and address) an answer to `parent`
    /// leaves through: the one the parent, or a mail it refers to, came
    /// from, when it has an outgoing server.
    async fn legacy(&self, sender: &BareJid, parent: &MessageRecord) -> Option<(i64, MailAddress)> {
        let ids: Vec<&str> = std::iter::once(parent.message_id.as_str())
            .chain(parent.references.iter().rev().map(String::as_str))
            .collect();
        let mailbox = match self.store.imap_answer_route(sender, &ids).await {
            Ok(mailbox) => mailbox?,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "The mailbox of an answered mail was not looked up."
                );
                return None;
            }
        };
        let from = mailbox.submission.as_ref()?.from.as_str();
        match MailAddress::parse(from) {
            Ok(address) => Some((mailbox.id, address)),
            Err(e) => {
                warn!(mailbox = mailbox.id, from, error = %e, "The mailbox's address is not usable.");
                None
            }
        }
    }

    /// The message this stanza answers: the one its XEP-0461 `<reply>`
    /// names, else the latest of its `<thread>`.
    async fn parent(&self, sender: &BareJid, parts: &StanzaParts) -> Option<MessageRecord> {
        let found = match (&parts.reply_id, &parts.thread) {
            (Some(id), _) => self.store.message_by_stanza_id(sender, id).await,
            (None, Some(thread)) => self.store.latest_in_thread(sender, thread).await,
            (None, None) => Ok(None),
        };
        found.unwrap_or_else(|e| {
            debug!(error = format!("{e:#}"), "Parent not looked up.");
            None
        })
    }
}
