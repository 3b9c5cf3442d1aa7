//! `/metrics`: what `telemetry` counts, in the Prometheus text format,
//! with the queue gauges read from the store (one statement) at each
//! scrape. Served on `http.listen` beside `/health`: for the monitoring
//! system, not for the internet.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{Millis, Store};
use crate::telemetry;

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Scrape {
    store: Store,
    handle: PrometheusHandle,
}

pub fn router(store: Store, handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { store, handle })
}

async fn scrape(State(scrape): State<Scrape>) -> Response {
    match scrape.store.queue_gauges(Millis::now()).await {
        Ok(gauges) => telemetry::set_queue_gauges(&gauges.counts, &gauges.oldest_due),
        // The counters still tell something; the queue gauges keep their
        // last values, and `/health` says what is wrong with the store.
        Err(e) => warn!(
            error = format!("{e:#}"),
            "Store unavailable for the queue gauges."
        ),
    }
    match tokio::try_join!(
        scrape.store.list_weights(),
        scrape.store.list_entry_counts()
    ) {
        Ok((weights, entries)) => {
            let weights: Vec<(String, f64)> =
                weights.into_iter().map(|w| (w.list, w.weight)).collect();
            telemetry::set_spam_list_gauges(&weights, &entries);
        }
        Err(e) => warn!(
            error = format!("{e:#}"),
            "Store unavailable for the spam list gauges."
        ),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        scrape.handle.render(),
    )
        .into_response()
}

/// Folds recorded histogram samples into their buckets every few
/// seconds, so that they take bounded memory even when nobody scrapes.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}
