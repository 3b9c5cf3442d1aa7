//! XEP-0077 in-band registration at the component (get, set, and set with
//! `<remove/>`), with the per-user options as an XEP-0004 form inside the
//! query.

use jid::BareJid;
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::commands::{submitted_thresholds, threshold_fields};
use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::store::{Encrypt, Store, UserOptions};
use facteur_policy::spam::Thresholds;

/// The answer to a registration request from a user.
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let Some(user) = iq.from().map(|j| j.to_bare()) else {
        return error(&iq, reply::NO_SENDER);
    };
    if !config.mail.serves(user.domain().as_str()) {
        let text = format!(
            "only users of {} can register here",
            config.mail.domains.join(", ")
        );
        return error(
            &iq,
            Fault::with_text(ErrorType::Cancel, DefinedCondition::NotAllowed, text),
        );
    }
    let outcome = match &iq {
        Iq::Get { .. } => match (
            store.user_options(&user).await,
            store.spam_thresholds(&user).await,
        ) {
            (Ok(options), Ok(thresholds)) => Ok(Some(query(config, &user, options, &thresholds))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        Iq::Set { payload, .. } if payload.has_child("remove", ns::REGISTER) => {
            store.unregister(&user).await.map(|was| {
                info!(user = %user, was_registered = was, "Unregistered.");
                None
            })
        }
        Iq::Set { payload, .. } => {
            let options = submitted_options(payload);
            let thresholds = match payload.get_child("x", ns::DATA_FORMS) {
                Some(form) => match submitted_thresholds(form, Thresholds::default()) {
                    Ok(thresholds) => thresholds,
                    Err(text) => {
                        return error(
                            &iq,
                            Fault::with_text(ErrorType::Modify, DefinedCondition::BadRequest, text),
                        )
                    }
                },
                None => Thresholds::default(),
            };
            match store.register_with(&user, options).await {
                Ok(()) => store
                    .set_spam_thresholds(&user, &thresholds)
                    .await
                    .map(|_| {
                        info!(user = %user, oob_each_file = options.oob_each_file, xhtml_im = options.xhtml_im, send_mdn = options.send_mdn, spam_mark = thresholds.mark, spam_quarantine = thresholds.quarantine, spam_reject = thresholds.reject, "Registered.");
                        None
                    }),
                Err(e) => Err(e),
            }
        }
        _ => return error(&iq, reply::NOT_A_REQUEST),
    };
    match outcome {
        Ok(payload) => result(&iq, payload),
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for registration."
            );
            error(&iq, reply::TRY_LATER)
        }
    }
}

/// The registration query for `user`: instructions, the options form, and
/// whether the user is registered already.
fn query(
    config: &Config,
    user: &BareJid,
    options: Option<UserOptions>,
    thresholds: &Thresholds,
) -> Element {
    let mut query = Element::builder("query", ns::REGISTER)
        .append(
            Element::builder("instructions", ns::REGISTER)
                .append(format!(
                    "Register to get mail at {user} and to write to any e-mail address through {}.",
                    config.component.jid
                ))
                .build(),
        )
        .append(
            Element::builder("username", ns::REGISTER)
                .append(user.node().map(|n| n.as_str()).unwrap_or_default())
                .build(),
        )
        .append(options_form(options.unwrap_or_default(), thresholds));
    if options.is_some() {
        query = query.append(Element::builder("registered", ns::REGISTER).build());
    }
    query.build()
}

