//! Prometheus metrics on `GET /metrics` (`[metrics] listen`).
//!
//! Everything is read at scrape time from the channels' snapshots
//! ([`Replicas::channel_metrics`]) and from `/proc/self`, so the relay's hot
//! path keeps no metric objects of its own. The exposition is the OpenMetrics
//! text format from prometheus-client, which Prometheus scrapes natively.
//!
//! The HTTP side is deliberately tiny: one request per connection, `GET
//! /metrics` only, bounded request size, read deadline and connection count.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::status::{APPLY_LATENCY_BOUNDS, ChannelMetrics, ChannelStatus, IoRunning, Replicas};

/// Scrapers open few connections; more than this at once is a misbehaving client.
const MAX_CONNECTIONS: usize = 16;
/// A request head larger than this is not a scrape.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("accepting a connection: {0}")]
    Accept(#[source] std::io::Error),
}

/// The exposition of everything the relay exports.
pub fn render(replicas: Arc<dyn Replicas>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RelayCollector { replicas }));
    registry.register_collector(Box::new(ProcessCollector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A bound `/metrics` listener, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    replicas: Arc<dyn Replicas>,
}

pub async fn bind(
    addr: SocketAddr,
    replicas: Arc<dyn Replicas>,
) -> Result<MetricsServer, MetricsError> {
    let bind_error = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    Ok(MetricsServer {
        listener,
        local_addr,
        replicas,
    })
}

impl MetricsServer {
    /// The bound address (the port chosen when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answer scrapes until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), MetricsError> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(x) => x,
                    // Out of fds and the like: back off instead of spinning.
                    Err(e) if is_transient_accept_error(&e) => {
                        tracing::warn!("metrics endpoint: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(MetricsError::Accept(e)),
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "metrics endpoint: too many connections; dropping one");
                continue;
            };
            let replicas = self.replicas.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, replicas).await {
                    tracing::debug!(%peer, "metrics request: {e}");
                }
                drop(slot);
            });
        }
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Read one request head and answer it; the connection then closes.
async fn answer(mut stream: TcpStream, replicas: Arc<dyn Replicas>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST_BYTES {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<bool, std::io::Error>(true)
    })
    .await;
    let complete = match read {
        Ok(r) => r?,
        Err(_) => false,
    };
    let response = if complete {
        respond(&head, replicas)
    } else {
        reply(400, "text/plain", "bad request\n")
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

fn respond(head: &[u8], replicas: Arc<dyn Replicas>) -> Vec<u8> {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => match render(replicas) {
            Ok(body) => reply(200, CONTENT_TYPE, &body),
            Err(_) => reply(500, "text/plain", "cannot encode the metrics\n"),
        },
        (Some(b"GET"), Some(_)) => reply(404, "text/plain", "try /metrics\n"),
        _ => reply(405, "text/plain", "only GET /metrics\n"),
    }
}

