//! `/health`, for monitoring: `200 ok` while the XEP-0114 component link
//! is up and the store takes a write; `503` naming each problem otherwise.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::warn;

use crate::store::Store;

/// How long the store gets to commit the probe: one that takes longer
/// cannot take mail in time either (SMTP clients wait minutes, but a
/// monitor should hear about it).
const STORE_WAIT: Duration = Duration::from_secs(5);

/// What `/health` looks at.
#[derive(Clone)]
pub struct Health {
    pub store: Store,
    /// Whether the component link is up, as the link tells it.
    pub link_up: watch::Receiver<bool>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/health", get(answer))
        .with_state(health)
}

async fn answer(State(health): State<Health>) -> (StatusCode, String) {
    let link_up = *health.link_up.borrow();
    let store = match tokio::time::timeout(STORE_WAIT, health.store.probe_write()).await {
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
    };
    verdict(link_up, store)
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
            store: store.clone(),
            link_up,
        };
        let ask = || answer(State(health.clone()));
        assert_eq!(ask().await, (StatusCode::OK, "ok\n".to_owned()));
        assert_eq!(ask().await.0, StatusCode::OK, "the probe writes again");

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
}
