//! The receiver driven over `tokio::io::duplex`, with a real SQLite store.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::{serve, Reception};
use crate::config::Config;
use crate::store::{scratch, Millis, Store};

const CONFIG: &str = r#"
[component]
jid = "mail.example.test"
secret = "s"
[mail]
domains = ["example.test"]
[inbound]
hostname = "mx.example.test"
max_message_size = 2048
max_recipients = 2
"#;

fn reception(config: &str, store: &Store) -> Arc<Reception> {
    let config = Arc::new(Config::parse(config).expect("config"));
    let return_paths = crate::return_path::ReturnPaths::new(b"test key");
    Arc::new(Reception::new(
        crate::config::Live::fixed(config),
        store.clone(),
        None,
        return_paths,
        &tokio_util::task::TaskTracker::new(),
    ))
}

struct Client {
    io: BufReader<DuplexStream>,
    _dir: tempfile::TempDir,
    store: Store,
    task: tokio::task::JoinHandle<()>,
}

/// A store where alice@example.test is registered.
async fn alice_store() -> (Store, tempfile::TempDir) {
    let (store, dir) = scratch().await;
    store
        .register(&jid::BareJid::new("alice@example.test").expect("jid"))
        .await
        .expect("register");
    (store, dir)
}

/// Serves a connection from 192.0.2.1 on one end of a duplex stream:
/// the client's end, and the task serving it.
fn open(
    reception: Arc<Reception>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = "192.0.2.1:40000".parse().expect("addr");
    (
        client,
        tokio::spawn(serve(server, peer, reception, tls, shutdown)),
    )
}

/// Reads one reply from any stream.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(io: &mut R) -> String {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), io.read_line(&mut line))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "connection closed; got {lines:?}");
        let line = line.trim_end().to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines.join("\n");
        }
    }
}

impl Client {
    async fn start() -> Client {
        Client::start_with(CONFIG).await
    }

    async fn start_with(config: &str) -> Client {
        let (store, dir) = alice_store().await;
        let (client, task) = open(reception(config, &store), None, CancellationToken::new());
        let mut c = Client {
            io: BufReader::new(client),
            _dir: dir,
            store,
            task,
        };
        let greeting = c.reply().await;
        assert_eq!(greeting, "220 mx.example.test ESMTP facteur");
        c
    }

    /// Reads one whole reply, lines joined by '\n'.
    async fn reply(&mut self) -> String {
        read_reply(&mut self.io).await
    }

    async fn send(&mut self, text: &str) {
        self.io
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .expect("write");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let mut c = Client::start().await;
    let ehlo = c.cmd("EHLO client.example.net").await;
    for ext in [
        "SIZE 2048",
        "8BITMIME",
        "PIPELINING",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            ehlo.lines().any(|l| l[4..] == *ext),
            "{ext} missing in {ehlo}"
        );
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured: {ehlo}");
    assert_eq!(c.cmd("VRFY alice").await.get(..3), Some("252"));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("STARTTLS").await.get(..3), Some("502"));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
}

#[tokio::test]
async fn accepts_mail_for_registered_users_only() {
    let mut c = Client::start().await;
    c.cmd("EHLO client.example.net").await;
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "503 5.5.1 Need MAIL before RCPT"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<bob@example.net>").await,
        "250 2.1.0 Sender ok"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "550 5.1.1 No such user here"
    );
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.test>").await,
        "550 5.7.1 Relaying denied"
    );
    assert_eq!(
        c.cmd("RCPT TO:<Alice@Example.TEST>").await,
        "250 2.1.5 Recipient ok"
    );
    assert_eq!(c.cmd("DATA").await.get(..3), Some("354"));
    c.send("Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n")
        .await;
    let done = c.reply().await;
    assert!(done.starts_with("250 2.0.0 Ok: queued as "), "{done}");

    let due = c.store.due_to_xmpp(Millis::now(), 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].recipient, "alice@example.test");
    let crate::store::ToXmppBody::Mail { mail_from, raw, .. } = &due[0].body else {
        panic!("a mail")
    };
    assert_eq!(mail_from, "bob@example.net");
    let raw = String::from_utf8_lossy(raw);
    assert!(raw.starts_with("Received: from client.example.net ([192.0.2.1])\r\n\tby mx.example.test (facteur) with ESMTP\r\n\tfor <alice@example.test>;"), "{raw}");
    assert!(
        raw.ends_with("Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"),
        "{raw}"
    );
    c.cmd("QUIT").await;
    c.task.await.expect("session ends");
}

