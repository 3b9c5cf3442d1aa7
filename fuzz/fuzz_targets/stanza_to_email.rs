//! Any text as a stanza body, subject and HTML: building the mail must
//! never panic, and nothing may add a header.
#![no_main]

use facteur_bridge::to_mail::{to_rfc5322, OutgoingMail};
use facteur_bridge::MailAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let subject = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let html = parts.next();
    let (Ok(from), Ok(to)) = (MailAddress::parse("alice@example.test"), MailAddress::parse("bob@example.net")) else {
        return;
    };
    let Ok(raw) = to_rfc5322(&OutgoingMail {
        from: &from,
        from_name: Some(subject),
        to: &to,
        subject: Some(subject),
        body,
        message_id: "fuzz@mail.example.test",
        in_reply_to: None,
        references: &[],
        html,
        styled: true,
        files: &[],
        jabber_id: Some(subject),
        date: 0,
    }) else {
        return;
    };
    let head = raw.split(|b| *b == b'\n').take_while(|line| *line != b"\r" && !line.is_empty());
    for line in head {
        assert!(!line.starts_with(b"Bcc:"), "a stanza added a header");
    }
});
