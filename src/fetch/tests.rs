//! The fetcher's guards: hosts, private addresses and redirects (RFC 9110
//! §15.4), against a loopback HTTP server for the last.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn config(hosts: &[&str], allow_private: bool) -> HttpConfig {
    let mut config = crate::config::Config::parse(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n",
    )
    .expect("config")
    .http;
    config.fetch_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
    config.fetch_private = allow_private;
    config
}

fn fetcher(hosts: &[&str], allow_private: bool) -> Fetcher {
    Fetcher::new(&config(hosts, allow_private)).expect("fetcher")
}

#[test]
fn private_addresses_are_forbidden() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(forbidden(ip.parse().expect("ip")), "{ip}");
    }
    for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
        assert!(!forbidden(ip.parse().expect("ip")), "{ip}");
    }
}

#[test]
fn hosts_are_checked() {
    let default = fetcher(&[], false);
    let url = |u: &str| Url::parse(u).expect("url");
    let upload = ["upload.example.test".to_owned()];
    assert_eq!(
        default.allowed(&url("https://upload.example.test/f/a.png"), &upload),
        Ok(())
    );
    assert!(default
        .allowed(&url("https://example.test/a.png"), &upload)
        .is_err());
    assert!(default
        .allowed(&url("https://evil.test/a.png"), &upload)
        .is_err());
    assert!(default
        .allowed(&url("https://upload.example.test/a.png"), &[])
        .is_err());
    assert!(default
        .allowed(&url("file:///etc/passwd"), &upload)
        .is_err());
    let listed = fetcher(&["127.0.0.1"], false);
    assert!(matches!(
        listed.allowed(&url("http://127.0.0.1:8080/a"), &[]),
        Err(FetchError::NotAllowed(_))
    ));
    let private = fetcher(&["127.0.0.1"], true);
    assert_eq!(
        private.allowed(&url("http://127.0.0.1:8080/a"), &[]),
        Ok(())
    );
    assert_eq!(percent_decode("a%20b%C3%A9.pdf"), "a bé.pdf");
}

/// An HTTP server on a free loopback port: `/to/URL` redirects to URL,
/// anything else is a small file. Counts the requests.
async fn http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut request = vec![0; 4096];
            let n = tcp.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(request.get(..n).unwrap_or_default());
            let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
            let response = match path.strip_prefix("/to/") {
                Some(target) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                    .to_owned(),
            };
            let _ = tcp.write_all(response.as_bytes()).await;
        }
    });
    (port, asked)
}

#[tokio::test]
async fn redirects_to_private_addresses_are_not_followed() {
    // The allowed host stands for a public server: its name is pinned to
    // the loopback server, past the guard, which every other name and
    // address still meets.
    let (public, _) = http_server().await;
    let (private, private_asked) = http_server().await;
    let pinned = reqwest::Client::builder().resolve(
        "files.example.net",
        SocketAddr::from(([127, 0, 0, 1], public)),
    );
    let fetcher = Fetcher::with_client(
        &config(&["files.example.net", "127.0.0.1", "localhost"], false),
        pinned,
    )
    .expect("fetcher");
    let start = format!("http://files.example.net:{public}");

    let followed = fetcher
        .fetch(&format!("{start}/to/{start}/notes.txt"), &[])
        .await
        .expect("a redirect within the allowed host is followed");
    assert_eq!(
        (followed.name.as_str(), followed.data.as_slice()),
        ("notes.txt", &b"hello"[..])
    );

    let to_address = fetcher
        .fetch(
            &format!("{start}/to/http://127.0.0.1:{private}/secret"),
            &[],
        )
        .await;
    assert_eq!(
        to_address.expect_err("refused"),
        FetchError::NotAllowed("address 127.0.0.1 is private".into())
    );
    let to_name = fetcher
        .fetch(
            &format!("{start}/to/http://localhost:{private}/secret"),
            &[],
        )
        .await;
    match to_name {
        Err(FetchError::Failed(e)) => assert!(e.contains("error sending request"), "{e}"),
        other => panic!("a name resolving to loopback was fetched: {other:?}"),
    }
    assert_eq!(private_asked.load(Ordering::SeqCst), 0);
}
