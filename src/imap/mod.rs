//! Legacy IMAP mailboxes into XMPP: attaching one (a login at once, so
//! that a wrong password or a bad certificate is answered with the
//! server's words), and following each attached mailbox (`follow`) for
//! new mail, which goes the way of mail received by SMTP.
//!
//! Only new mail is taken by default: at attach, each folder's highest
//! UID (RFC 9051 §2.3.1.1, UIDNEXT - 1) counts as taken already.

pub mod connect;
pub mod folders;
pub mod follow;
pub mod seal;
pub mod search;

use anyhow::Context;
use futures_util::TryStreamExt;
use jid::BareJid;

use self::connect::{login, ImapSession, Server};
use self::seal::SealKey;
use crate::store::{FolderStart, ImapMailbox, NewImapMailbox, Store, Submission, TlsMode};

/// What a user (or an operator for them) asks to attach.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub user: BareJid,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: String,
    /// INBOX when empty.
    pub folders: Vec<String>,
    /// Take this many of the latest messages of each folder too.
    pub import_last: u32,
    /// The mailbox's outgoing server, which answers to its mail leave
    /// through.
    pub submission: Option<SubmissionRequest>,
}

/// The outgoing (submission) server asked for with a mailbox.
#[derive(Clone)]
pub struct SubmissionRequest {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: String,
    /// The mailbox's address, which answers leave from; when empty, the
    /// IMAP login or the submission login, whichever is an address.
    pub from: String,
    /// Put a copy of each answer in the Sent folder (off where the
    /// server files one itself).
    pub sent_copy: bool,
}

impl std::fmt::Debug for SubmissionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmissionRequest")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from)
            .field("sent_copy", &self.sent_copy)
            .finish_non_exhaustive()
    }
}

/// The outgoing server of `request`, checked, its password sealed.
fn submission(
    key: &SealKey,
    request: &AttachRequest,
    asked: &SubmissionRequest,
) -> anyhow::Result<Submission> {
    let host = asked.host.trim().to_ascii_lowercase();
    if host.is_empty() {
        anyhow::bail!("No outgoing server given");
    }
    if asked.tls == TlsMode::None && !connect::is_loopback(&host) {
        anyhow::bail!(
            "No TLS to the outgoing server is only for a loopback address; \
             {host} needs implicit or starttls"
        );
    }
    if asked.username.is_empty() || asked.password.is_empty() {
        anyhow::bail!("The outgoing server needs a login and a password");
    }
    let from = match asked.from.trim() {
        "" => [&request.username, &asked.username]
            .into_iter()
            .find(|login| login.contains('@'))
            .map(|login| login.trim().to_owned())
            .context(
                "Give the mailbox's address, which answers leave from: \
                 neither login is an address",
            )?,
        from => from.to_owned(),
    };
    let from = facteur_bridge::MailAddress::parse(&from)
        .map_err(|e| anyhow::anyhow!("The mailbox's address {from:?}: {e}"))?
        .to_string();
    let password = key.seal(
        request.user.as_str(),
        &host,
        &asked.username,
        &asked.password,
    )?;
    Ok(Submission {
        host,
        port: asked.port,
        tls: asked.tls,
        username: asked.username.clone(),
        password,
        from,
        sent_copy: asked.sent_copy,
    })
}

/// Where a folder starts for a request: the latest `import_last`
/// messages are new, the others taken.
async fn folder_start(
    session: &mut ImapSession,
    name: &str,
    import_last: u32,
) -> anyhow::Result<FolderStart> {
    let mailbox = session
        .examine(name)
        .await
        .map_err(|e| anyhow::anyhow!("Folder {name:?}: {e}"))?;
    let uid_validity = mailbox.uid_validity.unwrap_or(0);
    let last_uid = match (import_last, mailbox.uid_next) {
        (0, Some(next)) => next.saturating_sub(1),
        _ => {
            let mut uids: Vec<u32> = session
                .uid_search("ALL")
                .await
                .map_err(|e| anyhow::anyhow!("Folder {name:?}: {e}"))?
                .into_iter()
                .collect();
            uids.sort_unstable();
            let keep = usize::try_from(import_last).unwrap_or(usize::MAX);
            match uids.len().checked_sub(keep.saturating_add(1)) {
                Some(i) => uids.get(i).copied().unwrap_or(0),
                None => 0,
            }
        }
    };
    Ok(FolderStart {
        name: name.to_owned(),
        uid_validity,
        last_uid,
    })
}

/// Logs in once, finds where each folder starts, and stores the mailbox
/// with its password sealed. Every refusal comes back with the server's
/// words. Returns the mailbox's id.
pub async fn attach(store: &Store, key: &SealKey, request: &AttachRequest) -> anyhow::Result<i64> {
    let host = request.host.trim().to_ascii_lowercase();
    if host.is_empty() {
        anyhow::bail!("No host given");
    }
    if request.tls == TlsMode::None && !connect::is_loopback(&host) {
        anyhow::bail!(
            "--tls none is only for a loopback address; {host} needs implicit or starttls"
        );
    }
    let outgoing = request
        .submission
        .as_ref()
        .map(|asked| submission(key, request, asked))
        .transpose()?;
    let folders: Vec<String> = if request.folders.is_empty() {
        vec!["INBOX".to_owned()]
    } else {
        let mut folders = request.folders.clone();
        folders.dedup();
        folders
    };
    let server = Server {
        host: &host,
        port: request.port,
        tls: request.tls,
    };
    let mut session = login(&server, &request.username, &request.password)
        .await
        .map_err(|e| anyhow::anyhow!("{}:{} as {}: {e}", host, request.port, request.username))?;
    let mut starts = Vec::with_capacity(folders.len());
    for name in &folders {
        starts.push(folder_start(&mut session, name, request.import_last).await?);
    }
    let _ = session.logout().await;
    let sealed = key.seal(
        request.user.as_str(),
        &host,
        &request.username,
        &request.password,
    )?;
    store
        .imap_attach(&NewImapMailbox {
            user: &request.user,
            host: &host,
            port: request.port,
            tls: request.tls,
            username: &request.username,
            password: &sealed,
            folders: &starts,
            submission: outgoing.as_ref(),
        })
        .await
        .context("Storing the mailbox")
}

