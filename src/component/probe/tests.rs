//! Probe answers: their shape, each error of §8, and the rate limit.

use std::time::Duration;

use super::*;
use crate::store::scratch;

/// A gateway for b.test whose `[mail] users` is `users`.
fn config(users: &str) -> Config {
    Config::parse(&format!(
        "[component]\njid = \"mail.b.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"b.test\"]\nusers = \"{users}\"\n\
         [xmpp_mail]\nttl_accept = \"2h\"\nttl_reject = \"30m\"\n\
         max_size = 100000\nprobes_per_minute = 2\n"
    ))
    .expect("config")
}

fn probe(from: Option<&str>, rcpts: &[&str]) -> Iq {
    let mut payload = Element::builder("probe", NS_MAIL);
    for rcpt in rcpts {
        payload = payload.append(
            Element::builder("rcpt", NS_MAIL)
                .attr(xml_ncname!("jid").into(), *rcpt)
                .build(),
        );
    }
    Iq::Get {
        from: from.map(|f| Jid::new(f).expect("jid")),
        to: Some(Jid::new("mail.b.test").expect("jid")),
        id: "p1".into(),
        payload: payload.build(),
    }
}

async fn ask(config: &Config, store: &Store, iq: Iq) -> String {
    let mut probes = Probes::new(config.xmpp_mail.probes);
    String::from(&Element::from(
        probes.answer(config, store, iq, Instant::now()).await,
    ))
}

fn assert_error(xml: &str, type_: &str, condition: &str) {
    assert!(xml.contains("type='error'"), "{xml}");
    assert!(xml.contains(&format!("type='{type_}'")), "{xml}");
    assert!(xml.contains(&format!("<{condition} ")), "{xml}");
    assert!(xml.contains("<text "), "errors say what was wrong: {xml}");
}

#[tokio::test]
async fn each_recipient_is_answered_with_its_status() {
    let (store, _dir) = scratch().await;
    let config = config("registered");
    store
        .register(&BareJid::new("bob@b.test").expect("jid"))
        .await
        .expect("registered");
    let xml = ask(
        &config,
        &store,
        probe(
            Some("mail.a.test"),
            &["bob@b.test", "nobody@b.test", "carol@elsewhere.test"],
        ),
    )
    .await;
    assert!(xml.contains("type='result'"), "{xml}");
    assert!(
        xml.contains("to='mail.a.test'") && xml.contains("id='p1'"),
        "{xml}"
    );
    assert!(xml.contains("<probe xmlns='urn:xmpp:mail:0'>"), "{xml}");
    // minidom writes attributes in name order.
    for expected in [
        "<rcpt jid='bob@b.test' max-size='100000' status='accept' ttl='7200'/>",
        "<rcpt jid='nobody@b.test' max-size='100000' status='reject' ttl='1800'/>",
        "<rcpt jid='carol@elsewhere.test' max-size='100000' status='reject' ttl='1800'/>",
    ] {
        assert!(xml.contains(expected), "{expected} in {xml}");
    }
}

#[tokio::test]
async fn every_user_is_accepted_when_all_are_served() {
    let (store, _dir) = scratch().await;
    let config = config("all");
    let xml = ask(
        &config,
        &store,
        probe(Some("mail.a.test"), &["anyone@b.test", "x@a.test"]),
    )
    .await;
    assert!(
        xml.contains("<rcpt jid='anyone@b.test' max-size='100000' status='accept'"),
        "{xml}"
    );
    assert!(
        xml.contains("<rcpt jid='x@a.test' max-size='100000' status='reject'"),
        "{xml}"
    );
}

#[tokio::test]
async fn the_store_unavailable_makes_unknown() {
    let (store, _dir) = scratch().await;
    let config = config("registered");
    store.close().await;
    let xml = ask(&config, &store, probe(Some("mail.a.test"), &["bob@b.test"])).await;
    assert!(
        xml.contains("<rcpt jid='bob@b.test' max-size='100000' status='unknown' ttl='60'/>"),
        "{xml}"
    );
}

