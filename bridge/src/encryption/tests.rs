//! The stanzas of `fixtures/clients/`, as the clients named there send them.

use super::*;
use crate::testing::{client_stanza as fixture, parse};

#[test]
fn conversations_and_gajim_omemo_are_named_by_their_eme() {
    for name in ["conversations-omemo", "gajim-omemo"] {
        let found = encryption(&fixture(name)).expect(name);
        assert_eq!(found.namespace, NS_OMEMO_AXOLOTL, "{name}");
        assert_eq!(found.name, "OMEMO", "{name}");
        assert!(found.content, "{name}");
    }
}

#[test]
fn omemo_2_and_openpgp_for_xmpp_without_a_body() {
    let found = encryption(&fixture("xep0384-omemo2")).expect("omemo 2");
    assert_eq!(
        (found.namespace.as_str(), found.name.as_str(), found.content),
        (NS_OMEMO_2, "OMEMO 2", true)
    );
    let found = encryption(&fixture("xep0374-openpgp")).expect("openpgp");
    assert_eq!(
        (found.namespace.as_str(), found.name.as_str(), found.content),
        (NS_OPENPGP, "OpenPGP for XMPP", true)
    );
}

#[test]
fn legacy_openpgp_without_eme_is_known_by_its_element() {
    let found = encryption(&fixture("conversations-pgp")).expect("pgp");
    assert_eq!(
        (found.namespace.as_str(), found.name.as_str(), found.content),
        (NS_LEGACY_OPENPGP, "Legacy OpenPGP", true)
    );
}

#[test]
fn key_transport_carries_nothing_to_answer() {
    let found = encryption(&fixture("conversations-omemo-key-transport")).expect("omemo");
    assert_eq!(found.namespace, NS_OMEMO_AXOLOTL);
    assert!(!found.content);
}

#[test]
fn otr_is_known_by_its_body() {
    let found = encryption(&parse(
        "<message xmlns='jabber:component:accept' type='chat'><body>?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAIAAADA</body></message>",
    ))
    .expect("otr");
    assert_eq!(
        (found.namespace.as_str(), found.name.as_str()),
        (NS_OTR, "OTR")
    );
}

#[test]
fn an_unknown_scheme_takes_the_name_its_client_gives_it_on_one_short_line() {
    let found = encryption(&parse(
        "<message xmlns='jabber:component:accept' type='chat'><body>?</body>\
         <encryption xmlns='urn:xmpp:eme:0' namespace='urn:example:secret:0' name='Secret&#10;Sauce 0123456789012345678901234567890123456789'/></message>",
    ))
    .expect("eme");
    assert_eq!(found.namespace, "urn:example:secret:0");
    assert_eq!(found.name, "Secret Sauce 012345678901234567890123456");
    let found = encryption(&parse(
        "<message xmlns='jabber:component:accept' type='chat'><body>?</body>\
         <encryption xmlns='urn:xmpp:eme:0' namespace='urn:example:secret:0'/></message>",
    ))
    .expect("eme");
    assert_eq!(found.name, "end-to-end encryption");
}

#[test]
fn plain_messages_are_not_encrypted() {
    assert_eq!(
        encryption(&parse(
            "<message xmlns='jabber:component:accept' type='chat'><body>Hello, about OTR and OMEMO</body>\
             <request xmlns='urn:xmpp:receipts'/></message>"
        )),
        None
    );
}

#[test]
fn the_refusal_names_the_scheme_and_the_way_out() {
    let text = refusal_text(&encryption(&fixture("gajim-omemo")).expect("omemo"));
    assert!(text.contains("(OMEMO)"), "{text}");
    assert!(text.contains("cannot read end-to-end encrypted"), "{text}");
    assert!(text.contains("turn encryption off"), "{text}");
}
