//! Bounces read from real-world shapes in `fixtures/bounce/`, ordinary
//! mail never taken for one, and facteur's own DSN read back.

use super::*;
use crate::Error;
use mail_parser::HeaderValue;

const BOUNCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bounce/");
const ORDINARY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/eml/");

/// What one fixture must give: None for a mail that is no failure report.
struct Case {
    file: &'static str,
    expected: Option<Expected>,
}

struct Expected {
    recipient: &'static str,
    status: Option<&'static str>,
    permanent: bool,
    original_message_id: Option<&'static str>,
    diagnostic_has: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "postfix-dsn-user-unknown.eml",
        expected: Some(Expected {
            recipient: "bob@example.net",
            status: Some("5.1.1"),
            permanent: true,
            original_message_id: Some("20231114221320.abc123@example.org"),
            diagnostic_has: "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
        }),
    },
    Case {
        file: "exim-plain-text-failure.eml",
        expected: Some(Expected {
            recipient: "carol@example.net",
            status: Some("5.1.1"),
            permanent: true,
            original_message_id: Some("minutes-2023-11-15@example.org"),
            diagnostic_has: "550 5.1.1 <carol@example.net>: Recipient address rejected: User unknown",
        }),
    },
    Case {
        file: "qmail-failure-notice.eml",
        expected: Some(Expected {
            recipient: "dave@example.net",
            status: Some("5.1.1"),
            permanent: true,
            original_message_id: Some("parcel.1700144403@example.org"),
            diagnostic_has: "Sorry, no mailbox here by that name. (#5.1.1)",
        }),
    },
    Case {
        file: "yahoo-style-failure-notice.eml",
        expected: Some(Expected {
            recipient: "henry@example.com",
            status: None,
            permanent: true,
            original_message_id: Some("photos-42@example.org"),
            diagnostic_has: "554: delivery error: dd This user doesn't have",
        }),
    },
    Case {
        file: "gmail-style-dsn.eml",
        expected: Some(Expected {
            recipient: "erin@example.com",
            status: Some("5.1.1"),
            permanent: true,
            original_message_id: Some("CAF3x9+abc=def@mail.example.org"),
            diagnostic_has: "550-5.1.1 The email account that you tried to reach does not exist.",
        }),
    },
    Case {
        file: "exchange-ndr-dsn.eml",
        expected: Some(Expected {
            recipient: "Frank@Example.com",
            status: Some("5.1.10"),
            permanent: true,
            original_message_id: Some("budget-q4.7f3a@example.org"),
            diagnostic_has: "550 5.1.10 RESOLVER.ADR.RecipientNotFound;",
        }),
    },
    Case {
        file: "sendmail-dsn-second-recipient-failed.eml",
        expected: Some(Expected {
            recipient: "grace@example.net",
            status: Some("5.2.2"),
            permanent: true,
            original_message_id: Some("slides.20231121@example.org"),
            diagnostic_has: "552 5.2.2 Mailbox full",
        }),
    },
    Case {
        file: "delayed-not-a-failure.eml",
        expected: None,
    },
    Case {
        file: "delivered-success-notice-not-a-failure.eml",
        expected: None,
    },
    Case {
        file: "out-of-office-not-a-bounce.eml",
        expected: None,
    },
    Case {
        file: "postfix-delivered-dsn.eml",
        expected: None,
    },
    Case {
        file: "postfix-relayed-dsn.eml",
        expected: None,
    },
    Case {
        file: "postmaster-reply-not-a-bounce.eml",
        expected: None,
    },
];

fn read(dir: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!("{dir}{file}")).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn assert_clean(file: &str, bounce: &Bounce) {
    assert!(bounce.diagnostic.len() <= 1000, "{file}: {bounce:?}");
    assert!(
        !bounce
            .diagnostic
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{file}: {bounce:?}"
    );
}