/// The XEP-0004 form of the per-user options, inside the XEP-0077 query.
fn options_form(options: UserOptions, thresholds: &Thresholds) -> Element {
    let field = |var: &str, kind: &str, label: Option<&str>, value: &str| {
        let mut field = Element::builder("field", ns::DATA_FORMS)
            .attr(xml_ncname!("var").into(), var)
            .attr(xml_ncname!("type").into(), kind);
        if let Some(label) = label {
            field = field.attr(xml_ncname!("label").into(), label);
        }
        field
            .append(
                Element::builder("value", ns::DATA_FORMS)
                    .append(value)
                    .build(),
            )
            .build()
    };
    let flag = |on: bool| if on { "1" } else { "0" };
    Element::builder("x", ns::DATA_FORMS)
        .attr(xml_ncname!("type").into(), "form")
        .append(Element::builder("title", ns::DATA_FORMS).append("Mail options").build())
        .append(field("FORM_TYPE", "hidden", None, ns::REGISTER))
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
        .append(field(
            "send_mdn",
            "boolean",
            Some("Send read receipts when my client marks a mail read"),
            flag(options.send_mdn),
        ))
        .append(encrypt_field(options.encrypt))
        .append_all(threshold_fields(thresholds))
        .build()
}

/// The list-single field of the option `encrypt`.
fn encrypt_field(encrypt: Encrypt) -> Element {
    let mut field = Element::builder("field", ns::DATA_FORMS)
        .attr(xml_ncname!("var").into(), "encrypt")
        .attr(xml_ncname!("type").into(), "list-single")
        .attr(
            xml_ncname!("label").into(),
            "Encrypt my mail with OpenPGP: off, when the recipient's key is known \
             (opportunistic), or always, never sending without (required)",
        )
        .append(
            Element::builder("value", ns::DATA_FORMS)
                .append(encrypt.as_str())
                .build(),
        );
    for choice in [Encrypt::Off, Encrypt::Opportunistic, Encrypt::Required] {
        field = field.append(
            Element::builder("option", ns::DATA_FORMS)
                .attr(xml_ncname!("label").into(), choice.as_str())
                .append(
                    Element::builder("value", ns::DATA_FORMS)
                        .append(choice.as_str())
                        .build(),
                )
                .build(),
        );
    }
    field.build()
}

/// The options of a submitted registration form; defaults without one.
fn submitted_options(query: &Element) -> UserOptions {
    let Some(form) = query.get_child("x", ns::DATA_FORMS) else {
        return UserOptions::default();
    };
    let value = |var: &str| {
        form.children()
            .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", ns::DATA_FORMS))
            .is_some_and(|v| matches!(v.text().trim(), "1" | "true"))
    };
    let encrypt = form
        .children()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some("encrypt"))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map_or(Encrypt::Off, |v| Encrypt::named(&v.text()));
    UserOptions {
        oob_each_file: value("oob_each_file"),
        xhtml_im: value("xhtml_im"),
        send_mdn: value("send_mdn"),
        encrypt,
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
            send_mdn: true,
            encrypt: Encrypt::Required,
        };
        let mut form = options_form(options, &Thresholds::default());
        form.set_attr(
            xmpp_parsers::minidom::rxml::Namespace::NONE,
            xml_ncname!("type").into(),
            "submit",
        );
        let query = Element::builder("query", ns::REGISTER).append(form).build();
        assert_eq!(submitted_options(&query), options);
        let empty = Element::builder("query", ns::REGISTER).build();
        assert_eq!(submitted_options(&empty), UserOptions::default());
    }

    #[test]
    fn the_form_carries_the_spam_thresholds() {
        let thresholds = Thresholds {
            mark: 2.5,
            quarantine: 0.0,
            reject: 20.0,
        };
        let form = options_form(UserOptions::default(), &thresholds);
        assert_eq!(
            submitted_thresholds(&form, Thresholds::default()),
            Ok(thresholds)
        );
        let bad = Element::builder("x", ns::DATA_FORMS)
            .append(
                Element::builder("field", ns::DATA_FORMS)
                    .attr(xml_ncname!("var").into(), "reject")
                    .append(
                        Element::builder("value", ns::DATA_FORMS)
                            .append("lots")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            submitted_thresholds(&bad, Thresholds::default()),
            Err("reject: \"lots\" is not a number of points".to_owned())
        );
    }
}
