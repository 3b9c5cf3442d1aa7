//! Jobs that run once per cluster (`job_leases`): among the instances
//! sharing a store, the one that holds a job's lease runs it. The holder
//! renews the lease each time it runs the job; when it stops (dies, or
//! leaves), another instance takes the job once the lease has run out.

use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use super::{Millis, Store};

impl Store {
    /// Takes or renews the lease of job `name` for `hold` from now, in
    /// one statement: true when this instance holds it (and should run
    /// the job now), false when another instance does.
    pub async fn hold_job(&self, name: &str, hold: Duration) -> anyhow::Result<bool> {
        let now = Millis::now();
        let held: Option<String> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            INSERT INTO job_leases (name, owner, until) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE SET owner = $2, until = $3
            WHERE job_leases.owner = $2 OR job_leases.until < $4
            RETURNING owner
            "
        )
        .bind(name)
        .bind(&*self.owner)
        .bind(now.after(hold).0)
        .bind(now.0)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("Taking the lease of job {name}")))?;
        Ok(held.is_some())
    }

    /// How long a job run every `every` holds its lease: until just after
    /// its next run, so that its holder renews it in time and another
    /// instance takes over soon after the holder stops.
    pub fn job_hold(&self, every: Duration) -> Duration {
        every.saturating_add(self.lease)
    }

    /// Whether this instance runs job `name`, run every `every`, this
    /// time: it holds the job's lease (taken or renewed). When the store
    /// fails, `failed` is logged and the job is not run.
    pub async fn runs_job(&self, name: &str, every: Duration, failed: &str) -> bool {
        match self.hold_job(name, self.job_hold(every)).await {
            Ok(held) => held,
            Err(e) => {
                warn!(error = format!("{e:#}"), "{failed}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn one_instance_holds_a_job_until_its_lease_runs_out(store, scratch) {
            let a = store.as_instance("a");
            let b = store.as_instance("b");
            let hold = Duration::from_millis(600);
            assert!(a.hold_job("sweep", hold).await.expect("taken"));
            assert!(!b.hold_job("sweep", hold).await.expect("refused"));
            // Another job is another lease.
            assert!(b.hold_job("expire", hold).await.expect("taken"));
            // The holder renews it, again and again.
            assert!(a.hold_job("sweep", hold).await.expect("renewed"));
            assert!(!b.hold_job("sweep", hold).await.expect("refused"));
            // a stops: once its lease has run out, b takes the job, and
            // a no longer holds it.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !b.hold_job("sweep", hold).await.expect("asked") {
                assert!(std::time::Instant::now() < deadline, "b never took the job");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(!a.hold_job("sweep", hold).await.expect("refused"));
        }
    }
}
