//! Throughput of the translation core: email → stanza and stanza →
//! email, beside mail-parser's bare parse of the same bytes (the floor
//! facteur cannot beat), over the fixture mails and over the bench's 4 KB,
//! 40 KB and 1 MB mails (tests/bench: plain text, 78-character lines).

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
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

/// The mail tests/bench/bench.py sends (`mail_bytes`).
fn bench_mail(size: usize) -> Vec<u8> {
    let head = b"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: bench\r\nMessage-ID: <m1@example.net>\r\n\r\n";
    let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
    let lines = ((size - head.len()) / line.len()).max(1);
    let mut mail = head.to_vec();
    for _ in 0..lines {
        mail.extend_from_slice(&line);
    }
    mail
}

fn email_to_stanza(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    mails: &[Vec<u8>],
) {
    let bytes: usize = mails.iter().map(Vec::len).sum();
    let gateway = BareJid::new("mail.example.test").expect("jid");
    let from = BareJid::new("bob\\40example.net@mail.example.test").expect("jid");
    let to = BareJid::new("alice@example.test").expect("jid");
    let served = ["example.test".to_owned()];
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mail_parser_parse", |b| {
        b.iter(|| {
            for mail in mails {
                std::hint::black_box(MessageParser::default().parse(mail));
            }
        })
    });
    group.bench_function("read_mail_and_to_stanza", |b| {
        b.iter(|| {
            for mail in mails {
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
    // As the component stream writes it: the stanza's XML straight from
    // the message (tokio-xmpp's AsXml), not through a minidom tree.
    group.bench_function("read_mail_and_to_stanza_wire", |b| {
        b.iter(|| {
            for mail in mails {
                if let Ok(read) = read_mail(mail) {
                    let envelope = Envelope {
                        from: from.clone(),
                        to: to.clone(),
                        id: "mail-1",
                        gateway: gateway.domain(),
                        served: &served,
                        reply: None,
                    };
                    let _ = std::hint::black_box(xso::to_vec(&to_stanza(&read, &envelope)));
                }
            }
        })
    });
}

fn stanza_to_email(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    mails: &[Vec<u8>],
) {
    let texts: Vec<String> = mails
        .iter()
        .filter_map(|m| read_mail(m).ok().map(|r| r.text))
        .collect();
    let text_bytes: usize = texts.iter().map(String::len).sum();
    let alice = MailAddress::parse("alice@example.test").expect("address");
    let bob = MailAddress::parse("bob@example.net").expect("address");
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
}

fn translate(c: &mut Criterion) {
    let sets = [
        ("fixtures", corpus()),
        ("4KB", vec![bench_mail(4096)]),
        ("40KB", vec![bench_mail(40 * 1024)]),
        ("1MB", vec![bench_mail(1024 * 1024)]),
    ];
    for (name, mails) in &sets {
        let mut group = c.benchmark_group(format!("email_to_stanza/{name}"));
        email_to_stanza(&mut group, mails);
        group.finish();
    }
    for (name, mails) in &sets {
        let mut group = c.benchmark_group(format!("stanza_to_email/{name}"));
        stanza_to_email(&mut group, mails);
        group.finish();
    }
}

criterion_group!(benches, translate);
criterion_main!(benches);
