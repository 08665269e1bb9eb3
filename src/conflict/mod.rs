//! Conflict resolution `last-writer-wins`.
//!
//! MySQL's row applier finds a row by its primary key and overwrites it with
//! the after-image without looking at the before-image, so two masters that
//! update the same row concurrently silently swap values. In this mode the
//! applier instead compares, inside the incoming transaction, the target's row
//! (locked `FOR UPDATE`) with the event's before-image (`resolve.rs`). When they
//! differ, the row changed on the target since the source read it: a conflict.
//! The winner is the version with the later `original_commit_timestamp`, ties
//! broken by master priority and then by server UUID ([`decide`]), a total order
//! every master evaluates the same way, so all end with the same row.
//!
//! The target's version of a row is not stored in the server; it comes from the
//! target's own binlog, read by a tracker per master (`tracker.rs`) into a
//! bounded map (`versions.rs`). Every decision is written to a JSONL log
//! (`log.rs`) once its transaction has committed.

pub mod log;
pub mod resolve;
pub mod schema;
pub mod tracker;
pub mod values;
pub mod versions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{Config, ConflictMode, LwwSettings};
use crate::gtid::Uuid;

use log::ConflictLog;
use versions::{MasterVersions, Version};

#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    #[error("{what}: error {errno}: {message}")]
    Sql {
        what: String,
        errno: u32,
        message: String,
        transient: bool,
    },
    #[error("cannot decode a row: {0}")]
    Decode(String),
    #[error("last-writer-wins does not support {0}")]
    Unsupported(String),
    #[error("table {table}: {why}")]
    Schema { table: String, why: String },
    #[error(
        "the version tracker of {master} did not reach the target's gtid_executed within {waited:?} \
         (is its binlog readable by the relay account?); retrying the transaction"
    )]
    TrackerBehind {
        master: String,
        waited: std::time::Duration,
    },
}

/// Under last-writer-wins the target is written to concurrently by design, so
/// errors a replica counts as temporary are retried (the transaction is sent
/// again and compared again): deadlock (1213), lock wait timeout (1205), and,
/// for rows of a keyed table, a row that appeared (1062) or vanished (1032)
/// between the comparison and the BINLOG statement (under READ COMMITTED an
/// absent key is not locked). Rows of a table without a key are applied
/// strictly, so there those two stop the channel.
pub fn is_raced(errno: u32, keyed: bool) -> bool {
    matches!(errno, 1213 | 1205) || (keyed && matches!(errno, 1062 | 1032))
}

impl ConflictError {
    pub fn sql(what: &str, e: &mysql_async::Error) -> ConflictError {
        ConflictError::Sql {
            what: what.to_string(),
            errno: crate::conn::errno_of(e),
            message: crate::conn::message_of(e),
            transient: crate::conn::is_transient(e),
        }
    }

    /// A statement the relay runs inside a relayed transaction under
    /// last-writer-wins: errors from concurrent local writes are retried.
    pub fn sql_retryable(what: &str, e: &mysql_async::Error) -> ConflictError {
        let mut error = ConflictError::sql(what, e);
        if let ConflictError::Sql {
            errno, transient, ..
        } = &mut error
            && is_raced(*errno, true)
        {
            *transient = true;
        }
        error
    }

    pub fn errno(&self) -> u32 {
        match self {
            ConflictError::Sql { errno, .. } => *errno,
            _ => 0,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ConflictError::Sql { transient, .. } => *transient,
            ConflictError::TrackerBehind { .. } => true,
            _ => false,
        }
    }
}

/// Which version of a conflicting row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    IncomingWins,
    LocalWins,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::IncomingWins => "incoming-wins",
            Decision::LocalWins => "local-wins",
        }
    }
}

/// Master priority by server UUID, filled in by the trackers as they connect.
#[derive(Debug, Default)]
pub struct Priorities(Mutex<HashMap<Uuid, i64>>);

