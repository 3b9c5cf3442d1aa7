//! Logging in to an IMAP server (RFC 9051, RFC 3501): TCP, then implicit
//! TLS (RFC 8314) or STARTTLS, or plain text to a loopback address only;
//! the server's greeting, LOGIN, and its capabilities.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_imap::{Client, Session};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::seal::SealKey;
use crate::store::{ImapMailbox, TlsMode};

/// How long connecting, the TLS handshake and logging in may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to an IMAP server, in clear or in TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A logged-in IMAP session.
pub type ImapSession = Session<Stream>;

/// Where a mailbox is.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
}

/// Why a login did not happen.
#[derive(Debug)]
pub enum LoginError {
    /// The server refused the credentials; its words.
    Refused(String),
    /// Anything else (connection, TLS, protocol): worth trying again.
    Failed(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Refused(words) => write!(f, "login refused: {words}"),
            LoginError::Failed(why) => f.write_str(why),
        }
    }
}

/// Whether `host` is a loopback address (or `localhost`), the only place
/// a password may go in clear.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The TLS client configuration: the system's roots, ring.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = match ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            {
                Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
                // ring supports the default versions: this is not reached.
                Err(_) => ClientConfig::builder()
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            };
            Arc::new(config)
        })
        .clone()
}

/// The text of an IMAP error, without the crate's wrapping: the server's
/// own words for a NO or BAD.
fn words(error: &async_imap::error::Error) -> String {
    match error {
        async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
            server_words(text)
        }
        other => other.to_string(),
    }
}

/// The server's text out of async-imap's `code: …, info: Some("…")` (or
/// `Outcome { …, information: Some("…") }`).
pub fn server_words(text: &str) -> String {
    let found = ["information: Some(\"", "info: Some(\""]
        .iter()
        .find_map(|marker| text.find(marker).map(|at| at + marker.len()));
    let Some(start) = found else {
        return text.trim().to_owned();
    };
    let quoted = text.get(start..).unwrap_or_default();
    let quoted = quoted
        .rfind("\")")
        .map_or(quoted, |end| quoted.get(..end).unwrap_or(quoted));
    quoted.replace("\\\"", "\"").replace("\\\\", "\\")
}

async fn tls(host: &str, tcp: TcpStream) -> Result<Stream, LoginError> {
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| LoginError::Failed(format!("{host} is no server name: {e}")))?;
    let stream = TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| LoginError::Failed(format!("TLS with {host}: {e}")))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Reads the greeting: `* OK` goes on, `* BYE` (or nothing) does not.
async fn greeting(client: &mut Client<Stream>, server: &Server<'_>) -> Result<(), LoginError> {
    let greeting = client.read_response().await.map_err(|e| {
        let mut detail = e.to_string();
        if detail.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|&i| detail.is_char_boundary(i))
                .unwrap_or(0);
            detail.truncate(cut);
            detail.push('…');
        }
        LoginError::Failed(format!(
            "{} sent no IMAP greeting (is it an IMAP server, and is the TLS mode right?): {detail}",
            server.host
        ))
    })?;
    match greeting {
        Some(response) => {
            if let async_imap::imap_proto::Response::Data {
                status: async_imap::imap_proto::Status::Bye,
                outcome,
            } = response.parsed()
            {
                return Err(LoginError::Failed(format!(
                    "{} said BYE: {}",
                    server.host,
                    outcome.information.as_deref().unwrap_or_default()
                )));
            }
            Ok(())
        }
        None => Err(LoginError::Failed(format!(
            "{} closed the connection before its greeting",
            server.host
        ))),
    }
}

/// Connects to attached `mailbox` and logs in, with its password opened
/// by `key` for that login only. `Err` when the password does not open.
pub async fn login_mailbox(
    key: &SealKey,
    mailbox: &ImapMailbox,
) -> anyhow::Result<Result<ImapSession, LoginError>> {
    let password = key.open(
        mailbox.user.as_str(),
        &mailbox.host,
        &mailbox.username,
        &mailbox.password,
    )?;
    let server = Server {
        host: &mailbox.host,
        port: mailbox.port,
        tls: mailbox.tls,
    };
    Ok(login(&server, &mailbox.username, &password).await)
}

/// Connects to `server` and logs in as `username`.
pub async fn login(
    server: &Server<'_>,
    username: &str,
    password: &str,
) -> Result<ImapSession, LoginError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, login_now(server, username, password)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(LoginError::Failed(format!(
            "{}:{} did not answer within {}s",
            server.host,
            server.port,
            LOGIN_TIMEOUT.as_secs()
        ))),
    }
}

async fn login_now(
    server: &Server<'_>,
    username: &str,
    password: &str,
) -> Result<ImapSession, LoginError> {
    if server.tls == TlsMode::None && !is_loopback(server.host) {
        return Err(LoginError::Failed(format!(
            "{} is not a loopback address: a password goes there only in TLS",
            server.host
        )));
    }
    let host = server.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host, server.port)).await.map_err(|e| {
        LoginError::Failed(format!(
            "Connecting to {}:{}: {e}",
            server.host, server.port
        ))
    })?;
    let _ = tcp.set_nodelay(true);
    let mut client = match server.tls {
        TlsMode::Implicit => Client::new(tls(server.host, tcp).await?),
        TlsMode::None => Client::new(Stream::Plain(tcp)),
        TlsMode::Starttls => {
            let mut client = Client::new(Stream::Plain(tcp));
            greeting(&mut client, server).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| {
                    LoginError::Failed(format!("STARTTLS at {}: {}", server.host, words(&e)))
                })?;
            let Stream::Plain(tcp) = client.into_inner() else {
                return Err(LoginError::Failed("TLS started twice".into()));
            };
            // No greeting after STARTTLS (RFC 9051 §6.2.1).
            let client = Client::new(tls(server.host, tcp).await?);
            return logged_in(client, server, username, password).await;
        }
    };
    greeting(&mut client, server).await?;
    logged_in(client, server, username, password).await
}

async fn logged_in(
    client: Client<Stream>,
    server: &Server<'_>,
    username: &str,
    password: &str,
) -> Result<ImapSession, LoginError> {
    match client.login(username, password).await {
        Ok(session) => Ok(session),
        Err((async_imap::error::Error::No(text), _)) => {
            Err(LoginError::Refused(server_words(&text)))
        }
        Err((e, _)) => Err(LoginError::Failed(format!(
            "Logging in to {}: {}",
            server.host,
            words(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_words_come_out_of_the_crates_wrapping() {
        assert_eq!(
            server_words(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication \"failed\".")"#
            ),
            r#"[AUTHENTICATIONFAILED] Authentication "failed"."#
        );
        assert_eq!(
            server_words(
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: Archive.") }"#
            ),
            "Mailbox doesn't exist: Archive."
        );
        assert_eq!(server_words(" plain "), "plain");
    }

    #[test]
    fn only_loopback_addresses_take_passwords_in_clear() {
        for host in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "imap.example.net",
            "localhost.example.net",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
