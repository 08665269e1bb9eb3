//! The admin endpoint: a MySQL-protocol server answering `SHOW REPLICA STATUS`,
//! `START/STOP REPLICA`, the variables and performance_schema queries tools send, over
//! plaintext or TLS, with caching_sha2_password logins. See docs/admin-endpoint.md.

mod auth;
pub(crate) mod clock;
mod conn;
mod exec;
mod handshake;
mod perf_schema;
mod replica_status;
pub(crate) mod sql;
pub(crate) mod tls;
mod variables;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::status::Replicas;

pub use auth::{ParsePasswordHashError, PasswordHash, User};
pub use tls::TlsError;

/// What the endpoint reports as `@@version` unless configured otherwise.
pub const DEFAULT_VERSION: &str = "9.7.0-gtid-relay";

/// Server certificate and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub users: Vec<User>,
    pub tls: Option<TlsFiles>,
    /// Refuse plaintext clients with MySQL's error 3159.
    pub require_secure_transport: bool,
    pub server_id: u32,
    pub server_uuid: String,
    pub hostname: String,
    /// `@@version` and the greeting's server version.
    pub version: String,
    /// Connections beyond this get MySQL's error 1040 (Too many connections).
    pub max_connections: usize,
    /// Also answer the `SLAVE` spellings 9.7 removed (`SHOW SLAVE STATUS` with legacy
    /// column names, `START/STOP SLAVE`, `SHOW SLAVE HOSTS`). Off: they are syntax errors
    /// as on 9.7, which makes tools that try `SHOW SLAVE STATUS` before `SHOW REPLICA
    /// STATUS` (mysqld_exporter 0.19) use the 9.7 column names.
    pub slave_syntax: bool,
}

impl Settings {
    /// Defaults for everything but the address and the accounts.
    pub fn new(listen: SocketAddr, users: Vec<User>) -> Settings {
        Settings {
            listen,
            users,
            tls: None,
            require_secure_transport: false,
            server_id: 0,
            server_uuid: String::new(),
            hostname: "localhost".to_string(),
            version: DEFAULT_VERSION.to_string(),
            max_connections: 151,
            slave_syntax: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin endpoint: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin endpoint TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("admin endpoint: require_secure_transport is on but no TLS certificate is configured")]
    SecureTransportWithoutTls,
}

/// Counters behind SHOW STATUS.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    aborted_connects: AtomicU64,
    threads_connected: AtomicU64,
    max_used_connections: AtomicU64,
    questions: AtomicU64,
}

/// What every connection of one endpoint shares.
struct Shared {
    settings: Settings,
    tls: Option<TlsAcceptor>,
    port: u16,
    started: Instant,
    next_connection_id: AtomicU32,
    stats: Stats,
}

/// A bound, not yet serving endpoint: lets the caller learn the port first.
pub struct Listener {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Checks the settings, loads the TLS files and binds.
pub async fn bind(settings: Settings) -> Result<Listener, AdminError> {
    let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    if settings.require_secure_transport && tls.is_none() {
        return Err(AdminError::SecureTransportWithoutTls);
    }
    let addr = settings.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?
        .port();
    Ok(Listener {
        listener,
        shared: Arc::new(Shared {
            settings,
            tls,
            port,
            started: Instant::now(),
            next_connection_id: AtomicU32::new(1),
            stats: Stats::default(),
        }),
    })
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(
    settings: Settings,
    replicas: Arc<dyn Replicas>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    bind(settings).await?.serve(replicas, shutdown).await
}

/// How long open connections get to finish after shutdown before they are cut.
const DRAIN: Duration = Duration::from_secs(5);

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        // Known to work: bind() asked for it already.
        self.listener
            .local_addr()
            .unwrap_or(self.shared.settings.listen)
    }

    /// Accepts until `shutdown` resolves, one task per connection, at most
    /// `max_connections` at once; then tells connections to close and waits for them.
    pub async fn serve(
        self,
        replicas: Arc<dyn Replicas>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AdminError> {
        let Listener { listener, shared } = self;
        info!(addr = %self_addr(&listener), tls = shared.tls.is_some(), "admin endpoint listening");
        let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        tokio::pin!(shutdown);
        loop {
            // Reap finished connections so the set stays as small as the live ones.
            while tasks.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // e.g. out of file descriptors: wait, don't spin.
                        warn!(error = %e, "admin endpoint: accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            backoff = Duration::from_millis(10);
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                too_many_connections(&stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (shared, replicas, stop) = (shared.clone(), replicas.clone(), stop_rx.clone());
            tasks.spawn(async move {
                conn::run(Box::new(stream), peer, shared, replicas, stop).await;
                drop(permit);
            });
        }
        info!("admin endpoint: shutting down");
        drop(listener);
        let _ = stop_tx.send(true);
        if tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tasks.abort_all();
        }
        Ok(())
    }
}

fn self_addr(l: &TcpListener) -> String {
    l.local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}

/// MySQL's answer to one connection too many: error 1040 as the first packet.
fn too_many_connections(stream: &TcpStream) {
    let err = wire::SqlError::new(1040, "08004", "Too many connections");
    let payload = err.packet();
    let mut packet = payload.len().to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&payload);
    // Non-blocking and best effort: a few bytes into an empty socket buffer.
    let _ = stream.try_write(&packet);
    warn!("admin endpoint: connection refused, max_connections reached");
}