impl Priorities {
    pub fn set(&self, uuid: Uuid, priority: i64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uuid, priority);
    }

    /// Unknown origins (masters not in this configuration) rank lowest.
    pub fn get(&self, uuid: &Uuid) -> i64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uuid)
            .copied()
            .unwrap_or(i64::MIN)
    }
}

/// Last writer wins: the later original commit time; on a tie the higher
/// master priority; on a tie of both the greater server UUID, so that every
/// master, deciding alone, picks the same version. A local version absent from
/// the map is older than the tracked window: the incoming one wins.
pub fn decide(
    incoming: Version,
    local: Option<Version>,
    priority: impl Fn(&Uuid) -> i64,
) -> Decision {
    let Some(local) = local else {
        return Decision::IncomingWins;
    };
    let rank = |v: &Version| (v.commit_us, priority(&v.origin), v.origin.0);
    if rank(&local) > rank(&incoming) {
        Decision::LocalWins
    } else {
        Decision::IncomingWins
    }
}

/// State shared by every last-writer-wins channel of one relay.
pub struct Lww {
    pub settings: LwwSettings,
    /// Row versions by master index (as in `Config::masters`).
    pub versions: Vec<Arc<MasterVersions>>,
    pub priorities: Priorities,
    pub log: ConflictLog,
}

impl Lww {
    /// None unless some channel resolves conflicts by last-writer-wins.
    pub fn for_config(config: &Config) -> Option<Arc<Lww>> {
        if !config
            .channels
            .iter()
            .any(|c| c.conflict == ConflictMode::LastWriterWins)
        {
            return None;
        }
        let s = &config.apply.lww;
        Some(Arc::new(Lww {
            settings: s.clone(),
            versions: config
                .masters
                .iter()
                .map(|_| Arc::new(MasterVersions::new(s.version_max_keys, s.version_window)))
                .collect(),
            priorities: Priorities::default(),
            log: ConflictLog::new(s.conflict_log.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn races_with_local_writes_are_retried_where_rows_have_keys() {
        for errno in [1213, 1205] {
            assert!(is_raced(errno, true) && is_raced(errno, false));
        }
        for errno in [1062, 1032] {
            assert!(is_raced(errno, true) && !is_raced(errno, false));
        }
        assert!(!is_raced(1146, true));
    }

    fn v(us: u64, origin: u8) -> Version {
        Version {
            commit_us: us,
            origin: Uuid([origin; 16]),
            deleted: false,
        }
    }

    #[test]
    fn the_later_commit_wins_then_priority_then_uuid() {
        let prio = |u: &Uuid| if u.0[0] == 1 { 10 } else { 5 };
        assert_eq!(
            decide(v(200, 2), Some(v(100, 1)), prio),
            Decision::IncomingWins
        );
        assert_eq!(
            decide(v(100, 2), Some(v(200, 1)), prio),
            Decision::LocalWins
        );
        // Same time: master 1 has the higher priority, on either side.
        assert_eq!(
            decide(v(100, 2), Some(v(100, 1)), prio),
            Decision::LocalWins
        );
        assert_eq!(
            decide(v(100, 1), Some(v(100, 2)), prio),
            Decision::IncomingWins
        );
        // Same time and priority: the greater UUID, consistently.
        let flat = |_: &Uuid| 0;
        assert_eq!(
            decide(v(100, 3), Some(v(100, 4)), flat),
            Decision::LocalWins
        );
        assert_eq!(
            decide(v(100, 4), Some(v(100, 3)), flat),
            Decision::IncomingWins
        );
        // Unknown local version: older than the window.
        assert_eq!(decide(v(1, 2), None, prio), Decision::IncomingWins);
    }

    #[test]
    fn both_masters_keep_the_same_version() {
        let prio = |_: &Uuid| 0;
        for (a, b) in [(5, 9), (9, 5), (7, 7)] {
            let on_b = decide(v(a, 1), Some(v(b, 2)), prio);
            let on_a = decide(v(b, 2), Some(v(a, 1)), prio);
            // On B incoming is A's version; on A incoming is B's: exactly one side keeps its own.
            assert_ne!(on_a, on_b, "a={a} b={b}");
        }
    }
}
