//! One client connection: handshake, then commands until quit, error or shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::status::Replicas;

use super::Shared;
use super::exec::{self, Reply};
use super::handshake::{HandshakeError, Session, handshake};
use super::wire::{Io, Packets, SqlError, WireError, eof_packet, ok_packet, write_result_set};

/// Like MySQL's connect_timeout: a client that stalls in the handshake is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_SET_OPTION: u8 = 0x1b;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// Decrements Threads_connected however the connection ends.
struct Connected<'a>(&'a Shared);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0
            .stats
            .threads_connected
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn run(
    stream: Box<dyn Io>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    replicas: Arc<dyn Replicas>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let now = stats.threads_connected.fetch_add(1, Ordering::Relaxed) + 1;
    stats.max_used_connections.fetch_max(now, Ordering::Relaxed);
    let _connected = Connected(&shared);
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);

    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, peer, id, &shared));
    let (mut packets, mut session) = match handshake.await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            stats.aborted_connects.fetch_add(1, Ordering::Relaxed);
            if !matches!(e, HandshakeError::Refused(_)) {
                debug!(%peer, error = %e, "admin handshake failed");
            }
            return;
        }
        Err(_) => {
            stats.aborted_connects.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "admin handshake timed out");
            return;
        }
    };

    loop {
        packets.reset_seq();
        let packet = tokio::select! {
            p = packets.read() => p,
            _ = shutdown.changed() => break,
        };
        let packet = match packet {
            Ok(p) => p,
            Err(WireError::TooLarge(_)) => {
                let err = SqlError::new(
                    1153,
                    "08S01",
                    "Got a packet bigger than 'max_allowed_packet' bytes",
                );
                packets.write(&err.packet());
                // The connection ends either way.
                let _ = packets.flush().await;
                break;
            }
            Err(WireError::Closed) => break,
            Err(e) => {
                debug!(%peer, error = %e, "admin connection lost");
                break;
            }
        };
        match command(
            &packet,
            &mut packets,
            &mut session,
            &shared,
            replicas.as_ref(),
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                debug!(%peer, error = %e, "admin connection lost");
                break;
            }
        }
    }
    packets.shutdown().await;
}

/// Answers one command; `Ok(false)` ends the connection.
async fn command(
    packet: &[u8],
    packets: &mut Packets,
    session: &mut Session,
    shared: &Shared,
    replicas: &dyn Replicas,
) -> Result<bool, WireError> {
    let Some((&cmd, body)) = packet.split_first() else {
        packets.write(&SqlError::new(1047, "08S01", "Unknown command").packet());
        packets.flush().await?;
        return Ok(true);
    };
    match cmd {
        COM_QUIT => return Ok(false),
        COM_QUERY => {
            shared.stats.questions.fetch_add(1, Ordering::Relaxed);
            let query = String::from_utf8_lossy(body);
            debug!(connection = session.connection_id, query = %loggable(&query), "admin query");
            match exec::execute(&query, session, shared, replicas).await {
                Reply::Ok => packets.write(&ok_packet(0)),
                Reply::Rows(rs) => write_result_set(packets, session.caps, &rs),
                Reply::Err(e) => packets.write(&e.packet()),
            }
        }
        COM_INIT_DB => {
            session.db = Some(String::from_utf8_lossy(body).into_owned());
            packets.write(&ok_packet(0));
        }
        COM_PING | COM_RESET_CONNECTION => packets.write(&ok_packet(0)),
        // Multi-statement on/off: MySQL answers with an EOF packet.
        COM_SET_OPTION => packets.write(&eof_packet()),
        // No response by protocol (and no statement was ever prepared).
        COM_STMT_CLOSE => return Ok(true),
        other => {
            warn!(
                command = other,
                "admin endpoint: unsupported protocol command"
            );
            let err = SqlError::new(
                1235,
                "42000",
                "This version of MySQL doesn't yet support 'this protocol command' (gtid-relay \
                 admin endpoint: text protocol only, no prepared statements)",
            );
            packets.write(&err.packet());
        }
    }
    packets.flush().await?;
    Ok(true)
}

/// A statement as it may appear in logs: ones that could carry a password are redacted.
fn loggable(query: &str) -> &str {
    let lower = query.to_ascii_lowercase();
    if lower.contains("password") || lower.contains("identified") {
        "<redacted: may contain a password>"
    } else {
        query
    }
}
