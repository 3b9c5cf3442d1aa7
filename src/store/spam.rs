//! Spam feedback: the senders each user blocked (from their server's
//! forwarded blocks and reports, or read from their blocklist with a
//! privileged IQ), applied at RCPT; and spam and ham feedback, counted per
//! sender across users.

use std::sync::Arc;

use anyhow::Context;
use facteur_policy::spam::{BlockItem, BlockSource};
use jid::BareJid;

use super::users::Recent;
use super::{Millis, Store};

/// Blocks kept in memory per user, at most: a longer list is asked of the
/// store at each RCPT.
const CACHED_BLOCKS: usize = 256;

/// Each user's blocks (item, refused at RCPT), or `None` when she has
/// more than [`CACHED_BLOCKS`].
pub(super) type BlockCache = Recent<Option<Arc<[(String, bool)]>>>;

/// One sender a user blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedSender {
    pub item: BlockItem,
    pub source: BlockSource,
    /// Blocked with a spam or abuse report.
    pub reported: bool,
    /// Refused at RCPT: false once the user unblocked it with the
    /// gateway's command, while her server may still block it.
    pub refused: bool,
    pub created_at: Millis,
}

/// A user's feedback on a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Spam,
    Ham,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Spam => "spam",
            Verdict::Ham => "ham",
        }
    }
}

fn stored_item(text: &str) -> BlockItem {
    if text.contains('@') {
        BlockItem::Address(text.to_owned())
    } else {
        BlockItem::Domain(text.to_owned())
    }
}

