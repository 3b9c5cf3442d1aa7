//! What users send that needs the store: XEP-0077 registration, and chat
//! messages to mail contacts, which become queued outgoing mail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facteur_bridge::threading::{message_id_for_stanza, references_for_reply, thread_for};
use facteur_bridge::to_mail::{stanza_parts, to_rfc5322, OutgoingFile, OutgoingMail, StanzaParts};
use facteur_bridge::{jid_to_mailbox, MailAddress};
use facteur_policy::limits::{Decision, Limiter};
use facteur_policy::relay::{sender_verdict, AddressFacts, SenderVerdict};
use jid::BareJid;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::receipts::Received;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::router::{
    error, message_error, result, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_REGISTER, NS_VCARD,
};
use super::LinkHandle;
use crate::config::Config;
use crate::dkim::Signers;
use crate::fetch::Fetcher;
use crate::store::{MessageRecord, Millis, NewMail, Store, UserOptions};

/// A checked message: who sends to whom.
struct Sending {
    sender: BareJid,
    to: BareJid,
    from: MailAddress,
    rcpt: MailAddress,
}

/// What an incoming message leads to now.
// One per stanza and short-lived: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Intaken {
    /// An answer (or none): refused, ignored, or left to a task.
    Answer(Option<Message>),
    /// A mail ready to be queued with others.
    Ready(Prepared),
}

/// A mail built from a stanza, ready to be queued.
struct Prepared {
    message: Message,
    sender: BareJid,
    mail_from: String,
    rcpt: String,
    message_id: String,
    raw: Vec<u8>,
    record: MessageRecord,
    files: usize,
}

/// A fetched shared file, named.
struct Fetched {
    name: String,
    content_type: String,
    data: Vec<u8>,
}

/// How long discovered upload services and display names are kept.
const CACHE_TIME: Duration = Duration::from_secs(3600);
const NS_HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";

pub struct Intake {
    pub signers: Arc<Signers>,
    pub config: Arc<Config>,
    pub store: Store,
    pub fetcher: Fetcher,
    pub upload_cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    pub name_cache: Mutex<HashMap<String, (Instant, Option<String>)>>,
    pub link: LinkHandle,
    /// Mails per XMPP sender.
    pub sender_mails: Mutex<Limiter<BareJid>>,
}