#[tokio::test]
async fn oversized_mail_gets_552_and_nothing_is_stored() {
    let mut c = Client::start().await;
    c.cmd("EHLO client.example.net").await;
    assert_eq!(
        c.cmd("MAIL FROM:<bob@example.net> SIZE=4096").await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    c.cmd("MAIL FROM:<bob@example.net>").await;
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("DATA").await;
    let line = "x".repeat(100);
    for _ in 0..40 {
        c.send(&format!("{line}\r\n")).await;
    }
    c.send(".\r\n").await;
    assert_eq!(
        c.reply().await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert!(c
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due")
        .is_empty());
    // The session goes on.
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn pipelined_commands_get_ordered_replies() {
    let mut c = Client::start().await;
    c.cmd("EHLO client.example.net").await;
    c.send(
        "MAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await, "250 2.1.0 Sender ok");
    assert_eq!(c.reply().await, "250 2.1.5 Recipient ok");
    assert_eq!(c.reply().await, "550 5.1.1 No such user here");
    assert_eq!(c.reply().await.get(..3), Some("354"));
    c.send("Subject: bounce\r\n\r\nx\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 "));
}

#[tokio::test]
async fn bad_input_gets_precise_codes() {
    let mut c = Client::start().await;
    assert_eq!(
        c.cmd("MAIL FROM:<bob@example.net>").await,
        "503 5.5.1 Send EHLO or HELO first"
    );
    assert_eq!(c.cmd("HELO client").await, "250 mx.example.test");
    assert_eq!(
        c.cmd("BOGUS").await,
        "500 5.5.2 Syntax error, command unrecognized"
    );
    assert_eq!(
        c.cmd(&format!("NOOP {}", "y".repeat(5000))).await,
        "500 5.5.6 Line too long"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need MAIL before DATA");
    c.cmd("MAIL FROM:<bob@example.net>").await;
    assert_eq!(c.cmd("DATA").await, "554 5.5.1 No valid recipients");
    assert_eq!(
        c.cmd("RCPT TO:<a b@example.test>").await.get(..3),
        Some("501")
    );
    c.cmd("RCPT TO:<alice@example.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Recipient ok"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlAHg=").await,
        "502 5.5.1 Command not implemented"
    );
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let mut c = Client::start().await;
    for _ in 0..9 {
        assert!(c.cmd("BOGUS").await.starts_with("500"));
    }
    assert_eq!(c.cmd("BOGUS").await, "500 5.5.2 Syntax error, command unrecognized\n421 4.7.0 Too many errors, closing connection".split('\n').next().unwrap_or_default());
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors, closing connection"
    );
}

#[tokio::test]
async fn shutdown_says_421() {
    let (store, _dir) = scratch().await;
    let shutdown = CancellationToken::new();
    let (client, task) = open(reception(CONFIG, &store), None, shutdown.clone());
    let mut io = BufReader::new(client);
    let mut line = String::new();
    io.read_line(&mut line).await.expect("greeting");
    shutdown.cancel();
    line.clear();
    io.read_line(&mut line).await.expect("421");
    assert_eq!(line, "421 4.3.2 Service shutting down, try again later\r\n");
    task.await.expect("ends");
}

#[tokio::test]
async fn starttls_upgrades_and_forgets_what_came_before() {
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["mx.example.test".to_owned()]).expect("cert");
    let files = crate::config::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&files.key, certified.key_pair.serialize_pem()).expect("write key");
    let acceptor = crate::smtp::server::tls_acceptor(&files).expect("acceptor");

    let (store, _store_dir) = alice_store().await;
    let (client, task) = open(
        reception(CONFIG, &store),
        Some(acceptor),
        CancellationToken::new(),
    );

    let mut plain = BufReader::new(client);
    read_reply(&mut plain).await;
    plain
        .get_mut()
        .write_all(b"EHLO c\r\n")
        .await
        .expect("write");
    assert!(read_reply(&mut plain).await.contains("250-STARTTLS"));
    // A command pipelined after STARTTLS must not survive the handshake.
    plain
        .get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
        .await
        .expect("write");
    assert_eq!(read_reply(&mut plain).await, "220 2.0.0 Ready to start TLS");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("mx.example.test").expect("name");
    let tls = connector
        .connect(name, plain.into_inner())
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"EHLO c\r\n").await.expect("write");
    let ehlo = read_reply(&mut tls).await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    tls.get_mut()
        .write_all(b"MAIL FROM:<bob@example.net>\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_reply(&mut tls).await,
        "250 2.1.0 Sender ok",
        "the injected MAIL was dropped"
    );
    tls.get_mut()
        .write_all(b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        .await
        .expect("write");
    read_reply(&mut tls).await;
    read_reply(&mut tls).await;
    tls.get_mut()
        .write_all(b"Subject: secret\r\n\r\nx\r\n.\r\nQUIT\r\n")
        .await
        .expect("write");
    assert!(read_reply(&mut tls).await.starts_with("250 2.0.0 Ok"));
    read_reply(&mut tls).await;
    let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
    let crate::store::ToXmppBody::Mail { raw, .. } = &due[0].body else {
        panic!("a mail")
    };
    assert!(String::from_utf8_lossy(raw).contains("with ESMTPS"));
    task.await.expect("session ends");
}

#[tokio::test]
async fn idle_clients_are_dropped_with_421() {
    let (store, _dir) = scratch().await;
    let config = CONFIG.replace(
        "max_recipients = 2",
        "max_recipients = 2\nidle_timeout = \"200ms\"",
    );
    let (client, task) = open(reception(&config, &store), None, CancellationToken::new());
    let mut io = BufReader::new(client);
    read_reply(&mut io).await;
    assert_eq!(
        read_reply(&mut io).await,
        "421 4.4.2 mx.example.test Timeout, closing connection"
    );
    task.await.expect("ends");
}

#[tokio::test]
async fn a_client_over_its_mail_rate_is_told_to_wait() {
    let config = format!("{CONFIG}[limits]\nclient_mails_per_minute = 2\nclient_exceptions = []\n");
    let mut c = Client::start_with(&config).await;
    c.cmd("EHLO client.example.net").await;
    for _ in 0..2 {
        assert_eq!(
            c.cmd("MAIL FROM:<bob@example.net>").await,
            "250 2.1.0 Sender ok"
        );
        c.cmd("RSET").await;
    }
    let refused = c.cmd("MAIL FROM:<bob@example.net>").await;
    assert!(
        refused.starts_with("450 4.7.1 Too much mail from 192.0.2.1, try again in "),
        "{refused}"
    );
}

#[tokio::test]
async fn return_paths_take_reports_and_nothing_else() {
    let mut c = Client::start().await;
    let paths = crate::return_path::ReturnPaths::new(b"test key");
    let ours = paths.address(7, "example.test");
    let guessed = paths
        .address(8, "example.test")
        .replace("bounce+8-", "bounce+7-");
    c.cmd("EHLO mx.example.net").await;
    c.cmd("MAIL FROM:<>").await;
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{guessed}>")).await,
        "550 5.1.1 No such user here"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ours}>")).await,
        "250 2.1.5 Recipient ok"
    );
    assert_eq!(c.cmd("DATA").await.get(..3), Some("354"));
    // A report on a mail the queue no longer has: taken, and dropped.
    let report = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
        --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
        Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n--B--\r\n.\r\n";
    c.send(report).await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: report received");
    let due = c.store.due_to_xmpp(Millis::now(), 10).await.expect("due");
    assert!(due.is_empty(), "nothing for any user: {due:?}");
}