fn reply(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

type Labels = Vec<(&'static str, String)>;

fn channel_labels(c: &ChannelStatus) -> Labels {
    vec![
        ("channel", c.name.clone()),
        ("source", c.source_name.clone()),
        ("target", c.target_name.clone()),
    ]
}

fn with(mut labels: Labels, key: &'static str, value: impl Into<String>) -> Labels {
    labels.push((key, value.into()));
    labels
}

/// One counter family: `name` gets `_total` (and the unit) from the encoder.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: &[(Labels, u64)],
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in samples {
        family
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: &[(Labels, f64)],
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in samples {
        family.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Per-channel metrics from one snapshot of every channel.
struct RelayCollector {
    replicas: Arc<dyn Replicas>,
}

impl fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayCollector")
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.replicas.channel_metrics();
        let each = |f: &dyn Fn(&ChannelStatus, &ChannelMetrics) -> u64| -> Vec<(Labels, u64)> {
            snapshot
                .iter()
                .map(|(c, m)| (channel_labels(c), f(c, m)))
                .collect()
        };
        let each_gauge = |f: &dyn Fn(&ChannelStatus, &ChannelMetrics) -> f64| {
            snapshot
                .iter()
                .map(|(c, m)| (channel_labels(c), f(c, m)))
                .collect::<Vec<_>>()
        };
        counters(
            &mut enc,
            "gtid_relay_transactions_received",
            "Transactions (GTIDs) received from the source, before filtering.",
            None,
            &each(&|c, _| c.transactions_received),
        )?;
        counters(
            &mut enc,
            "gtid_relay_transactions_applied",
            "Transactions committed on the target under their original GTID.",
            None,
            &each(&|c, _| c.transactions_applied),
        )?;
        let mut skipped = Vec::new();
        for (c, _) in &snapshot {
            let l = channel_labels(c);
            skipped.push((
                with(l.clone(), "reason", "loop"),
                c.transactions_skipped_loop,
            ));
            skipped.push((
                with(l.clone(), "reason", "applied"),
                c.transactions_skipped_applied,
            ));
            // Routes are not configurable yet, so nothing is filtered; the series
            // exists so that dashboards and alerts need no change when they are.
            skipped.push((with(l, "reason", "filtered"), 0));
        }
        counters(
            &mut enc,
            "gtid_relay_transactions_skipped",
            "Transactions not applied: loop (originated on the target), applied (the target already had the GTID), filtered (excluded by routes).",
            None,
            &skipped,
        )?;
        counters(
            &mut enc,
            "gtid_relay_events_received",
            "Binlog events received from the source, heartbeats included.",
            None,
            &each(&|c, _| c.events_received),
        )?;
        counters(
            &mut enc,
            "gtid_relay_received",
            "Binlog bytes received from the source.",
            Some(&Unit::Bytes),
            &each(&|c, _| c.bytes_received),
        )?;
        let mut family = enc.encode_descriptor(
            "gtid_relay_apply_duration",
            "Time from a transaction's first event reaching the applier to its commit on the target.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (c, m) in &snapshot {
            let h = &m.apply_latency;
            let buckets: Vec<(f64, u64)> = APPLY_LATENCY_BOUNDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.counts.iter().copied())
                .collect();
            let labels = channel_labels(c);
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        let lag: Vec<(Labels, f64)> = snapshot
            .iter()
            .filter_map(|(c, _)| {
                c.seconds_behind_source
                    .map(|s| (channel_labels(c), s as f64))
            })
            .collect();
        gauges(
            &mut enc,
            "gtid_relay_lag",
            "Seconds_Behind_Source of the channel: now minus the original commit time of the transaction being applied, 0 when caught up; absent while the applier is not running.",
            Some(&Unit::Seconds),
            &lag,
        )?;
        gauges(
            &mut enc,
            "gtid_relay_io_running",
            "1 when the channel's reader streams from the source (Replica_IO_Running=Yes).",
            None,
            &each_gauge(&|c, _| flag(c.io_running == IoRunning::Yes)),
        )?;
        gauges(
            &mut enc,
            "gtid_relay_io_connecting",
            "1 while the channel's reader is connecting or reconnecting (Replica_IO_Running=Connecting).",
            None,
            &each_gauge(&|c, _| flag(c.io_running == IoRunning::Connecting)),
        )?;
        gauges(
            &mut enc,
            "gtid_relay_sql_running",
            "1 when the channel's applier runs (Replica_SQL_Running=Yes).",
            None,
            &each_gauge(&|c, _| flag(c.sql_running)),
        )?;
        counters(
            &mut enc,
            "gtid_relay_reconnects",
            "Sessions of the channel that ended in an error and were retried.",
            None,
            &each(&|c, _| c.reconnects),
        )?;
        let conflicts: Vec<(Labels, u64)> = snapshot
            .iter()
            .flat_map(|(c, m)| {
                let l = channel_labels(c);
                [
                    (
                        with(l.clone(), "decision", "incoming-wins"),
                        m.conflicts.incoming_wins,
                    ),
                    (with(l, "decision", "local-wins"), m.conflicts.local_wins),
                ]
            })
            .collect();
        counters(
            &mut enc,
            "gtid_relay_conflicts",
            "Row conflicts decided by last-writer-wins in committed transactions: incoming-wins (the incoming change was newer and applied), local-wins (the target's version was kept). Always 0 in strict and idempotent modes.",
            None,
            &conflicts,
        )?;
        let errors: Vec<(Labels, u64)> = snapshot
            .iter()
            .flat_map(|(c, m)| {
                m.errors.iter().map(|((thread, errno), n)| {
                    let l = with(channel_labels(c), "thread", thread.as_str());
                    (with(l, "errno", errno.to_string()), *n)
                })
            })
            .collect();
        counters(
            &mut enc,
            "gtid_relay_errors",
            "Errors that ended a session of the channel, by thread (io: source, sql: target) and MySQL error number.",
            None,
            &errors,
        )?;
        gauges(
            &mut enc,
            "gtid_relay_queue_depth",
            "Steps (groups of events) waiting between the channel's reader and applier.",
            None,
            &each_gauge(&|_, m| m.queue_depth as f64),
        )?;
        Ok(())
    }
}

/// The standard `process_*` metrics, read from /proc/self.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second in /proc/<pid>/stat: the kernel's USER_HZ, which is
/// 100 on every architecture Linux supports today.
const USER_HZ: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let one = |v: Option<f64>| v.map(|v| vec![(Vec::new(), v)]).unwrap_or_default();
        gauges(
            &mut enc,
            "process_resident_memory",
            "Resident set size.",
            Some(&Unit::Bytes),
            &one(rss_bytes()),
        )?;
        {
            let mut cpu = enc.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            if let Some(secs) = cpu_seconds() {
                cpu.encode_counter::<NoLabelSet, _, u64>(&secs, None)?;
            }
        }
        gauges(
            &mut enc,
            "process_open_fds",
            "Open file descriptors.",
            None,
            &one(open_fds()),
        )?;
        Ok(())
    }
}

fn rss_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ") ".
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

fn open_fds() -> Option<f64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read() {
        assert!(rss_bytes().is_some_and(|b| b > 0.0));
        assert!(cpu_seconds().is_some());
        assert!(open_fds().is_some_and(|n| n >= 3.0));
    }
}