#[test]
fn fixtures_are_read_as_expected() {
    let mut listed: Vec<&str> = CASES.iter().map(|c| c.file).collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(BOUNCES)
        .expect("fixtures/bounce")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    present.sort_unstable();
    assert_eq!(listed, present, "every fixture has a case");

    for case in CASES {
        let bounce = read_bounce(&read(BOUNCES, case.file));
        let Some(expected) = &case.expected else {
            assert_eq!(bounce, None, "{}", case.file);
            continue;
        };
        let bounce = bounce.unwrap_or_else(|| panic!("{}: not read as a bounce", case.file));
        assert_eq!(
            bounce.recipient.as_deref(),
            Some(expected.recipient),
            "{}",
            case.file
        );
        assert_eq!(bounce.status.as_deref(), expected.status, "{}", case.file);
        assert_eq!(bounce.permanent, expected.permanent, "{}", case.file);
        assert_eq!(
            bounce.original_message_id.as_deref(),
            expected.original_message_id,
            "{}",
            case.file
        );
        assert!(
            bounce.diagnostic.contains(expected.diagnostic_has),
            "{}: {:?}",
            case.file,
            bounce.diagnostic
        );
        assert_clean(case.file, &bounce);
    }
}

#[test]
fn ordinary_mail_is_never_a_bounce() {
    let mut seen = 0;
    for entry in std::fs::read_dir(ORDINARY).expect("fixtures/eml") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.ends_with(".eml") {
            continue;
        }
        seen += 1;
        let bounce = read_bounce(&std::fs::read(&path).expect("readable"));
        if name == "delivery-status-notification.eml" {
            // A minimal Postfix DSN: no Diagnostic-Code, no returned headers.
            let bounce = bounce.expect("a DSN");
            assert_eq!(bounce.recipient.as_deref(), Some("nobody@example.org"));
            assert_eq!(bounce.status.as_deref(), Some("5.1.1"));
            assert!(bounce.permanent);
            assert_eq!(bounce.original_message_id, None);
            assert_eq!(
                bounce.diagnostic,
                "Your message could not be delivered to nobody@example.org."
            );
        } else {
            assert_eq!(bounce, None, "{name}");
        }
    }
    assert!(seen > 10, "fixtures/eml read");
}

const ORIGINAL: &[u8] = b"Received: from mx.example.net by mail.example.org\r\n\
    From: Bob <bob@example.net>\r\n\
    To: alice@example.org\r\n\
    Subject: Hello\r\n\
    Message-ID: <hello-1@example.net>\r\n\
    \r\n\
    The body is not returned.\r\n";

fn report<'a>(recipient: &'a str, reason: &'a str) -> FailureReport<'a> {
    FailureReport {
        reporting_mta: "mx.example.org",
        recipient,
        status: "5.1.1",
        reason,
        to: "bob@example.net",
        original_headers: ORIGINAL,
        arrival_date: 1_700_000_000,
        date: 1_700_000_060,
        message_id: "dsn-1@mx.example.org",
    }
}

#[test]
fn failure_reports_read_back() {
    let reason = "item-not-found: the user alice@example.org does not exist";
    let raw = failure_report(&report("alice@example.org", reason)).expect("builds");
    let bounce = read_bounce(&raw).expect("a bounce");
    assert_eq!(
        bounce,
        Bounce {
            recipient: Some("alice@example.org".into()),
            status: Some("5.1.1".into()),
            diagnostic: reason.into(),
            permanent: true,
            original_message_id: Some("hello-1@example.net".into()),
        }
    );

    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("Diagnostic-Code: x-xmpp; item-not-found"),
        "{text}"
    );
    assert!(!text.contains("The body is not returned"), "{text}");
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(
        parsed.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.name(), Some("Mail Delivery System"));
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx.example.org"));
    let to = parsed.to().and_then(|a| a.first()).expect("to");
    assert_eq!(to.address(), Some("bob@example.net"));
    assert_eq!(parsed.message_id(), Some("dsn-1@mx.example.org"));
    // Threaded with the original in the sender's mail client.
    for header in ["In-Reply-To", "References"] {
        assert!(
            text.contains(&format!("{header}: <hello-1@example.net>\r\n")),
            "{header} missing in {text}"
        );
    }
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_700_000_060));
    assert_eq!(
        parsed
            .header("Auto-Submitted")
            .and_then(HeaderValue::as_text),
        Some("auto-replied")
    );
    let root = parsed.content_type().expect("content type");
    assert_eq!(root.subtype(), Some("report"));
    assert_eq!(root.attribute("report-type"), Some("delivery-status"));
    let types: Vec<String> = parsed
        .parts
        .iter()
        .skip(1)
        .filter_map(|p| p.content_type())
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()))
        .collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let human = parsed.body_text(0).expect("human part");
    assert!(
        human.contains(&format!("<alice@example.org>: {reason}")),
        "{human}"
    );
    let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
    assert_eq!(
        status,
        "Reporting-MTA: dns; mx.example.org\r\n\
         Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822; alice@example.org\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: x-xmpp; item-not-found: the user alice@example.org does not\r\n \
         exist\r\n"
    );
}

