//! Ad-hoc commands (XEP-0050). For every user of a served domain,
//! "OpenPGP key" (in `key_command`), "Blocked senders" (`blocked`), and
//! where mailboxes can be attached, the mailbox commands (`mailboxes`).
//! For the gateway's administrators, the JIDs
//! of `[component] admins`: the users commands of XEP-0133 that fit a
//! gateway (add, remove, list, count), and facteur's own for the queues
//! and statistics, and the reload of the configuration file. Each has a
//! twin outside XMPP: `facteur users …`, `facteur queue …` and `facteur
//! stats` over the same store calls; SIGHUP (`systemctl reload facteur`)
//! for the reload.
//!
//! A command that needs input answers `execute` with a form and
//! `status='executing'`; the submitted form completes it. Nothing is kept
//! between the two steps: the form carries all of it, so the session id
//! only echoes. A first `execute` that already carries a submitted form
//! completes at once.

use jid::BareJid;
use rand::Rng;
use tracing::{info, warn};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::key_command;
use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::reload::Reloader;
use crate::spam::Listings;
use crate::store::admin::{ItemId, LIST_LIMIT};
use crate::store::{Millis, Store};

mod mailboxes;

pub use mailboxes::{answer as answer_mailbox, busy, is_mailbox_command};
use mailboxes::{may_attach, MailboxCommand, MAILBOX_COMMANDS};
mod blocked;
mod spam;
mod spam_lists;

pub use spam::{submitted_thresholds, threshold_fields};

/// XEP-0050's namespace and the disco node listing the commands.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0133's form type.
const NS_ADMIN: &str = "http://jabber.org/protocol/admin";

/// Who may not run commands.
const NOT_ADMIN: Fault = Fault::new(
    ErrorType::Auth,
    DefinedCondition::Forbidden,
    "only the gateway's administrators run its commands",
);

/// Where nothing can reload (no configuration file to read again).
const NO_RELOAD: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::ServiceUnavailable,
    "this gateway cannot reload its configuration",
);

/// The commands, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    AddUser,
    DeleteUser,
    ListUsers,
    CountUsers,
    QueueList,
    QueueShow,
    QueueRetry,
    QueueDelete,
    Stats,
    Reload,
    SpamLists,
    SpamCheck,
}

const COMMANDS: [Command; 12] = [
    Command::AddUser,
    Command::DeleteUser,
    Command::ListUsers,
    Command::CountUsers,
    Command::QueueList,
    Command::QueueShow,
    Command::QueueRetry,
    Command::QueueDelete,
    Command::Stats,
    Command::Reload,
    Command::SpamLists,
    Command::SpamCheck,
];

/// A field the administrator fills in.
struct Input {
    var: &'static str,
    kind: &'static str,
    label: &'static str,
}

const ACCOUNT: Input = Input {
    var: "accountjid",
    kind: "jid-single",
    label: "The user's JID",
};
const ACCOUNTS: Input = Input {
    var: "accountjids",
    kind: "jid-multi",
    label: "The users' JIDs",
};
const CHECK: Input = Input {
    var: "check",
    kind: "text-single",
    label: "A sender address or domain, and/or a client IP",
};
const ITEM: Input = Input {
    var: "item",
    kind: "text-single",
    label: "Queue item, e.g. to_mail:42",
};

impl Command {
    fn node(self) -> &'static str {
        match self {
            Command::AddUser => "http://jabber.org/protocol/admin#add-user",
            Command::DeleteUser => "http://jabber.org/protocol/admin#delete-user",
            Command::ListUsers => "http://jabber.org/protocol/admin#get-registered-users-list",
            Command::CountUsers => "http://jabber.org/protocol/admin#get-registered-users-num",
            Command::QueueList => "queue-list",
            Command::QueueShow => "queue-show",
            Command::QueueRetry => "queue-retry",
            Command::QueueDelete => "queue-delete",
            Command::Stats => "stats",
            Command::Reload => "reload",
            Command::SpamLists => "spam-lists",
            Command::SpamCheck => "spam-check",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Command::AddUser => "Register a user",
            Command::DeleteUser => "Unregister users",
            Command::ListUsers => "List registered users",
            Command::CountUsers => "Count registered users",
            Command::QueueList => "List waiting mail",
            Command::QueueShow => "Show a queue item",
            Command::QueueRetry => "Retry a queue item now",
            Command::QueueDelete => "Delete a queue item",
            Command::Stats => "Statistics",
            Command::Reload => "Reload the configuration",
            Command::SpamLists => "Spam lists",
            Command::SpamCheck => "Check the spam lists",
        }
    }

    fn input(self) -> Option<Input> {
        match self {
            Command::AddUser => Some(ACCOUNT),
            Command::DeleteUser => Some(ACCOUNTS),
            Command::QueueShow | Command::QueueRetry | Command::QueueDelete => Some(ITEM),
            Command::SpamCheck => Some(CHECK),
            Command::ListUsers
            | Command::CountUsers
            | Command::QueueList
            | Command::Stats
            | Command::Reload
            | Command::SpamLists => None,
        }
    }

    fn from_node(node: &str) -> Option<Command> {
        COMMANDS.into_iter().find(|c| c.node() == node)
    }
}

