//! The key IQ: publishing by the user herself, lookups by anyone, the
//! errors of §8 and the rate limit.

use sequoia_openpgp as openpgp;

use openpgp::cert::CertBuilder;
use openpgp::serialize::SerializeInto;

use super::*;
use crate::store::scratch;

/// A gateway for b.test whose users register, two lookups a minute.
fn config() -> Config {
    Config::parse(
        "[component]\njid = \"mail.b.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"b.test\"]\n\
         [xmpp_mail]\nprobes_per_minute = 2\n",
    )
    .expect("config")
}

fn iq(set: bool, from: &str, payload: Element) -> Iq {
    let from = Some(Jid::new(from).expect("jid"));
    let to = Some(Jid::new("mail.b.test").expect("jid"));
    let id = "k1".to_owned();
    if set {
        Iq::Set {
            from,
            to,
            id,
            payload,
        }
    } else {
        Iq::Get {
            from,
            to,
            id,
            payload,
        }
    }
}

fn lookup(jid: &str) -> Element {
    Element::builder("keys", NS_MAIL)
        .attr(xml_ncname!("jid").into(), jid)
        .build()
}

fn publishing(key: &[u8]) -> Element {
    Element::builder("keys", NS_MAIL)
        .append(
            Element::builder("key", NS_MAIL)
                .append(base64::engine::general_purpose::STANDARD.encode(key))
                .build(),
        )
        .build()
}

async fn ask(requests: &mut KeyRequests, store: &Store, iq: Iq) -> String {
    String::from(&Element::from(
        requests.answer(&config(), store, iq, Instant::now()).await,
    ))
}

fn assert_error(xml: &str, type_: &str, condition: &str) {
    assert!(xml.contains("type='error'"), "{xml}");
    assert!(xml.contains(&format!("type='{type_}'")), "{xml}");
    assert!(xml.contains(&format!("<{condition} ")), "{xml}");
    assert!(xml.contains("<text "), "errors say what was wrong: {xml}");
}

#[tokio::test]
async fn a_user_publishes_her_key_and_anyone_reads_it() {
    let (store, _dir) = scratch().await;
    let bob = BareJid::new("bob@b.test").expect("jid");
    store.register(&bob).await.expect("registered");
    let mut requests = KeyRequests::new(&config());
    let (cert, _) = CertBuilder::new()
        .add_userid("Bob <bob@b.test>")
        .add_userid("Bob <bob@elsewhere.test>")
        .add_transport_encryption_subkey()
        .generate()
        .expect("key");
    let fingerprint = cert.fingerprint().to_hex();
    let armored = cert.armored().to_vec().expect("armored");

    let xml = ask(
        &mut requests,
        &store,
        iq(true, "bob@b.test/phone", publishing(&armored)),
    )
    .await;
    assert!(xml.contains("type='result'"), "{xml}");
    assert!(
        xml.contains(&format!(
            "<keys xmlns='urn:xmpp:mail:0' jid='bob@b.test'><key fingerprint='{fingerprint}'/></keys>"
        )),
        "{xml}"
    );

    let xml = ask(
        &mut requests,
        &store,
        iq(false, "mail.a.test", lookup("bob@b.test")),
    )
    .await;
    let root: Element = xml.parse().expect("xml");
    let answer = root.get_child("keys", NS_MAIL).expect("keys");
    let key = answer.get_child("key", NS_MAIL).expect("a key");
    assert_eq!(key.attr("fingerprint"), Some(fingerprint.as_str()));
    assert_eq!(key.attr("revoked"), None);
    let served = base64::engine::general_purpose::STANDARD
        .decode(key.text())
        .expect("base64");
    assert_eq!(
        served,
        store.key(&bob).await.expect("read").expect("bob's").cert
    );
    let served = <openpgp::Cert as openpgp::parse::Parse<_>>::from_bytes(&served).expect("a key");
    assert_eq!(served.userids().count(), 1, "minimised");

    // Nobody's key: an empty answer.
    let xml = ask(
        &mut requests,
        &store,
        iq(false, "carol@b.test/laptop", lookup("dave@b.test")),
    )
    .await;
    assert!(
        xml.contains("<keys xmlns='urn:xmpp:mail:0' jid='dave@b.test'/>"),
        "{xml}"
    );

    // The user removes it.
    let remove = Element::builder("keys", NS_MAIL)
        .append(Element::builder("remove", NS_MAIL).build())
        .build();
    let xml = ask(&mut requests, &store, iq(true, "bob@b.test/phone", remove)).await;
    assert!(xml.contains("type='result'"), "{xml}");
    assert_eq!(store.key(&bob).await.expect("read"), None);
}