impl Intake {
    pub async fn run(self, mut stanzas: mpsc::Receiver<Stanza>, shutdown: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let first = tokio::select! {
                stanza = stanzas.recv() => match stanza {
                    Some(stanza) => stanza,
                    None => return,
                },
                () = shutdown.cancelled() => return,
            };
            // What is waiting is queued in one transaction.
            let mut batch = vec![first];
            while batch.len() < 64 {
                match stanzas.try_recv() {
                    Ok(stanza) => batch.push(stanza),
                    Err(_) => break,
                }
            }
            let mut ready = Vec::new();
            for stanza in batch {
                let reply = match stanza {
                    Stanza::Iq(iq) if is_vcard_request(&iq) => {
                        Some(Stanza::Iq(this.vcard(iq).await))
                    }
                    Stanza::Iq(iq) => Some(Stanza::Iq(this.register(iq).await)),
                    Stanza::Message(message) => match this.message(message).await {
                        Intaken::Answer(reply) => reply.map(Stanza::Message),
                        Intaken::Ready(prepared) => {
                            ready.push(prepared);
                            None
                        }
                    },
                    Stanza::Presence(_) => None,
                };
                if let Some(reply) = reply {
                    this.link.send(reply).await;
                }
            }
            for reply in this.queue(ready).await.into_iter().flatten() {
                this.link.send(reply).await;
            }
        }
    }

    fn served(&self, jid: &BareJid) -> bool {
        self.config.mail.serves(jid.domain().as_str())
    }

    /// XEP-0077 at the component: get, set, and set with `<remove/>`.
    async fn register(&self, iq: Iq) -> Iq {
        let Some(user) = iq.from().map(|j| j.to_bare()) else {
            return error(
                &iq,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no sender",
            );
        };
        if !self.served(&user) {
            let text = format!(
                "only users of {} can register here",
                self.config.mail.domains.join(", ")
            );
            return error(&iq, ErrorType::Cancel, DefinedCondition::NotAllowed, &text);
        }
        let outcome = match &iq {
            Iq::Get { .. } => self.store.user_options(&user).await.map(|options| {
                let mut query = Element::builder("query", NS_REGISTER)
                    .append(
                        Element::builder("instructions", NS_REGISTER)
                            .append(format!(
                                "Register to get mail at {user} and to write to any e-mail address through {}.",
                                self.config.component.jid
                            ))
                            .build(),
                    )
                    .append(Element::builder("username", NS_REGISTER).append(user.node().map(|n| n.as_str()).unwrap_or_default()).build())
                    .append(options_form(options.unwrap_or_default()));
                if options.is_some() {
                    query = query.append(Element::builder("registered", NS_REGISTER).build());
                }
                Some(query.build())
            }),
            Iq::Set { payload, .. } if payload.has_child("remove", NS_REGISTER) => {
                self.store.unregister(&user).await.map(|was| {
                    info!(user = %user, was_registered = was, "Unregistered.");
                    None
                })
            }
            Iq::Set { payload, .. } => {
                let options = submitted_options(payload);
                self.store.register_with(&user, options).await.map(|()| {
                    info!(user = %user, oob_each_file = options.oob_each_file, xhtml_im = options.xhtml_im, "Registered.");
                    None
                })
            }
            _ => return error(&iq, ErrorType::Modify, DefinedCondition::BadRequest, "not a request"),
        };
        match outcome {
            Ok(payload) => result(&iq, payload),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for registration."
                );
                error(
                    &iq,
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                    "try again later",
                )
            }
        }
    }

    /// A message to a mail contact: checked, then built and queued (after
    /// fetching the files it shares, in a task of its own). Returns the
    /// answer to send back now, if any: an error, or the XEP-0184 receipt.
    async fn message(self: &Arc<Self>, message: Message) -> Intaken {
        if matches!(message.type_, MessageType::Error | MessageType::Headline) {
            return Intaken::Answer(None);
        }
        let parts = stanza_parts(&message);
        // Chat states, receipts and the like carry nothing to mail.
        if parts.body.trim().is_empty() && parts.shared.is_empty() {
            return Intaken::Answer(None);
        }
        let sending = match self.check(&message).await {
            Ok(sending) => sending,
            Err(refusal) => return Intaken::Answer(Some(refusal)),
        };
        if parts.shared.is_empty() {
            return match self.prepare(message, parts, sending, Vec::new()).await {
                Ok(prepared) => Intaken::Ready(prepared),
                Err(refusal) => Intaken::Answer(Some(refusal)),
            };
        }
        let this = self.clone();
        tokio::spawn(async move {
            let upload_hosts = match this.fetcher.has_host_list() {
                true => Vec::new(),
                false => this.upload_hosts(sending.sender.domain().as_str()).await,
            };
            let mut files = Vec::new();
            let mut parts = parts;
            for shared in std::mem::take(&mut parts.shared) {
                match this.fetcher.fetch(&shared.url, &upload_hosts).await {
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
                        if !parts.body.is_empty() {
                            parts.body.push('\n');
                        }
                        parts.body.push_str(&shared.url);
                    }
                }
            }
            let replies = match this.prepare(message, parts, sending, files).await {
                Ok(prepared) => this.queue(vec![prepared]).await,
                Err(refusal) => vec![Some(refusal)],
            };
            for reply in replies.into_iter().flatten() {
                this.link.send(reply).await;
            }
        });
        Intaken::Answer(None)
    }

    /// The hosts of the HTTP upload services (XEP-0363) the sender's
    /// server lists in disco#items, remembered for an hour.
    async fn upload_hosts(&self, domain: &str) -> Vec<String> {
        if let Some(hosts) = self.cached(&self.upload_cache, domain) {
            return hosts;
        }
        let mut hosts = Vec::new();
        let items = self
            .ask(domain, Element::builder("query", NS_DISCO_ITEMS).build())
            .await;
        let jids: Vec<String> = items
            .iter()
            .flat_map(|query| query.children())
            .filter(|item| item.is("item", NS_DISCO_ITEMS))
            .filter_map(|item| item.attr("jid").map(str::to_owned))
            .take(16)
            .collect();
        for jid in jids {
            let info = self
                .ask(&jid, Element::builder("query", NS_DISCO_INFO).build())
                .await;
            let uploads = info
                .iter()
                .flat_map(|q| q.children())
                .any(|f| f.is("feature", NS_DISCO_INFO) && f.attr("var") == Some(NS_HTTP_UPLOAD));
            if uploads {
                hosts.push(jid.to_ascii_lowercase());
            }
        }
        self.remember(&self.upload_cache, domain, hosts.clone());
        hosts
    }

    /// The display name in the sender's vCard (XEP-0054), for From;
    /// remembered for an hour.
    async fn display_name(&self, user: &BareJid) -> Option<String> {
        if let Some(name) = self.cached(&self.name_cache, user.as_str()) {
            return name;
        }
        let vcard = self
            .ask(user.as_str(), Element::builder("vCard", NS_VCARD).build())
            .await;
        let name = vcard.and_then(|v| {
            ["FN", "NICKNAME"]
                .iter()
                .filter_map(|field| {
                    v.get_child(field, NS_VCARD)
                        .map(|e| e.text().trim().to_owned())
                })
                .find(|n| !n.is_empty())
        });
        self.remember(&self.name_cache, user.as_str(), name.clone());
        name
    }

    /// The payload of the answer to an IQ get from the gateway, if any.
    async fn ask(&self, to: &str, payload: Element) -> Option<Element> {
        let to = jid::Jid::new(to).ok()?;
        let iq = Iq::Get {
            from: Some(self.config.component.jid.clone().into()),
            to: Some(to),
            id: String::new(),
            payload,
        };
        match self.link.request(iq, Duration::from_secs(3)).await? {
            Iq::Result { payload, .. } => payload,
            _ => None,
        }
    }

    fn cached<T: Clone>(
        &self,
        cache: &Mutex<HashMap<String, (Instant, T)>>,
        key: &str,
    ) -> Option<T> {
        let cache = cache.lock().ok()?;
        let (at, value) = cache.get(key)?;
        (at.elapsed() < CACHE_TIME).then(|| value.clone())
    }

    fn remember<T>(&self, cache: &Mutex<HashMap<String, (Instant, T)>>, key: &str, value: T) {
        if let Ok(mut cache) = cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TIME);
            }
            cache.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    /// Counts one mail against the sender's rate.
    fn count_mail(&self, sender: &BareJid) -> Decision {
        match self.sender_mails.lock() {
            Ok(mut limiter) => limiter.check(sender, 1, Instant::now()),
            Err(_) => Decision::Allow,
        }
    }

    /// Who sends to whom, or the error that refuses the message.
    async fn check(&self, message: &Message) -> Result<Sending, Message> {
        let refuse = |type_, condition, text: &str| message_error(message, type_, condition, text);
        if message.type_ == MessageType::Groupchat {
            return Err(refuse(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                "group chats cannot be mailed",
            ));
        }
        let Some(sender) = message.from.as_ref().map(|j| j.to_bare()) else {
            return Err(refuse(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no sender",
            ));
        };
        let Some(to) = message.to.as_ref().map(|j| j.to_bare()) else {
            return Err(refuse(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no recipient",
            ));
        };
        let gateway = self.config.component.jid.domain();
        let rcpt = jid_to_mailbox(&to, gateway).map_err(|e| {
            refuse(
                ErrorType::Modify,
                DefinedCondition::ItemNotFound,
                &format!(
                    "{e}; write to the address with @ escaped, e.g. bob\\40example.net@{gateway}"
                ),
            )
        })?;
        let registered = self.store.is_registered(&sender).await.map_err(|e| {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for an outgoing message."
            );
            refuse(
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                "the mail could not be queued, try again later",
            )
        })?;
        let facts = AddressFacts {
            domain_served: self.served(&sender),
            registered,
        };
        match sender_verdict(self.config.mail.users, facts) {
            SenderVerdict::Allow => {}
            SenderVerdict::ForeignDomain => {
                let text = format!(
                    "only users of {} can send mail here",
                    self.config.mail.domains.join(", ")
                );
                return Err(refuse(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    &text,
                ));
            }
            SenderVerdict::NotRegistered => {
                let text = format!("register with {gateway} (XEP-0077) before sending mail");
                return Err(refuse(ErrorType::Auth, DefinedCondition::Forbidden, &text));
            }
        }
        if let Decision::Deny { retry_after } = self.count_mail(&sender) {
            info!(sender = %sender, "Sender over its mail rate.");
            let limit = self.config.limits.sender_mails.count;
            let text = format!(
                "at most {limit} mails an hour; try again in {} minutes",
                retry_after.as_secs().div_ceil(60)
            );
            return Err(refuse(
                ErrorType::Wait,
                DefinedCondition::PolicyViolation,
                &text,
            ));
        }
        let from = MailAddress::parse(sender.as_str()).map_err(|_| {
            refuse(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                "your JID is not a valid mail address",
            )
        })?;
        let rcpt = self.original_case(&to, rcpt).await;
        Ok(Sending {
            sender,
            to,
            from,
            rcpt,
        })
    }

    /// Builds the mail, and what threads its answer.
    async fn prepare(
        &self,
        message: Message,
        parts: StanzaParts,
        sending: Sending,
        files: Vec<Fetched>,
    ) -> Result<Prepared, Message> {
        let Sending {
            sender,
            to,
            from,
            rcpt,
        } = sending;
        let gateway = self.config.component.jid.domain();
        // A client that sends the stanza again (same origin-id or id) makes
        // the same mail, queued once.
        let message_id = match &parts.stanza_id {
            Some(id) => message_id_for_stanza(&sender, id, gateway.as_str()),
            None => format!("{:032x}@{}", rand::rng().random::<u128>(), gateway),
        };
        let parent = self.parent(&sender, &parts).await;
        let references = parent
            .as_ref()
            .map(|p| references_for_reply(&p.message_id, &p.references))
            .unwrap_or_default();
        let attached: Vec<OutgoingFile<'_>> = files
            .iter()
            .map(|f| OutgoingFile {
                name: &f.name,
                content_type: &f.content_type,
                data: &f.data,
            })
            .collect();
        let from_name = self.display_name(&sender).await;
        let outgoing = OutgoingMail {
            from: &from,
            from_name: from_name.as_deref(),
            to: &rcpt,
            subject: parts.subject.as_deref(),
            body: &parts.body,
            message_id: &message_id,
            in_reply_to: parent.as_ref().map(|p| p.message_id.as_str()),
            references: &references,
            html: parts.html.as_deref(),
            styled: parts.styled,
            files: &attached,
            jabber_id: self
                .config
                .outbound
                .jabber_id_header
                .then_some(sender.as_str()),
            date: Millis::now().0 / 1000,
        };
        let raw = to_rfc5322(&outgoing).map_err(|e| {
            message_error(
                &message,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                &e.to_string(),
            )
        })?;
        let raw = self.signers.sign(from.domain(), raw).map_err(|e| {
            error!(error = format!("{e:#}"), "DKIM signing failed.");
            message_error(
                &message,
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                "the mail could not be signed",
            )
        })?;
        let thread = parts
            .thread
            .clone()
            .or_else(|| parent.as_ref().map(|p| p.thread.clone()))
            .or_else(|| thread_for(Some(&message_id), &[], &references))
            .unwrap_or_default();
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
            record,
            files: files.len(),
        })
    }

    /// Queues prepared mails in one transaction; the answer to each
    /// stanza: its receipt if asked for, or a `wait` error.
    async fn queue(&self, batch: Vec<Prepared>) -> Vec<Option<Message>> {
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
                };
                (mail, Some(&p.record))
            })
            .collect();
        match self.store.queue_mails(&mails).await {
            Ok(ids) => {
                for (p, id) in batch.iter().zip(ids) {
                    info!(queue_id = id, sender = %p.sender, rcpt = %p.rcpt, size = p.raw.len(), files = p.files, "Queued mail.");
                }
                batch.iter().map(|p| receipt(&p.message)).collect()
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for outgoing messages."
                );
                batch
                    .iter()
                    .map(|p| {
                        Some(message_error(
                            &p.message,
                            ErrorType::Wait,
                            DefinedCondition::InternalServerError,
                            "the mail could not be queued, try again later",
                        ))
                    })
                    .collect()
            }
        }
    }

    /// XEP-0054 vCard of a mail contact: the name seen in its mail's From
    /// header, and its address.
    async fn vcard(&self, iq: Iq) -> Iq {
        let Some(contact) = iq.to().map(|j| j.to_bare()) else {
            return error(
                &iq,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no contact",
            );
        };
        let Ok(address) = jid_to_mailbox(&contact, self.config.component.jid.domain()) else {
            return error(
                &iq,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "not a mail contact",
            );
        };
        let (address, name) = match self.store.contact(&contact).await {
            Ok(Some((seen, name))) => (seen, name),
            Ok(None) => (address.to_string(), String::new()),
            Err(e) => {
                warn!(error = format!("{e:#}"), "Store unavailable for a vCard.");
                return error(
                    &iq,
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                    "try again later",
                );
            }
        };
        let text = |name: &str, value: &str| Element::builder(name, NS_VCARD).append(value).build();
        let vcard = Element::builder("vCard", NS_VCARD)
            .append(text("FN", if name.is_empty() { &address } else { &name }))
            .append(
                Element::builder("EMAIL", NS_VCARD)
                    .append(Element::builder("INTERNET", NS_VCARD).build())
                    .append(Element::builder("PREF", NS_VCARD).build())
                    .append(text("USERID", &address))
                    .build(),
            )
            .build();
        result(&iq, Some(vcard))
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

    /// The address as first seen in mail, when it is the same mailbox:
    /// JIDs lose the case of the local part, some mail systems need it.
    async fn original_case(&self, jid: &BareJid, rcpt: MailAddress) -> MailAddress {
        match self.store.contact(jid).await {
            Ok(Some((seen, _))) => match MailAddress::parse(&seen) {
                Ok(seen) if seen.same_mailbox(&rcpt) => seen,
                _ => rcpt,
            },
            _ => rcpt,
        }
    }
}