/// One line about a mailbox: user, server, TLS, login, folders, its
/// outgoing server if any, state (and why it is paused).
pub fn line(mailbox: &ImapMailbox) -> String {
    let mut line = format!(
        "{} {}:{} {} {} {}",
        mailbox.user,
        mailbox.host,
        mailbox.port,
        mailbox.tls.name(),
        mailbox.username,
        mailbox.folders.join(","),
    );
    if let Some(outgoing) = &mailbox.submission {
        line.push_str(&format!(
            " answers-from {} via {}:{} {}",
            outgoing.from,
            outgoing.host,
            outgoing.port,
            outgoing.tls.name()
        ));
    }
    line.push_str(&format!(" {}", mailbox.state));
    if !mailbox.reason.is_empty() {
        line.push_str(": ");
        line.push_str(&mailbox.reason);
    }
    line
}

/// Collects the UIDs, INTERNALDATEs (ms) and sizes of the messages of
/// the selected folder above `after`, in UID order.
async fn new_messages(
    session: &mut ImapSession,
    after: u32,
) -> anyhow::Result<Vec<(u32, i64, u32)>> {
    let fetched: Vec<_> = session
        .uid_fetch(
            format!("{}:*", after.saturating_add(1)),
            "(UID INTERNALDATE RFC822.SIZE)",
        )
        .await
        .context("Asking for new messages")?
        .try_collect()
        .await
        .context("Reading new messages")?;
    // `N:*` names the last message even when its UID is below N
    // (RFC 9051 §6.4.8): keep only what is above.
    let mut found: Vec<(u32, i64, u32)> = fetched
        .iter()
        .filter_map(|f| {
            let uid = f.uid?;
            let date = f.internal_date().map_or(0, |d| d.timestamp_millis());
            (uid > after).then_some((uid, date, f.size.unwrap_or(0)))
        })
        .collect();
    found.sort_unstable();
    found.dedup_by_key(|m| m.0);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(login: &str, outgoing: SubmissionRequest) -> AttachRequest {
        AttachRequest {
            user: BareJid::new("alice@example.test").expect("valid"),
            host: "imap.example.net".into(),
            port: 993,
            tls: TlsMode::Implicit,
            username: login.into(),
            password: "imap-pw".into(),
            folders: Vec::new(),
            import_last: 0,
            submission: Some(outgoing),
        }
    }

    fn outgoing(host: &str, tls: TlsMode, login: &str, from: &str) -> SubmissionRequest {
        SubmissionRequest {
            host: host.into(),
            port: 587,
            tls,
            username: login.into(),
            password: "smtp-pw".into(),
            from: from.into(),
            sent_copy: true,
        }
    }

    fn checked(login: &str, asked: SubmissionRequest) -> anyhow::Result<Submission> {
        let key = SealKey::derive(b"0123456789abcdef0123456789abcdef");
        let request = request(login, asked.clone());
        submission(&key, &request, &asked)
    }

    #[test]
    fn an_outgoing_server_is_checked_and_its_password_sealed() {
        let key = SealKey::derive(b"0123456789abcdef0123456789abcdef");
        let done = checked(
            "alice",
            outgoing(
                " SMTP.Example.net ",
                TlsMode::Starttls,
                "alice",
                "alice@example.net",
            ),
        )
        .expect("taken");
        assert_eq!(done.host, "smtp.example.net");
        assert_eq!(done.from, "alice@example.net");
        assert!(!done.password.windows(7).any(|w| w == b"smtp-pw"));
        assert_eq!(
            key.open(
                "alice@example.test",
                "smtp.example.net",
                "alice",
                &done.password
            )
            .expect("opens"),
            "smtp-pw"
        );
        // The address defaults to a login that is one.
        let from = |imap: &str, smtp: &str| {
            checked(
                imap,
                outgoing("smtp.example.net", TlsMode::Implicit, smtp, ""),
            )
            .map(|s| s.from)
        };
        assert_eq!(
            from("alice@example.net", "x").expect("taken"),
            "alice@example.net"
        );
        assert_eq!(
            from("alice", "a@example.org").expect("taken"),
            "a@example.org"
        );
        let none = from("alice", "alice").expect_err("refused");
        assert!(
            format!("{none}").contains("Give the mailbox's address"),
            "{none}"
        );
        // No TLS only to a loopback address.
        assert!(checked(
            "alice",
            outgoing("127.0.0.1", TlsMode::None, "a", "a@b.example")
        )
        .is_ok());
        let clear = checked(
            "alice",
            outgoing("smtp.example.net", TlsMode::None, "a", "a@b.example"),
        )
        .expect_err("refused");
        assert!(format!("{clear}").contains("loopback"), "{clear}");
        let bad = checked(
            "alice",
            outgoing("smtp.example.net", TlsMode::Starttls, "a", "not an address"),
        )
        .expect_err("refused");
        assert!(format!("{bad}").contains("not an address"), "{bad}");
    }
}
