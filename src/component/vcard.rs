//! XEP-0054 vCards of mail contacts: the name seen in their mail's From
//! header, and their address, so that clients show a name in the roster.

use facteur_bridge::jid_to_mailbox;
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use xmpp_parsers::vcard::VCard;

use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::store::Store;

/// Whether `iq` asks for a vCard.
pub fn is_request(iq: &Iq) -> bool {
    matches!(iq, Iq::Get { payload, .. } if payload.is("vCard", ns::VCARD))
}

/// The vCard of the contact `iq` is addressed to.
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let Some(contact) = iq.to().map(|j| j.to_bare()) else {
        return error(
            &iq,
            Fault::new(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no contact",
            ),
        );
    };
    let Ok(address) = jid_to_mailbox(&contact, config.component.jid.domain()) else {
        return error(
            &iq,
            Fault::new(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "not a mail contact",
            ),
        );
    };
    let (address, name) = match store.contact(&contact).await {
        Ok(Some((seen, name))) => (seen, name),
        Ok(None) => (address.to_string(), String::new()),
        Err(e) => {
            warn!(error = format!("{e:#}"), "Store unavailable for a vCard.");
            return error(&iq, reply::TRY_LATER);
        }
    };
    let name = if name.is_empty() { &address } else { &name };
    result(&iq, Some(vcard(name, &address).into()))
}

/// A vCard with a full name and one preferred Internet address.
fn vcard(name: &str, address: &str) -> VCard {
    let text = |field: &str, value: &str| Element::builder(field, ns::VCARD).append(value).build();
    let email = Element::builder("EMAIL", ns::VCARD)
        .append(Element::builder("INTERNET", ns::VCARD).build())
        .append(Element::builder("PREF", ns::VCARD).build())
        .append(text("USERID", address))
        .build();
    VCard {
        photo: None,
        payloads: vec![text("FN", name), email],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::Jid;

    fn config() -> Config {
        Config::parse("[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n")
            .expect("config")
    }

    fn get(to: &str) -> Iq {
        Iq::Get {
            from: Some(Jid::new("alice@example.test/phone").expect("jid")),
            to: Some(Jid::new(to).expect("jid")),
            id: "v1".into(),
            payload: Element::builder("vCard", ns::VCARD).build(),
        }
    }

    #[tokio::test]
    async fn a_contact_never_seen_is_named_by_its_address() {
        let (store, _dir) = crate::store::scratch().await;
        let iq = get("bob\\40example.net@mail.example.test");
        assert!(is_request(&iq));
        let xml = String::from(&Element::from(answer(&config(), &store, iq).await));
        assert!(xml.contains("type='result'"), "{xml}");
        assert!(
            xml.contains("<vCard xmlns='vcard-temp'><FN>bob@example.net</FN><EMAIL><INTERNET/><PREF/><USERID>bob@example.net</USERID></EMAIL></vCard>"),
            "{xml}"
        );
    }

    #[tokio::test]
    async fn only_mail_contacts_have_vcards() {
        let (store, _dir) = crate::store::scratch().await;
        let xml = String::from(&Element::from(
            answer(&config(), &store, get("mail.example.test")).await,
        ));
        assert!(
            xml.contains("type='error'") && xml.contains("<item-not-found"),
            "{xml}"
        );
    }
}
