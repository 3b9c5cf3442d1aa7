//! Legacy IMAP mailboxes users attached (`imap_mailboxes`), and what the
//! gateway took from each followed folder (`imap_folders`). A mail taken
//! from a folder is queued for the user in the same transaction that
//! advances the folder's highest UID, so that a crash at any point
//! neither loses nor repeats it. Passwords are stored sealed (see
//! `crate::imap::seal`): the store never sees them in clear.

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use jid::BareJid;
use sqlx::Row;
use tokio::sync::Notify;

use super::to_xmpp::{insert_notice, InboundMail, Notice};
use super::{Millis, Store};

mod folders;
mod messages;

/// How a mailbox's connection is protected; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    Implicit,
    /// STARTTLS before logging in (port 143).
    Starttls,
    /// No TLS: only for a loopback address.
    None,
}

/// Whether the gateway follows a mailbox; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum MailboxState {
    Active,
    /// Not followed until attached again; `reason` says why.
    Paused,
}

stored_as_text!(TlsMode, MailboxState);

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "implicit" => Ok(TlsMode::Implicit),
            "starttls" => Ok(TlsMode::Starttls),
            "none" => Ok(TlsMode::None),
            other => Err(format!(
                "unknown TLS mode {other:?} (implicit, starttls or none)"
            )),
        }
    }
}

impl fmt::Display for MailboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailboxState::Active => "active",
            MailboxState::Paused => "paused",
        })
    }
}

/// An attached mailbox.
#[derive(Clone)]
pub struct ImapMailbox {
    pub id: i64,
    pub user: BareJid,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// Sealed; opened only to log in.
    pub password: Vec<u8>,
    pub folders: Vec<String>,
    pub state: MailboxState,
    pub reason: String,
    pub auth_failures: u32,
    /// Changes whenever what the follower works from changes.
    pub updated_at: Millis,
    /// Where answers to its mail leave, if anywhere of its own.
    pub submission: Option<Submission>,
}

/// The outgoing (submission) server of a mailbox: answers to its mail
/// leave from `from` through it, with SMTP AUTH.
#[derive(Clone)]
pub struct Submission {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// Sealed for (user, `host`, `username`); opened only to log in.
    pub password: Vec<u8>,
    /// The mailbox's address, which answers leave from.
    pub from: String,
    /// Whether a copy of each answer is put in the Sent folder.
    pub sent_copy: bool,
}

impl fmt::Debug for Submission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<sealed>")
            .field("from", &self.from)
            .field("sent_copy", &self.sent_copy)
            .finish()
    }
}

impl fmt::Debug for ImapMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapMailbox")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<sealed>")
            .field("folders", &self.folders)
            .field("state", &self.state)
            .field("submission", &self.submission)
            .finish_non_exhaustive()
    }
}

/// Where a followed folder starts, found by logging in at attach time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStart {
    pub name: String,
    pub uid_validity: u32,
    /// Mail up to this UID counts as taken already.
    pub last_uid: u32,
}

/// A mailbox about to be attached.
pub struct NewImapMailbox<'a> {
    pub user: &'a BareJid,
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
    pub username: &'a str,
    /// Sealed.
    pub password: &'a [u8],
    pub folders: &'a [FolderStart],
    /// Its outgoing server, the password sealed.
    pub submission: Option<&'a Submission>,
}

/// A message to move to the Junk folder: one the user reported as spam.
pub type JunkToMove = SeenToSet;

/// What the gateway took from a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapFolder {
    pub name: String,
    pub uid_validity: u32,
    pub last_uid: u32,
    /// The latest INTERNALDATE taken.
    pub last_date: Millis,
    /// While resyncing after a UIDVALIDITY change: mail from before this
    /// is not taken. Zero otherwise.
    pub since_date: Millis,
}

/// A message that \Seen is to be set on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenToSet {
    pub stanza_id: String,
    pub folder: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// What to do with one message of a folder.
