//! Server-side search of an attached mailbox (RFC 9051 §6.4.4, UID
//! SEARCH): by sender, subject, text and date, for the user's command
//! "Search mail"; and one message found, brought into the chat ("Show")
//! the way new mail comes.

use anyhow::Context;
use futures_util::TryStreamExt;

use super::connect::{login_mailbox, ImapSession};
use super::follow::{fetch_raw, imap_mail};
use super::seal::SealKey;
use crate::store::{ImapMailbox, Store};

/// At most this many matches are listed, the latest first.
pub const MAX_LISTED: usize = 20;

/// What the user looks for; empty criteria are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub from: String,
    pub subject: String,
    pub text: String,
    /// YYYY-MM-DD.
    pub since: String,
}

/// One message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub uid: u32,
    pub from: String,
    pub subject: String,
    /// YYYY-MM-DD, from INTERNALDATE.
    pub date: String,
}

/// What a search found in a folder: the folder's UIDVALIDITY (which the
/// UIDs belong to), how many matched, and the latest of them.
#[derive(Debug, Clone)]
pub struct Matches {
    pub uid_validity: u32,
    pub total: usize,
    pub listed: Vec<Found>,
}

/// A string as an IMAP quoted string (RFC 9051 §4.3); line breaks,
/// which no quoted string may hold, are refused.
fn quoted(value: &str) -> Result<String, String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err("a search term is one line".into());
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// YYYY-MM-DD as an IMAP date (`7-Dec-2026`).
fn imap_date(date: &str) -> Result<String, String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wrong = || format!("since is a date such as 2026-12-07, not {date:?}");
    let mut parts = date.trim().splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(wrong());
    };
    let year: u32 = year.parse().map_err(|_| wrong())?;
    let month: usize = month.parse().map_err(|_| wrong())?;
    let day: u32 = day.parse().map_err(|_| wrong())?;
    let name = month
        .checked_sub(1)
        .and_then(|m| MONTHS.get(m))
        .ok_or_else(wrong)?;
    if !(1..=31).contains(&day) || !(1000..=9999).contains(&year) {
        return Err(wrong());
    }
    Ok(format!("{day}-{name}-{year}"))
}

/// The UID SEARCH criteria for a query; all given must match.
pub fn criteria(query: &SearchQuery) -> Result<String, String> {
    let mut keys = Vec::new();
    for (key, value) in [
        ("FROM", &query.from),
        ("SUBJECT", &query.subject),
        ("TEXT", &query.text),
    ] {
        let value = value.trim();
        if !value.is_empty() {
            keys.push(format!("{key} {}", quoted(value)?));
        }
    }
    if !query.since.trim().is_empty() {
        keys.push(format!("SINCE {}", imap_date(&query.since)?));
    }
    if keys.is_empty() {
        return Err("say what to look for: from, subject, text or since".into());
    }
    let all = keys.join(" ");
    Ok(match all.is_ascii() {
        true => all,
        false => format!("CHARSET UTF-8 {all}"),
    })
}

/// Logs in to the mailbox.
async fn session(key: &SealKey, mailbox: &ImapMailbox) -> anyhow::Result<ImapSession> {
    login_mailbox(key, mailbox).await?.map_err(|e| {
        anyhow::anyhow!(
            "{}:{} as {}: {e}",
            mailbox.host,
            mailbox.port,
            mailbox.username
        )
    })
}

