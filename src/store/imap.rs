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

use facteur_bridge::threading::stanza_id_for_mail;

use super::to_xmpp::{insert_inbound, insert_notice, InboundMail, Notice};
use super::{Conn, Millis, Store};

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

/// Remembers where a mail queued for its recipient (a mailbox's mail
/// has one: the mailbox's user) lives (mailbox, folder, UIDVALIDITY,
/// UID), by the stanza id its Message-ID makes.
async fn remember_imap_message(
    conn: Conn<'_>,
    mail: &InboundMail,
    message_id: Option<&str>,
    (id, folder, uid_validity, uid): (i64, &str, u32, u32),
    now: Millis,
) -> anyhow::Result<()> {
    if let (Some(user), Some(message_id)) = (mail.recipients.first(), message_id) {
        on_backend!(conn, |conn| sqlx::query(
            "
            INSERT INTO imap_messages (user_jid, stanza_id, message_id, mailbox_id,
                                       folder, uid_validity, uid, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (user_jid, stanza_id) DO NOTHING
            ",
        )
        .bind(user.as_str())
        .bind(stanza_id_for_mail(message_id))
        .bind(message_id)
        .bind(id)
        .bind(folder)
        .bind(i64::from(uid_validity))
        .bind(i64::from(uid))
        .bind(now.0)
        .execute(conn)
        .await
        .map(|_| ()))
        .context("Remembering where a mail lives")?;
    }
    Ok(())
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

    /// The folders of mailbox `id`, by name.
    pub async fn imap_folders(&self, id: i64) -> anyhow::Result<Vec<ImapFolder>> {
        on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(
                "
                SELECT name, uid_validity, last_uid, last_date, since_date
                FROM imap_folders WHERE mailbox_id = $1 ORDER BY name
                ",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .context("Reading folders")?;
            let mut folders = Vec::with_capacity(rows.len());
            for row in rows {
                folders.push(ImapFolder {
                    name: row.try_get("name")?,
                    uid_validity: u32_of(row.try_get("uid_validity")?),
                    last_uid: u32_of(row.try_get("last_uid")?),
                    last_date: Millis(row.try_get("last_date")?),
                    since_date: Millis(row.try_get("since_date")?),
                });
            }
            Ok(folders)
        })
    }

    /// Takes message `uid` (of INTERNALDATE `date`) of a folder: queues
    /// what `taken` says and advances the folder past it, in one
    /// transaction. Returns false, and queues nothing, when the folder
    /// is past it already or its UIDVALIDITY is another now.
    pub async fn imap_take(
        &self,
        id: i64,
        folder: &str,
        uid_validity: u32,
        uid: u32,
        date: Millis,
        taken: Taken<'_>,
    ) -> anyhow::Result<bool> {
        let now = Millis::now();
        let queued = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let advanced = sqlx::query(
                "
                UPDATE imap_folders
                SET last_uid = $4,
                    last_date = CASE WHEN last_date < $5 THEN $5 ELSE last_date END
                WHERE mailbox_id = $1 AND name = $2 AND uid_validity = $3 AND last_uid < $4
                ",
            )
            .bind(id)
            .bind(folder)
            .bind(i64::from(uid_validity))
            .bind(i64::from(uid))
            .bind(date.0)
            .execute(&mut *tx)
            .await
            .context("Advancing a folder")?
            .rows_affected();
            if advanced == 0 {
                return Ok(false);
            }
            let queued = match taken {
                Taken::Mail(mail, message_id) => {
                    insert_inbound((&mut *tx).into(), mail, now).await?;
                    remember_imap_message(
                        (&mut *tx).into(),
                        mail,
                        message_id,
                        (id, folder, uid_validity, uid),
                        now,
                    )
                    .await?;
                    true
                }
                Taken::Notice(notice) => {
                    insert_notice((&mut *tx).into(), notice, now).await?;
                    true
                }
                Taken::Skip => false,
            };
            tx.commit().await.context("Committing mail from IMAP")?;
            queued
        });
        if queued {
            self.wake.to_xmpp.notify_one();
        }
        Ok(true)
    }

    /// Queues message `uid` of a folder, which the user asked to see
    /// (found by a search): whether taken before or not, the folder's
    /// state stays as it is.
    pub async fn imap_show(
        &self,
        id: i64,
        folder: &str,
        uid_validity: u32,
        uid: u32,
        mail: &InboundMail,
        message_id: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            insert_inbound((&mut *tx).into(), mail, now).await?;
            remember_imap_message(
                (&mut *tx).into(),
                mail,
                message_id,
                (id, folder, uid_validity, uid),
                now,
            )
            .await?;
            tx.commit().await.context("Committing mail shown from IMAP")
        })?;
        self.wake.to_xmpp.notify_one();
        Ok(())
    }

    /// Starts a resync of a folder whose UIDVALIDITY changed: its UIDs
    /// start again from zero, and only mail after the latest taken is
    /// taken until [`Store::imap_caught_up`].
    pub async fn imap_resync(
        &self,
        id: i64,
        folder: &str,
        uid_validity: u32,
    ) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            UPDATE imap_folders SET uid_validity = $3, last_uid = 0, since_date = last_date
            WHERE mailbox_id = $1 AND name = $2
            ",
        )
        .bind(id)
        .bind(folder)
        .bind(i64::from(uid_validity))
        .execute(pool)
        .await
        .map(|_| ())
        .context("Resyncing a folder"))?;
        Ok(())
    }

    /// Ends a resync: the folder is past `uid`, and new mail is taken
    /// whatever its date.
    pub async fn imap_caught_up(
        &self,
        id: i64,
        folder: &str,
        uid_validity: u32,
        uid: u32,
    ) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            UPDATE imap_folders
            SET last_uid = CASE WHEN last_uid < $4 THEN $4 ELSE last_uid END, since_date = 0
            WHERE mailbox_id = $1 AND name = $2 AND uid_validity = $3
            ",
        )
        .bind(id)
        .bind(folder)
        .bind(i64::from(uid_validity))
        .bind(i64::from(uid))
        .execute(pool)
        .await
        .map(|_| ())
        .context("Ending a resync"))?;
        Ok(())
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

    /// The user's client displayed (or received) the message it knows as
    /// `stanza_id`: if it came from IMAP and is not marked yet, \Seen is
    /// to be set on it, and its mailbox's follower is woken. Returns the
    /// mailbox's id then.
    pub async fn imap_seen_wanted(
        &self,
        user: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<Option<i64>> {
        let id: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            UPDATE imap_messages SET seen = 1
            WHERE user_jid = $1 AND stanza_id = $2 AND seen = 0
            RETURNING mailbox_id
            ",
        )
        .bind(user.as_str())
        .bind(stanza_id)
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Marking {stanza_id} seen"))?;
        if let Some(id) = id {
            self.imap_waker(id).notify_one();
        }
        Ok(id)
    }

    /// Whether the user's message their client knows as `stanza_id` came
    /// from IMAP.
    pub async fn imap_message_known(
        &self,
        user: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<bool> {
        let found: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT mailbox_id FROM imap_messages WHERE user_jid = $1 AND stanza_id = $2",
        )
        .bind(user.as_str())
        .bind(stanza_id)
        .fetch_optional(pool)
        .await)
        .context("Looking up a mail from IMAP")?;
        Ok(found.is_some())
    }

    /// The messages of mailbox `id` that \Seen is to be set on.
    pub async fn imap_seen_to_set(&self, id: i64) -> anyhow::Result<Vec<SeenToSet>> {
        on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(
                "
                SELECT stanza_id, folder, uid_validity, uid FROM imap_messages
                WHERE mailbox_id = $1 AND seen = 1
                ORDER BY folder, uid
                ",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .context("Reading the flags to set")?;
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                found.push(SeenToSet {
                    stanza_id: row.try_get("stanza_id")?,
                    folder: row.try_get("folder")?,
                    uid_validity: u32_of(row.try_get("uid_validity")?),
                    uid: u32_of(row.try_get("uid")?),
                });
            }
            Ok(found)
        })
    }

    /// \Seen was set on these messages of mailbox `id` (or they are
    /// gone from the server): nothing more to do for them.
    pub async fn imap_seen_set(&self, id: i64, stanza_ids: &[String]) -> anyhow::Result<()> {
        for stanza_id in stanza_ids {
            on_backend!(&self.pool, |pool| sqlx::query(
                "UPDATE imap_messages SET seen = 2 WHERE mailbox_id = $1 AND stanza_id = $2",
            )
            .bind(id)
            .bind(stanza_id)
            .execute(pool)
            .await
            .map(|_| ()))
            .context("Remembering a flag set")?;
        }
        Ok(())
    }

    /// The mailbox whose submission server answers to a mail leave
    /// through: the first of `message_ids` (the answered mail's, then
    /// those it refers to, without angle brackets) that came to `user`
    /// from a mailbox with an outgoing server.
    pub async fn imap_answer_route(
        &self,
        user: &BareJid,
        message_ids: &[&str],
    ) -> anyhow::Result<Option<ImapMailbox>> {
        for message_id in message_ids.iter().filter(|m| !m.is_empty()) {
            let id: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
                "
                SELECT m.id FROM imap_messages i JOIN imap_mailboxes m ON m.id = i.mailbox_id
                WHERE i.user_jid = $1 AND i.message_id = $2 AND m.smtp_host <> ''
                ORDER BY i.created_at DESC
                LIMIT 1
                ",
            )
            .bind(user.as_str())
            .bind(*message_id)
            .fetch_optional(pool)
            .await)
            .context("Looking up the mailbox of an answered mail")?;
            if let Some(id) = id {
                return self.imap_mailbox(user, id).await;
            }
        }
        Ok(None)
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

    /// The user reported the mail with `message_id` (without angle
    /// brackets) as spam: if it came from IMAP, it is to be moved to the
    /// Junk folder, and its mailbox's follower is woken. Returns the
    /// mailbox's id then.
    pub async fn imap_junk_wanted(
        &self,
        user: &BareJid,
        message_id: &str,
    ) -> anyhow::Result<Option<i64>> {
        let message_id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let ids: Vec<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            UPDATE imap_messages SET junk = 1
            WHERE user_jid = $1 AND message_id = $2 AND junk = 0
            RETURNING mailbox_id
            ",
        )
        .bind(user.as_str())
        .bind(message_id)
        .fetch_all(pool)
        .await)
        .with_context(|| format!("Marking {message_id} as junk"))?;
        for id in &ids {
            self.imap_waker(*id).notify_one();
        }
        Ok(ids.first().copied())
    }

    /// The messages of mailbox `id` to move to the Junk folder.
    pub async fn imap_junk_to_move(&self, id: i64) -> anyhow::Result<Vec<JunkToMove>> {
        on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(
                "
                SELECT stanza_id, folder, uid_validity, uid FROM imap_messages
                WHERE mailbox_id = $1 AND junk = 1
                ORDER BY folder, uid
                ",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .context("Reading the mail to move to Junk")?;
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                found.push(JunkToMove {
                    stanza_id: row.try_get("stanza_id")?,
                    folder: row.try_get("folder")?,
                    uid_validity: u32_of(row.try_get("uid_validity")?),
                    uid: u32_of(row.try_get("uid")?),
                });
            }
            Ok(found)
        })
    }

    /// These messages of mailbox `id` were moved to Junk (or are gone):
    /// nothing more to do for them.
    pub async fn imap_junk_moved(&self, id: i64, stanza_ids: &[String]) -> anyhow::Result<()> {
        for stanza_id in stanza_ids {
            on_backend!(&self.pool, |pool| sqlx::query(
                "UPDATE imap_messages SET junk = 2 WHERE mailbox_id = $1 AND stanza_id = $2",
            )
            .bind(id)
            .bind(stanza_id)
            .execute(pool)
            .await
            .map(|_| ()))
            .context("Remembering a move to Junk")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