#[tokio::test]
async fn only_other_domains_are_answered() {
    let (store, _dir) = scratch().await;
    let config = config("registered");
    for from in ["b.test", "alice@b.test/phone", "mail.b.test"] {
        let xml = ask(&config, &store, probe(Some(from), &["bob@b.test"])).await;
        assert_error(&xml, "cancel", "not-allowed");
    }
    let xml = ask(&config, &store, probe(None, &["bob@b.test"])).await;
    assert_error(&xml, "modify", "bad-request");
}

#[tokio::test]
async fn malformed_probes_are_bad_requests() {
    let (store, _dir) = scratch().await;
    let config = config("registered");
    let xml = ask(&config, &store, probe(Some("mail.a.test"), &[])).await;
    assert_error(&xml, "modify", "bad-request");
    for bad in ["bob@b.test/phone", "b.test", "", "not a jid@@"] {
        let xml = ask(
            &config,
            &store,
            probe(Some("mail.a.test"), &["bob@b.test", bad]),
        )
        .await;
        assert_error(&xml, "modify", "bad-request");
    }
    let many: Vec<String> = (0..=MAX_RCPTS).map(|n| format!("u{n}@b.test")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let xml = ask(&config, &store, probe(Some("mail.a.test"), &many)).await;
    assert_error(&xml, "modify", "not-acceptable");
    let fifty = &many[..MAX_RCPTS];
    let xml = ask(&config, &store, probe(Some("mail.a.test"), fifty)).await;
    assert!(xml.contains("type='result'"), "{xml}");
}

/// Asks `probes` about bob and nobody, from `from` at `at`.
async fn answer(
    probes: &mut Probes,
    config: &Config,
    store: &Store,
    from: &str,
    at: Instant,
) -> String {
    let iq = probe(Some(from), &["bob@b.test", "nobody@b.test"]);
    String::from(&Element::from(probes.answer(config, store, iq, at).await))
}

#[tokio::test]
async fn past_the_rate_every_recipient_is_unknown() {
    let (store, _dir) = scratch().await;
    let config = config("registered");
    store
        .register(&BareJid::new("bob@b.test").expect("jid"))
        .await
        .expect("registered");
    let mut probes = Probes::new(config.xmpp_mail.probes);
    let now = Instant::now();
    for _ in 0..2 {
        let xml = answer(&mut probes, &config, &store, "mail.a.test", now).await;
        assert!(xml.contains("status='accept'"), "{xml}");
    }
    let limited = answer(&mut probes, &config, &store, "mail.a.test", now).await;
    assert!(limited.contains("type='result'"), "same shape: {limited}");
    for expected in [
        "<rcpt jid='bob@b.test' max-size='100000' status='unknown' ttl='60'/>",
        "<rcpt jid='nobody@b.test' max-size='100000' status='unknown' ttl='60'/>",
    ] {
        assert!(limited.contains(expected), "{expected} in {limited}");
    }
    // Another domain has its own budget; the first one's comes back.
    let other = answer(&mut probes, &config, &store, "mail.c.test", now).await;
    assert!(other.contains("status='accept'"), "{other}");
    let later = answer(
        &mut probes,
        &config,
        &store,
        "mail.a.test",
        now + Duration::from_secs(30),
    )
    .await;
    assert!(later.contains("status='accept'"), "{later}");
}

#[test]
fn only_probe_gets_are_probes() {
    assert!(is_probe(&probe(Some("mail.a.test"), &["bob@b.test"])));
    let Iq::Get { payload, .. } = probe(None, &[]) else {
        unreachable!()
    };
    let set = Iq::Set {
        from: None,
        to: None,
        id: "s".into(),
        payload,
    };
    assert!(!is_probe(&set));
}
