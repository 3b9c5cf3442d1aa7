//! The delivery client against small loopback SMTP servers (RFC 5321):
//! the next destination after a temporary reply, the limit of deliveries
//! per destination, connection reuse and the dropping of idle connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

/// What a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    closed: AtomicUsize,
    rcpts: AtomicUsize,
    mails: AtomicUsize,
    in_data: AtomicUsize,
    most_in_data: AtomicUsize,
    /// The MAIL and RCPT commands, as sent.
    envelopes: std::sync::Mutex<Vec<String>>,
}

/// How a test server answers.
#[derive(Clone)]
struct Script {
    rcpt: &'static str,
    /// How long the reply to the end of DATA waits.
    data_delay: Duration,
    /// Whether EHLO offers DSN (RFC 3461).
    dsn: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            rcpt: "250 2.1.5 Ok",
            data_delay: Duration::ZERO,
            dsn: false,
        }
    }
}

/// An SMTP server on a free loopback port; runs until the test ends.
async fn server(script: Script) -> (Destination, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(session(tcp, script.clone(), counted.clone()));
        }
    });
    (("127.0.0.1".to_owned(), port), seen)
}

async fn session(tcp: TcpStream, script: Script, seen: Arc<Seen>) {
    let (read, mut write) = tcp.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 test ESMTP\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        if verb == "MAIL" || verb == "RCPT" {
            if let Ok(mut envelopes) = seen.envelopes.lock() {
                envelopes.push(line.clone());
            }
        }
        let reply = match verb.as_str() {
            "EHLO" if script.dsn => "250-test\r\n250-DSN\r\n250 PIPELINING",
            "EHLO" => "250-test\r\n250 PIPELINING",
            "RCPT" => {
                seen.rcpts.fetch_add(1, Ordering::SeqCst);
                script.rcpt
            }
            "DATA" => {
                let _ = write.write_all(b"354 Go on\r\n").await;
                let now = seen.in_data.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_in_data.fetch_max(now, Ordering::SeqCst);
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                }
                tokio::time::sleep(script.data_delay).await;
                seen.in_data.fetch_sub(1, Ordering::SeqCst);
                seen.mails.fetch_add(1, Ordering::SeqCst);
                "250 2.0.0 Stored"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 Bye\r\n").await;
                break;
            }
            _ => "250 2.0.0 Ok",
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    seen.closed.fetch_add(1, Ordering::SeqCst);
}

/// A sender to `relay`, or to the destinations a test gives `send_to`.
fn sender(relay: Option<&Destination>, per_destination: usize) -> Sender {
    let relay = relay
        .map(|(host, port)| format!("relay = \"{host}:{port}\"\n"))
        .unwrap_or_default();
    let config = crate::config::Config::parse(&format!(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n\
         [outbound]\n{relay}timeout = \"5s\"\ndestination_concurrency = {per_destination}\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n"
    ))
    .expect("config");
    let resolver = crate::dns::resolver(&config.dns).expect("resolver");
    Sender::new(&config.outbound, resolver)
}

fn envelope() -> Envelope {
    Envelope::new(
        Some("alice@example.test".parse().expect("from")),
        vec!["bob@example.net".parse().expect("to")],
    )
    .expect("envelope")
}

const MAIL: &[u8] =
    b"From: alice@example.test\r\nTo: bob@example.net\r\nSubject: Hi\r\n\r\nHello.\r\n";

/// Waits until `fact` holds, for two seconds at most.
async fn eventually(fact: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if fact() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fact()
}

