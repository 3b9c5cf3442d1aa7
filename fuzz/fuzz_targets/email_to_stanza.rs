//! Any bytes offered as a mail: reading it, its attachments, reading it as
//! a bounce and its stanza must never panic, and the stanza must always
//! serialise.
#![no_main]

use facteur_bridge::attach::attachments;
use facteur_bridge::to_xmpp::{read_mail, to_stanza, Envelope};
use libfuzzer_sys::fuzz_target;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

fuzz_target!(|data: &[u8]| {
    let _ = attachments(data);
    let _ = facteur_bridge::bounce::read_bounce(data);
    let Ok(mail) = read_mail(data) else { return };
    let (Ok(gateway), Ok(from), Ok(to)) = (
        BareJid::new("mail.example.test"),
        BareJid::new("bob\\40example.net@mail.example.test"),
        BareJid::new("alice@example.test"),
    ) else {
        return;
    };
    let served = ["example.test".to_owned()];
    let envelope = Envelope { from, to, id: "fuzz", gateway: gateway.domain(), served: &served, reply: None };
    let xml = String::from(&Element::from(to_stanza(&mail, &envelope)));
    // What we send must parse back as XML: a broken stanza would close the
    // whole component stream.
    assert!(xml.parse::<Element>().is_ok(), "{xml}");
});