/// disco#items of the commands node: the administrators' commands, for
/// administrators only, then the mailbox commands, for users of the
/// served domains where mailboxes can be attached, and "OpenPGP key" for
/// the users of served domains (an empty list for anyone else).
pub fn items(config: &Config, from: Option<&Jid>) -> DiscoItemsResult {
    let admin = from.is_some_and(|jid| config.component.is_admin(jid));
    let mailboxes = from.is_some_and(|jid| may_attach(config, jid));
    let user = from.is_some_and(|jid| key_command::offered_to(config, jid));
    let gateway = Jid::from(config.component.jid.clone());
    let item = |node: &str, name: &str| Item {
        jid: gateway.clone(),
        node: Some(node.to_owned()),
        name: Some(name.to_owned()),
    };
    let mut items = Vec::new();
    if admin {
        items.extend(COMMANDS.iter().map(|c| item(c.node(), c.name())));
    }
    if mailboxes {
        items.extend(MAILBOX_COMMANDS.iter().map(|c| item(c.node(), c.name())));
    }
    if user {
        items.push(item(key_command::NODE, key_command::NAME));
        items.push(item(blocked::NODE, blocked::NAME));
        items.push(item(spam::REPORT_NODE, spam::REPORT_NAME));
        items.push(item(spam::NOT_SPAM_NODE, spam::NOT_SPAM_NAME));
        items.push(item(spam::SETTINGS_NODE, spam::SETTINGS_NAME));
    }
    DiscoItemsResult {
        node: Some(NS_COMMANDS.to_owned()),
        items,
        rsm: None,
    }
}

/// disco#info of a command's node (XEP-0050 §2.3); `None` for a node that
/// is no command.
pub fn info(node: &str) -> Option<DiscoInfoResult> {
    let name = match Command::from_node(node) {
        Some(command) => command.name(),
        None if node == key_command::NODE => key_command::NAME,
        None if node == blocked::NODE => blocked::NAME,
        None if spam::is_node(node) => spam::name(node)?,
        None => MailboxCommand::from_node(node)?.name(),
    };
    Some(DiscoInfoResult {
        node: Some(node.to_owned()),
        identities: vec![Identity::new("automation", "command-node", "en", name)],
        features: [NS_COMMANDS.to_owned(), ns::DATA_FORMS.to_owned()].into(),
        extensions: Vec::new(),
    })
}

/// Whether `iq` asks to run a command.
pub fn is_command(iq: &Iq) -> bool {
    matches!(iq, Iq::Set { payload, .. } if payload.is("command", NS_COMMANDS))
}

