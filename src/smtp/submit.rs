//! Mail submission (RFC 6409) through the outgoing server of an attached
//! mailbox: answers to mail from that mailbox leave from its address,
//! with SMTP AUTH (PLAIN or LOGIN, RFC 4954), over implicit TLS (RFC
//! 8314) or STARTTLS, or in clear text to a loopback address only.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use tracing::debug;

use super::client::SendFailure;
use crate::imap::connect::is_loopback;
use crate::store::TlsMode;

/// Where and as whom a mail is submitted.
pub struct Submitter<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
    pub username: &'a str,
    pub password: &'a str,
    /// The name facteur gives in EHLO.
    pub hello: &'a str,
    /// For each step (connecting, each command); twice that for the data.
    pub timeout: Duration,
}

/// What can go wrong, and whether trying again may help.
fn failure(permanent: bool, text: String) -> SendFailure {
    SendFailure { permanent, text }
}

impl Submitter<'_> {
    /// Submits `raw` from `mail_from` to `rcpt`; the server's reply.
    /// A refused login (535) or a refused mail (5xx) is permanent; an
    /// unreachable server or a 4xx is not.
    pub async fn submit(
        &self,
        mail_from: &str,
        rcpt: &str,
        raw: &[u8],
    ) -> Result<String, SendFailure> {
        let name = format!("{}:{}", self.host, self.port);
        let from: Address = mail_from
            .parse()
            .map_err(|e| failure(true, format!("sender address {mail_from}: {e}")))?;
        let to: Address = rcpt
            .parse()
            .map_err(|e| failure(true, format!("recipient address {rcpt}: {e}")))?;
        let envelope =
            Envelope::new(Some(from), vec![to]).map_err(|e| failure(true, e.to_string()))?;
        if self.tls == TlsMode::None && !is_loopback(self.host) {
            return Err(failure(
                true,
                format!("{name}: no TLS is only for a loopback address"),
            ));
        }
        let hello = ClientId::Domain(self.hello.to_owned());
        let tls = || {
            TlsParameters::builder(self.host.to_owned())
                .build_rustls()
                .map_err(|e| failure(true, format!("{name}: TLS: {e}")))
        };
        let wrapped = match self.tls {
            TlsMode::Implicit => Some(tls()?),
            TlsMode::Starttls | TlsMode::None => None,
        };
        let within = |what: &'static str| {
            let name = name.clone();
            move |_| failure(false, format!("{name}: {what} timed out"))
        };
        let mut smtp = tokio::time::timeout(
            self.timeout,
            AsyncSmtpConnection::connect_tokio1(
                (self.host, self.port),
                Some(self.timeout),
                &hello,
                wrapped,
                None,
            ),
        )
        .await
        .map_err(within("connecting"))?
        .map_err(|e| failure(e.is_permanent(), format!("{name}: {e}")))?;
        if self.tls == TlsMode::Starttls {
            if !smtp.can_starttls() {
                return Err(failure(true, format!("{name} offers no STARTTLS")));
            }
            tokio::time::timeout(self.timeout, smtp.starttls(tls()?, &hello))
                .await
                .map_err(within("STARTTLS"))?
                .map_err(|e| failure(false, format!("{name}: STARTTLS failed: {e}")))?;
        }
        let credentials = Credentials::new(self.username.to_owned(), self.password.to_owned());
        debug!(host = %name, "Logging in to submit.");
        tokio::time::timeout(
            self.timeout,
            smtp.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await
        .map_err(within("AUTH"))?
        .map_err(|e| match e.is_client() {
            // No mechanism in common is the server's final word too.
            true => failure(
                true,
                format!("{name} offers no AUTH PLAIN or LOGIN here: {e}"),
            ),
            false => failure(
                e.is_permanent(),
                format!("{name} refused the login of {}: {e}", self.username),
            ),
        })?;
        let sent = tokio::time::timeout(self.timeout * 2, smtp.send(&envelope, raw))
            .await
            .map_err(within("sending"))?;
        let response = sent.map_err(|e| failure(e.is_permanent(), format!("{name} said: {e}")))?;
        let _ = tokio::time::timeout(self.timeout, smtp.quit()).await;
        let text = response.message().collect::<Vec<_>>().join(" ");
        Ok(format!("{name} said: {} {text}", response.code()))
    }
}
