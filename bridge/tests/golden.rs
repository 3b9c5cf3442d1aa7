//! Golden fixtures, both ways: every `fixtures/eml/NAME.eml` becomes the
//! stanza in `fixtures/golden/NAME.xml`; every `fixtures/stanza/NAME.xml`
//! becomes the mail in `fixtures/golden/NAME.eml`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the expected files, then review them with
//! `git diff fixtures/golden`. Round trips email → stanza → email too.

use std::path::{Path, PathBuf};

use facteur_bridge::attach::{attachments, Attachment, SharedFile};
use facteur_bridge::to_mail::{stanza_parts, to_rfc5322, OutgoingFile, OutgoingMail};
use facteur_bridge::to_xmpp::{read_mail_with, to_stanza, Envelope};
use facteur_bridge::MailAddress;
use jid::BareJid;
use mail_parser::{MessageParser, MimeHeaders};
use xmpp_parsers::minidom::Element;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == extension));
    files.sort();
    files
}

/// One element per line: text never holds a raw `<`, so `><` only ever
/// separates tags.
fn pretty(xml: &str) -> String {
    format!("{}\n", xml.replace("><", ">\n<"))
}

/// Whether this run rewrites the golden files: only for `UPDATE_GOLDEN=1`,
/// so that `UPDATE_GOLDEN=0` or an empty value still compares.
fn updating() -> bool {
    rewrites(std::env::var("UPDATE_GOLDEN").ok().as_deref())
}

fn rewrites(update_golden: Option<&str>) -> bool {
    update_golden == Some("1")
}

#[test]
fn only_update_golden_1_rewrites() {
    assert!(rewrites(Some("1")));
    for value in [None, Some("0"), Some(""), Some("yes")] {
        assert!(!rewrites(value), "{value:?}");
    }
}

/// Compares with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check(golden: &Path, actual: &str, failures: &mut Vec<String>) {
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    if expected == actual {
        return;
    }
    if updating() {
        std::fs::write(golden, actual).expect("write golden");
        eprintln!("updated {}", golden.display());
        return;
    }
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    failures.push(format!(
        "{} differs at line {}:\n  expected: {:?}\n  actual:   {:?}",
        golden.display(),
        first + 1,
        expected.lines().nth(first).unwrap_or("<end>"),
        actual.lines().nth(first).unwrap_or("<end>"),
    ));
}

/// The attachments of a mail, as if stored and linked.
fn shared(raw: &[u8]) -> (Vec<SharedFile>, Vec<Attachment>) {
    let parts = attachments(raw).expect("attachments");
    let files = parts
        .iter()
        .map(|p| SharedFile {
            name: p.name.clone(),
            content_type: p.content_type.clone(),
            size: p.data.len() as u64,
            sha256: p.sha256,
            url: format!(
                "https://files.example.test/files/t{}/{}",
                p.index,
                p.name.replace(' ', "%20")
            ),
            content_id: p.content_id.clone(),
        })
        .collect();
    (files, parts)
}

