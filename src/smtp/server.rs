//! The inbound SMTP listeners: connection limits (in all and per client
//! address), STARTTLS material, one task and one tracing span per
//! connection.

use std::io::BufReader;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use super::reply::{self, Reply};
use super::session::{serve, Reception};
use crate::config::TlsFiles;

/// Loads the certificate chain and key for STARTTLS.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(&files.cert)
            .with_context(|| format!("Opening {}", files.cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("Reading certificates from {}", files.cert.display()))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(&files.key)
            .with_context(|| format!("Opening {}", files.key.display()))?,
    ))
    .with_context(|| format!("Reading the key from {}", files.key.display()))?
    .with_context(|| format!("No private key in {}", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds every listen address (so that a taken port fails at start-up).
pub async fn bind(reception: &Reception) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for addr in &reception.config.get().inbound.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("Listening for SMTP on {addr}"))?;
        info!(addr = %listener.local_addr().unwrap_or(*addr), "SMTP listening.");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// One connection counted against its client address until dropped.
struct ClientSlot {
    reception: Arc<Reception>,
    ip: IpAddr,
}

impl ClientSlot {
    /// A slot for a connection from `ip`: `None` when all are taken,
    /// `Some(None)` when the limit does not apply to `ip`.
    fn take(reception: &Arc<Reception>, ip: IpAddr) -> Option<Option<ClientSlot>> {
        let config = reception.config.get();
        if config.limits.client_exceptions.contains(ip) {
            return Some(None);
        }
        let mut open = reception.client_connections.lock().ok()?;
        open.set_max(config.limits.client_connections);
        open.acquire(&ip).then(|| {
            Some(ClientSlot {
                reception: reception.clone(),
                ip,
            })
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.reception.client_connections.lock() {
            open.release(&self.ip);
        }
    }
}

/// Refuses a connection with a 421 reply, without blocking the listener.
fn refuse(tracker: &TaskTracker, mut stream: tokio::net::TcpStream, reply: Reply) {
    tracker.spawn(async move {
        let _ = stream.write_all(&reply.to_bytes()).await;
        let _ = stream.shutdown().await;
    });
}

/// Accepts connections until shutdown; sessions run under `tracker`.
/// Each session offers STARTTLS with the certificate in force when it
/// opens (a reload replaces it).
pub async fn run(
    listener: TcpListener,
    reception: Arc<Reception>,
    tls: watch::Receiver<Option<TlsAcceptor>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(
        reception.config.get().inbound.max_connections,
    ));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off a little.
                warn!(error = %error, "Accepting an SMTP connection failed.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            info!(peer = %peer, "Too many SMTP connections; refusing one.");
            refuse(&tracker, stream, reply::TOO_MANY_CONNECTIONS);
            continue;
        };
        let Some(slot) = ClientSlot::take(&reception, peer.ip()) else {
            info!(peer = %peer, "Too many SMTP connections from one address; refusing one.");
            refuse(&tracker, stream, reply::TOO_MANY_FROM_CLIENT);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let span = tracing::info_span!("smtp", peer = %peer);
        let reception = reception.clone();
        let tls = tls.borrow().clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                serve(stream, peer, reception, tls, shutdown).await;
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
}