/// Runs the search in `folder` of the mailbox.
pub async fn search(
    key: &SealKey,
    mailbox: &ImapMailbox,
    folder: &str,
    query: &SearchQuery,
) -> anyhow::Result<Matches> {
    let criteria = criteria(query).map_err(anyhow::Error::msg)?;
    let mut session = session(key, mailbox).await?;
    let selected = session
        .examine(folder)
        .await
        .map_err(|e| anyhow::anyhow!("Folder {folder:?}: {e}"))?;
    let mut uids: Vec<u32> = session
        .uid_search(&criteria)
        .await
        .map_err(|e| anyhow::anyhow!("Searching {folder:?}: {e}"))?
        .into_iter()
        .collect();
    uids.sort_unstable_by(|a, b| b.cmp(a));
    let total = uids.len();
    uids.truncate(MAX_LISTED);
    let mut listed = Vec::with_capacity(uids.len());
    if !uids.is_empty() {
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fetched: Vec<_> = session
            .uid_fetch(&set, "(UID INTERNALDATE RFC822.HEADER)")
            .await
            .context("Asking for the messages found")?
            .try_collect()
            .await
            .context("Reading the messages found")?;
        for uid in &uids {
            let Some(f) = fetched.iter().find(|f| f.uid == Some(*uid)) else {
                continue;
            };
            let headers = f
                .header()
                .and_then(|h| mail_parser::MessageParser::new().parse_headers(h));
            let from = headers
                .as_ref()
                .and_then(|m| m.from())
                .and_then(|a| a.first())
                .map(|a| match (a.name(), a.address()) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (_, Some(address)) => address.to_owned(),
                    (Some(name), None) => name.to_owned(),
                    (None, None) => String::new(),
                })
                .unwrap_or_default();
            let subject = headers
                .as_ref()
                .and_then(|m| m.subject())
                .unwrap_or_default()
                .to_owned();
            let date = f
                .internal_date()
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            listed.push(Found {
                uid: *uid,
                from,
                subject,
                date,
            });
        }
    }
    let _ = session.logout().await;
    Ok(Matches {
        uid_validity: selected.uid_validity.unwrap_or(0),
        total,
        listed,
    })
}

/// Brings message `uid` of `folder` into the chat, the way new mail
/// comes, if the folder's UIDVALIDITY is still `uid_validity`.
pub async fn show(
    store: &Store,
    key: &SealKey,
    mailbox: &ImapMailbox,
    folder: &str,
    uid_validity: u32,
    uid: u32,
) -> anyhow::Result<()> {
    let mut session = session(key, mailbox).await?;
    let selected = session
        .examine(folder)
        .await
        .map_err(|e| anyhow::anyhow!("Folder {folder:?}: {e}"))?;
    if selected.uid_validity.unwrap_or(0) != uid_validity {
        anyhow::bail!("The folder {folder:?} changed since the search: search again");
    }
    let raw = fetch_raw(&mut session, uid)
        .await?
        .with_context(|| format!("The message is no longer in {folder:?}"))?;
    let _ = session.logout().await;
    let (mail, message_id) = imap_mail(mailbox, raw);
    store
        .imap_show(
            mailbox.id,
            folder,
            uid_validity,
            uid,
            &mail,
            message_id.as_deref(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_are_quoted_and_dated() {
        let query = SearchQuery {
            from: "bob@example.net".into(),
            subject: "say \"hi\" \\ now".into(),
            text: String::new(),
            since: "2026-12-07".into(),
        };
        assert_eq!(
            criteria(&query).expect("criteria"),
            r#"FROM "bob@example.net" SUBJECT "say \"hi\" \\ now" SINCE 7-Dec-2026"#
        );
        let query = SearchQuery {
            subject: "café".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            criteria(&query).expect("criteria"),
            "CHARSET UTF-8 SUBJECT \"café\""
        );
    }

    #[test]
    fn bad_criteria_are_refused() {
        for query in [
            SearchQuery::default(),
            SearchQuery {
                subject: "a\r\nA1 DELETE INBOX".into(),
                ..SearchQuery::default()
            },
            SearchQuery {
                since: "07/12/2026".into(),
                ..SearchQuery::default()
            },
            SearchQuery {
                since: "2026-13-01".into(),
                ..SearchQuery::default()
            },
        ] {
            assert!(criteria(&query).is_err(), "{query:?}");
        }
    }
}
