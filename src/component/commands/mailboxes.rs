//! Ad-hoc commands (XEP-0050) for users, to attach their legacy IMAP
//! mailboxes: "Attach a mailbox", "Detach a mailbox", "Mailboxes", and
//! "Search mail" (server-side search; "Show" brings a message found into
//! the chat).
//! The operator's twins are `facteur imap attach|detach|list`.
//!
//! Attaching logs in to the server, which may take seconds: the intake
//! runs these commands beside its loop, never in it.

use facteur_policy::relay::{sender_verdict, AddressFacts, SenderVerdict};
use jid::BareJid;
use tracing::{debug, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{
    bad_input, field, field_values, form, note, option, unknown_action, Request, NS_COMMANDS,
};
use crate::component::reply::{self, error, Fault};
use crate::config::Config;
use crate::imap::search::{self, Matches, SearchQuery};
use crate::imap::{attach, line, AttachRequest, SubmissionRequest};
use crate::store::{ImapMailbox, Store, TlsMode};

/// The user's commands, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxCommand {
    Attach,
    Detach,
    List,
    Search,
}

pub const MAILBOX_COMMANDS: [MailboxCommand; 4] = [
    MailboxCommand::Attach,
    MailboxCommand::Detach,
    MailboxCommand::List,
    MailboxCommand::Search,
];

/// Where no key seals passwords.
const NO_IMAP: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::ServiceUnavailable,
    "this gateway does not attach IMAP mailboxes",
);

const NOT_SERVED: Fault = Fault::new(
    ErrorType::Auth,
    DefinedCondition::Forbidden,
    "only users of the served domains attach mailboxes",
);

impl MailboxCommand {
    pub fn node(self) -> &'static str {
        match self {
            MailboxCommand::Attach => "imap-attach",
            MailboxCommand::Detach => "imap-detach",
            MailboxCommand::List => "imap-list",
            MailboxCommand::Search => "imap-search",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MailboxCommand::Attach => "Attach a mailbox",
            MailboxCommand::Detach => "Detach a mailbox",
            MailboxCommand::List => "Mailboxes",
            MailboxCommand::Search => "Search mail",
        }
    }

    pub fn from_node(node: &str) -> Option<MailboxCommand> {
        MAILBOX_COMMANDS.into_iter().find(|c| c.node() == node)
    }
}

/// Whether `jid` is a user who may attach mailboxes here.
pub fn may_attach(config: &Config, jid: &Jid) -> bool {
    config.imap.key.is_some() && jid.node().is_some() && config.mail.serves(jid.domain().as_str())
}

/// The answer while too many mailbox commands run already.
pub fn busy(iq: &Iq) -> Iq {
    error(
        iq,
        Fault::new(
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            "too many mailboxes are being attached; try again in a minute",
        ),
    )
}

/// Whether `iq` runs one of these commands.
pub fn is_mailbox_command(iq: &Iq) -> bool {
    matches!(iq, Iq::Set { payload, .. }
        if payload.is("command", NS_COMMANDS)
            && payload.attr("node").and_then(MailboxCommand::from_node).is_some())
}

/// What answers from an attached mailbox's mail do; said in the form
/// and when it is attached.
fn answers_note(user: &BareJid, outgoing: Option<&SubmissionRequest>) -> String {
    match outgoing {
        None => format!(
            "Answers to mail from this mailbox leave from your XMPP address, {user}, \
             not from the mailbox's address."
        ),
        Some(outgoing) => format!(
            "Answers to mail from this mailbox leave from the mailbox's address, \
             through {}:{}.",
            outgoing.host, outgoing.port
        ),
    }
}