#[tokio::test]
async fn keys_are_refused_with_the_reason_and_others_cannot_publish() {
    let (store, _dir) = scratch().await;
    let bob = BareJid::new("bob@b.test").expect("jid");
    store.register(&bob).await.expect("registered");
    let mut requests = KeyRequests::new(&config());
    let (wrong, _) = CertBuilder::new()
        .add_userid("eve@b.test")
        .add_transport_encryption_subkey()
        .generate()
        .expect("key");
    let wrong = wrong.to_vec().expect("binary");

    let xml = ask(
        &mut requests,
        &store,
        iq(true, "bob@b.test/phone", publishing(&wrong)),
    )
    .await;
    assert_error(&xml, "modify", "not-acceptable");
    assert!(
        xml.contains("The key has no user ID naming bob@b.test or xmpp:bob@b.test"),
        "{xml}"
    );
    let garbage = Element::builder("keys", NS_MAIL)
        .append(Element::builder("key", NS_MAIL).append("!!!").build())
        .build();
    assert_error(
        &ask(&mut requests, &store, iq(true, "bob@b.test/phone", garbage)).await,
        "modify",
        "bad-request",
    );
    let xml = ask(
        &mut requests,
        &store,
        iq(true, "bob@b.test/phone", publishing(b"hello")),
    )
    .await;
    assert_error(&xml, "modify", "not-acceptable");
    assert!(xml.contains("This is not an OpenPGP public key"), "{xml}");
    let huge = vec![0u8; keys::MAX_KEY_BYTES + 1];
    let xml = ask(
        &mut requests,
        &store,
        iq(true, "bob@b.test/phone", publishing(&huge)),
    )
    .await;
    assert!(xml.contains("The key is larger than 1024 KiB"), "{xml}");

    // Only the user herself, registered, of a served domain.
    let (eves, _) = CertBuilder::new()
        .add_userid("eve@b.test")
        .add_transport_encryption_subkey()
        .generate()
        .expect("key");
    let eves = eves.to_vec().expect("binary");
    assert_error(
        &ask(
            &mut requests,
            &store,
            iq(true, "eve@b.test/x", publishing(&eves)),
        )
        .await,
        "auth",
        "forbidden",
    );
    assert_error(
        &ask(
            &mut requests,
            &store,
            iq(true, "mallory@a.test/x", publishing(&eves)),
        )
        .await,
        "auth",
        "forbidden",
    );
    let for_eve = Element::builder("keys", NS_MAIL)
        .attr(xml_ncname!("jid").into(), "eve@b.test")
        .append(
            Element::builder("key", NS_MAIL)
                .append(base64::engine::general_purpose::STANDARD.encode(&eves))
                .build(),
        )
        .build();
    assert_error(
        &ask(&mut requests, &store, iq(true, "bob@b.test/phone", for_eve)).await,
        "auth",
        "forbidden",
    );
    assert_eq!(store.keys().await.expect("listed"), []);
}

#[tokio::test]
async fn lookups_are_limited_per_requesting_domain() {
    let (store, _dir) = scratch().await;
    let mut requests = KeyRequests::new(&config());
    for from in ["mail.a.test", "mail.a.test/x"] {
        let xml = ask(&mut requests, &store, iq(false, from, lookup("bob@b.test"))).await;
        assert!(xml.contains("type='result'"), "{xml}");
    }
    let xml = ask(
        &mut requests,
        &store,
        iq(false, "mail.a.test", lookup("bob@b.test")),
    )
    .await;
    assert_error(&xml, "wait", "resource-constraint");
    // Another domain, and each local user, have their own allowance.
    for from in [
        "mail.c.test",
        "bob@b.test/phone",
        "carol@b.test/phone",
        "carol@b.test/tablet",
    ] {
        let xml = ask(&mut requests, &store, iq(false, from, lookup("bob@b.test"))).await;
        assert!(xml.contains("type='result'"), "{from}: {xml}");
    }

    assert_error(
        &ask(
            &mut requests,
            &store,
            iq(false, "mail.c.test", lookup("bob@elsewhere.test")),
        )
        .await,
        "cancel",
        "item-not-found",
    );
    assert_error(
        &ask(
            &mut requests,
            &store,
            iq(false, "mail.c.test", lookup("b.test")),
        )
        .await,
        "modify",
        "bad-request",
    );
}