#[test]
fn smtp_reasons_and_non_ascii_survive_the_7bit_report() {
    let raw = failure_report(&report(
        "jürgen@exämple.org",
        "550 5.1.1 Benutzer unbekannt – ß\\x{41}",
    ))
    .expect("builds");
    let text = String::from_utf8_lossy(&raw).replace("\r\n ", " ");
    assert!(
        text.contains("Final-Recipient: utf-8; j\\x{FC}rgen@ex\\x{E4}mple.org\r\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 Benutzer unbekannt \\x{2013} \\x{DF}\\x{5C}x{41}\r\n"
        ),
        "{text}"
    );
    let bounce = read_bounce(&raw).expect("a bounce");
    assert_eq!(bounce.recipient.as_deref(), Some("jürgen@exämple.org"));
    assert_eq!(bounce.diagnostic, "550 5.1.1 Benutzer unbekannt – ß\\x{41}");
}

#[test]
fn no_injection_into_headers_or_report_fields() {
    let raw = failure_report(&report(
        "alice@example.org\r\nBcc: victim@example.net",
        "gone\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; eve@example.net\n",
    ))
    .expect("builds");
    let text = String::from_utf8_lossy(&raw);
    let headers = text.split("\r\n\r\n").next().unwrap_or_default();
    assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{text}");
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    assert!(parsed.bcc().is_none());
    let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
    let starts = |name: &str| status.lines().filter(|l| l.starts_with(name)).count();
    assert_eq!(starts("Final-Recipient:"), 1, "{status}");
    assert_eq!(starts("Action:"), 1, "{status}");
    assert_eq!(starts("Bcc:"), 0, "{status}");
    assert_eq!(status.matches("\r\n\r\n").count(), 1, "{status}");
    let bounce = read_bounce(&raw).expect("a bounce");
    assert_eq!(
        bounce.recipient.as_deref(),
        Some("alice@example.org Bcc: victim@example.net")
    );
    assert_eq!(
        bounce.diagnostic,
        "gone Action: delivered Final-Recipient: rfc822; eve@example.net"
    );
}

#[test]
fn reports_need_a_sender_and_a_recipient() {
    let null_sender = FailureReport {
        to: "",
        ..report("alice@example.org", "x")
    };
    assert!(matches!(
        failure_report(&null_sender),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        failure_report(&report(" \r\n", "x")),
        Err(Error::InvalidAddress { .. })
    ));
    let odd_status = FailureReport {
        status: "2.0.0\r\nX: y",
        ..report("alice@example.org", "x")
    };
    let raw = failure_report(&odd_status).expect("builds");
    assert_eq!(
        read_bounce(&raw).and_then(|b| b.status).as_deref(),
        Some("5.0.0")
    );
}

#[test]
fn long_reasons_are_folded_and_read_back() {
    let word = "w".repeat(950);
    let reason = format!(
        "{} {word} {}",
        "remote server said no ".repeat(20).trim(),
        "é".repeat(400)
    );
    let raw = failure_report(&report("alice@example.org", &reason)).expect("builds");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.lines().all(|l| l.len() <= 998), "{text}");
    let bounce = read_bounce(&raw).expect("a bounce");
    assert!(reason.starts_with(&bounce.diagnostic[..100]));
    assert!(bounce.diagnostic.len() <= 1000);
}

#[test]
fn header_blocks_stop_at_the_body() {
    assert_eq!(
        header_block(b"A: b\r\nC: d\r\n\r\nbody"),
        b"A: b\r\nC: d\r\n"
    );
    assert_eq!(header_block(b"A: b\n\nbody"), b"A: b\n");
    assert_eq!(header_block(b"A: b"), b"A: b\r\n");
    let with_latin1 = b"Subject: caf\xe9\r\nMessage-ID: <l1@example.net>\r\n";
    let raw = failure_report(&FailureReport {
        original_headers: with_latin1,
        ..report("alice@example.org", "x")
    })
    .expect("builds");
    assert_eq!(
        read_bounce(&raw)
            .and_then(|b| b.original_message_id)
            .as_deref(),
        Some("l1@example.net")
    );
}