/// The XEP-0184 receipt for `message`, if it asked for one.
fn receipt(message: &Message) -> Option<Message> {
    let asked = message
        .payloads
        .iter()
        .any(|p| p.is("request", xmpp_parsers::ns::RECEIPTS));
    let id = message.id.as_ref()?.0.clone();
    if !asked {
        return None;
    }
    let mut reply = Message::new_with_type(MessageType::Normal, message.from.clone());
    reply.from = message.to.clone();
    reply.payloads.push(Received { id }.into());
    Some(reply)
}

fn is_vcard_request(iq: &Iq) -> bool {
    matches!(iq, Iq::Get { payload, .. } if payload.is("vCard", NS_VCARD))
}

const NS_DATA: &str = "jabber:x:data";

/// The XEP-0004 form of the per-user options, inside the XEP-0077 query.
fn options_form(options: UserOptions) -> Element {
    let field = |var: &str, kind: &str, label: Option<&str>, value: &str| {
        let mut field = Element::builder("field", NS_DATA)
            .attr(xml_ncname!("var").into(), var)
            .attr(xml_ncname!("type").into(), kind);
        if let Some(label) = label {
            field = field.attr(xml_ncname!("label").into(), label);
        }
        field
            .append(Element::builder("value", NS_DATA).append(value).build())
            .build()
    };
    let flag = |on: bool| if on { "1" } else { "0" };
    Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").into(), "form")
        .append(Element::builder("title", NS_DATA).append("Mail options").build())
        .append(field("FORM_TYPE", "hidden", None, NS_REGISTER))
        .append(field(
            "oob_each_file",
            "boolean",
            Some("Send each attachment again as a message of its own (for clients that show one file per message)"),
            flag(options.oob_each_file),
        ))
        .append(field(
            "xhtml_im",
            "boolean",
            Some("Also send formatted mail as XHTML-IM (for older clients)"),
            flag(options.xhtml_im),
        ))
        .build()
}

/// The options of a submitted registration form; defaults without one.
fn submitted_options(query: &Element) -> UserOptions {
    let Some(form) = query.get_child("x", NS_DATA) else {
        return UserOptions::default();
    };
    let value = |var: &str| {
        form.children()
            .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", NS_DATA))
            .is_some_and(|v| matches!(v.text().trim(), "1" | "true"))
    };
    UserOptions {
        oob_each_file: value("oob_each_file"),
        xhtml_im: value("xhtml_im"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_form_round_trips() {
        let options = UserOptions {
            oob_each_file: true,
            xhtml_im: false,
        };
        let mut form = options_form(options);
        form.set_attr(
            xmpp_parsers::minidom::rxml::Namespace::NONE,
            xml_ncname!("type").into(),
            "submit",
        );
        let query = Element::builder("query", NS_REGISTER).append(form).build();
        assert_eq!(submitted_options(&query), options);
        let empty = Element::builder("query", NS_REGISTER).build();
        assert_eq!(submitted_options(&empty), UserOptions::default());
    }
}
