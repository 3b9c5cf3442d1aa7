//! The ad-hoc command "OpenPGP key" (XEP-0050), for every user who has
//! mail, from clients without the key IQ (doc/xmpp-mail.md §12): publish
//! a key pasted armored, show the key served, or remove it. Publishing
//! runs the key IQ's checks (`keys::publish`); a refused key completes
//! the command with an error note that says why.
//!
//! One form, one step: `execute` answers the form, the submitted form
//! completes the command; nothing is kept between the two.

use std::time::SystemTime;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::commands::{
    command_reply, field, field_values, form, note, option, store_failed, unknown_action, Request,
    NS_COMMANDS,
};
use super::keys::{publish, publisher};
use super::pep::{PepKeys, Refreshed};
use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::keys;
use crate::store::{KeySource, Store};

/// The command's node and name.
pub const NODE: &str = "openpgp-key";
pub const NAME: &str = "OpenPGP key";

/// Whether `from` may see and run the command: a user of a served domain.
pub fn offered_to(config: &Config, from: &Jid) -> bool {
    from.node().is_some() && config.mail.serves(from.domain().as_str())
}

/// Who sends command request `iq`, if she may publish a key, and its
/// `<command/>`; else why not.
async fn requester<'a>(
    config: &Config,
    store: &Store,
    iq: &'a Iq,
) -> Result<(jid::BareJid, &'a Element), Fault> {
    let Iq::Set { from, payload, .. } = iq else {
        return Err(reply::NOT_A_REQUEST);
    };
    let from = from.as_ref().ok_or(reply::NO_SENDER)?;
    Ok((publisher(config, store, from).await?, payload))
}

/// Runs the command `iq` asks for, or answers why not.
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let (user, payload) = match requester(config, store, &iq).await {
        Ok(asked) => asked,
        Err(fault) => return error(&iq, fault),
    };
    let request = Request::read(payload);
    match (request.action, request.submitted) {
        ("cancel", _) => request.reply(&iq, NODE, "canceled", Vec::new()),
        ("execute" | "complete" | "next", None) => {
            request.executing(&iq, NODE, input_form(&user.to_string()))
        }
        ("execute" | "complete" | "next", Some(submitted)) => {
            let action = field_values(submitted, "action");
            let key = field_values(submitted, "key").join("\n");
            match run(store, &user, action.first().map(String::as_str), &key).await {
                Ok(done) => request.reply(&iq, NODE, "completed", done),
                Err(fault) => error(&iq, fault),
            }
        }
        (other, _) => error(&iq, unknown_action(other)),
    }
}

/// What the completed command carries back.
async fn run(
    store: &Store,
    user: &jid::BareJid,
    action: Option<&str>,
    key: &str,
) -> Result<Vec<Element>, Fault> {
    let failed = store_failed;
    match action {
        Some("publish") => {
            if key.trim().is_empty() {
                return Ok(vec![note("error", "Paste your public key to publish it.")]);
            }
            Ok(vec![
                match publish(store, user, key.as_bytes(), KeySource::Command).await? {
                    Ok(published) if published.revoked => note(
                        "info",
                        &format!(
                            "Key {} is revoked: it is served as revoked from now on.",
                            published.fingerprint
                        ),
                    ),
                    Ok(published) => note(
                        "info",
                        &format!(
                            "Published key {} for {user}, with only the user IDs naming {user}.",
                            published.fingerprint
                        ),
                    ),
                    Err(why) => note("error", &sentence(why.to_string())),
                },
            ])
        }
        Some("show") => {
            let Some(stored) = store.key(user).await.map_err(failed)? else {
                return Ok(vec![note("info", "You have published no key.")]);
            };
            let summary = keys::summary(&stored.cert, SystemTime::now()).map_err(failed)?;
            let armored = keys::armored(&stored.cert).map_err(failed)?;
            let lines: Vec<String> = armored.lines().map(str::to_owned).collect();
            Ok(vec![form(
                "result",
                NS_COMMANDS,
                NAME,
                vec![
                    field(
                        "fingerprint",
                        "text-single",
                        "Fingerprint",
                        &[summary.fingerprint],
                    ),
                    field("status", "text-single", "Status", &[summary.status]),
                    field("userids", "text-multi", "User IDs", &summary.user_ids),
                    field("key", "text-multi", "The key as it is served", &lines),
                ],
            )])
        }
        Some("remove") => {
            let removed = store.remove_key(user).await.map_err(failed)?;
            tracing::info!(user = %user, removed, "Key removed by its user.");
            Ok(vec![note(
                "info",
                if removed {
                    "Your key is no longer served."
                } else {
                    "You had published no key."
                },
            )])
        }
        other => Err(Fault::with_text(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            format!(
                "action {:?}: publish, refresh, show or remove",
                other.unwrap_or_default()
            ),
        )),
    }
}

/// Whether `iq` submits the command's form with the action "refresh",
/// which waits on the user's server: it is answered beside the loop.
pub fn is_refresh(iq: &Iq) -> bool {
    let Iq::Set { payload, .. } = iq else {
        return false;
    };
    payload.is("command", NS_COMMANDS)
        && payload.attr("node") == Some(NODE)
        && payload
            .children()
            .find(|c| c.is("x", ns::DATA_FORMS) && c.attr("type") == Some("submit"))
            .is_some_and(|form| {
                field_values(form, "action").first().map(String::as_str) == Some("refresh")
            })
}

/// The action "refresh": the key of the user's XEP-0373 PEP nodes is
/// read and published as hers, if it is taken.
pub async fn refresh(config: &Config, store: &Store, pep: &PepKeys, iq: Iq) -> Iq {
    let (user, payload) = match requester(config, store, &iq).await {
        Ok(asked) => asked,
        Err(fault) => return error(&iq, fault),
    };
    let done = match pep.refresh(&user).await {
        Refreshed::Published(published) => note(
            "info",
            &format!(
                "Published key {} from your PEP nodes, with only the user IDs naming {user}.",
                published.fingerprint
            ),
        ),
        Refreshed::Refused(why) => note("error", &sentence(why.to_string())),
        Refreshed::Nothing(why) => note("error", &why),
    };
    let session = payload.attr("sessionid").unwrap_or_default();
    let command = command_reply(NODE, session, "completed", vec![done]);
    result(&iq, Some(command))
}

/// `text` ending with a full stop (a reason may come with one).
fn sentence(mut text: String) -> String {
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The form: what to do, and the key to publish.
fn input_form(user: &str) -> Element {
    let mut action = field("action", "list-single", "What to do", &["show".to_owned()]);
    for (value, label) in [
        ("publish", "Publish the key below"),
        ("refresh", "Publish the key of my XEP-0373 PEP nodes"),
        ("show", "Show the key served"),
        ("remove", "Stop serving my key"),
    ] {
        action.append_child(option(label, value));
    }
    action.append_child(Element::builder("required", ns::DATA_FORMS).build());
    let key = field(
        "key",
        "text-multi",
        &format!("Your public key, armored, with a user ID naming {user}"),
        &[],
    );
    form("form", NS_COMMANDS, NAME, vec![action, key])
}

#[cfg(test)]
mod tests;