#[tokio::test]
async fn the_next_destination_is_tried_after_a_temporary_reply() {
    let busy = Script {
        rcpt: "451 4.3.0 Mailbox busy",
        ..Script::default()
    };
    let (first, first_seen) = server(busy).await;
    let (second, second_seen) = server(Script::default()).await;
    let sender = sender(None, 10);
    let reply = sender
        .send_to(&[first, second.clone()], &envelope(), MAIL, None)
        .await
        .expect("delivered");
    assert_eq!(
        reply.reply,
        format!("127.0.0.1:{} said: 250 2.0.0 Stored", second.1)
    );
    assert_eq!(first_seen.rcpts.load(Ordering::SeqCst), 1);
    assert_eq!(first_seen.mails.load(Ordering::SeqCst), 0);
    assert_eq!(second_seen.mails.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_permanent_reply_ends_the_attempt() {
    let refusing = Script {
        rcpt: "550 5.1.1 No such user",
        ..Script::default()
    };
    let (first, _) = server(refusing).await;
    let (second, second_seen) = server(Script::default()).await;
    let failure = sender(None, 10)
        .send_to(&[first, second], &envelope(), MAIL, None)
        .await
        .expect_err("refused");
    assert!(failure.permanent, "{failure:?}");
    assert!(failure.text.contains("No such user"), "{failure:?}");
    assert_eq!(second_seen.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn deliveries_to_one_destination_are_limited() {
    let slow = Script {
        data_delay: Duration::from_millis(300),
        ..Script::default()
    };
    let (relay, seen) = server(slow).await;
    let sender = sender(Some(&relay), 2);
    let sends =
        (0..6).map(|_| sender.send(Some("alice@example.test"), "bob@example.net", MAIL, None));
    for result in futures_util::future::join_all(sends).await {
        result.expect("delivered");
    }
    assert_eq!(seen.mails.load(Ordering::SeqCst), 6);
    assert_eq!(seen.most_in_data.load(Ordering::SeqCst), 2);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_are_reused_and_dropped_when_idle() {
    let (relay, seen) = server(Script::default()).await;
    let mut sender = sender(Some(&relay), 10);
    sender.idle_time = Duration::from_millis(300);
    for _ in 0..3 {
        sender
            .send(Some("alice@example.test"), "bob@example.net", MAIL, None)
            .await
            .expect("delivered");
    }
    assert_eq!(seen.mails.load(Ordering::SeqCst), 3);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.closed.load(Ordering::SeqCst), 0);
    // Idle longer than kept: the next mail opens a new connection, and
    // the old one is closed rather than kept open.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sender
        .send(Some("alice@example.test"), "bob@example.net", MAIL, None)
        .await
        .expect("delivered");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert!(eventually(|| seen.closed.load(Ordering::SeqCst) == 1).await);
}

#[tokio::test]
async fn a_smarthost_that_offers_dsn_is_asked_for_reports() {
    let offers = Script {
        dsn: true,
        ..Script::default()
    };
    let (relay, seen) = server(offers).await;
    let sender = sender(Some(&relay), 2);
    let accepted = sender
        .send(
            Some("bounce+42-ab@example.test"),
            "bob@example.net",
            MAIL,
            Some("42"),
        )
        .await
        .expect("delivered");
    assert!(accepted.report_asked);
    let plain = sender
        .send(Some("alice@example.test"), "bob@example.net", MAIL, None)
        .await
        .expect("delivered");
    assert!(!plain.report_asked);
    let envelopes = seen.envelopes.lock().expect("seen").clone();
    assert_eq!(
        envelopes,
        [
            "MAIL FROM:<bounce+42-ab@example.test> RET=HDRS ENVID=42",
            "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net",
            "MAIL FROM:<alice@example.test>",
            "RCPT TO:<bob@example.net>",
        ]
    );
    assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
}

#[tokio::test]
async fn a_smarthost_without_dsn_is_asked_for_none() {
    let (relay, seen) = server(Script::default()).await;
    let sender = sender(Some(&relay), 2);
    let accepted = sender
        .send(
            Some("bounce+42-ab@example.test"),
            "bob@example.net",
            MAIL,
            Some("42"),
        )
        .await
        .expect("delivered");
    assert!(!accepted.report_asked);
    let envelopes = seen.envelopes.lock().expect("seen").clone();
    assert_eq!(
        envelopes,
        [
            "MAIL FROM:<bounce+42-ab@example.test>",
            "RCPT TO:<bob@example.net>",
        ]
    );
}
