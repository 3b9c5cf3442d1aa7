//! Throughput of the translation core on the fixture mails: email →
//! stanza and stanza → email, beside mail-parser's bare parse of the same
//! bytes (the floor facteur cannot beat).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use facteur_bridge::to_mail::{to_rfc5322, OutgoingMail};
use facteur_bridge::to_xmpp::{read_mail, to_stanza, Envelope};
use facteur_bridge::MailAddress;
use jid::BareJid;
use mail_parser::MessageParser;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/eml");
    let mut mails: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if mails.is_empty() {
        mails.push(b"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n".to_vec());
    }
    mails
}

fn translate(c: &mut Criterion) {
    let mails = corpus();
    let bytes: usize = mails.iter().map(Vec::len).sum();
    let gateway = BareJid::new("mail.example.test").expect("jid");
    let from = BareJid::new("bob\\40example.net@mail.example.test").expect("jid");
    let to = BareJid::new("alice@example.test").expect("jid");
    let served = ["example.test".to_owned()];

    let mut group = c.benchmark_group("email_to_stanza");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mail_parser_parse", |b| {
        b.iter(|| {
            for mail in &mails {
                std::hint::black_box(MessageParser::default().parse(mail));
            }
        })
    });
    group.bench_function("read_mail_and_to_stanza", |b| {
        b.iter(|| {
            for mail in &mails {
                if let Ok(read) = read_mail(mail) {
                    let envelope = Envelope {
                        from: from.clone(),
                        to: to.clone(),
                        id: "mail-1",
                        gateway: gateway.domain(),
                        served: &served,
                        reply: None,
                    };
                    std::hint::black_box(String::from(&xmpp_parsers::minidom::Element::from(
                        to_stanza(&read, &envelope),
                    )));
                }
            }
        })
    });
    group.finish();

    let texts: Vec<String> = mails
        .iter()
        .filter_map(|m| read_mail(m).ok().map(|r| r.text))
        .collect();
    let text_bytes: usize = texts.iter().map(String::len).sum();
    let alice = MailAddress::parse("alice@example.test").expect("address");
    let bob = MailAddress::parse("bob@example.net").expect("address");
    let mut group = c.benchmark_group("stanza_to_email");
    group.throughput(Throughput::Bytes(text_bytes as u64));
    group.bench_function("to_rfc5322", |b| {
        b.iter(|| {
            for text in &texts {
                let _ = std::hint::black_box(to_rfc5322(&OutgoingMail {
                    from: &alice,
                    from_name: Some("Alice"),
                    to: &bob,
                    subject: Some("Re: hello"),
                    body: text,
                    message_id: "id@mail.example.test",
                    in_reply_to: None,
                    references: &[],
                    html: None,
                    styled: true,
                    files: &[],
                    jabber_id: Some("alice@example.test"),
                    date: 1_700_000_000,
                }));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