/// Runs the command `iq` asks for, or answers why not.
/// `reloader` runs the reload command; without one it is unavailable.
pub async fn answer(
    config: &Config,
    store: &Store,
    reloader: Option<&Reloader>,
    listings: &Listings,
    iq: Iq,
) -> Iq {
    let Iq::Set { from, payload, .. } = &iq else {
        return error(&iq, reply::NOT_A_REQUEST);
    };
    let Some(from) = from.clone() else {
        return error(&iq, reply::NO_SENDER);
    };
    if payload.attr("node") == Some(key_command::NODE) {
        return key_command::answer(config, store, iq).await;
    }
    let node = payload.attr("node").unwrap_or_default().to_owned();
    if node == blocked::NODE || spam::is_node(&node) {
        return user_command(store, &iq, &from.to_bare(), payload).await;
    }
    if !config.component.is_admin(&from) {
        return error(&iq, NOT_ADMIN);
    }
    let Some(command) = Command::from_node(&node) else {
        return error(
            &iq,
            Fault::with_text(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                format!("no command {node:?}"),
            ),
        );
    };
    let request = Request::read(payload);
    match (request.action, command.input(), request.submitted) {
        ("cancel", _, _) => request.reply(&iq, &node, "canceled", Vec::new()),
        ("execute" | "complete" | "next", Some(input), None) => {
            request.executing(&iq, &node, input_form(command, &input))
        }
        ("execute" | "complete" | "next", input, submitted) => {
            let values = match (input, submitted) {
                (Some(input), Some(form)) => field_values(form, input.var),
                _ => Vec::new(),
            };
            match run(config, store, reloader, listings, &from, command, &values).await {
                Ok(done) => request.reply(&iq, &node, "completed", done),
                Err(fault) => error(&iq, fault),
            }
        }
        (other, _, _) => error(&iq, unknown_action(other)),
    }
}

/// Runs a user's own command ("Blocked senders", the spam commands) for
/// the user who sent it.
async fn user_command(store: &Store, iq: &Iq, user: &BareJid, payload: &Element) -> Iq {
    let node = payload.attr("node").unwrap_or(blocked::NODE);
    let request = Request::read(payload);
    if request.action == "cancel" {
        return request.reply(iq, node, "canceled", Vec::new());
    }
    let ran = if spam::is_node(node) {
        spam::run(node, store, user, request.submitted).await
    } else {
        blocked::run(store, user, request.submitted).await
    };
    match ran {
        Ok((completed, children)) => {
            let status = if completed { "completed" } else { "executing" };
            request.reply(iq, node, status, children)
        }
        Err(fault) => error(iq, fault),
    }
}

/// A command request as its handlers read it.
pub(super) struct Request<'a> {
    /// The session it names, else a new one.
    pub session: String,
    /// Its action, `execute` when it names none.
    pub action: &'a str,
    /// The form it submits, if any.
    pub submitted: Option<&'a Element>,
}

