//! Ad-hoc commands against a scratch store: who may run them, the two
//! steps of a command with input, and the errors of bad input.

use super::*;
use crate::store::scratch;

fn config() -> Config {
    Config::parse(
        "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\nadmins = [\"root@a.test\"]\n\
         [mail]\ndomains = [\"a.test\"]\n",
    )
    .expect("config")
}

fn command(from: &str, node: &str, action: Option<&str>, form: Option<(&str, &[&str])>) -> Iq {
    let mut payload = Element::builder("command", NS_COMMANDS)
        .attr(xml_ncname!("node").into(), node)
        .attr(xml_ncname!("sessionid").into(), "s1");
    if let Some(action) = action {
        payload = payload.attr(xml_ncname!("action").into(), action);
    }
    if let Some((var, values)) = form {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        payload = payload.append(
            Element::builder("x", ns::DATA_FORMS)
                .attr(xml_ncname!("type").into(), "submit")
                .append(field(var, "text-single", "", &values))
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
        answer(
            &config(),
            store,
            None,
            &crate::spam::Listings::default(),
            iq,
        )
        .await,
    ))
}

#[tokio::test]
async fn only_administrators_see_and_run_commands() {
    let (store, _dir) = scratch().await;
    let config = config();
    let admin = Jid::new("root@a.test/laptop").expect("jid");
    let user = Jid::new("alice@a.test/phone").expect("jid");
    // Administrators who are users of a served domain see the users'
    // commands too, after their own; users see them alone; strangers none.
    assert_eq!(items(&config, Some(&admin)).items.len(), COMMANDS.len() + 5);
    let offered: Vec<Option<String>> = items(&config, Some(&user))
        .items
        .into_iter()
        .map(|i| i.node)
        .collect();
    assert_eq!(
        offered,
        [
            Some(key_command::NODE.to_owned()),
            Some("blocked-senders".to_owned()),
            Some("report-spam".to_owned()),
            Some("not-spam".to_owned()),
            Some("spam-settings".to_owned()),
        ]
    );
    let stranger = Jid::new("eve@b.test/x").expect("jid");
    assert!(items(&config, Some(&stranger)).items.is_empty());
    assert!(items(&config, None).items.is_empty());

    let xml = run_xml(&store, command("alice@a.test/phone", "stats", None, None)).await;
    assert!(
        xml.contains("type='error'") && xml.contains("<forbidden "),
        "{xml}"
    );
    let xml = run_xml(&store, command("root@a.test/laptop", "nope", None, None)).await;
    assert!(
        xml.contains("<item-not-found ") && xml.contains("no command"),
        "{xml}"
    );
}

#[tokio::test]
async fn adding_a_user_asks_for_the_jid_then_registers_it() {
    let (store, _dir) = scratch().await;
    let node = Command::AddUser.node();
    let xml = run_xml(&store, command("root@a.test/laptop", node, None, None)).await;
    assert!(xml.contains("status='executing'"), "{xml}");
    assert!(
        xml.contains("var='accountjid'") && xml.contains("<required"),
        "{xml}"
    );
    assert!(xml.contains("<complete"), "{xml}");

    let xml = run_xml(
        &store,
        command(
            "root@a.test/laptop",
            node,
            Some("complete"),
            Some(("accountjid", &["alice@a.test"])),
        ),
    )
    .await;
    assert!(xml.contains("status='completed'"), "{xml}");
    assert!(xml.contains("Registered alice@a.test."), "{xml}");
    assert_eq!(
        store.users().await.expect("users"),
        vec!["alice@a.test".to_owned()]
    );

    // A JID of another domain is bad input, and nothing is registered.
    let xml = run_xml(
        &store,
        command(
            "root@a.test/laptop",
            node,
            Some("complete"),
            Some(("accountjid", &["bob@b.test"])),
        ),
    )
    .await;
    assert!(
        xml.contains("<bad-request ") && xml.contains("not a user of a served domain"),
        "{xml}"
    );
    assert_eq!(store.users().await.expect("users").len(), 1);

    let xml = run_xml(
        &store,
        command("root@a.test/laptop", node, Some("cancel"), None),
    )
    .await;
    assert!(xml.contains("status='canceled'"), "{xml}");
}

