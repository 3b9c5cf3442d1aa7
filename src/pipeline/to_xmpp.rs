//! Delivery of stored mail (and of the gateway's notices) to XMPP users.
//!
//! Items go out in batches through the component link; each counts as
//! delivered only when the server has confirmed it (see `component`). A
//! stanza error of type `wait` or a lost link retries the item; any other
//! error fails it, with the reason kept in the store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use facteur_bridge::attach::{attachments_of, oob, Attachment, SharedFile};
use facteur_bridge::body::xhtml_im;
use facteur_bridge::mdn::{
    displayed_stanza, mail_disposition, markable, receipt_request, Disposition,
};
use facteur_bridge::reaction::{mail_reaction, reaction_stanza, MailReaction};
use facteur_bridge::threading::stanza_id_for_mail;
use facteur_bridge::to_xmpp::{
    read_mail_with, read_message, to_stanza, Envelope, IncomingMail, ReplyTarget, MAX_HTML_BYTES,
};
use facteur_bridge::{mailbox_to_jid, MailAddress};
use jid::{BareJid, Jid};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::sha2::Digest;

use super::sleep_until;
use crate::component::reply::receipt_for;
use crate::component::{LinkHandle, Undelivered};
use crate::config::Live;
use crate::http::files::FileStore;
use crate::http::percent_encode;
use crate::store::{
    Contact, MdnRequest, MessageRecord, Millis, SharedRecord, Store, ToXmppBody, ToXmppItem,
};

/// How long the server may take to confirm a batch.
/// The text of a PGP/MIME encrypted mail's message: the encrypted part
/// comes as a file.
const ENCRYPTED_TEXT: &str = "This mail is encrypted with OpenPGP: open the attached file \
     with an OpenPGP-capable client to read it.";

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
const BATCH: u32 = 128;

/// A stanza, and what threads the answers to it.
struct Made {
    message: Message,
    /// Sent right after the message, on the same stream.
    followups: Vec<Message>,
    record: Option<MessageRecord>,
    contact: Option<Contact>,
}

/// Why a stanza could not be made.
enum Unmade {
    /// The item itself is broken: fail it.
    Never(String),
    /// The disk or the store failed: retry later.
    NotNow(String),
}

pub struct ToXmpp {
    pub config: Live,
    pub store: Store,
    pub files: FileStore,
    pub link: LinkHandle,
}

/// What the server still has to confirm of a batch: each item, with the
/// confirmation of its stanza.
type Sent = Vec<(ToXmppItem, Confirmation)>;
type Confirmation = Pin<Box<dyn Future<Output = Result<(), Undelivered>> + Send>>;

