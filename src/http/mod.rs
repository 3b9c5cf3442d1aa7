//! facteur's HTTP server (axum): attachment links, `/health` (in
//! `health`), `/metrics` (in `scrape`) and the served domains' OpenPGP
//! Web Key Directory (in `wkd`).
//!
//! A link is `/files/TOKEN/NAME`: the token is random and unguessable, the
//! name is only for the user. Every answer says `nosniff` and carries a
//! CSP that allows nothing, so a hostile HTML or SVG attachment cannot
//! run in the gateway's origin; only images, PDFs, audio, video and plain
//! text are shown inline, everything else is a download.

pub mod files;
mod health;
pub mod scrape;
mod wkd;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::store::{Millis, Store};
use files::FileStore;
use health::Health;

#[derive(Clone)]
struct Served {
    store: Store,
    files: FileStore,
    /// Links older than this are not served, even before the sweep.
    retention: Duration,
}

/// `link_up` tells whether the component link is up, for `/health`;
/// `metrics` renders `/metrics`; `domains`, the served domains, have
/// their keys served by WKD.
pub fn router(
    store: Store,
    files: FileStore,
    retention: Duration,
    link_up: watch::Receiver<bool>,
    metrics: PrometheusHandle,
    domains: &[String],
) -> Router {
    Router::new()
        .route("/files/{token}/{name}", get(serve_file))
        .with_state(Served {
            store: store.clone(),
            files,
            retention,
        })
        .merge(health::router(Health::new(store.clone(), link_up)))
        .merge(wkd::router(store.clone(), domains))
        .merge(scrape::router(store, metrics))
}

fn inline(content_type: &str) -> bool {
    let kind = content_type.split('/').next().unwrap_or_default();
    matches!(kind, "image" | "audio" | "video") && content_type != "image/svg+xml"
        || content_type == "application/pdf"
        || content_type == "text/plain"
}

/// Everything but RFC 3986 unreserved characters, percent-encoded: a
/// URL path segment, or an RFC 8187 value.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// RFC 6266 with an RFC 8187 UTF-8 name, and an ASCII fallback.
fn disposition(inline: bool, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encode(name);
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn serve_file(
    State(served): State<Served>,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            "No such file (it may have expired).\n",
        )
            .into_response()
    };
    let since = Millis(
        Millis::now()
            .0
            .saturating_sub(i64::try_from(served.retention.as_millis()).unwrap_or(i64::MAX)),
    );
    let record = match served.store.shared(&token, since).await {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(),
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for an attachment."
            );
            return (StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n").into_response();
        }
    };
    let Some(path) = served.files.path(&record.sha256) else {
        return not_found();
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(_) => return not_found(),
    };
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition =
        HeaderValue::from_str(&disposition(inline(&record.content_type), &record.name))
            .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(record.size)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
                ),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            ),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response()
}

/// Serves `app` (see [`router`]) until shutdown.
pub async fn run(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        warn!(error = %e, "HTTP server stopped.");
    }
}

/// Forgets expired links and deletes the files no link leads to, hourly.
pub async fn expire(
    config: Arc<Config>,
    store: Store,
    files: FileStore,
    shutdown: CancellationToken,
) {
    let every = std::time::Duration::from_secs(3600);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // One instance of a cluster expires them (the files are shared).
        if !store
            .runs_job("attachment-expiry", every, "Expiring attachments failed.")
            .await
        {
            continue;
        }
        let before = Millis(
            Millis::now().0 - i64::try_from(config.http.retention.as_millis()).unwrap_or(i64::MAX),
        );
        match store.expire_attachments(before).await {
            Ok(orphans) => {
                for sha in &orphans {
                    files.remove(sha).await;
                }
                if !orphans.is_empty() {
                    info!(files = orphans.len(), "Expired attachments removed.");
                }
            }
            Err(e) => warn!(error = format!("{e:#}"), "Expiring attachments failed."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        assert_eq!(
            disposition(true, "r.pdf"),
            "inline; filename=\"r.pdf\"; filename*=UTF-8''r.pdf"
        );
        assert_eq!(
            disposition(false, "Grüße \"x\".html"),
            "attachment; filename=\"Gr__e _x_.html\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%22x%22.html"
        );
        assert!(inline("image/png") && inline("application/pdf") && inline("text/plain"));
        assert!(
            !inline("text/html") && !inline("image/svg+xml") && !inline("application/octet-stream")
        );
    }
}
