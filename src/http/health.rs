//! `/health`, for monitoring: `200 ok` while the XEP-0114 component link
//! is up and the store takes a write; `503` naming each problem otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;
use tracing::warn;

use crate::store::Store;

/// How long the store gets to commit the probe: one that takes longer
/// cannot take mail in time either (SMTP clients wait minutes, but a
/// monitor should hear about it).
const STORE_WAIT: Duration = Duration::from_secs(5);

/// How long one probe's finding answers for: requests in between share
/// it, so that a flood of `/health` costs the store at most one commit a
/// second.
const PROBE_FRESH: Duration = Duration::from_secs(1);

/// What the last probe of the store found, and when.
type LastProbe = Option<(Instant, Option<&'static str>)>;

/// What `/health` looks at.
#[derive(Clone)]
pub struct Health {
    store: Store,
    /// Whether the component link is up, as the link tells it.
    link_up: watch::Receiver<bool>,
    /// Held while probing: concurrent requests wait for one probe.
    last_probe: Arc<Mutex<LastProbe>>,
    /// How long a probe's finding answers for.
    fresh: Duration,
}

impl Health {
    pub fn new(store: Store, link_up: watch::Receiver<bool>) -> Health {
        Health {
            store,
            link_up,
            last_probe: Arc::default(),
            fresh: PROBE_FRESH,
        }
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/health", get(answer))
        .with_state(health)
}

async fn answer(State(health): State<Health>) -> (StatusCode, String) {
    let mut last_probe = health.last_probe.lock().await;
    let store = match *last_probe {
        Some((at, found)) if at.elapsed() < health.fresh => found,
        _ => {
            let found = probe(&health.store).await;
            *last_probe = Some((Instant::now(), found));
            found
        }
    };
    drop(last_probe);
    let link_up = *health.link_up.borrow();
    verdict(link_up, store)
}

/// Commits the probe's write; what is wrong with the store, if anything.
async fn probe(store: &Store) -> Option<&'static str> {
    match tokio::time::timeout(STORE_WAIT, store.probe_write()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => {
            warn!(
                error = format!("{error:#}"),
                "Health check: the store cannot be written."
            );
            Some("store cannot be written")
        }
        Err(_) => {
            warn!(
                wait_secs = STORE_WAIT.as_secs(),
                "Health check: the store did not commit in time."
            );
            Some("store did not commit a write in time")
        }
    }
}

/// The answer for what was found: every problem on its own line. The
/// store's error stays in the log: it names files.
fn verdict(link_up: bool, store_problem: Option<&str>) -> (StatusCode, String) {
    let mut problems = Vec::new();
    if !link_up {
        problems.push("component link down: not connected to the XMPP server");
    }
    problems.extend(store_problem);
    if problems.is_empty() {
        return (StatusCode::OK, "ok\n".to_owned());
    }
    let mut body = problems.join("\n");
    body.push('\n');
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch;

    #[test]
    fn every_problem_is_named() {
        assert_eq!(verdict(true, None), (StatusCode::OK, "ok\n".to_owned()));
        let (status, body) = verdict(false, None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("component link down"), "{body}");
        let (status, body) = verdict(false, Some("store cannot be written"));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.lines().count(), 2, "{body}");
        assert!(body.ends_with("store cannot be written\n"), "{body}");
    }

    #[tokio::test]
    async fn answers_follow_the_link_and_the_store() {
        let (store, _dir) = scratch().await;
        let (up, link_up) = watch::channel(true);
        let health = Health {
            fresh: Duration::ZERO,
            ..Health::new(store.clone(), link_up)
        };
        let ask = || answer(State(health.clone()));
        assert_eq!(ask().await, (StatusCode::OK, "ok\n".to_owned()));
        assert_eq!(ask().await.0, StatusCode::OK);

        up.send_replace(false);
        let (status, body) = ask().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("component link down"), "{body}");
        assert!(!body.contains("store"), "{body}");

        up.send_replace(true);
        store.close().await;
        let (status, body) = ask().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "store cannot be written\n");
    }

    #[tokio::test]
    async fn a_flood_of_requests_shares_one_probe() {
        let (store, _dir) = scratch().await;
        let (_up, link_up) = watch::channel(true);
        let health = Health {
            fresh: Duration::from_secs(3600),
            ..Health::new(store.clone(), link_up)
        };
        assert_eq!(answer(State(health.clone())).await.0, StatusCode::OK);
        // The store is gone, but the finding of a moment ago still answers.
        store.close().await;
        assert_eq!(answer(State(health.clone())).await.0, StatusCode::OK);
    }
}