#[tokio::test]
async fn users_are_listed_counted_and_removed() {
    let (store, _dir) = scratch().await;
    for user in ["alice@a.test", "bob@a.test"] {
        store
            .register(&BareJid::new(user).expect("jid"))
            .await
            .expect("registered");
    }
    let xml = run_xml(
        &store,
        command("root@a.test", Command::ListUsers.node(), None, None),
    )
    .await;
    assert!(
        xml.contains("var='registereduserjids'")
            && xml.contains("<value>alice@a.test</value><value>bob@a.test</value>"),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command("root@a.test", Command::CountUsers.node(), None, None),
    )
    .await;
    assert!(xml.contains("<value>2</value>"), "{xml}");
    let xml = run_xml(
        &store,
        command(
            "root@a.test",
            Command::DeleteUser.node(),
            None,
            Some(("accountjids", &["alice@a.test", "carol@a.test"])),
        ),
    )
    .await;
    assert!(
        xml.contains("Unregistered alice@a.test.\ncarol@a.test was not registered."),
        "{xml}"
    );
    assert_eq!(
        store.users().await.expect("users"),
        vec!["bob@a.test".to_owned()]
    );
}

#[tokio::test]
async fn queue_commands_name_items_precisely() {
    let (store, _dir) = scratch().await;
    let retry = Command::QueueRetry.node();
    let xml = run_xml(
        &store,
        command(
            "root@a.test",
            retry,
            Some("complete"),
            Some(("item", &["mail:1"])),
        ),
    )
    .await;
    assert!(
        xml.contains("<bad-request ") && xml.contains("to_mail:ID"),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command(
            "root@a.test",
            retry,
            Some("complete"),
            Some(("item", &["to_mail:1"])),
        ),
    )
    .await;
    assert!(
        xml.contains("<item-not-found ") && xml.contains("to_mail:1 is not waiting"),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command(
            "root@a.test",
            Command::QueueShow.node(),
            None,
            Some(("item", &["to_xmpp:3"])),
        ),
    )
    .await;
    assert!(
        xml.contains("<item-not-found ") && xml.contains("no queue item to_xmpp:3"),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command("root@a.test", Command::QueueList.node(), None, None),
    )
    .await;
    assert!(
        xml.contains("status='completed'") && xml.contains("var='items'"),
        "{xml}"
    );
    let xml = run_xml(
        &store,
        command("root@a.test", Command::Stats.node(), None, None),
    )
    .await;
    assert!(
        xml.contains("var='users'") && xml.contains("var='to_mail.oldest-seconds'"),
        "{xml}"
    );
}

