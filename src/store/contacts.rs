//! The mail correspondents behind escaped JIDs (`contacts`): the address
//! in its original case (RFC 5321 §2.4: local parts may be case-sensitive,
//! XEP-0106 JIDs are not) and the display name last seen in their mail.

use anyhow::Context;
use jid::BareJid;

use super::{Conn, Millis, Store};

/// The address (original case) and display name behind an escaped JID,
/// as last seen in mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub jid: BareJid,
    pub address: String,
    pub name: String,
}

/// Remembers a contact; a row that says the same is left untouched, so a
/// busy correspondent costs no write.
pub(crate) async fn upsert_contact(conn: Conn<'_>, contact: &Contact) -> anyhow::Result<()> {
    on_backend!(conn, |conn| sqlx::query(
        "
        INSERT INTO contacts (jid, address, display_name, updated_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (jid) DO UPDATE SET
            address = excluded.address,
            display_name = excluded.display_name,
            updated_at = excluded.updated_at
        WHERE contacts.address != excluded.address
           OR contacts.display_name != excluded.display_name
        ",
    )
    .bind(contact.jid.as_str())
    .bind(&contact.address)
    .bind(&contact.name)
    .bind(Millis::now().0)
    .execute(conn)
    .await
    .map(|_| ()))
    .with_context(|| format!("Remembering contact {}", contact.jid))?;
    Ok(())
}

impl Store {
    /// The mail address and display name last seen behind an escaped JID.
    pub async fn contact(&self, jid: &BareJid) -> anyhow::Result<Option<(String, String)>> {
        on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT address, display_name FROM contacts WHERE jid = $1"
        )
        .bind(jid.as_str())
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Looking up contact {jid}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn the_latest_name_and_case_are_kept(store, scratch) {
            let jid = BareJid::new("bob\\40example.net@mail.example.test").expect("jid");
            let first = Contact {
                jid: jid.clone(),
                address: "Bob@example.net".into(),
                name: "Bob".into(),
            };
            let renamed = Contact {
                name: "Bob B.".into(),
                ..first.clone()
            };
            on_backend!(&store.pool, |pool| {
                let mut conn = pool.acquire().await.expect("connection");
                upsert_contact((&mut *conn).into(), &first)
                    .await
                    .expect("stored");
                upsert_contact((&mut *conn).into(), &renamed)
                    .await
                    .expect("stored");
            });
            assert_eq!(
                store.contact(&jid).await.expect("lookup"),
                Some(("Bob@example.net".into(), "Bob B.".into()))
            );
        }
    }
}
