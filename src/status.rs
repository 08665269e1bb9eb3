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
