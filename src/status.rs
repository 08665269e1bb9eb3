//! What a channel reports about itself: the snapshot behind `SHOW REPLICA STATUS`,
//! the performance_schema tables and the metrics, and the control surface behind
//! `START/STOP REPLICA`.

use std::time::SystemTime;

use futures_util::future::BoxFuture;

/// MySQL's three-valued `Replica_IO_Running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRunning {
    Yes,
    No,
    Connecting,
}

impl IoRunning {
    pub fn as_str(self) -> &'static str {
        match self {
            IoRunning::Yes => "Yes",
            IoRunning::No => "No",
            IoRunning::Connecting => "Connecting",
        }
    }
}

/// A `Last_IO_Error` / `Last_SQL_Error` with its errno and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub errno: u32,
    pub message: String,
    pub at: SystemTime,
}

/// TLS settings of the channel's source connection, as MySQL reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTls {
    /// `Source_SSL_Allowed`: "Yes", "No" or "Ignored".
    pub allowed: &'static str,
    pub ca_file: String,
    pub cert: String,
    pub key: String,
    pub verify_server_cert: bool,
}

/// A point-in-time view of one channel (source S -> target T).
#[derive(Debug, Clone)]
pub struct ChannelStatus {
    /// `Channel_Name`, e.g. "m1->m2".
    pub name: String,
    pub source_name: String,
    pub target_name: String,
    pub source_host: String,
    pub source_port: u16,
    pub source_user: String,
    /// Known once connected.
    pub source_uuid: Option<String>,
    pub source_server_id: Option<u32>,
    pub target_uuid: Option<String>,
    /// The server_id the relay registered with on the source for this channel.
    pub relay_server_id: u32,
    pub io_running: IoRunning,
    /// `Replica_IO_State`, MySQL's wording ("Waiting for source to send event", ...).
    pub io_state: String,
    pub sql_running: bool,
    /// `Replica_SQL_Running_State`.
    pub sql_state: String,
    pub last_io_error: Option<LastError>,
    pub last_sql_error: Option<LastError>,
    /// GTIDs received from the source since the channel started.
    pub retrieved_gtid_set: String,
    /// The target's `gtid_executed` as last read or advanced by this channel.
    pub executed_gtid_set: String,
    /// `Seconds_Behind_Source`: None when the applier is not running.
    pub seconds_behind_source: Option<u64>,
    /// Source binlog file and position of the last event received.
    pub source_log_file: String,
    pub read_source_log_pos: u64,
    pub connect_retry_secs: u32,
    pub retry_count: u64,
    pub heartbeat_period_secs: f64,
    pub tls: SourceTls,
    pub conflict_mode: &'static str,
    /// Counters since the relay started.
    pub transactions_received: u64,
    pub transactions_applied: u64,
    pub transactions_skipped_loop: u64,
    pub transactions_skipped_applied: u64,
    pub events_received: u64,
    pub bytes_received: u64,
    pub reconnects: u64,
    /// Original commit timestamp (µs since the epoch) of the last applied transaction.
    pub last_applied_original_commit_us: Option<u64>,
    /// GTID of the last applied transaction.
    pub last_applied_gtid: Option<String>,
    /// When the last transaction was applied.
    pub last_applied_at: Option<SystemTime>,
}

/// Upper bounds (seconds) of the apply latency histogram's buckets: from a
/// sub-millisecond row change to a long DDL.
pub const APPLY_LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Seconds per applied transaction, from its Begin to its commit on the target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Per bucket of [`APPLY_LATENCY_BOUNDS`] (not cumulative), plus the overflow bucket.
    pub counts: [u64; APPLY_LATENCY_BOUNDS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let bucket = APPLY_LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(APPLY_LATENCY_BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// The thread of a channel an error stopped or interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorThread {
    Io,
    Sql,
}

impl ErrorThread {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorThread::Io => "io",
            ErrorThread::Sql => "sql",
        }
    }
}

/// Row conflicts that last-writer-wins decided, in committed transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConflictCounts {
    /// The incoming change was newer and was applied.
    pub incoming_wins: u64,
    /// The target's version was newer and was kept.
    pub local_wins: u64,
}