pub enum Taken<'a> {
    /// Queue it for the user; with its Message-ID (without angle
    /// brackets), it is remembered for the flags the user sets on it.
    Mail(&'a InboundMail, Option<&'a str>),
    /// Tell the user about it instead (e.g. it is too large).
    Notice(&'a Notice),
    /// Pass over it.
    Skip,
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl Store {
    /// Attaches a mailbox, or attaches it again (a new password, other
    /// folders): it is active again with no failure counted, and folders
    /// followed before keep what was taken from them.
    pub async fn imap_attach(&self, mailbox: &NewImapMailbox<'_>) -> anyhow::Result<i64> {
        let now = Millis::now();
        let folders: Vec<&str> = mailbox.folders.iter().map(|f| f.name.as_str()).collect();
        let submission = mailbox.submission;
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let id: i64 = sqlx::query_scalar(
                "
                INSERT INTO imap_mailboxes (user_jid, host, port, tls, username, password, folders,
                                            state, reason, auth_failures, created_at, updated_at,
                                            smtp_host, smtp_port, smtp_tls, smtp_username,
                                            smtp_password, smtp_from, sent_copy)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', 0, $9, $9,
                        $10, $11, $12, $13, $14, $15, $16)
                ON CONFLICT (user_jid, host, username) DO UPDATE
                SET port = $3, tls = $4, password = $6, folders = $7, state = $8, reason = '',
                    auth_failures = 0, updated_at = $9, smtp_host = $10, smtp_port = $11,
                    smtp_tls = $12, smtp_username = $13, smtp_password = $14, smtp_from = $15,
                    sent_copy = $16
                RETURNING id
                ",
            )
            .bind(mailbox.user.as_str())
            .bind(mailbox.host)
            .bind(i64::from(mailbox.port))
            .bind(mailbox.tls)
            .bind(mailbox.username)
            .bind(mailbox.password)
            .bind(folders.join("\n"))
            .bind(MailboxState::Active)
            .bind(now.0)
            .bind(submission.map_or("", |s| s.host.as_str()))
            .bind(submission.map_or(0, |s| i64::from(s.port)))
            .bind(submission.map_or(TlsMode::Starttls, |s| s.tls))
            .bind(submission.map_or("", |s| s.username.as_str()))
            .bind(submission.map_or(&[][..], |s| s.password.as_slice()))
            .bind(submission.map_or("", |s| s.from.as_str()))
            .bind(i64::from(submission.is_none_or(|s| s.sent_copy)))
            .fetch_one(&mut *tx)
            .await
            .context("Attaching a mailbox")?;
            let kept: Vec<String> =
                sqlx::query_scalar("SELECT name FROM imap_folders WHERE mailbox_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .context("Reading folders")?;
            for name in kept.iter().filter(|n| !folders.contains(&n.as_str())) {
                sqlx::query("DELETE FROM imap_folders WHERE mailbox_id = $1 AND name = $2")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .context("Dropping a folder")?;
            }
            for folder in mailbox.folders {
                sqlx::query(
                    "
                    INSERT INTO imap_folders (mailbox_id, name, uid_validity, last_uid, last_date,
                                              since_date)
                    VALUES ($1, $2, $3, $4, $5, 0)
                    ON CONFLICT (mailbox_id, name) DO NOTHING
                    ",
                )
                .bind(id)
                .bind(&folder.name)
                .bind(i64::from(folder.uid_validity))
                .bind(i64::from(folder.last_uid))
                .bind(now.0)
                .execute(&mut *tx)
                .await
                .context("Recording a folder")?;
            }
            tx.commit().await.context("Committing a mailbox")?;
            Ok(id)
        })
    }

    /// Detaches a mailbox; whether it was attached.
    pub async fn imap_detach(
        &self,
        user: &BareJid,
        host: &str,
        username: &str,
    ) -> anyhow::Result<bool> {
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM imap_mailboxes WHERE user_jid = $1 AND host = $2 AND username = $3",
            )
            .bind(user.as_str())
            .bind(host)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .context("Finding a mailbox")?;
            let Some(id) = id else {
                return Ok(false);
            };
            // Both tables by name: SQLite enforces the foreign key only
            // on connections that turned it on.
            for sql in [
                "DELETE FROM imap_folders WHERE mailbox_id = $1",
                "DELETE FROM imap_mailboxes WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .context("Detaching a mailbox")?;
            }
            tx.commit().await.context("Committing a detach")?;
            Ok(true)
        })
    }

    /// The attached mailboxes, of `user` or of everyone, by user, host
    /// and login.
    pub async fn imap_mailboxes(&self, user: Option<&BareJid>) -> anyhow::Result<Vec<ImapMailbox>> {
        let rows = on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(
                "
                SELECT id, user_jid, host, port, tls, username, password, folders, state, reason,
                       auth_failures, updated_at, smtp_host, smtp_port, smtp_tls, smtp_username,
                       smtp_password, smtp_from, sent_copy
                FROM imap_mailboxes
                WHERE $1 IS NULL OR user_jid = $1
                ORDER BY user_jid, host, username
                ",
            )
            .bind(user.map(|u| u.as_str()))
            .fetch_all(pool)
            .await
            .context("Reading mailboxes")?;
            let mut mailboxes = Vec::with_capacity(rows.len());
            for row in rows {
                let user: String = row.try_get("user_jid")?;
                let folders: String = row.try_get("folders")?;
                let smtp_host: String = row.try_get("smtp_host")?;
                let submission = match smtp_host.is_empty() {
                    true => None,
                    false => Some(Submission {
                        host: smtp_host,
                        port: u16::try_from(row.try_get::<i64, _>("smtp_port")?).unwrap_or(0),
                        tls: row.try_get("smtp_tls")?,
                        username: row.try_get("smtp_username")?,
                        password: row.try_get("smtp_password")?,
                        from: row.try_get("smtp_from")?,
                        sent_copy: row.try_get::<i64, _>("sent_copy")? != 0,
                    }),
                };
                mailboxes.push(ImapMailbox {
                    id: row.try_get("id")?,
                    user: BareJid::new(&user).with_context(|| format!("Stored user {user}"))?,
                    host: row.try_get("host")?,
                    port: u16::try_from(row.try_get::<i64, _>("port")?).unwrap_or(0),
                    tls: row.try_get("tls")?,
                    username: row.try_get("username")?,
                    password: row.try_get("password")?,
                    folders: folders.lines().map(str::to_owned).collect(),
                    state: row.try_get("state")?,
                    reason: row.try_get("reason")?,
                    auth_failures: u32_of(row.try_get("auth_failures")?),
                    updated_at: Millis(row.try_get("updated_at")?),
                    submission,
                });
            }
            mailboxes
        });
        Ok(rows)
    }

    /// What changes whenever a mailbox is attached, attached again,
    /// paused or detached: the followers' cue to read the mailboxes again.
    pub async fn imap_fingerprint(&self) -> anyhow::Result<(i64, i64, i64)> {
        on_backend!(&self.pool, |pool| sqlx::query_as(
            "
            SELECT COUNT(*), CAST(COALESCE(MAX(updated_at), 0) AS BIGINT),
                   CAST(COALESCE(SUM(id), 0) AS BIGINT)
            FROM imap_mailboxes
            "
        )
        .fetch_one(pool)
        .await
        .context("Reading the mailboxes' fingerprint"))
    }

    /// A login succeeded: the failures counted so far are forgotten.
    pub async fn imap_login_ok(&self, id: i64) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "UPDATE imap_mailboxes SET auth_failures = 0 WHERE id = $1 AND auth_failures <> 0",
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
        .context("Recording a login"))?;
        Ok(())
    }

    /// Counts a refused login. At `pause_at` consecutive refusals the
    /// mailbox is paused with `reason`, and `notice` queued, in the same
    /// transaction: the user is told once. Returns the count, and whether
    /// this refusal paused the mailbox.
    pub async fn imap_login_refused(
        &self,
        id: i64,
        pause_at: u32,
        reason: &str,
        notice: &Notice,
    ) -> anyhow::Result<(u32, bool)> {
        let now = Millis::now();
        let (count, paused) = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let count: Option<i64> = sqlx::query_scalar(
                "
                UPDATE imap_mailboxes SET auth_failures = auth_failures + 1
                WHERE id = $1 AND state = $2
                RETURNING auth_failures
                ",
            )
            .bind(id)
            .bind(MailboxState::Active)
            .fetch_optional(&mut *tx)
            .await
            .context("Counting a refused login")?;
            let count = u32_of(count.unwrap_or(0));
            let paused = count >= pause_at;
            if paused {
                sqlx::query(
                    "UPDATE imap_mailboxes SET state = $2, reason = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(MailboxState::Paused)
                .bind(reason)
                .bind(now.0)
                .execute(&mut *tx)
                .await
                .context("Pausing a mailbox")?;
                insert_notice((&mut *tx).into(), notice, now).await?;
            }
            tx.commit().await.context("Committing a refused login")?;
            (count, paused)
        });
        if paused {
            self.wake.to_xmpp.notify_one();
        }
        Ok((count, paused))
    }

    /// The wake-up of mailbox `id`'s follower: notified when there is
    /// work for it (flags to set).
    pub fn imap_waker(&self, id: i64) -> Arc<Notify> {
        let mut wakers = self
            .wake
            .imap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers.entry(id).or_default().clone()
    }

    /// Mailbox `id` of `user`, if attached.
    pub async fn imap_mailbox(
        &self,
        user: &BareJid,
        id: i64,
    ) -> anyhow::Result<Option<ImapMailbox>> {
        Ok(self
            .imap_mailboxes(Some(user))
            .await?
            .into_iter()
            .find(|m| m.id == id))
    }
}

#[cfg(test)]
mod tests;
