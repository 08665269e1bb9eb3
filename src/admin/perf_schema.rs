//! The performance_schema replication tables monitoring tools read (mysqld_exporter's
//! `perf_schema.replication_*` collectors), one row per channel, MySQL 9.7's columns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status::{ChannelStatus, IoRunning, LastError};

use super::clock::datetime_micros;
use super::sql::PerfTable;
use super::wire::{Col, ColKind, ResultSet};

const CONNECTION_STATUS: &[(&str, ColKind)] = &[
    ("CHANNEL_NAME", ColKind::Text),
    ("GROUP_NAME", ColKind::Text),
    ("SOURCE_UUID", ColKind::Text),
    ("THREAD_ID", ColKind::Int),
    ("SERVICE_STATE", ColKind::Text),
    ("COUNT_RECEIVED_HEARTBEATS", ColKind::Int),
    ("LAST_HEARTBEAT_TIMESTAMP", ColKind::Text),
    ("RECEIVED_TRANSACTION_SET", ColKind::Text),
    ("LAST_ERROR_NUMBER", ColKind::Int),
    ("LAST_ERROR_MESSAGE", ColKind::Text),
    ("LAST_ERROR_TIMESTAMP", ColKind::Text),
    ("LAST_QUEUED_TRANSACTION", ColKind::Text),
    (
        "LAST_QUEUED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "LAST_QUEUED_TRANSACTION_IMMEDIATE_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "LAST_QUEUED_TRANSACTION_START_QUEUE_TIMESTAMP",
        ColKind::Text,
    ),
    ("LAST_QUEUED_TRANSACTION_END_QUEUE_TIMESTAMP", ColKind::Text),
    ("QUEUEING_TRANSACTION", ColKind::Text),
    (
        "QUEUEING_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "QUEUEING_TRANSACTION_IMMEDIATE_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    ("QUEUEING_TRANSACTION_START_QUEUE_TIMESTAMP", ColKind::Text),
];

const APPLIER_BY_WORKER: &[(&str, ColKind)] = &[
    ("CHANNEL_NAME", ColKind::Text),
    ("WORKER_ID", ColKind::Int),
    ("THREAD_ID", ColKind::Int),
    ("SERVICE_STATE", ColKind::Text),
    ("LAST_ERROR_NUMBER", ColKind::Int),
    ("LAST_ERROR_MESSAGE", ColKind::Text),
    ("LAST_ERROR_TIMESTAMP", ColKind::Text),
    ("LAST_APPLIED_TRANSACTION", ColKind::Text),
    (
        "LAST_APPLIED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "LAST_APPLIED_TRANSACTION_IMMEDIATE_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "LAST_APPLIED_TRANSACTION_START_APPLY_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "LAST_APPLIED_TRANSACTION_END_APPLY_TIMESTAMP",
        ColKind::Text,
    ),
    ("APPLYING_TRANSACTION", ColKind::Text),
    (
        "APPLYING_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    (
        "APPLYING_TRANSACTION_IMMEDIATE_COMMIT_TIMESTAMP",
        ColKind::Text,
    ),
    ("APPLYING_TRANSACTION_START_APPLY_TIMESTAMP", ColKind::Text),
    ("LAST_APPLIED_TRANSACTION_RETRIES_COUNT", ColKind::Int),
    (
        "LAST_APPLIED_TRANSACTION_LAST_TRANSIENT_ERROR_NUMBER",
        ColKind::Int,
    ),
    (
        "LAST_APPLIED_TRANSACTION_LAST_TRANSIENT_ERROR_MESSAGE",
        ColKind::Text,
    ),
    (
        "LAST_APPLIED_TRANSACTION_LAST_TRANSIENT_ERROR_TIMESTAMP",
        ColKind::Text,
    ),
    ("APPLYING_TRANSACTION_RETRIES_COUNT", ColKind::Int),
    (
        "APPLYING_TRANSACTION_LAST_TRANSIENT_ERROR_NUMBER",
        ColKind::Int,
    ),
    (
        "APPLYING_TRANSACTION_LAST_TRANSIENT_ERROR_MESSAGE",
        ColKind::Text,
    ),
    (
        "APPLYING_TRANSACTION_LAST_TRANSIENT_ERROR_TIMESTAMP",
        ColKind::Text,
    ),
];

type RowFn = fn(&ChannelStatus) -> Vec<Option<String>>;

/// The whole table; the caller projects the selected columns.
pub fn table(t: PerfTable, channels: &[ChannelStatus]) -> ResultSet {
    let (cols, row): (_, RowFn) = match t {
        PerfTable::ReplicationConnectionStatus => (CONNECTION_STATUS, connection_row),
        PerfTable::ReplicationApplierStatusByWorker => (APPLIER_BY_WORKER, worker_row),
    };
    ResultSet {
        columns: cols
            .iter()
            .map(|&(name, kind)| Col {
                name: name.to_string(),
                kind,
            })
            .collect(),
        rows: channels.iter().map(row).collect(),
    }
}

fn error_cols(e: &Option<LastError>) -> [Option<String>; 3] {
    [
        Some(e.as_ref().map_or(0, |e| e.errno).to_string()),
        Some(e.as_ref().map_or(String::new(), |e| e.message.clone())),
        Some(datetime_micros(e.as_ref().map(|e| e.at))),
    ]
}

fn zero_ts() -> Option<String> {
    Some(datetime_micros(None))
}

fn connection_row(c: &ChannelStatus) -> Vec<Option<String>> {
    let state = match c.io_running {
        IoRunning::Yes => "ON",
        IoRunning::No => "OFF",
        IoRunning::Connecting => "CONNECTING",
    };
    let mut row = vec![
        Some(c.name.clone()),
        Some(String::new()),
        Some(c.source_uuid.clone().unwrap_or_default()),
        None, // THREAD_ID: the relay's receivers are tasks, not server threads
        Some(state.to_string()),
        Some("0".to_string()),
        zero_ts(),
        Some(c.retrieved_gtid_set.clone()),
    ];
    row.extend(error_cols(&c.last_io_error));
    row.push(Some(String::new()));
    row.extend(std::iter::repeat_with(zero_ts).take(4));
    row.push(Some(String::new()));
    row.extend(std::iter::repeat_with(zero_ts).take(3));
    row
}

fn worker_row(c: &ChannelStatus) -> Vec<Option<String>> {
    let original = c
        .last_applied_original_commit_us
        .map(|us| UNIX_EPOCH + Duration::from_micros(us));
    let applied_at: Option<SystemTime> = c.last_applied_at;
    let mut row = vec![
        Some(c.name.clone()),
        Some("1".to_string()),
        None,
        Some(if c.sql_running { "ON" } else { "OFF" }.to_string()),
    ];
    row.extend(error_cols(&c.last_sql_error));
    row.extend([
        Some(c.last_applied_gtid.clone().unwrap_or_default()),
        Some(datetime_micros(original)),
        // The target commits it under the relay's session: immediate = when applied.
        Some(datetime_micros(applied_at)),
        Some(datetime_micros(applied_at)),
        Some(datetime_micros(applied_at)),
        Some(String::new()),
        zero_ts(),
        zero_ts(),
        zero_ts(),
        Some("0".to_string()),
        Some("0".to_string()),
        Some(String::new()),
        zero_ts(),
        Some("0".to_string()),
        Some("0".to_string()),
        Some(String::new()),
        zero_ts(),
    ]);
    row
}
