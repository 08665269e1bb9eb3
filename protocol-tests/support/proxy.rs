//! A loopback TCP proxy that injects network faults between the relay and a
//! master: reset every connection, stall silently (bytes stop flowing, sockets
//! stay open), or slow the link down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Hold every byte; connections stay open and silent.
    Stall = 1,
}

struct Shared {
    mode: AtomicU8,
    /// Delay added before forwarding each chunk, in microseconds.
    delay_us: AtomicU64,
    reset: broadcast::Sender<()>,
    connections: AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let (reset, _) = broadcast::channel(4);
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass as u8),
            delay_us: AtomicU64::new(0),
            reset,
            connections: AtomicU64::new(0),
        });
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream).into();
        let s = shared.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Without this, Nagle plus delayed ACKs add ~40 ms per round trip.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    s.connections.fetch_add(1, Ordering::Relaxed);
                    let mut reset = s.reset.subscribe();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, s.clone()) => {}
                        _ = pump(sr, cw, s.clone()) => {}
                        _ = reset.recv() => {}
                    }
                    // Dropping both halves closes the sockets; with SO_LINGER 0 it
                    // would be an RST, a plain close is what a dying peer often does.
                });
            }
        });
        Proxy {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::SeqCst);
    }

    /// Cut every open connection.
    pub fn reset_all(&self) {
        let _ = self.shared.reset.send(());
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    s: Arc<Shared>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A stalled link holds the data until the mode changes (or forever).
        while s.mode.load(Ordering::SeqCst) == Mode::Stall as u8 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delay = s.delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