impl Store {
    /// Blocks `item` for `user`. A block already there keeps its time and
    /// source, is marked reported if this one is, and is refused again.
    pub async fn block_sender(
        &self,
        user: &BareJid,
        item: &BlockItem,
        source: BlockSource,
        reported: bool,
    ) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO blocked_senders (user_jid, item, source, reported, created_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (user_jid, item)
            DO UPDATE SET reported = blocked_senders.reported OR excluded.reported,
                          refused = TRUE
            ",
        )
        .bind(user.as_str())
        .bind(item.as_str())
        .bind(source.name())
        .bind(reported)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Blocking {item} for {user}"))?;
        self.blocks.forget(user.as_str());
        Ok(())
    }

    /// Unblocks `item` for `user`; whether it was blocked.
    pub async fn unblock_sender(&self, user: &BareJid, item: &BlockItem) -> anyhow::Result<bool> {
        let done = on_backend!(&self.pool, |pool| sqlx::query(
            "DELETE FROM blocked_senders WHERE user_jid = $1 AND item = $2"
        )
        .bind(user.as_str())
        .bind(item.as_str())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Unblocking {item} for {user}"))?;
        self.blocks.forget(user.as_str());
        Ok(done > 0)
    }

    /// Stops refusing `item` at RCPT for `user`, who unblocked it with the
    /// gateway's command; her server may still block it, so its refusals
    /// stay unreported. Whether it was refused.
    pub async fn stop_refusing(&self, user: &BareJid, item: &BlockItem) -> anyhow::Result<bool> {
        let done = on_backend!(&self.pool, |pool| sqlx::query(
            "
            UPDATE blocked_senders SET refused = FALSE
            WHERE user_jid = $1 AND item = $2 AND refused
            ",
        )
        .bind(user.as_str())
        .bind(item.as_str())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Unblocking {item} at the gateway for {user}"))?;
        self.blocks.forget(user.as_str());
        Ok(done > 0)
    }

    /// Unblocks every sender `user` blocked (an empty XEP-0191 unblock).
    pub async fn unblock_all(&self, user: &BareJid) -> anyhow::Result<u64> {
        let done = on_backend!(&self.pool, |pool| sqlx::query(
            "DELETE FROM blocked_senders WHERE user_jid = $1"
        )
        .bind(user.as_str())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Unblocking all senders for {user}"))?;
        self.blocks.forget(user.as_str());
        Ok(done)
    }

    /// The senders `user` blocked, in item order.
    pub async fn blocked_senders(&self, user: &BareJid) -> anyhow::Result<Vec<BlockedSender>> {
        let rows: Vec<(String, String, bool, bool, i64)> = on_backend!(&self.pool, |pool| {
            sqlx::query_as(
                "
                SELECT item, source, reported, refused, created_at FROM blocked_senders
                WHERE user_jid = $1 ORDER BY item
                ",
            )
            .bind(user.as_str())
            .fetch_all(pool)
            .await
        })
        .with_context(|| format!("Listing the senders {user} blocked"))?;
        Ok(rows
            .into_iter()
            .map(
                |(item, source, reported, refused, created_at)| BlockedSender {
                    item: stored_item(&item),
                    source: BlockSource::from_name(&source).unwrap_or(BlockSource::Block),
                    reported,
                    refused,
                    created_at: Millis(created_at),
                },
            )
            .collect())
    }

    /// Whether mail from `sender` (a reverse path) to `user` is refused
    /// at RCPT: she blocked its address or its domain. Never for the null
    /// sender.
    pub async fn blocks_sender(&self, user: &BareJid, sender: &str) -> anyhow::Result<bool> {
        self.find_block(user, sender, true).await
    }

    /// Whether `user`'s server may refuse mail from `sender` because she
    /// blocked it: any block, also one she unblocked at the gateway only.
    pub async fn server_may_block(&self, user: &BareJid, sender: &str) -> anyhow::Result<bool> {
        self.find_block(user, sender, false).await
    }

    async fn find_block(
        &self,
        user: &BareJid,
        sender: &str,
        refused: bool,
    ) -> anyhow::Result<bool> {
        let Some([domain, address]) = BlockItem::covering(sender) else {
            return Ok(false);
        };
        let covers = |item: &str| item == domain.as_str() || item == address.as_str();
        if let Some(blocks) = self.user_blocks(user).await? {
            return Ok(blocks
                .iter()
                .any(|(item, is_refused)| covers(item) && (*is_refused || !refused)));
        }
        let found: Option<(String,)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "
            SELECT item FROM blocked_senders
            WHERE user_jid = $1 AND item IN ($2, $3) AND (refused OR NOT $4) LIMIT 1
            "
        )
        .bind(user.as_str())
        .bind(domain.as_str())
        .bind(address.as_str())
        .bind(refused)
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Looking up the senders {user} blocked"))?;
        Ok(found.is_some())
    }

    /// `user`'s blocks, from the cache or the store; `None` when she has
    /// too many to keep in memory.
    async fn user_blocks(&self, user: &BareJid) -> anyhow::Result<Option<Arc<[(String, bool)]>>> {
        if let Some(blocks) = self.blocks.get(user.as_str()) {
            return Ok(blocks);
        }
        let rows: Vec<(String, bool)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT item, refused FROM blocked_senders WHERE user_jid = $1 LIMIT $2"
        )
        .bind(user.as_str())
        .bind(i64::try_from(CACHED_BLOCKS + 1).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await)
        .with_context(|| format!("Looking up the senders {user} blocked"))?;
        let blocks = (rows.len() <= CACHED_BLOCKS).then(|| Arc::from(rows));
        self.blocks.put(user.as_str(), blocks.clone());
        Ok(blocks)
    }

    /// Takes `items`, just read from `user`'s blocklist, in place of what
    /// the last read found; blocks learnt otherwise stay. Notes the time.
    pub async fn replace_read_blocks(
        &self,
        user: &BareJid,
        items: &[BlockItem],
    ) -> anyhow::Result<()> {
        let now = Millis::now().0;
        // One transaction: a crash never leaves half a blocklist.
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            sqlx::query("DELETE FROM blocked_senders WHERE user_jid = $1 AND source = $2")
                .bind(user.as_str())
                .bind(BlockSource::PrivilegedRead.name())
                .execute(&mut *tx)
                .await
                .context("Forgetting the last blocklist read")?;
            for item in items {
                sqlx::query(
                    "
                    INSERT INTO blocked_senders (user_jid, item, source, reported, created_at)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (user_jid, item) DO NOTHING
                    ",
                )
                .bind(user.as_str())
                .bind(item.as_str())
                .bind(BlockSource::PrivilegedRead.name())
                .bind(false)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("Storing a blocklist item")?;
            }
            sqlx::query(
                "
                INSERT INTO blocklist_reads (user_jid, read_at) VALUES ($1, $2)
                ON CONFLICT (user_jid) DO UPDATE SET read_at = excluded.read_at
                ",
            )
            .bind(user.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("Noting the blocklist read")?;
            tx.commit().await.context("Committing a blocklist read")
        })
        .with_context(|| format!("Storing the blocklist of {user}"))?;
        self.blocks.forget(user.as_str());
        Ok(())
    }

    /// Registered users of `domain` whose blocklist was never read, or
    /// last read before `before`, at most `limit`, the longest unread
    /// first.
    pub async fn blocklists_to_read(
        &self,
        domain: &str,
        before: Millis,
        limit: i64,
    ) -> anyhow::Result<Vec<BareJid>> {
        let rows: Vec<(String,)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "
            SELECT users.jid FROM users
            LEFT JOIN blocklist_reads ON blocklist_reads.user_jid = users.jid
            WHERE (blocklist_reads.read_at IS NULL OR blocklist_reads.read_at < $1)
              AND users.jid LIKE $3
            ORDER BY COALESCE(blocklist_reads.read_at, 0), users.jid
            LIMIT $2
            ",
        )
        .bind(before.0)
        .bind(limit)
        .bind(format!("%@{domain}"))
        .fetch_all(pool)
        .await)
        .context("Listing blocklists to read")?;
        // LIKE's `_` matches any character: the domain is checked exactly.
        Ok(rows
            .into_iter()
            .filter_map(|(jid,)| BareJid::new(&jid).ok())
            .filter(|jid| jid.domain().as_str() == domain)
            .collect())
    }

    /// Records `user`'s verdict on mail from `sender` (`message_id` empty
    /// for a report that names no mail); the latest verdict stays.
    pub async fn record_feedback(
        &self,
        user: &BareJid,
        sender: &str,
        message_id: &str,
        verdict: Verdict,
    ) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO spam_reports (user_jid, sender, message_id, verdict, created_at,
                                      sender_domain)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (user_jid, sender, message_id)
            DO UPDATE SET verdict = excluded.verdict, created_at = excluded.created_at,
                          sender_domain = excluded.sender_domain
            ",
        )
        .bind(user.as_str())
        .bind(sender.trim().to_ascii_lowercase())
        .bind(message_id)
        .bind(verdict.name())
        .bind(Millis::now().0)
        .bind(
            sender
                .trim()
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
        )
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Recording {user}'s feedback on {sender}"))
    }

    /// How many distinct users reported `sender` as spam: what makes a
    /// sender an entry of a list shared with other servers, which the
    /// daemon does not publish yet.
    #[allow(dead_code)]
    pub async fn spam_reporters(&self, sender: &str) -> anyhow::Result<i64> {
        on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            SELECT COUNT(DISTINCT user_jid) FROM spam_reports
            WHERE sender = $1 AND verdict = 'spam'
            ",
        )
        .bind(sender.trim().to_ascii_lowercase())
        .fetch_one(pool)
        .await)
        .with_context(|| format!("Counting reports on {sender}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    fn jid(text: &str) -> BareJid {
        BareJid::new(text).expect("jid")
    }

    fn address(text: &str) -> BlockItem {
        BlockItem::Address(text.into())
    }

    store_test! {
    async fn a_block_covers_its_sender_for_its_user_only(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob@example.test");
        store.block_sender(&alice, &address("spammer@evil.test"), BlockSource::Report, true)
            .await.expect("blocked");
        assert!(store.blocks_sender(&alice, "Spammer@Evil.TEST").await.expect("lookup"));
        assert!(!store.blocks_sender(&alice, "friend@evil.test").await.expect("lookup"));
        assert!(!store.blocks_sender(&bob, "spammer@evil.test").await.expect("lookup"));
        assert!(!store.blocks_sender(&alice, "").await.expect("lookup"));
        store.block_sender(&alice, &BlockItem::Domain("evil.test".into()), BlockSource::Block, false)
            .await.expect("blocked");
        assert!(store.blocks_sender(&alice, "friend@evil.test").await.expect("lookup"));
        assert!(!store.blocks_sender(&alice, "friend@notevil.test").await.expect("lookup"));
        // Blocked again without a report: it stays reported.
        store.block_sender(&alice, &address("spammer@evil.test"), BlockSource::Block, false)
            .await.expect("blocked");
        let listed = store.blocked_senders(&alice).await.expect("listed");
        let items: Vec<_> = listed.iter().map(|b| (b.item.to_string(), b.source, b.reported)).collect();
        assert_eq!(items, vec![
            ("evil.test".to_owned(), BlockSource::Block, false),
            ("spammer@evil.test".to_owned(), BlockSource::Report, true),
        ]);
        // Unblocked at the gateway only: accepted at RCPT, yet her server
        // may still refuse it; blocked again, it is refused again.
        assert!(store.stop_refusing(&alice, &address("spammer@evil.test")).await.expect("unblocked"));
        assert!(!store.stop_refusing(&alice, &address("spammer@evil.test")).await.expect("unblocked"));
        assert!(!store.blocks_sender(&alice, "spammer@other.test").await.expect("lookup"));
        assert!(store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"), "the domain");
        assert!(store.server_may_block(&alice, "spammer@evil.test").await.expect("lookup"));
        assert!(!store.server_may_block(&bob, "spammer@evil.test").await.expect("lookup"));
        assert!(store.unblock_sender(&alice, &BlockItem::Domain("evil.test".into())).await.expect("unblocked"));
        assert!(!store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"));
        assert!(store.server_may_block(&alice, "spammer@evil.test").await.expect("lookup"));
        store.block_sender(&alice, &address("spammer@evil.test"), BlockSource::Block, false)
            .await.expect("blocked");
        assert!(store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"));
        assert!(!store.unblock_sender(&alice, &BlockItem::Domain("evil.test".into())).await.expect("unblocked"));
        assert!(!store.blocks_sender(&alice, "friend@evil.test").await.expect("lookup"));
        assert_eq!(store.unblock_all(&alice).await.expect("unblocked"), 1);
        assert!(!store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"));
    }
    }

    store_test! {
    async fn a_block_by_another_instance_is_seen_within_the_cache_time(store, scratch) {
        let alice = jid("alice@example.test");
        assert!(!store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"));
        let other = scratch.open().await;
        other.block_sender(&alice, &address("spammer@evil.test"), BlockSource::Block, false)
            .await.expect("blocked");
        tokio::time::sleep(crate::store::users::CACHE_TIME + std::time::Duration::from_millis(50)).await;
        assert!(store.blocks_sender(&alice, "spammer@evil.test").await.expect("lookup"));
    }
    }

    store_test! {
    async fn a_list_too_long_to_cache_is_asked_of_the_store(store, scratch) {
        let alice = jid("alice@example.test");
        let items: Vec<_> = (0..=super::CACHED_BLOCKS).map(|n| address(&format!("s{n}@evil.test"))).collect();
        store.replace_read_blocks(&alice, &items).await.expect("read");
        for n in [0, super::CACHED_BLOCKS] {
            assert!(store.blocks_sender(&alice, &format!("s{n}@evil.test")).await.expect("lookup"), "s{n}");
            assert!(store.server_may_block(&alice, &format!("S{n}@Evil.test")).await.expect("lookup"), "s{n}");
        }
        assert!(!store.blocks_sender(&alice, "friend@evil.test").await.expect("lookup"));
        store.stop_refusing(&alice, &address("s0@evil.test")).await.expect("unblocked");
        assert!(!store.blocks_sender(&alice, "s0@evil.test").await.expect("lookup"));
        assert!(store.server_may_block(&alice, "s0@evil.test").await.expect("lookup"));
    }
    }

    store_test! {
    async fn a_blocklist_read_replaces_only_the_last_read(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob@example.test");
        store.register(&alice).await.expect("registered");
        store.register(&bob).await.expect("registered");
        store.register(&jid("carol@other.test")).await.expect("registered");
        assert_eq!(
            store.blocklists_to_read("example.test", Millis::now(), 10).await.expect("listed"),
            vec![alice.clone(), bob.clone()]
        );
        store.block_sender(&alice, &address("reported@evil.test"), BlockSource::Report, true)
            .await.expect("blocked");
        store.replace_read_blocks(&alice, &[address("one@evil.test"), address("reported@evil.test")])
            .await.expect("read");
        store.replace_read_blocks(&alice, &[address("two@evil.test")]).await.expect("read");
        let items: Vec<_> = store.blocked_senders(&alice).await.expect("listed")
            .into_iter().map(|b| b.item.to_string()).collect();
        assert_eq!(items, vec!["reported@evil.test", "two@evil.test"]);
        let long_ago = Millis::now().before(std::time::Duration::from_secs(3600));
        assert_eq!(store.blocklists_to_read("example.test", long_ago, 10).await.expect("listed"), vec![bob.clone()]);
        assert_eq!(store.blocklists_to_read("example.test", Millis::now().after(std::time::Duration::from_secs(1)), 10).await.expect("listed"), vec![bob, alice]);
    }
    }

    store_test! {
    async fn reports_count_distinct_users_and_the_latest_verdict(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob@example.test");
        let carol = jid("carol@example.test");
        store.record_feedback(&alice, "spammer@evil.test", "m1@evil.test", Verdict::Spam).await.expect("recorded");
        store.record_feedback(&alice, "spammer@evil.test", "m2@evil.test", Verdict::Spam).await.expect("recorded");
        store.record_feedback(&bob, "Spammer@evil.test", "", Verdict::Spam).await.expect("recorded");
        store.record_feedback(&carol, "spammer@evil.test", "m1@evil.test", Verdict::Spam).await.expect("recorded");
        assert_eq!(store.spam_reporters("spammer@evil.test").await.expect("counted"), 3);
        store.record_feedback(&carol, "spammer@evil.test", "m1@evil.test", Verdict::Ham).await.expect("recorded");
        assert_eq!(store.spam_reporters("spammer@evil.test").await.expect("counted"), 2);
        assert_eq!(store.spam_reporters("other@evil.test").await.expect("counted"), 0);
    }
    }
}
