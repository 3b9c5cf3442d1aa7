//! The special folders of a mailbox (RFC 6154 SPECIAL-USE): the Sent
//! folder, where a copy of each answer sent through the mailbox's
//! submission server is put, and the Junk folder, where mail the user
//! reported as spam is moved.

use std::time::Duration;

use async_imap::types::NameAttribute;
use futures_util::TryStreamExt;

use super::connect::{login_mailbox, ImapSession};
use super::seal::SealKey;
use crate::store::ImapMailbox;

/// How long putting a copy in Sent may take, logging in included.
const APPEND_TIMEOUT: Duration = Duration::from_secs(120);

/// A special folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Sent,
    Junk,
}

impl Special {
    /// Its name where the server marks none.
    pub fn fallback(self) -> &'static str {
        match self {
            Special::Sent => "Sent",
            Special::Junk => "Junk",
        }
    }

    fn is(self, attribute: &NameAttribute<'_>) -> bool {
        matches!(
            (self, attribute),
            (Special::Sent, NameAttribute::Sent) | (Special::Junk, NameAttribute::Junk)
        )
    }
}

/// The name of the folder the server marks `special` (RFC 6154), else
/// the usual name.
pub async fn find(session: &mut ImapSession, special: Special) -> anyhow::Result<String> {
    let names: Vec<_> = session
        .list(None, Some("*"))
        .await
        .map_err(|e| anyhow::anyhow!("LIST: {e}"))?
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!("LIST: {e}"))?;
    Ok(names
        .iter()
        .find(|n| n.attributes().iter().any(|a| special.is(a)))
        .map_or_else(|| special.fallback().to_owned(), |n| n.name().to_owned()))
}

/// Puts a copy of `raw`, marked `\Seen`, in the Sent folder of
/// `mailbox`, on a connection of its own; returns the folder's name.
pub async fn append_sent(
    mailbox: &ImapMailbox,
    key: &SealKey,
    raw: &[u8],
) -> anyhow::Result<String> {
    let work = async {
        let mut session = login_mailbox(key, mailbox)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let folder = find(&mut session, Special::Sent).await?;
        session
            .append(&folder, Some("(\\Seen)"), None, raw)
            .await
            .map_err(|e| anyhow::anyhow!("APPEND to {folder}: {e}"))?;
        let _ = session.logout().await;
        Ok(folder)
    };
    tokio::time::timeout(APPEND_TIMEOUT, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", APPEND_TIMEOUT.as_secs()))?
}