fn attach_form(user: &BareJid) -> Element {
    let text = |var: &str, kind: &str, label: &str, value: &[&str], required: bool| {
        let values: Vec<String> = value.iter().map(|v| (*v).to_owned()).collect();
        let mut f = field(var, kind, label, &values);
        if required {
            f.append_child(Element::builder("required", ns::DATA_FORMS).build());
        }
        f
    };
    let modes = |mut list: Element| {
        for mode in ["implicit", "starttls", "none"] {
            list.append_child(option(mode, mode));
        }
        list
    };
    let tls = modes(text(
        "tls",
        "list-single",
        "TLS: implicit (port 993), starttls (port 143), or none (loopback only)",
        &["implicit"],
        true,
    ));
    let smtp_tls = modes(text(
        "smtp_tls",
        "list-single",
        "Outgoing TLS: starttls (port 587), implicit (port 465), or none (loopback only)",
        &["starttls"],
        false,
    ));
    let mut x = form(
        "form",
        NS_COMMANDS,
        MailboxCommand::Attach.name(),
        vec![
            text("host", "text-single", "IMAP server", &[], true),
            text("port", "text-single", "Port", &["993"], true),
            tls,
            text("username", "text-single", "Login", &[], true),
            text("password", "text-private", "Password", &[], true),
            text(
                "folders",
                "text-multi",
                "Folders to follow",
                &["INBOX"],
                false,
            ),
            text(
                "import",
                "text-single",
                "Also bring the latest N messages of each folder (0: only new mail)",
                &["0"],
                false,
            ),
            text(
                "smtp_host",
                "text-single",
                "Outgoing (submission) server, for answers from the mailbox's address (optional)",
                &[],
                false,
            ),
            text("smtp_port", "text-single", "Outgoing port", &["587"], false),
            smtp_tls,
            text(
                "smtp_username",
                "text-single",
                "Outgoing login (empty: the login above)",
                &[],
                false,
            ),
            text(
                "smtp_password",
                "text-private",
                "Outgoing password (empty: the password above)",
                &[],
                false,
            ),
            text(
                "smtp_from",
                "text-single",
                "The mailbox's address, which answers leave from (empty: the login, if an address)",
                &[],
                false,
            ),
            text(
                "sent_copy",
                "boolean",
                "Put a copy of answers in the Sent folder (off if the server files one itself)",
                &["1"],
                false,
            ),
        ],
    );
    x.append_child(
        Element::builder("instructions", ns::DATA_FORMS)
            .append(format!(
                "New mail in the mailbox will reach you here. {} Unless you give its \
                 outgoing server: then they leave from the mailbox's address, through \
                 that server, with a copy in its Sent folder.",
                answers_note(user, None)
            ))
            .build(),
    );
    x
}

