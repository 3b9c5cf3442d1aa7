//! The OpenPGP Web Key Directory (draft-koch-openpgp-webkey-service §3.1)
//! of the served domains: the key a user published, binary, at
//! `/.well-known/openpgpkey/DOMAIN/hu/HASH?l=LOCAL` (the advanced form,
//! on `openpgpkey.DOMAIN`) and `/.well-known/openpgpkey/hu/HASH` (the
//! direct form, on DOMAIN itself: the domain is the request's Host), and
//! the policy file of each form.
//!
//! Every address without a key gets the same 404, whatever is wrong with
//! it (no such user, no key, a malformed hash, a domain not served), so
//! that nothing can be enumerated. Answers carry
//! `Access-Control-Allow-Origin: *` (§3.1), so that web mail clients can
//! fetch keys.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::warn;

use crate::store::Store;

#[derive(Clone)]
struct Directory {
    store: Store,
    /// The served domains, lower-case.
    domains: Arc<[String]>,
}

pub fn router(store: Store, domains: &[String]) -> Router {
    Router::new()
        .route("/.well-known/openpgpkey/hu/{hash}", get(direct_key))
        .route("/.well-known/openpgpkey/policy", get(direct_policy))
        .route(
            "/.well-known/openpgpkey/{domain}/hu/{hash}",
            get(advanced_key),
        )
        .route(
            "/.well-known/openpgpkey/{domain}/policy",
            get(advanced_policy),
        )
        .with_state(Directory {
            store,
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        })
}

impl Directory {
    fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

const CORS: (header::HeaderName, HeaderValue) = (
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    HeaderValue::from_static("*"),
);

/// The one answer for every address without a key.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [CORS], "No key for this address.\n").into_response()
}

/// The domain a direct-form request is for: its Host, without the port.
fn host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    Some(name.trim_end_matches('.').to_ascii_lowercase())
}

async fn direct_key(
    State(directory): State<Directory>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    match host(&headers) {
        Some(domain) => key(&directory, &domain, &hash, query.as_deref()).await,
        None => not_found(),
    }
}

async fn advanced_key(
    State(directory): State<Directory>,
    Path((domain, hash)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    key(&directory, &domain, &hash, query.as_deref()).await
}

async fn direct_policy(State(directory): State<Directory>, headers: HeaderMap) -> Response {
    match host(&headers) {
        Some(domain) => policy(&directory, &domain),
        None => not_found(),
    }
}

async fn advanced_policy(
    State(directory): State<Directory>,
    Path(domain): Path<String>,
) -> Response {
    policy(&directory, &domain)
}

/// An empty policy file (the draft's policy flags): the directory exists; no submission
/// address, no protocol version claimed.
fn policy(directory: &Directory, domain: &str) -> Response {
    if !directory.serves(domain) {
        return not_found();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            CORS,
        ],
        "",
    )
        .into_response()
}

async fn key(directory: &Directory, domain: &str, hash: &str, query: Option<&str>) -> Response {
    if !directory.serves(domain) || !is_hash(hash) {
        return not_found();
    }
    let local = query.and_then(local_part);
    let found = directory
        .store
        .key_by_wkd(domain, hash, local.as_deref())
        .await;
    match found {
        Ok(Some(key)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                CORS,
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            key.cert,
        )
            .into_response(),
        Ok(None) => not_found(),
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for a WKD request."
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [CORS],
                "Try again later.\n",
            )
                .into_response()
        }
    }
}

/// A WKD hash: 32 z-base-32 characters.
fn is_hash(hash: &str) -> bool {
    hash.len() == 32
        && hash
            .bytes()
            .all(|b| b"ybndrfg8ejkmcpqxot1uwisza345h769".contains(&b))
}

/// The `l=` parameter of a query, percent-decoded (§3.1: the local part
/// as the user wrote it); `None` when absent or not UTF-8.
fn local_part(query: &str) -> Option<String> {
    let value = query.split('&').find_map(|pair| pair.strip_prefix("l="))?;
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.bytes();
    while let Some(b) = rest.next() {
        match b {
            b'%' => {
                let hex = [rest.next()?, rest.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => bytes.push(b' '),
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_part_is_read_from_the_query() {
        assert_eq!(local_part("l=Joe.Doe").as_deref(), Some("Joe.Doe"));
        assert_eq!(local_part("x=1&l=j%C3%B6rg").as_deref(), Some("jörg"));
        assert_eq!(local_part("x=1"), None);
        assert_eq!(local_part("l=%zz"), None);
        assert_eq!(local_part("l=%c3"), None);
    }

    #[test]
    fn hashes_are_z_base_32() {
        assert!(is_hash("iy9q119eutrkn8s1mk4r39qejnbu3n5q"));
        assert!(!is_hash("iy9q119eutrkn8s1mk4r39qejnbu3n5"));
        assert!(!is_hash("IY9Q119EUTRKN8S1MK4R39QEJNBU3N5Q"));
        assert!(!is_hash("../../../../../../../etc/passwd00"));
    }

    async fn answer(
        directory: &Directory,
        domain: &str,
        hash: &str,
        query: Option<&str>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = key(directory, domain, hash, query).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        (parts.status, parts.headers, body.to_vec())
    }

    #[tokio::test]
    async fn a_published_key_is_served_and_every_other_address_alike_is_not() {
        let (store, _dir) = crate::store::scratch().await;
        let alice = jid::BareJid::new("alice@example.org").expect("jid");
        let published = crate::keys::Published {
            fingerprint: "AAAA".into(),
            cert: b"binary key".to_vec(),
            revoked: false,
        };
        store
            .put_key(&alice, &published, crate::store::KeySource::Cli)
            .await
            .expect("put");
        let directory = Directory {
            store,
            domains: vec!["example.org".to_owned()].into(),
        };
        let hash = crate::keys::wkd::hash("alice").expect("hash");
        let (status, headers, body) =
            answer(&directory, "example.org", &hash, Some("l=alice")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"binary key");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
        assert_eq!(
            answer(&directory, "EXAMPLE.org", &hash, None).await.0,
            StatusCode::OK
        );

        let unknown = answer(
            &directory,
            "example.org",
            &crate::keys::wkd::hash("bob").expect("hash"),
            Some("l=bob"),
        )
        .await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND);
        assert_eq!(unknown.1[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        for other in [
            answer(&directory, "example.org", &hash, Some("l=bob")).await,
            answer(&directory, "example.net", &hash, Some("l=alice")).await,
            answer(&directory, "example.org", "not-a-hash", None).await,
        ] {
            assert_eq!((other.0, &other.2), (unknown.0, &unknown.2));
        }
        assert_eq!(policy(&directory, "example.org").status(), StatusCode::OK);
        assert_eq!(
            policy(&directory, "example.net").status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_direct_form_is_for_the_host() {
        let mut headers = HeaderMap::new();
        assert_eq!(host(&headers), None);
        headers.insert(header::HOST, HeaderValue::from_static("Example.ORG:8443"));
        assert_eq!(host(&headers).as_deref(), Some("example.org"));
        headers.insert(header::HOST, HeaderValue::from_static("example.org."));
        assert_eq!(host(&headers).as_deref(), Some("example.org"));
    }
}