impl ToXmpp {
    /// Delivers what is due, batch after batch. One batch waits for the
    /// server's confirmations while the next one is made and sent: the
    /// server routes one while facteur reads the other's mail.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut up = self.link.watch();
        let mut in_flight: Option<Sent> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if !*up.borrow_and_update() {
                if let Some(sent) = in_flight.take() {
                    self.settle(sent).await;
                }
                tokio::select! {
                    changed = up.changed() => if changed.is_err() { break },
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let busy: Vec<i64> = in_flight
                .iter()
                .flatten()
                .map(|(item, _)| item.id)
                .collect();
            let due = match self
                .store
                .due_to_xmpp_except(Millis::now(), BATCH, &busy)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "Store unavailable; deliveries to XMPP wait."
                    );
                    Vec::new()
                }
            };
            if due.is_empty() {
                if let Some(sent) = in_flight.take() {
                    self.settle(sent).await;
                    continue;
                }
                let next = self.store.next_to_xmpp().await.ok().flatten();
                tokio::select! {
                    () = self.store.to_xmpp_committed() => {}
                    () = tokio::time::sleep(sleep_until(next, self.config.get().store.poll_interval)) => {}
                    _ = up.changed() => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let sent = self.send_batch(due).await;
            if let Some(before) = in_flight.replace(sent) {
                self.settle(before).await;
            }
        }
        if let Some(sent) = in_flight.take() {
            self.settle(sent).await;
        }
    }

    /// One batch, sent and settled.
    #[cfg(test)]
    async fn deliver_batch(&self, items: Vec<ToXmppItem>) {
        let sent = self.send_batch(items).await;
        self.settle(sent).await;
    }

    /// Makes the stanzas of a batch, remembers what threads answers to
    /// them, and sends them; what the server must confirm comes back.
    async fn send_batch(&self, items: Vec<ToXmppItem>) -> Sent {
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            match self.stanza(&item).await {
                Ok(made) => ready.push((item, made)),
                Err(Unmade::Never(reason)) => {
                    warn!(delivery = item.id, reason, "Cannot deliver to XMPP.");
                    if let Err(e) = self.give_up(&item, &reason, "5.6.0").await {
                        warn!(error = format!("{e:#}"), "Store unavailable.");
                    }
                }
                Err(Unmade::NotNow(reason)) => {
                    warn!(delivery = item.id, reason, "Cannot deliver to XMPP now.");
                    if let Err(e) = self.retry(&item, &reason).await {
                        warn!(error = format!("{e:#}"), "Store unavailable.");
                    }
                }
            }
        }
        // What threads an answer is remembered before the stanza leaves: a
        // user can answer before the server has confirmed the batch, and
        // the answer must still find the mail it replies to.
        let mut records = Vec::new();
        let mut contacts: Vec<Contact> = Vec::new();
        for (_, made) in &mut ready {
            records.extend(made.record.take());
            if let Some(contact) = made.contact.take().filter(|c| !contacts.contains(c)) {
                contacts.push(contact);
            }
        }
        if let Err(e) = self.store.remember_messages(&records, &contacts).await {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable; answers to this batch may not thread."
            );
        }
        let mut waiting: Sent = Vec::with_capacity(ready.len());
        for (item, made) in ready {
            let confirmation = self.link.deliver(made.message).await;
            for followup in made.followups {
                self.link.send(followup).await;
            }
            waiting.push((item, Box::pin(confirmation)));
        }
        waiting
    }

    /// The stanza for an item; an error names why it can never be made.
    async fn stanza(&self, item: &ToXmppItem) -> Result<Made, Unmade> {
        let to = BareJid::new(&item.recipient)
            .map_err(|e| Unmade::Never(format!("recipient {}: {e}", item.recipient)))?;
        // Stable across retries; for mail, across copies of the same mail.
        let id = format!("facteur-{}-{}", item.id, item.created_at.0);
        match &item.body {
            ToXmppBody::Mail {
                mail_id,
                mail_from,
                raw,
                auth,
                warning,
                spam,
            } => {
                if let Some(reaction) = mail_reaction(raw) {
                    return self.reaction(to, id, mail_from, raw, reaction).await;
                }
                if let Some(displayed) = mail_disposition(raw).filter(|d| d.displayed) {
                    if let Some(made) = self.displayed(&to, &id, mail_from, raw, &displayed).await?
                    {
                        return Ok(made);
                    }
                }
                // Checked against the keys known before this mail, so that
                // its own Autocrypt header vouches for nothing.
                let openpgp = self.openpgp_signed(raw).await;
                if warning.is_empty() {
                    self.autocrypt(raw).await;
                }
                let encrypted = crate::keys::pgp_inbound::is_encrypted(raw);
                // One parse for the attachments and the text.
                let message = mail_parser::MessageParser::default()
                    .parse(raw)
                    .ok_or_else(|| Unmade::Never(facteur_bridge::Error::Unparsable.to_string()))?;
                let files = self
                    .share_attachments(*mail_id, attachments_of(&message), encrypted)
                    .await?;
                let mut mail = read_message(&message, &files);
                drop(message);
                let auth = match openpgp {
                    Some(signed) => format!("{auth} openpgp={}", signed.as_str()),
                    None => auth.clone(),
                };
                mail.auth = Some(auth.trim().to_owned()).filter(|a| !a.is_empty());
                if encrypted {
                    let links: Vec<&str> = files.iter().map(|f| f.url.as_str()).collect();
                    mail.text = [ENCRYPTED_TEXT]
                        .into_iter()
                        .chain(links)
                        .collect::<Vec<_>>()
                        .join("\n");
                    mail.html = None;
                }
                mail.warning = Some(warning.clone()).filter(|w| !w.is_empty());
                mail.spam = spam.as_deref().map(|s| {
                    let (score, reasons) = s.split_once(' ').unwrap_or((s, ""));
                    (score.to_owned(), reasons.to_owned())
                });
                self.share_large_html(*mail_id, &mut mail).await?;
                let id = mail
                    .message_id
                    .as_deref()
                    .map(stanza_id_for_mail)
                    .unwrap_or(id);
                let (from, contact) = self.sender_jid(&mail, mail_from);
                let mdn_asked = self.remember_mdn_request(&to, &id, &from, raw).await?;
                let reply = self.reply_target(&to, &mail).await;
                let config = self.config.get();
                let envelope = Envelope {
                    from: from.clone(),
                    to: to.clone(),
                    id: &id,
                    gateway: config.component.jid.domain(),
                    served: &config.mail.domains,
                    reply,
                };
                let mut message = to_stanza(&mail, &envelope);
                let options = self
                    .store
                    .user_options(&to)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if let (true, Some(html)) = (options.xhtml_im, &mail.html) {
                    message.payloads.push(xhtml_im(html));
                }
                // Clients send XEP-0333 markers only for markable messages:
                // those that owe a read notification, and mail from an
                // IMAP mailbox, which the marker marks seen there.
                if (mdn_asked && options.send_mdn) || self.came_from_imap(&to, &id).await {
                    message.payloads.push(markable());
                }
                // One message per file, its URL as the body, for clients
                // that show a file only then (Conversations).
                let followups = match options.oob_each_file {
                    true => mail
                        .files
                        .iter()
                        .enumerate()
                        .map(|(n, file)| {
                            let mut followup =
                                Message::new_with_type(MessageType::Chat, Some(to.clone().into()));
                            followup.from = Some(from.clone().into());
                            followup.id = Some(xmpp_parsers::message::Id(format!("{id}-file{n}")));
                            followup.bodies.insert(Lang::default(), file.url.clone());
                            followup.payloads.push(oob(&file.url, Some(&file.name)));
                            followup
                        })
                        .collect(),
                    false => Vec::new(),
                };
                let record = match (&mail.message_id, &message.thread) {
                    (Some(message_id), Some(thread)) => Some(MessageRecord {
                        user: to,
                        message_id: message_id.clone(),
                        peer: from.clone(),
                        stanza_id: id.clone(),
                        author: from,
                        thread: thread.id.clone(),
                        references: match mail.references.is_empty() {
                            true => mail.in_reply_to.clone(),
                            false => mail.references.clone(),
                        },
                    }),
                    _ => None,
                };
                Ok(Made {
                    message,
                    followups,
                    record,
                    contact,
                })
            }
            ToXmppBody::Receipt(receipt) => {
                let from = Jid::new(&receipt.from)
                    .map_err(|e| Unmade::Never(format!("receipt from {}: {e}", receipt.from)))?;
                let to = Jid::new(&receipt.to)
                    .map_err(|e| Unmade::Never(format!("receipt to {}: {e}", receipt.to)))?;
                Ok(Made {
                    message: receipt_for(from, to, receipt.id.clone()),
                    followups: Vec::new(),
                    record: None,
                    contact: None,
                })
            }
            ToXmppBody::Notice(notice) => {
                let mut message = Message::new_with_type(MessageType::Chat, Some(to.into()));
                message.from = Some(notice.from.clone().into());
                message.id = Some(xmpp_parsers::message::Id(id));
                message
                    .subjects
                    .insert(Lang::default(), notice.subject.clone());
                message.bodies.insert(Lang::default(), notice.body.clone());
                Ok(Made {
                    message,
                    followups: Vec::new(),
                    record: None,
                    contact: None,
                })
            }
        }
    }

    /// Stores the mail's attachments and makes their links. An error here
    /// is the store's or the disk's: the delivery is retried.
    /// Keeps the sender's key from the mail's `Autocrypt` header, if it
    /// has one and it is newer than the one kept.
    async fn autocrypt(&self, raw: &[u8]) {
        let Some(key) = crate::keys::autocrypt::from_mail(raw, Millis::now().0 / 1000) else {
            return;
        };
        match self.store.autocrypt_seen(&key).await {
            Ok(true) => info!(
                addr = key.addr,
                fingerprint = key.fingerprint,
                "Autocrypt key kept."
            ),
            Ok(false) => {}
            Err(e) => warn!(
                error = format!("{e:#}"),
                "The Autocrypt key could not be kept."
            ),
        }
    }

    /// What the PGP/MIME signature of `raw`, if it has one, says under
    /// the keys known for its sender: her published key when she is a
    /// user here, the key of her last Autocrypt header, the key found for
    /// her before. Nothing is looked up on the network here.
    async fn openpgp_signed(&self, raw: &[u8]) -> Option<crate::keys::pgp_inbound::Signed> {
        use crate::keys::pgp_inbound;
        if !pgp_inbound::is_signed(raw) {
            return None;
        }
        let mail = mail_parser::MessageParser::new().parse_headers(raw)?;
        let sender = mail.from()?.first()?.address()?.to_lowercase();
        let mut keys = Vec::new();
        if let Ok(jid) = BareJid::new(&sender) {
            if let Ok(Some(key)) = self.store.key(&jid).await {
                keys.push(key.cert);
            }
        }
        if let Ok(Some(key)) = self.store.autocrypt_key(&sender).await {
            keys.push(key.cert);
        }
        if let Ok(Some(key)) = self.store.cached_key(&sender, Millis::now()).await {
            if !key.cert.is_empty() {
                keys.push(key.cert);
            }
        }
        let raw = raw.to_vec();
        let now = std::time::SystemTime::now();
        let verdict = tokio::task::spawn_blocking(move || pgp_inbound::verify(&raw, &keys, now))
            .await
            .ok()
            .flatten();
        if let Some(verdict) = verdict {
            info!(
                sender,
                openpgp = verdict.as_str(),
                "PGP/MIME signature checked."
            );
        }
        verdict
    }

    async fn share_attachments(
        &self,
        mail_id: i64,
        mut parts: Vec<Attachment>,
        encrypted: bool,
    ) -> Result<Vec<SharedFile>, Unmade> {
        if encrypted {
            // The encrypted part alone is worth a link; the version part
            // (`Version: 1`) is not. Without a name of its own, it is
            // named as OpenPGP clients expect to open it.
            parts.retain(|p| p.content_type != "application/pgp-encrypted");
            for part in &mut parts {
                if part.name
                    == facteur_bridge::attach::safe_name(None, part.index, &part.content_type)
                {
                    part.name = "encrypted.asc".to_owned();
                }
            }
        }
        let mut shared = Vec::with_capacity(parts.len());
        for part in parts {
            let sha_hex = self
                .files
                .put(&part.sha256, &part.data)
                .await
                .map_err(|e| Unmade::NotNow(format!("{e:#}")))?;
            let record = SharedRecord {
                sha256: sha_hex,
                name: part.name.clone(),
                content_type: part.content_type.clone(),
                size: part.data.len() as u64,
            };
            let token = self
                .store
                .share_attachment(mail_id, part.index, &record)
                .await
                .map_err(|e| Unmade::NotNow(format!("{e:#}")))?;
            shared.push(SharedFile {
                url: format!(
                    "{}/{token}/{}",
                    self.config.get().http.public_url,
                    percent_encode(&part.name)
                ),
                name: part.name,
                content_type: part.content_type,
                size: record.size,
                sha256: part.sha256,
                content_id: part.content_id,
            });
        }
        Ok(shared)
    }

    /// HTML too large to travel in the stanza is linked like an
    /// attachment instead.
    async fn share_large_html(&self, mail_id: i64, mail: &mut IncomingMail) -> Result<(), Unmade> {
        let Some(html) = mail.html.take_if(|h| h.len() > MAX_HTML_BYTES) else {
            return Ok(());
        };
        let sha256: [u8; 32] = xmpp_parsers::sha2::Sha256::digest(html.as_bytes()).into();
        let sha_hex = self
            .files
            .put(&sha256, html.as_bytes())
            .await
            .map_err(|e| Unmade::NotNow(format!("{e:#}")))?;
        let record = SharedRecord {
            sha256: sha_hex,
            name: "message.html".into(),
            content_type: "text/html".into(),
            size: html.len() as u64,
        };
        // Past every attachment's index: one link per mail.
        let token = self
            .store
            .share_attachment(mail_id, usize::from(u16::MAX), &record)
            .await
            .map_err(|e| Unmade::NotNow(format!("{e:#}")))?;
        let url = format!("{}/{token}/message.html", self.config.get().http.public_url);
        mail.text
            .push_str(&format!("\n\n[formatted version: message.html] {url}"));
        mail.files.push(SharedFile {
            name: record.name,
            content_type: record.content_type,
            size: record.size,
            sha256,
            url,
            content_id: None,
        });
        Ok(())
    }

    /// An RFC 9078 reaction mail, as the XEP-0444 reaction of its sender
    /// on the message the user's client knows (never a chat message of its
    /// own). A message the gateway does not know keeps the id it would
    /// have had, which no client knows either.
    async fn reaction(
        &self,
        to: BareJid,
        id: String,
        mail_from: &str,
        raw: &[u8],
        reaction: MailReaction,
    ) -> Result<Made, Unmade> {
        let mail = read_mail_with(raw, &[]).map_err(|e| Unmade::Never(e.to_string()))?;
        let (from, contact) = self.sender_jid(&mail, mail_from);
        let target = match self.store.message_by_id(&to, &reaction.in_reply_to).await {
            Ok(Some(record)) => record.stanza_id,
            Ok(None) => stanza_id_for_mail(&reaction.in_reply_to),
            Err(e) => return Err(Unmade::NotNow(format!("{e:#}"))),
        };
        let id = mail
            .message_id
            .as_deref()
            .map(stanza_id_for_mail)
            .unwrap_or(id);
        Ok(Made {
            message: reaction_stanza(from.into(), to.into(), &id, &target, &reaction.emoji),
            followups: Vec::new(),
            record: None,
            contact,
        })
    }

    /// An RFC 8098 MDN saying that a mail of the user's was displayed, as
    /// the XEP-0333 `displayed` marker on the message the user's client
    /// sent; `None` when the gateway does not know that mail, which then
    /// arrives as the readable mail it is.
    async fn displayed(
        &self,
        to: &BareJid,
        id: &str,
        mail_from: &str,
        raw: &[u8],
        displayed: &Disposition,
    ) -> Result<Option<Made>, Unmade> {
        let record = match self
            .store
            .message_by_id(to, &displayed.original_message_id)
            .await
        {
            Ok(Some(record)) if record.author == *to => record,
            Ok(_) => return Ok(None),
            Err(e) => return Err(Unmade::NotNow(format!("{e:#}"))),
        };
        let mail = read_mail_with(raw, &[]).map_err(|e| Unmade::Never(e.to_string()))?;
        let (from, contact) = self.sender_jid(&mail, mail_from);
        let id = mail
            .message_id
            .as_deref()
            .map(stanza_id_for_mail)
            .unwrap_or_else(|| id.to_owned());
        Ok(Some(Made {
            message: displayed_stanza(from.into(), to.clone().into(), &id, &record.stanza_id),
            followups: Vec::new(),
            record: None,
            contact,
        }))
    }

    /// Remembers the read notification a mail asks for, if it asks for
    /// one, by the id of the message the user's client gets: whether it
    /// is sent is the user's choice, made when the client marks the
    /// message displayed. Says whether the mail asked.
    async fn remember_mdn_request(
        &self,
        to: &BareJid,
        id: &str,
        from: &BareJid,
        raw: &[u8],
    ) -> Result<bool, Unmade> {
        let Some(asked) = receipt_request(raw) else {
            return Ok(false);
        };
        let request = MdnRequest {
            user: to.clone(),
            stanza_id: id.to_owned(),
            peer: from.clone(),
            message_id: asked.message_id,
            subject: asked.subject,
            notify_to: asked.notify_to.to_string(),
            final_recipient: to.to_string(),
        };
        self.store
            .remember_mdn_request(&request)
            .await
            .map(|()| true)
            .map_err(|e| Unmade::NotNow(format!("{e:#}")))
    }

    /// Whether the mail the user's client gets as `id` came from one of
    /// the user's IMAP mailboxes.
    async fn came_from_imap(&self, to: &BareJid, id: &str) -> bool {
        // No key, no mailboxes: no need to ask the store.
        if self.config.get().imap.key.is_none() {
            return false;
        }
        self.store
            .imap_message_known(to, id)
            .await
            .inspect_err(|e| debug!(error = format!("{e:#}"), "IMAP origin not looked up."))
            .unwrap_or(false)
    }

    /// The message a mail answers, as the user's client knows it.
    async fn reply_target(&self, user: &BareJid, mail: &IncomingMail) -> Option<ReplyTarget> {
        let parent = mail.in_reply_to.first()?;
        match self.store.message_by_id(user, parent).await {
            Ok(Some(record)) => Some(ReplyTarget {
                to: record.author.into(),
                id: record.stanza_id,
            }),
            Ok(None) => None,
            Err(e) => {
                debug!(error = format!("{e:#}"), "Parent not looked up.");
                None
            }
        }
    }

    /// The JID the mail comes from: its From header, else the envelope
    /// sender, else the gateway itself (bounces have a null sender).
    fn sender_jid(&self, mail: &IncomingMail, mail_from: &str) -> (BareJid, Option<Contact>) {
        let gateway = &self.config.get().component.jid;
        let author = mail
            .author
            .clone()
            .or_else(|| MailAddress::parse(mail_from).ok());
        let Some(author) = author else {
            return (gateway.clone(), None);
        };
        let Ok(jid) = mailbox_to_jid(&author, gateway.domain()) else {
            return (gateway.clone(), None);
        };
        let contact = Contact {
            jid: jid.clone(),
            address: author.to_string(),
            name: mail.author_name.clone().unwrap_or_default(),
        };
        (jid, Some(contact))
    }
}

mod outcome;
#[cfg(test)]
mod tests;