#[test]
fn mail_to_stanza() {
    let gateway = BareJid::new("mail.example.test").expect("jid");
    let served = ["example.test".to_owned()];
    let mut failures = Vec::new();
    let emls = files_in(&fixtures().join("eml"), "eml");
    assert!(emls.len() >= 30, "only {} fixtures", emls.len());
    for eml in emls {
        let raw = std::fs::read(&eml).expect("read");
        let (files, _) = shared(&raw);
        let mail = read_mail_with(&raw, &files).expect("every fixture parses");
        let envelope = Envelope {
            from: BareJid::new("bob\\40example.net@mail.example.test").expect("jid"),
            to: BareJid::new("alice@example.test").expect("jid"),
            id: "mail-fixture",
            gateway: gateway.domain(),
            served: &served,
            reply: None,
        };
        let xml = String::from(&Element::from(to_stanza(&mail, &envelope)));
        let name = eml.file_stem().and_then(|s| s.to_str()).expect("name");
        check(
            &fixtures().join("golden").join(format!("{name}.xml")),
            &pretty(&xml),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// mail-builder picks random MIME boundaries: name them by order.
fn stable_boundaries(mail: &str) -> String {
    let mut text = mail.to_owned();
    let mut n = 0;
    while let Some(start) = text.find("boundary=\"").map(|i| i + "boundary=\"".len()) {
        let Some(len) = text.get(start..).and_then(|rest| rest.find('"')) else {
            break;
        };
        let boundary = text.get(start..start + len).unwrap_or_default().to_owned();
        n += 1;
        text = text.replace(
            &format!("boundary=\"{boundary}\""),
            &format!("boundary*=\"b{n}\""),
        );
        text = text.replace(&boundary, &format!("b{n}"));
    }
    text.replace("boundary*=", "boundary=")
}

#[test]
fn stanza_to_mail() {
    let alice = MailAddress::parse("alice@example.test").expect("address");
    let bob = MailAddress::parse("bob@example.net").expect("address");
    let mut failures = Vec::new();
    let stanzas = files_in(&fixtures().join("stanza"), "xml");
    assert!(stanzas.len() >= 5, "only {} stanza fixtures", stanzas.len());
    for path in stanzas {
        let xml = std::fs::read_to_string(&path).expect("read");
        let element: Element = xml.trim().parse().expect("xml");
        let message = xmpp_parsers::message::Message::try_from(element).expect("message");
        let parts = stanza_parts(&message);
        let references = vec![
            "root@example.net".to_owned(),
            "parent@example.net".to_owned(),
        ];
        let files: Vec<OutgoingFile<'_>> = parts
            .shared
            .iter()
            .map(|s| OutgoingFile {
                name: s.name.as_deref().unwrap_or("file.bin"),
                content_type: s
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
                data: b"fetched bytes",
            })
            .collect();
        let raw = to_rfc5322(&OutgoingMail {
            from: &alice,
            from_name: Some("Alice"),
            to: &bob,
            subject: parts.subject.as_deref(),
            body: &parts.body,
            message_id: "fixture@mail.example.test",
            in_reply_to: parts.reply_id.as_ref().map(|_| "parent@example.net"),
            references: if parts.reply_id.is_some() {
                &references
            } else {
                &[]
            },
            html: parts.html.as_deref(),
            styled: parts.styled,
            files: &files,
            jabber_id: Some("alice@example.test"),
            date: 1_700_000_000,
        })
        .expect("builds");
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let text = stable_boundaries(&String::from_utf8_lossy(&raw));
        check(
            &fixtures().join("golden").join(format!("{name}.eml")),
            &text,
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Email → stanza → email keeps the subject, the text, the thread headers
/// and the attachments' bytes.
#[test]
fn round_trip_keeps_what_matters() {
    let alice = MailAddress::parse("alice@example.test").expect("address");
    let bob = MailAddress::parse("bob@example.net").expect("address");
    for eml in files_in(&fixtures().join("eml"), "eml") {
        let raw = std::fs::read(&eml).expect("read");
        let (_, parts) = shared(&raw);
        let mail = read_mail_with(&raw, &[]).expect("parses");
        let files: Vec<OutgoingFile<'_>> = parts
            .iter()
            .map(|p| OutgoingFile {
                name: &p.name,
                content_type: &p.content_type,
                data: &p.data,
            })
            .collect();
        let back = to_rfc5322(&OutgoingMail {
            from: &alice,
            from_name: None,
            to: &bob,
            subject: mail.subject.as_deref(),
            body: &mail.text,
            message_id: "rt@mail.example.test",
            in_reply_to: mail.in_reply_to.first().map(String::as_str),
            references: &mail.references,
            html: None,
            styled: false,
            files: &files,
            jabber_id: None,
            date: 0,
        })
        .expect("builds");
        let parsed = MessageParser::default().parse(&back).expect("parses back");
        let name = eml.display();
        assert_eq!(parsed.subject().map(str::to_owned), mail.subject, "{name}");
        // Read back as the gateway reads mail (format=flowed unwrapped); the
        // files are listed again after the text.
        let again = read_mail_with(&back, &[]).expect("reads back");
        assert!(
            again.text.starts_with(mail.text.trim_end()),
            "{name}: {:?} vs {:?}",
            again.text,
            mail.text
        );
        let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
            value
                .as_text_list()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            ids(parsed.in_reply_to()),
            mail.in_reply_to.iter().take(1).cloned().collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(ids(parsed.references()), mail.references, "{name}");
        let back_files: Vec<(String, Vec<u8>)> = parsed
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_owned(),
                    a.contents().to_vec(),
                )
            })
            .collect();
        assert_eq!(back_files.len(), parts.len(), "{name}");
        for ((name_back, bytes_back), part) in back_files.iter().zip(&parts) {
            assert_eq!(name_back, &part.name, "{name}");
            if part.content_type != "message/rfc822" {
                assert_eq!(bytes_back, &part.data, "{name}: {}", part.name);
            }
        }
    }
}
