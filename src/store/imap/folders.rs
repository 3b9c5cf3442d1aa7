//! The folders of an attached mailbox (`imap_folders`): mail taken from
//! a folder is queued in the same transaction that advances its highest
//! UID, and where it lives is remembered (`imap_messages`) for the flags
//! the user sets on it later.

use anyhow::Context;
use sqlx::Row;

use facteur_bridge::threading::stanza_id_for_mail;

use super::super::to_xmpp::{insert_inbound, insert_notice, InboundMail};
use super::super::{Conn, Millis, Store};
use super::{u32_of, ImapFolder, Taken};

/// Queues a mail of a folder for its recipient, and remembers
/// where it lives (mailbox, folder, UIDVALIDITY, UID) by the stanza id
/// its Message-ID makes (a mailbox's mail has one recipient: the
/// mailbox's user).
async fn queue_imap_mail(
    conn: Conn<'_>,
    mail: &InboundMail,
    message_id: Option<&str>,
    (id, folder, uid_validity, uid): (i64, &str, u32, u32),
    now: Millis,
) -> anyhow::Result<()> {
    on_backend!(conn, |conn| {
        insert_inbound((&mut *conn).into(), mail, now).await?;
        let (Some(user), Some(message_id)) = (mail.recipients.first(), message_id) else {
            return Ok(());
        };
        sqlx::query(
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
        .map(|_| ())
        .context("Remembering where a mail lives")
    })
}

impl Store {
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
                    queue_imap_mail(
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
            queue_imap_mail(
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
}