#[test]
fn status_codes_are_found_where_they_stand() {
    assert_eq!(find_status("(#5.1.1)").as_deref(), Some("5.1.1"));
    assert_eq!(
        find_status("550-5.7.26 unauthenticated").as_deref(),
        Some("5.7.26")
    );
    assert_eq!(find_status("5.1.10 RESOLVER").as_deref(), Some("5.1.10"));
    assert_eq!(find_status("host [198.51.100.25] said"), None);
    assert_eq!(find_status("5.6.7.8"), None);
    assert_eq!(find_status("version 15.20.7002.23"), None);
    assert_eq!(find_status("3.1.1"), None);
    assert!(has_permanent_reply("554: delivery error"));
    assert!(!has_permanent_reply("port 5550 open; 550x"));
}

#[test]
fn report_fields_unfold_and_ignore_case() {
    let groups = field_groups(
        "Reporting-MTA: dns; a\r\n\r\n \r\nfinal-RECIPIENT:\r\n rfc822; b@c\r\nDiagnostic-Code: smtp; 550\r\n\tgone\r\n",
    );
    assert_eq!(groups.len(), 2);
    assert_eq!(field(&groups[1], "final-recipient"), Some("rfc822; b@c"));
    assert_eq!(field(&groups[1], "diagnostic-code"), Some("smtp; 550 gone"));
    assert_eq!(
        decode_escapes("a\\x{E9}\\x{zz}\\x{110000}b"),
        "aé\\x{zz}\\x{110000}b"
    );
}

#[test]
fn encoded_reports_without_action_fall_back_on_the_status() {
    use base64::Engine;
    let fields = "Reporting-MTA: dns; mx.example.net\r\n\r\n\
        Final-Recipient: rfc822;<oscar@example.net>\r\nStatus: 5.7.1 (refused)\r\n";
    let encoded = base64::engine::general_purpose::STANDARD.encode(fields);
    let raw = format!(
        "From: postmaster@example.net\r\nTo: alice@example.org\r\nSubject: Report\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nRefused by policy.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {encoded}\r\n--b--\r\n"
    );
    let bounce = read_bounce(raw.as_bytes()).expect("a bounce");
    assert_eq!(bounce.recipient.as_deref(), Some("oscar@example.net"));
    assert_eq!(bounce.status.as_deref(), Some("5.7.1"));
    assert_eq!(bounce.diagnostic, "Refused by policy.");
    assert!(bounce.permanent);
    let transient = raw.replace(
        &encoded,
        &base64::engine::general_purpose::STANDARD.encode(fields.replace("5.7.1", "4.7.1")),
    );
    assert_eq!(
        read_bounce(transient.as_bytes()),
        None,
        "a 4.x.x without Action is a delay"
    );
}

#[test]
fn success_reports_name_the_recipients_delivered() {
    let delivered = read_delivered(&read(BOUNCES, "postfix-delivered-dsn.eml")).expect("delivered");
    assert_eq!(delivered.envelope_id.as_deref(), Some("42"));
    assert_eq!(delivered.recipients.len(), 1);
    assert!(delivered.recipients[0].is("Bob@Example.net"));
    assert!(!delivered.recipients[0].is("carol@example.net"));
    // Relayed to a server that sends no reports: the last word to come.
    // (Postfix 3.7 as facteur's relay, captured, NOTIFY=SUCCESS ENVID=42.)
    let postfix = read_delivered(&read(BOUNCES, "postfix-relayed-dsn.eml")).expect("relayed");
    assert_eq!(postfix.envelope_id.as_deref(), Some("42"));
    assert!(postfix.recipients[0].is("bob@example.net"));
    let relayed = read_delivered(&read(BOUNCES, "delivered-success-notice-not-a-failure.eml"))
        .expect("relayed");
    assert_eq!(relayed.envelope_id, None);
    assert!(relayed.recipients[0].is("judy@example.net"));
    // Failures, delays, mere mail and MDNs are no success reports.
    for file in [
        "postfix-dsn-user-unknown.eml",
        "delayed-not-a-failure.eml",
        "out-of-office-not-a-bounce.eml",
    ] {
        assert_eq!(read_delivered(&read(BOUNCES, file)), None, "{file}");
    }
    let mdn = read(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mdn/"),
        "thunderbird-displayed.eml",
    );
    assert_eq!(read_delivered(&mdn), None);
}
