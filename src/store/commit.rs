//! Group commit: tasks that change the store at the same moment share one
//! transaction, so one fsync makes many changes durable. A lone change is
//! committed at once, with no added wait. Used for accepting inbound mail
//! and for recording the outcomes of SMTP deliveries.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::{InboundMail, MailOutcome, Store};

/// Changes and bytes in one transaction at most.
const MAX_ITEMS: usize = 64;
const MAX_BYTES: usize = 16 * 1024 * 1024;

type Reply<R> = oneshot::Sender<Result<R, String>>;
type Apply<T, R> = Box<
    dyn Fn(Store, Vec<T>) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<R>>> + Send>>
        + Send
        + Sync,
>;

/// Hands changes to the committing task; cheap to clone.
pub struct Grouped<T, R> {
    requests: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for Grouped<T, R> {
    fn clone(&self) -> Self {
        Grouped {
            requests: self.requests.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Grouped<T, R> {
    /// Starts the committing task; `apply` writes a group in one
    /// transaction and returns one result per change, in order. The task
    /// ends when every handle is gone, so that shutdown waits (on `tasks`)
    /// for the changes already submitted.
    fn start(
        store: Store,
        tasks: &TaskTracker,
        weight: fn(&T) -> usize,
        apply: Apply<T, R>,
    ) -> Self {
        let (requests, mut incoming) = mpsc::channel::<(T, Reply<R>)>(1024);
        tasks.spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut bytes = weight(&first.0);
                let mut group = vec![first];
                while group.len() < MAX_ITEMS && bytes < MAX_BYTES {
                    match incoming.try_recv() {
                        Ok(next) => {
                            bytes += weight(&next.0);
                            group.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = group.into_iter().unzip();
                match apply(store.clone(), items).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        for reply in replies {
                            let _ = reply.send(Err(text.clone()));
                        }
                    }
                }
            }
        });
        Grouped { requests }
    }

    /// Submits one change; returns its result once it is durable.
    pub async fn commit(&self, item: T) -> anyhow::Result<R> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((item, reply))
            .await
            .map_err(|_| anyhow::anyhow!("The store is closed"))?;
        match answer.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(text)) => Err(anyhow::anyhow!(text)),
            Err(_) => Err(anyhow::anyhow!("The store is closed")),
        }
    }
}

/// Accepts inbound mail: the result is the mail's id.
pub type Committer = Grouped<InboundMail, i64>;

impl Committer {
    pub fn inbound(store: Store, tasks: &TaskTracker) -> Committer {
        Grouped::start(
            store,
            tasks,
            |mail| mail.raw.len(),
            Box::new(|store, mails| Box::pin(async move { store.accept_owned_mails(mails).await })),
        )
    }
}

/// Records what became of delivery attempts by SMTP.
pub type OutcomeCommitter = Grouped<MailOutcome, ()>;

impl OutcomeCommitter {
    pub fn outcomes(store: Store, tasks: &TaskTracker) -> OutcomeCommitter {
        Grouped::start(
            store,
            tasks,
            |_| 0,
            Box::new(|store, outcomes| {
                Box::pin(async move {
                    store.apply_mail_outcomes(&outcomes).await?;
                    Ok(vec![(); outcomes.len()])
                })
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;
    use crate::store::Millis;

    store_test! {
        async fn concurrent_mails_are_all_committed(store, scratch) {
            let tracker = TaskTracker::new();
            let committer = Committer::inbound(store.clone(), &tracker);
            let mut tasks = Vec::new();
            for n in 0..100 {
                let committer = committer.clone();
                tasks.push(tokio::spawn(async move {
                    committer
                        .commit(InboundMail {
                            mail_from: format!("s{n}@example.net"),
                            client_ip: "127.0.0.1".into(),
                            raw: format!("Subject: {n}\r\n\r\nx\r\n").into_bytes(),
                            recipients: vec![jid::BareJid::new("alice@example.test").expect("jid")],
                            ..InboundMail::default()
                        })
                        .await
                        .expect("committed")
                }));
            }
            let mut ids = Vec::new();
            for task in tasks {
                ids.push(task.await.expect("task"));
            }
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 100);
            assert_eq!(
                store
                    .due_to_xmpp(Millis::now(), 500)
                    .await
                    .expect("due")
                    .len(),
                100
            );
            // The committing task ends with the last handle.
            drop(committer);
            tracker.close();
            tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
                .await
                .expect("committing task ended");
        }
    }
}