/// Runs a mailbox command, or answers why not.
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let Iq::Set { from, payload, .. } = &iq else {
        return error(&iq, reply::NOT_A_REQUEST);
    };
    let Some(from) = from.clone() else {
        return error(&iq, reply::NO_SENDER);
    };
    let node = payload.attr("node").unwrap_or_default().to_owned();
    let Some(command) = MailboxCommand::from_node(&node) else {
        return error(&iq, NOT_SERVED);
    };
    if config.imap.key.is_none() {
        return error(&iq, NO_IMAP);
    }
    if !may_attach(config, &from) {
        return error(&iq, NOT_SERVED);
    }
    let user = from.to_bare();
    // With `users = "registered"`, mail reaches registered users only:
    // so does the mail of their mailboxes.
    let registered = match store.is_registered(&user).await {
        Ok(registered) => registered,
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for a mailbox command."
            );
            return error(&iq, reply::TRY_LATER);
        }
    };
    let facts = AddressFacts {
        domain_served: true,
        registered,
    };
    if sender_verdict(config.mail.users, facts) != SenderVerdict::Allow {
        return error(
            &iq,
            Fault::with_text(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                format!(
                    "register with {} (XEP-0077) before attaching a mailbox",
                    config.component.jid
                ),
            ),
        );
    }
    let request = Request::read(payload);
    let submitted = request.submitted;
    let reply = |status: &str, children: Vec<Element>| request.reply(&iq, &node, status, children);
    let executing = |form: Element| request.executing(&iq, &node, form);
    if request.action == "cancel" {
        return reply("canceled", Vec::new());
    }
    if !matches!(request.action, "execute" | "complete" | "next") {
        return error(&iq, unknown_action(request.action));
    }
    let failed = |e: anyhow::Error| {
        warn!(
            error = format!("{e:#}"),
            "Store unavailable for a mailbox command."
        );
        reply::TRY_LATER
    };
    let mailboxes = match store.imap_mailboxes(Some(&user)).await {
        Ok(mailboxes) => mailboxes,
        Err(e) => return error(&iq, failed(e)),
    };
    match (command, submitted) {
        (MailboxCommand::List, _) => {
            let lines: Vec<String> = mailboxes.iter().map(line).collect();
            let text = if lines.is_empty() {
                "No mailbox is attached.".to_owned()
            } else {
                lines.join("\n")
            };
            reply("completed", vec![note("info", &text)])
        }
        (MailboxCommand::Attach, None) => executing(attach_form(&user)),
        (MailboxCommand::Attach, Some(form)) => {
            let request = match attach_request(&user, form) {
                Ok(request) => request,
                Err(fault) => return error(&iq, fault),
            };
            let Some(key) = config.imap.key.as_ref() else {
                return error(&iq, NO_IMAP);
            };
            match attach(store, key, &request).await {
                Ok(id) => {
                    info!(mailbox = id, user = %user, host = %request.host, "Mailbox attached.");
                    reply(
                        "completed",
                        vec![note(
                            "info",
                            &format!(
                                "Attached {} at {}: new mail will reach you here. {}",
                                request.username,
                                request.host,
                                answers_note(&user, request.submission.as_ref())
                            ),
                        )],
                    )
                }
                Err(e) => {
                    info!(user = %user, host = %request.host, error = format!("{e:#}"), "Mailbox not attached.");
                    error(&iq, not_acceptable(&e))
                }
            }
        }
        (MailboxCommand::Detach, None) => {
            if mailboxes.is_empty() {
                return reply("completed", vec![note("info", "No mailbox is attached.")]);
            }
            let choice = mailbox_choice(&mailboxes, "The mailbox to detach", false);
            executing(form(
                "form",
                NS_COMMANDS,
                MailboxCommand::Detach.name(),
                vec![choice],
            ))
        }
        (MailboxCommand::Detach, Some(form)) => {
            let chosen = field_values(form, "mailbox");
            let Some((host, username)) = chosen.first().and_then(|v| v.split_once(' ')) else {
                return error(&iq, bad_input("no mailbox chosen".into()));
            };
            match store.imap_detach(&user, host, username).await {
                Ok(true) => {
                    info!(user = %user, host, "Mailbox detached.");
                    reply(
                        "completed",
                        vec![note(
                            "info",
                            &format!("Detached {username} at {host}: nothing more comes from it."),
                        )],
                    )
                }
                Ok(false) => error(
                    &iq,
                    Fault::with_text(
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        format!("no mailbox {username} at {host}"),
                    ),
                ),
                Err(e) => error(&iq, failed(e)),
            }
        }
        (MailboxCommand::Search, None) => {
            if mailboxes.is_empty() {
                return reply("completed", vec![note("info", "No mailbox is attached.")]);
            }
            executing(search_form(&mailboxes))
        }
        (MailboxCommand::Search, Some(form)) => {
            let Some(key) = config.imap.key.as_ref() else {
                return error(&iq, NO_IMAP);
            };
            let chosen = field_values(form, "mailbox");
            let Some(mailbox) =
                chosen
                    .first()
                    .and_then(|v| v.split_once(' '))
                    .and_then(|(host, username)| {
                        mailboxes
                            .iter()
                            .find(|m| m.host == host && m.username == username)
                    })
            else {
                return error(&iq, bad_input("no attached mailbox chosen".into()));
            };
            let one = |var: &str| {
                field_values(form, var)
                    .into_iter()
                    .next()
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let folder = Some(one("folder"))
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "INBOX".to_owned());
            let refused = |e: anyhow::Error| {
                info!(user = %user, host = %mailbox.host, error = format!("{e:#}"), "Mailbox search failed.");
                error(&iq, not_acceptable(&e))
            };
            let shown = one("message");
            if !shown.is_empty() {
                let (Ok(uid_validity), Ok(uid)) =
                    (one("uidvalidity").parse::<u32>(), shown.parse::<u32>())
                else {
                    return error(&iq, bad_input("no message found chosen".into()));
                };
                return match search::show(store, key, mailbox, &folder, uid_validity, uid).await {
                    Ok(()) => {
                        info!(user = %user, mailbox = mailbox.id, folder = %folder, uid, "Mail shown from a search.");
                        reply(
                            "completed",
                            vec![note("info", "The message comes to you in a chat.")],
                        )
                    }
                    Err(e) => refused(e),
                };
            }
            let query = SearchQuery {
                from: one("from"),
                subject: one("subject"),
                text: one("text"),
                since: one("since"),
            };
            if let Err(why) = search::criteria(&query) {
                return error(&iq, bad_input(why));
            }
            match search::search(key, mailbox, &folder, &query).await {
                Ok(found) if found.listed.is_empty() => reply(
                    "completed",
                    vec![note("info", &format!("Nothing found in {folder}."))],
                ),
                Ok(found) => {
                    debug!(user = %user, mailbox = mailbox.id, found = found.total, "Mailbox searched.");
                    executing(found_form(mailbox, &folder, &found))
                }
                Err(e) => refused(e),
            }
        }
    }
}

/// What the server (or the mailbox) refused, in its words.
fn not_acceptable(e: &anyhow::Error) -> Fault {
    Fault::with_text(
        ErrorType::Modify,
        DefinedCondition::NotAcceptable,
        format!("{e:#}"),
    )
}

/// A list-single field of the user's mailboxes, by "host username".
fn mailbox_choice(mailboxes: &[ImapMailbox], label: &str, first: bool) -> Element {
    let value: Vec<String> = mailboxes
        .first()
        .filter(|_| first)
        .map(|m| format!("{} {}", m.host, m.username))
        .into_iter()
        .collect();
    let mut choice = field("mailbox", "list-single", label, &value);
    choice.append_child(Element::builder("required", ns::DATA_FORMS).build());
    for mailbox in mailboxes {
        choice.append_child(option(
            &format!("{} at {}", mailbox.username, mailbox.host),
            &format!("{} {}", mailbox.host, mailbox.username),
        ));
    }
    choice
}