#[tokio::test]
async fn users_see_the_mailbox_commands_where_mailboxes_can_be_attached() {
    let (store, dir) = scratch().await;
    let secret = dir.path().join("imap.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("secret");
    let with_imap = Config::parse(&format!(
        "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\nadmins = [\"root@a.test\"]\n\
         [mail]\ndomains = [\"a.test\"]\n[imap]\nsecret_file = \"{}\"\n",
        secret.display()
    ))
    .expect("config");
    let nodes = |config: &Config, jid: &str| -> Vec<String> {
        items(config, Some(&Jid::new(jid).expect("jid")))
            .items
            .into_iter()
            .filter_map(|i| i.node)
            .collect()
    };
    assert_eq!(
        nodes(&with_imap, "alice@a.test/phone"),
        [
            "imap-attach",
            "imap-detach",
            "imap-list",
            "imap-search",
            "openpgp-key",
            "blocked-senders",
            "report-spam",
            "not-spam",
            "spam-settings"
        ]
    );
    assert_eq!(
        nodes(&with_imap, "root@a.test/laptop").len(),
        COMMANDS.len() + 9
    );
    assert!(nodes(&with_imap, "eve@elsewhere.test/x").is_empty());
    // Without a key to seal passwords, nobody attaches anything.
    assert_eq!(
        nodes(&config(), "alice@a.test/phone"),
        [
            "openpgp-key",
            "blocked-senders",
            "report-spam",
            "not-spam",
            "spam-settings"
        ]
    );
    assert_eq!(
        info("imap-attach").and_then(|i| i.identities.first().and_then(|id| id.name.clone())),
        Some("Attach a mailbox".to_owned())
    );

    let list = command("alice@a.test/phone", "imap-list", None, None);
    assert!(is_mailbox_command(&list));
    let xml = String::from(&Element::from(
        answer_mailbox(&with_imap, &store, list.clone()).await,
    ));
    assert!(
        xml.contains("<forbidden ") && xml.contains("register with mail.a.test (XEP-0077)"),
        "{xml}"
    );
    store
        .register(&BareJid::new("alice@a.test").expect("jid"))
        .await
        .expect("registered");
    let xml = String::from(&Element::from(
        answer_mailbox(&with_imap, &store, list).await,
    ));
    assert!(xml.contains("No mailbox is attached."), "{xml}");
    let xml = String::from(&Element::from(
        answer_mailbox(
            &config(),
            &store,
            command("alice@a.test/phone", "imap-list", None, None),
        )
        .await,
    ));
    assert!(xml.contains("<service-unavailable "), "{xml}");
    let xml = String::from(&Element::from(
        answer_mailbox(
            &with_imap,
            &store,
            command("eve@elsewhere.test/x", "imap-list", None, None),
        )
        .await,
    ));
    assert!(xml.contains("<forbidden "), "{xml}");
}

#[test]
fn too_many_mailbox_commands_at_once_are_told_to_wait() {
    let xml = String::from(&Element::from(busy(&command(
        "alice@a.test/phone",
        "imap-attach",
        None,
        None,
    ))));
    assert!(
        xml.contains("type='wait'") && xml.contains("<resource-constraint "),
        "{xml}"
    );
}

#[tokio::test]
async fn a_user_lists_and_unblocks_the_senders_she_blocked() {
    let (store, _dir) = scratch().await;
    let alice = BareJid::new("alice@a.test").expect("jid");
    let unregistered = run_xml(
        &store,
        command("bob@a.test/x", "blocked-senders", None, None),
    )
    .await;
    assert!(
        unregistered.contains("registration-required"),
        "{unregistered}"
    );
    store.register(&alice).await.expect("registered");
    let empty = run_xml(
        &store,
        command("alice@a.test/x", "blocked-senders", None, None),
    )
    .await;
    assert!(empty.contains("You block no mail sender."), "{empty}");
    store
        .accept_mails(&[crate::store::InboundMail {
            mail_from: "spammer@evil.test".into(),
            client_ip: "192.0.2.7".into(),
            raw: b"Message-ID: <m1@evil.test>\r\nSubject: Hi\r\n\r\nhello\r\n".to_vec(),
            recipients: vec![alice.clone()],
            spam: crate::store::MailSpam {
                message_id: "m1@evil.test".into(),
                subject: "Hi".into(),
                tokens: vec![1, 2, 3],
                recipients: vec![crate::store::RecipientSpam {
                    recipient: alice.clone(),
                    points: 0.0,
                    reasons: String::new(),
                    verdict: facteur_policy::spam::Verdict::Deliver,
                }],
            },
            ..crate::store::InboundMail::default()
        }])
        .await
        .expect("accepted");
    store
        .block_sender(
            &alice,
            &facteur_policy::spam::BlockItem::Address("spammer@evil.test".into()),
            facteur_policy::spam::BlockSource::Report,
            true,
        )
        .await
        .expect("blocked");
    let listed = run_xml(
        &store,
        command("alice@a.test/x", "blocked-senders", None, None),
    )
    .await;
    assert!(listed.contains("status='executing'"), "{listed}");
    assert!(
        listed.contains("label='spammer@evil.test, reported as spam (report)'"),
        "{listed}"
    );
    let done = run_xml(
        &store,
        command(
            "alice@a.test/x",
            "blocked-senders",
            None,
            Some(("unblock", &["spammer@evil.test"])),
        ),
    )
    .await;
    assert!(done.contains("Unblocked spammer@evil.test."), "{done}");
    assert!(!store
        .blocks_sender(&alice, "spammer@evil.test")
        .await
        .expect("lookup"));
    // The sender's last mail to her is learnt as not spam.
    let recent = store.recent_mails(&alice, 10).await.expect("recent");
    assert_eq!(
        recent
            .iter()
            .map(|m| (m.sender.as_str(), m.trained.as_str()))
            .collect::<Vec<_>>(),
        [("spammer@evil.test", "ham")]
    );
    // Users see their own command, administrators theirs too.
    let items = items(&config(), Some(&Jid::new("alice@a.test/x").expect("jid")));
    let nodes: Vec<_> = items.items.iter().filter_map(|i| i.node.clone()).collect();
    assert_eq!(
        nodes,
        [
            "openpgp-key",
            "blocked-senders",
            "report-spam",
            "not-spam",
            "spam-settings"
        ]
    );
}

#[test]
fn the_attach_form_takes_an_optional_outgoing_server() {
    use crate::store::TlsMode;
    let user = BareJid::new("alice@a.test").expect("jid");
    let form = |fields: &[(&str, &str)]| {
        let mut x = Element::builder("x", ns::DATA_FORMS)
            .attr(xml_ncname!("type").into(), "submit")
            .build();
        for (var, value) in fields {
            x.append_child(field(var, "text-single", "", &[(*value).to_owned()]));
        }
        x
    };
    let imap = [
        ("host", "imap.example.net"),
        ("port", "993"),
        ("tls", "implicit"),
        ("username", "alice"),
        ("password", "imap-pw"),
    ];
    let plain = mailboxes::attach_request(&user, &form(&imap)).expect("taken");
    assert!(plain.submission.is_none());
    // An empty host: no outgoing server, whatever else is said.
    let empty = [&imap[..], &[("smtp_host", " "), ("smtp_port", "465")]].concat();
    assert!(mailboxes::attach_request(&user, &form(&empty))
        .expect("taken")
        .submission
        .is_none());
    // Only the host: the defaults, and the IMAP login and password.
    let host = [&imap[..], &[("smtp_host", "smtp.example.net")]].concat();
    let outgoing = mailboxes::attach_request(&user, &form(&host))
        .expect("taken")
        .submission
        .expect("an outgoing server");
    assert_eq!(
        (
            outgoing.port,
            outgoing.tls,
            outgoing.username.as_str(),
            outgoing.password.as_str()
        ),
        (587, TlsMode::Starttls, "alice", "imap-pw")
    );
    assert!(outgoing.sent_copy && outgoing.from.is_empty());
    let all = [
        &imap[..],
        &[
            ("smtp_host", "smtp.example.net"),
            ("smtp_port", "465"),
            ("smtp_tls", "implicit"),
            ("smtp_username", "alice@example.net"),
            ("smtp_password", "smtp-pw"),
            ("smtp_from", "alice@example.net"),
            ("sent_copy", "0"),
        ],
    ]
    .concat();
    let outgoing = mailboxes::attach_request(&user, &form(&all))
        .expect("taken")
        .submission
        .expect("an outgoing server");
    assert_eq!(
        (
            outgoing.port,
            outgoing.tls,
            outgoing.username.as_str(),
            outgoing.password.as_str()
        ),
        (465, TlsMode::Implicit, "alice@example.net", "smtp-pw")
    );
    assert!(!outgoing.sent_copy && outgoing.from == "alice@example.net");
    let bad = [
        &imap[..],
        &[("smtp_host", "smtp.example.net"), ("smtp_port", "x")],
    ]
    .concat();
    assert!(mailboxes::attach_request(&user, &form(&bad)).is_err());
    let bad = [
        &imap[..],
        &[("smtp_host", "smtp.example.net"), ("smtp_tls", "ssl")],
    ]
    .concat();
    assert!(mailboxes::attach_request(&user, &form(&bad)).is_err());
}