impl ConflictCounts {
    pub fn add(&mut self, other: ConflictCounts) {
        self.incoming_wins += other.incoming_wins;
        self.local_wins += other.local_wins;
    }
}

/// What a channel reports only to the metrics exporter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelMetrics {
    pub apply_latency: LatencyHistogram,
    pub conflicts: ConflictCounts,
    /// Errors since the relay started, by thread and MySQL error number.
    pub errors: std::collections::BTreeMap<(ErrorThread, u32), u64>,
    /// Steps (events grouped for the applier) queued between reader and applier.
    pub queue_depth: u64,
}

impl ChannelMetrics {
    pub fn record_error(&mut self, thread: ErrorThread, errno: u32) {
        *self.errors.entry((thread, errno)).or_default() += 1;
    }
}

/// A channel's metrics state, kept in its status so that its hot path changes
/// little; `Q` is what its queue between reader and applier carries.
#[derive(Debug)]
pub struct MetricsState<Q> {
    pub exported: ChannelMetrics,
    /// The current session's queue, to read its depth at scrape time.
    pub queue: Option<tokio::sync::mpsc::WeakSender<Q>>,
}

impl<Q> Default for MetricsState<Q> {
    fn default() -> Self {
        MetricsState {
            exported: ChannelMetrics::default(),
            queue: None,
        }
    }
}

impl<Q> MetricsState<Q> {
    /// A transaction whose apply began at `started` is done: committed
    /// (`applied`) or skipped by the target, with the conflicts it decided.
    pub fn finished(
        &mut self,
        started: std::time::Instant,
        applied: bool,
        conflicts: ConflictCounts,
    ) {
        if applied {
            self.exported.apply_latency.observe(started.elapsed());
        }
        self.exported.conflicts.add(conflicts);
    }

    pub fn snapshot(&self) -> ChannelMetrics {
        let queue_depth = self
            .queue
            .as_ref()
            .and_then(|q| q.upgrade())
            .map_or(0, |tx| {
                u64::try_from(tx.max_capacity() - tx.capacity()).unwrap_or(u64::MAX)
            });
        ChannelMetrics {
            queue_depth,
            ..self.exported.clone()
        }
    }
}

/// Which half of a channel `START/STOP REPLICA` addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Both,
    Io,
    Sql,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// MySQL error 3074 (ER_REPLICA_CHANNEL_DOES_NOT_EXIST).
    #[error("Replication channel '{0}' does not exist.")]
    NoSuchChannel(String),
}

/// The relay as seen from the admin endpoint and the metrics exporter.
pub trait Replicas: Send + Sync + 'static {
    /// One snapshot per channel, in configuration order.
    fn channels(&self) -> Vec<ChannelStatus>;
    /// [`Replicas::channels`] with what only the metrics exporter needs.
    fn channel_metrics(&self) -> Vec<(ChannelStatus, ChannelMetrics)> {
        self.channels()
            .into_iter()
            .map(|c| (c, ChannelMetrics::default()))
            .collect()
    }
    /// `START REPLICA [IO_THREAD|SQL_THREAD] [FOR CHANNEL c]`; None means every channel.
    fn start(&self, channel: Option<&str>, threads: Threads) -> Result<(), ControlError>;
    /// `STOP REPLICA ...`; resolves once the addressed threads have stopped (an
    /// applier finishes or rolls back the transaction it is in first).
    fn stop(
        &self,
        channel: Option<&str>,
        threads: Threads,
    ) -> BoxFuture<'static, Result<(), ControlError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_secs(100));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1, "a bound is inclusive (le)");
        assert_eq!(h.counts[APPLY_LATENCY_BOUNDS.len()], 1, "overflow");
        assert_eq!(h.count, 3);
        assert!((h.sum - 100.0013).abs() < 1e-9);
    }

    #[test]
    fn errors_count_by_thread_and_errno() {
        let mut m = ChannelMetrics::default();
        m.record_error(ErrorThread::Io, 2003);
        m.record_error(ErrorThread::Io, 2003);
        m.record_error(ErrorThread::Sql, 2003);
        assert_eq!(m.errors[&(ErrorThread::Io, 2003)], 2);
        assert_eq!(m.errors[&(ErrorThread::Sql, 2003)], 1);
    }
}