/// What to search for, and where.
fn search_form(mailboxes: &[ImapMailbox]) -> Element {
    let mut x = form(
        "form",
        NS_COMMANDS,
        MailboxCommand::Search.name(),
        vec![
            mailbox_choice(mailboxes, "Mailbox", true),
            field("folder", "text-single", "Folder", &["INBOX".to_owned()]),
            field("from", "text-single", "From contains", &[]),
            field("subject", "text-single", "Subject contains", &[]),
            field(
                "text",
                "text-single",
                "Text contains (headers or body)",
                &[],
            ),
            field("since", "text-single", "Since (a date: 2026-12-07)", &[]),
        ],
    );
    x.append_child(
        Element::builder("instructions", ns::DATA_FORMS)
            .append("The mail server searches the folder; every term given must match.")
            .build(),
    );
    x
}

/// The messages found, to choose one to show.
fn found_form(mailbox: &ImapMailbox, folder: &str, found: &Matches) -> Element {
    let hidden = |var: &str, value: String| field(var, "hidden", "", &[value]);
    let mut choice = field("message", "list-single", "Show", &[]);
    choice.append_child(Element::builder("required", ns::DATA_FORMS).build());
    for message in &found.listed {
        choice.append_child(
            Element::builder("option", ns::DATA_FORMS)
                .attr(
                    xml_ncname!("label").into(),
                    format!("{} {} — {}", message.date, message.from, message.subject),
                )
                .append(
                    Element::builder("value", ns::DATA_FORMS)
                        .append(message.uid.to_string())
                        .build(),
                )
                .build(),
        );
    }
    let mut x = form(
        "form",
        NS_COMMANDS,
        MailboxCommand::Search.name(),
        vec![
            hidden("mailbox", format!("{} {}", mailbox.host, mailbox.username)),
            hidden("folder", folder.to_owned()),
            hidden("uidvalidity", found.uid_validity.to_string()),
            choice,
        ],
    );
    let listed = found.listed.len();
    x.append_child(
        Element::builder("instructions", ns::DATA_FORMS)
            .append(match found.total > listed {
                true => format!(
                    "{} found in {folder}; the latest {listed} are listed. Choose one to show it here.",
                    found.total
                ),
                false => format!("{listed} found in {folder}. Choose one to show it here."),
            })
            .build(),
    );
    x
}

/// The attach request a submitted form makes.
pub(super) fn attach_request(user: &BareJid, form: &Element) -> Result<AttachRequest, Fault> {
    let one = |var: &str| -> Result<String, Fault> {
        field_values(form, var)
            .into_iter()
            .next()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad_input(format!("{var} is required")))
    };
    let port = one("port")?
        .parse::<u16>()
        .map_err(|_| bad_input("the port is a number up to 65535".into()))?;
    let tls = one("tls")?.parse::<TlsMode>().map_err(bad_input)?;
    // The password is taken as typed: spaces may be part of it.
    let password = field_values(form, "password")
        .into_iter()
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad_input("password is required".into()))?;
    let folders: Vec<String> = field_values(form, "folders")
        .iter()
        .flat_map(|v| v.lines())
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let import_last = match field_values(form, "import").first().map(|v| v.trim()) {
        None | Some("") => 0,
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| bad_input("import is a number of messages".into()))?,
    };
    let username = one("username")?;
    let optional = |var: &str| {
        field_values(form, var)
            .into_iter()
            .next()
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let submission = match optional("smtp_host").as_str() {
        "" => None,
        host => Some(SubmissionRequest {
            host: host.to_owned(),
            port: match optional("smtp_port").as_str() {
                "" => 587,
                port => port
                    .parse::<u16>()
                    .map_err(|_| bad_input("the outgoing port is a number up to 65535".into()))?,
            },
            tls: match optional("smtp_tls").as_str() {
                "" => TlsMode::Starttls,
                mode => mode.parse::<TlsMode>().map_err(bad_input)?,
            },
            username: match optional("smtp_username").as_str() {
                "" => username.clone(),
                login => login.to_owned(),
            },
            password: field_values(form, "smtp_password")
                .into_iter()
                .next()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| password.clone()),
            from: optional("smtp_from"),
            sent_copy: !matches!(optional("sent_copy").as_str(), "0" | "false"),
        }),
    };
    Ok(AttachRequest {
        user: user.clone(),
        host: one("host")?,
        port,
        tls,
        username,
        password,
        folders,
        import_last,
        submission,
    })
}
