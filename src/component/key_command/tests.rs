//! "OpenPGP key" against a scratch store: who sees it, publish, show,
//! remove, and refusals as the command's note.

use sequoia_openpgp::cert::CertBuilder;
use sequoia_openpgp::serialize::SerializeInto;
use xmpp_parsers::minidom::rxml::xml_ncname;

use super::*;
use crate::component::commands::items;
use crate::store::scratch;

fn config() -> Config {
    Config::parse(
        "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\nadmins = [\"root@a.test\"]\n\
         [mail]\ndomains = [\"a.test\"]\n",
    )
    .expect("config")
}

fn command(from: &str, fields: Option<(&str, &str)>) -> Iq {
    let mut payload = Element::builder("command", NS_COMMANDS)
        .attr(xml_ncname!("node").into(), NODE)
        .attr(xml_ncname!("sessionid").into(), "s1");
    if let Some((action, key)) = fields {
        let key: Vec<String> = key.lines().map(str::to_owned).collect();
        payload = payload.append(
            Element::builder("x", ns::DATA_FORMS)
                .attr(xml_ncname!("type").into(), "submit")
                .append(field("action", "list-single", "", &[action.to_owned()]))
                .append(field("key", "text-multi", "", &key))
                .build(),
        );
    }
    Iq::Set {
        from: Some(Jid::new(from).expect("jid")),
        to: Some(Jid::new("mail.a.test").expect("jid")),
        id: "c1".into(),
        payload: payload.build(),
    }
}

async fn run_xml(store: &Store, iq: Iq) -> String {
    String::from(&Element::from(
        crate::component::commands::answer(
            &config(),
            store,
            None,
            &crate::spam::Listings::default(),
            iq,
        )
        .await,
    ))
}

fn armored(userid: &str) -> (String, String) {
    let (cert, _) = CertBuilder::new()
        .add_userid(userid)
        .add_transport_encryption_subkey()
        .generate()
        .expect("key");
    let text = cert.armored().to_vec().expect("armored");
    (
        cert.fingerprint().to_hex(),
        String::from_utf8(text).expect("text"),
    )
}

#[tokio::test]
async fn users_publish_show_and_remove_their_key() {
    let (store, _dir) = scratch().await;
    let config = config();
    let alice = jid::BareJid::new("alice@a.test").expect("jid");
    store.register(&alice).await.expect("registered");

    // Listed for users of the served domain, after the administrators'.
    let user = Jid::new("alice@a.test/phone").expect("jid");
    let listed: Vec<String> = items(&config, Some(&user))
        .items
        .into_iter()
        .filter_map(|i| i.node)
        .collect();
    assert_eq!(
        listed,
        [
            NODE,
            "blocked-senders",
            "report-spam",
            "not-spam",
            "spam-settings"
        ]
    );
    let admin = Jid::new("root@a.test/laptop").expect("jid");
    let listed: Vec<String> = items(&config, Some(&admin))
        .items
        .into_iter()
        .filter_map(|i| i.node)
        .collect();
    assert_eq!(
        listed[listed.len() - 5..],
        [
            NODE,
            "blocked-senders",
            "report-spam",
            "not-spam",
            "spam-settings"
        ]
    );
    let stranger = Jid::new("eve@elsewhere.test/x").expect("jid");
    assert!(items(&config, Some(&stranger)).items.is_empty());

    let xml = run_xml(&store, command("alice@a.test/phone", None)).await;
    assert!(xml.contains("status='executing'"), "{xml}");
    assert!(
        xml.contains("var='action'") && xml.contains("var='key'"),
        "{xml}"
    );

    let (fingerprint, key) = armored("Alice <alice@a.test>");
    let xml = run_xml(
        &store,
        command("alice@a.test/phone", Some(("publish", &key))),
    )
    .await;
    assert!(xml.contains("status='completed'"), "{xml}");
    assert!(
        xml.contains(&format!(
            "<note type='info'>Published key {fingerprint} for alice@a.test"
        )),
        "{xml}"
    );
    let stored = store.key(&alice).await.expect("read").expect("alice's");
    assert_eq!(stored.source, "command");

    let xml = run_xml(&store, command("alice@a.test/phone", Some(("show", "")))).await;
    assert!(
        xml.contains(&format!("<value>{fingerprint}</value>")),
        "{xml}"
    );
    assert!(xml.contains("<value>valid</value>"), "{xml}");
    assert!(
        xml.contains("<value>Alice &lt;alice@a.test&gt;</value>"),
        "{xml}"
    );
    assert!(
        xml.contains("<value>-----BEGIN PGP PUBLIC KEY BLOCK-----</value>"),
        "{xml}"
    );

    // Refused keys: the note says why, and the key served stays.
    let (_, wrong) = armored("Bob <bob@a.test>");
    let xml = run_xml(
        &store,
        command("alice@a.test/phone", Some(("publish", &wrong))),
    )
    .await;
    assert!(xml.contains("status='completed'"), "{xml}");
    assert!(
        xml.contains(
            "<note type='error'>The key has no user ID naming alice@a.test or xmpp:alice@a.test.</note>"
        ),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command(
            "alice@a.test/phone",
            Some(("publish", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n")),
        ),
    )
    .await;
    assert!(
        xml.contains("<note type='error'>This is not an OpenPGP public key"),
        "{xml}"
    );
    let xml = run_xml(&store, command("alice@a.test/phone", Some(("publish", "")))).await;
    assert!(
        xml.contains("<note type='error'>Paste your public key"),
        "{xml}"
    );
    assert_eq!(
        store
            .key(&alice)
            .await
            .expect("read")
            .map(|k| k.fingerprint),
        Some(fingerprint)
    );

    let xml = run_xml(&store, command("alice@a.test/phone", Some(("remove", "")))).await;
    assert!(
        xml.contains("<note type='info'>Your key is no longer served.</note>"),
        "{xml}"
    );
    assert_eq!(store.key(&alice).await.expect("read"), None);
    let xml = run_xml(&store, command("alice@a.test/phone", Some(("show", "")))).await;
    assert!(xml.contains("You have published no key."), "{xml}");

    // Not for users who have no mail here, nor for other domains.
    let xml = run_xml(&store, command("carol@a.test/phone", None)).await;
    assert!(
        xml.contains("<forbidden ") && xml.contains("register"),
        "{xml}"
    );
    let xml = run_xml(&store, command("eve@elsewhere.test/x", None)).await;
    assert!(xml.contains("<forbidden "), "{xml}");
    let xml = run_xml(&store, command("alice@a.test/phone", Some(("dance", "")))).await;
    assert!(xml.contains("<bad-request "), "{xml}");
}