impl<'a> Request<'a> {
    /// The request carried by the `<command/>` `payload`.
    pub fn read(payload: &'a Element) -> Request<'a> {
        Request {
            session: payload
                .attr("sessionid")
                .map(str::to_owned)
                .unwrap_or_else(new_session),
            action: payload.attr("action").unwrap_or("execute"),
            submitted: payload
                .children()
                .find(|c| c.is("x", ns::DATA_FORMS) && c.attr("type") == Some("submit")),
        }
    }

    /// The answer to `iq`: command `node` of this session, at `status`,
    /// carrying `children`.
    pub fn reply(&self, iq: &Iq, node: &str, status: &str, children: Vec<Element>) -> Iq {
        result(
            iq,
            Some(command_reply(node, &self.session, status, children)),
        )
    }

    /// The answer to `iq` asking for `form`, to be completed.
    pub fn executing(&self, iq: &Iq, node: &str, form: Element) -> Iq {
        self.reply(iq, node, "executing", vec![complete_actions(), form])
    }
}

/// The `<command/>` of an answer.
pub(super) fn command_reply(
    node: &str,
    session: &str,
    status: &str,
    children: Vec<Element>,
) -> Element {
    Element::builder("command", NS_COMMANDS)
        .attr(xml_ncname!("node").into(), node)
        .attr(xml_ncname!("sessionid").into(), session)
        .attr(xml_ncname!("status").into(), status)
        .append_all(children)
        .build()
}

pub(super) fn new_session() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Runs `command` with the submitted `values`; what the completed
/// command carries back (a note or a result form).
async fn run(
    config: &Config,
    store: &Store,
    reloader: Option<&Reloader>,
    listings: &Listings,
    admin: &Jid,
    command: Command,
    values: &[String],
) -> Result<Vec<Element>, Fault> {
    let failed = store_failed;
    let done = match command {
        Command::AddUser => {
            let user = one_user(config, values)?;
            store.register(&user).await.map_err(failed)?;
            info!(user = %user, admin = %admin, "Registered by an administrator.");
            vec![note("info", &format!("Registered {user}."))]
        }
        Command::DeleteUser => {
            let users = users(values)?;
            let mut lines = Vec::with_capacity(users.len());
            for user in users {
                let was = store.unregister(&user).await.map_err(failed)?;
                info!(user = %user, admin = %admin, was_registered = was, "Unregistered by an administrator.");
                lines.push(if was {
                    format!("Unregistered {user}.")
                } else {
                    format!("{user} was not registered.")
                });
            }
            vec![note("info", &lines.join("\n"))]
        }
        Command::ListUsers => {
            let users = store.users().await.map_err(failed)?;
            vec![result_form(
                NS_ADMIN,
                vec![field(
                    "registereduserjids",
                    "jid-multi",
                    "The list of all users",
                    &users,
                )],
            )]
        }
        Command::CountUsers => {
            let users = store.users().await.map_err(failed)?;
            vec![result_form(
                NS_ADMIN,
                vec![field(
                    "registeredusersnum",
                    "text-single",
                    "The number of registered users",
                    &[users.len().to_string()],
                )],
            )]
        }
        Command::QueueList => {
            let entries = store.queue_list(LIST_LIMIT).await.map_err(failed)?;
            let lines: Vec<String> = entries.iter().map(|e| e.line()).collect();
            vec![result_form(
                NS_COMMANDS,
                vec![field(
                    "items",
                    "text-multi",
                    &format!("Waiting items, oldest first (at most {LIST_LIMIT})"),
                    &lines,
                )],
            )]
        }
        Command::QueueShow => {
            let item = one_item(values)?;
            let Some(detail) = store.queue_show(item).await.map_err(failed)? else {
                return Err(no_item(item));
            };
            let fields = detail
                .fields()
                .into_iter()
                .map(|(var, label, value)| field(var, "text-single", label, &[value]))
                .collect();
            vec![result_form(NS_COMMANDS, fields)]
        }
        Command::QueueRetry | Command::QueueDelete => {
            let item = one_item(values)?;
            let now = Millis::now();
            let done = if command == Command::QueueRetry {
                store.queue_retry(item, now).await
            } else {
                store.queue_delete(item, now).await
            }
            .map_err(failed)?;
            if !done {
                return Err(Fault::with_text(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    format!("{item} is not waiting in the queue"),
                ));
            }
            let what = if command == Command::QueueRetry {
                "is due now"
            } else {
                "is deleted"
            };
            info!(item = %item, admin = %admin, "Queue item {what}.");
            vec![note("info", &format!("{item} {what}."))]
        }
        Command::Stats => {
            let stats = store.stats().await.map_err(failed)?;
            let mut fields = vec![field(
                "version",
                "text-single",
                "facteur version",
                &[env!("CARGO_PKG_VERSION").to_owned()],
            )];
            for (var, label, value) in stats.fields(Millis::now()) {
                fields.push(field(&var, "text-single", &label, &[value]));
            }
            vec![result_form(NS_COMMANDS, fields)]
        }
        Command::Reload => {
            let reloader = reloader.ok_or(NO_RELOAD)?;
            let outcome = reloader
                .reload(&format!("ad-hoc command from {admin}"))
                .await;
            let kind = if !outcome.refused.is_empty() {
                "error"
            } else if !outcome.need_restart.is_empty() || !outcome.warnings.is_empty() {
                "warn"
            } else {
                "info"
            };
            vec![note(kind, &outcome.note())]
        }
        Command::SpamLists => spam_lists::show(config, store).await.map_err(failed)?,
        Command::SpamCheck => spam_lists::check(listings, values).await?,
    };
    Ok(done)
}

pub(super) fn bad_input(text: String) -> Fault {
    Fault::with_text(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

pub(super) fn unknown_action(action: &str) -> Fault {
    bad_input(format!("unknown action {action:?}"))
}

/// A store failure during a command: logged, and the user told to try
/// again later.
pub(super) fn store_failed(e: anyhow::Error) -> Fault {
    warn!(error = format!("{e:#}"), "Store unavailable for a command.");
    reply::TRY_LATER
}

fn no_item(item: ItemId) -> Fault {
    Fault::with_text(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        format!("no queue item {item}"),
    )
}

fn users(values: &[String]) -> Result<Vec<BareJid>, Fault> {
    let users = values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| BareJid::new(v.trim()).map_err(|e| bad_input(format!("{v:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if users.is_empty() {
        return Err(bad_input("no JID given".into()));
    }
    Ok(users)
}

/// The one user of a served domain named by the form.
fn one_user(config: &Config, values: &[String]) -> Result<BareJid, Fault> {
    let mut users = users(values)?;
    if users.len() != 1 {
        return Err(bad_input("one JID is expected".into()));
    }
    let user = users.remove(0);
    if user.node().is_none() || !config.mail.serves(user.domain().as_str()) {
        return Err(bad_input(format!(
            "{user} is not a user of a served domain ({})",
            config.mail.domains.join(", ")
        )));
    }
    Ok(user)
}

fn one_item(values: &[String]) -> Result<ItemId, Fault> {
    match values {
        [one] => one.parse().map_err(bad_input),
        _ => Err(bad_input(
            "one queue item is expected, e.g. to_mail:42".into(),
        )),
    }
}

/// The values of field `var` in a submitted form.
pub(super) fn field_values(form: &Element, var: &str) -> Vec<String> {
    form.children()
        .filter(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .flat_map(|f| f.children().filter(|v| v.is("value", ns::DATA_FORMS)))
        .map(Element::text)
        .collect()
}

/// A form field; `label` is left out when empty.
pub(super) fn field(var: &str, kind: &str, label: &str, values: &[String]) -> Element {
    let mut field = Element::builder("field", ns::DATA_FORMS)
        .attr(xml_ncname!("var").into(), var)
        .attr(xml_ncname!("type").into(), kind);
    if !label.is_empty() {
        field = field.attr(xml_ncname!("label").into(), label);
    }
    field
        .append_all(values.iter().map(|value| field_value(value)))
        .build()
}

/// A `<value/>` of a field or an option.
fn field_value(text: &str) -> Element {
    Element::builder("value", ns::DATA_FORMS)
        .append(text)
        .build()
}

pub(super) fn form(kind: &str, form_type: &str, title: &str, fields: Vec<Element>) -> Element {
    Element::builder("x", ns::DATA_FORMS)
        .attr(xml_ncname!("type").into(), kind)
        .append(
            Element::builder("title", ns::DATA_FORMS)
                .append(title)
                .build(),
        )
        .append(field("FORM_TYPE", "hidden", "", &[form_type.to_owned()]))
        .append_all(fields)
        .build()
}

fn input_form(command: Command, input: &Input) -> Element {
    let mut asked = field(input.var, input.kind, input.label, &[]);
    asked.append_child(Element::builder("required", ns::DATA_FORMS).build());
    let form_type = if command.node().starts_with(NS_ADMIN) {
        NS_ADMIN
    } else {
        NS_COMMANDS
    };
    form("form", form_type, command.name(), vec![asked])
}

pub(super) fn result_form(form_type: &str, fields: Vec<Element>) -> Element {
    form("result", form_type, "Result", fields)
}

/// The actions of a command's form: one, `complete`.
pub(super) fn complete_actions() -> Element {
    Element::builder("actions", NS_COMMANDS)
        .attr(xml_ncname!("execute").into(), "complete")
        .append(Element::builder("complete", NS_COMMANDS).build())
        .build()
}

/// An option of a list field.
pub(super) fn option(label: &str, value: &str) -> Element {
    Element::builder("option", ns::DATA_FORMS)
        .attr(xml_ncname!("label").into(), label)
        .append(field_value(value))
        .build()
}

/// The form of a user's own command asking her to choose among
/// `options` (label, value) in list field `var`, to be completed.
pub(super) fn choose(
    title: &str,
    var: &str,
    label: &str,
    options: impl IntoIterator<Item = (String, String)>,
) -> (bool, Vec<Element>) {
    let mut list = field(var, "list-multi", label, &[]);
    for (label, value) in options {
        list.append_child(option(&label, &value));
    }
    (
        false,
        vec![
            complete_actions(),
            form("form", NS_COMMANDS, title, vec![list]),
        ],
    )
}

/// What a user's own command did with each chosen item, one line each,
/// `then` after them.
pub(super) fn chosen_done(mut lines: Vec<String>, then: Option<&str>) -> (bool, Vec<Element>) {
    match then {
        _ if lines.is_empty() => lines.push("Nothing chosen: nothing changed.".to_owned()),
        Some(then) => lines.push(then.to_owned()),
        None => {}
    }
    (true, vec![note("info", &lines.join("\n"))])
}

pub(super) fn note(kind: &str, text: &str) -> Element {
    Element::builder("note", NS_COMMANDS)
        .attr(xml_ncname!("type").into(), kind)
        .append(text)
        .build()
}

#[cfg(test)]
mod tests;