#[tokio::test]
async fn xforward_is_taken_from_the_mta_in_front_only() {
    // Without `xforward_from`, nobody may name another client.
    let mut c = Client::start().await;
    let ehlo = c.cmd("EHLO client.example.net").await;
    assert!(!ehlo.contains("XFORWARD"), "{ehlo}");
    assert_eq!(
        c.cmd("XFORWARD ADDR=198.51.100.9").await,
        "550 5.7.0 Error: insufficient authorization"
    );
    c.cmd("QUIT").await;

    let trusted = format!("{CONFIG}xforward_from = [\"192.0.2.0/24\"]\n");
    let mut c = Client::start_with(&trusted).await;
    let ehlo = c.cmd("EHLO mta.example.test").await;
    assert!(
        ehlo.ends_with("250-8BITMIME\n250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd("XFORWARD COLOR=blue").await,
        "501 5.5.4 Bad XFORWARD attribute name"
    );
    assert_eq!(
        c.cmd("XFORWARD NAME=mail.example.net ADDR=IPv6:2001:db8::9 PORT=40000")
            .await,
        "250 2.0.0 Ok"
    );
    assert_eq!(
        c.cmd("XFORWARD HELO=mail.example.net PROTO=ESMTP SOURCE=REMOTE")
            .await,
        "250 2.0.0 Ok"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<bob@example.net>").await,
        "250 2.1.0 Sender ok"
    );
    assert_eq!(
        c.cmd("XFORWARD ADDR=198.51.100.9").await,
        "503 5.5.1 Error: MAIL transaction in progress"
    );
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("DATA").await;
    c.send("Subject: forwarded\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));

    // The next transaction names no client: the peer is the client.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("DATA").await;
    c.send("Subject: direct\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));

    let listed = c.store.queue_list(10).await.expect("listed");
    let mut clients = Vec::new();
    for entry in listed {
        let shown = c
            .store
            .queue_show(entry.item)
            .await
            .expect("read")
            .expect("shown");
        clients.push((shown.subject, shown.client));
    }
    assert_eq!(
        clients,
        vec![
            ("forwarded".to_owned(), "2001:db8::9".to_owned()),
            ("direct".to_owned(), "192.0.2.1".to_owned()),
        ]
    );
    c.cmd("QUIT").await;
}

#[tokio::test]
async fn a_blocked_sender_is_refused_for_the_user_who_blocked_it_only() {
    let mut c = Client::start().await;
    let alice = jid::BareJid::new("alice@example.test").expect("jid");
    let bob = jid::BareJid::new("bob@example.test").expect("jid");
    c.store.register(&bob).await.expect("register");
    c.store
        .block_sender(
            &alice,
            &facteur_policy::spam::BlockItem::Address("spammer@evil.test".into()),
            facteur_policy::spam::BlockSource::Report,
            true,
        )
        .await
        .expect("blocked");
    c.cmd("EHLO client.example.net").await;
    c.cmd("MAIL FROM:<Spammer@evil.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "550 5.7.1 The recipient does not accept mail from this sender"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "250 2.1.5 Recipient ok"
    );
    c.cmd("RSET").await;
    c.cmd("MAIL FROM:<friend@evil.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Recipient ok"
    );
}

/// What every open connection costs before it does anything: the
/// session's future (the large futures of the checks and of the commit
/// are boxed, made only at the end of DATA).
#[tokio::test]
async fn an_idle_connection_holds_a_small_future() {
    let (store, _dir) = scratch().await;
    let reception = reception(CONFIG, &store);
    let (_client, server) = tokio::io::duplex(64);
    let peer = "192.0.2.1:40000".parse().expect("addr");
    let future = serve(server, peer, reception, None, CancellationToken::new());
    let size = std::mem::size_of_val(&future);
    eprintln!("serve future: {size} bytes");
    assert!(size < 2048, "{size} bytes");
}
