//! Row versions: for each master, the original commit time and origin of the
//! latest write to each row key seen in that master's binlog.
//!
//! The server keeps no per-row write time, but every write a master holds is in
//! its binlog, with the origin's `original_commit_timestamp` (the relay sets it
//! when applying, so relayed writes keep their origin's time). A tracker per
//! master (`tracker.rs`) reads that binlog and fills this map; appliers look up
//! the target's current version of a row they found changed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::gtid::{Gtid, GtidSet, Uuid};

/// Who wrote a row version, and when (µs since the epoch, on the origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub commit_us: u64,
    pub origin: Uuid,
    /// The write deleted the row.
    pub deleted: bool,
}

/// A bounded map from row key to its latest version. Bounded by count and by
/// age: entries are evicted oldest-inserted first once there are more than
/// `max_keys` insertions queued, or once they are older than `window` relative
/// to the newest commit time seen.
#[derive(Debug)]
pub struct VersionMap {
    map: HashMap<String, (Version, u64)>,
    /// Insertion order: (key, insertion number). A key written again has a
    /// newer entry further back; the older one is skipped on eviction.
    order: VecDeque<(String, u64)>,
    next_seq: u64,
    newest_us: u64,
    max_keys: usize,
    window_us: u64,
}

impl VersionMap {
    pub fn new(max_keys: usize, window: Duration) -> VersionMap {
        VersionMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            newest_us: 0,
            max_keys: max_keys.max(1),
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
        }
    }

    pub fn get(&self, key: &str) -> Option<Version> {
        self.map.get(key).map(|(v, _)| *v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn insert(&mut self, key: String, version: Version) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.newest_us = self.newest_us.max(version.commit_us);
        self.order.push_back((key.clone(), seq));
        self.map.insert(key, (version, seq));
        self.evict();
    }

    fn evict(&mut self) {
        let horizon = self.newest_us.saturating_sub(self.window_us);
        while let Some((key, seq)) = self.order.front() {
            let entry = self.map.get(key);
            let stale = entry.is_none_or(|(_, s)| s != seq);
            let too_many = self.order.len() > self.max_keys;
            let too_old = entry.is_some_and(|(v, _)| v.commit_us < horizon);
            if !(stale || too_many || too_old) {
                break;
            }
            if let Some((key, seq)) = self.order.pop_front()
                && self.map.get(&key).is_some_and(|(_, s)| *s == seq)
            {
                self.map.remove(&key);
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    map: VersionMap,
    /// GTIDs whose writes are in `map`, or were committed before the tracker
    /// started reading (its dump position).
    seen: GtidSet,
    /// Versions to record instead of the transaction's own for rows where the
    /// applier kept the local version (restored it inside the incoming
    /// transaction): (GTID, key) → the restored version.
    overrides: HashMap<Gtid, HashMap<String, Version>>,
}

/// Row versions of one master.
#[derive(Debug)]
pub struct MasterVersions {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl MasterVersions {
    pub fn new(max_keys: usize, window: Duration) -> MasterVersions {
        MasterVersions {
            inner: Mutex::new(Inner {
                map: VersionMap::new(max_keys, window),
                seen: GtidSet::new(),
                overrides: HashMap::new(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Version> {
        self.lock().map.get(key)
    }

    pub fn seen(&self) -> GtidSet {
        self.lock().seen.clone()
    }

    /// The tracker starts (again) reading after `position`.
    pub fn add_seen(&self, position: &GtidSet) {
        self.lock().seen.union_with(position);
        self.changed.notify_waiters();
    }

    /// Record a committed transaction's writes, then count it as seen.
    pub fn record(&self, gtid: &Gtid, commit_us: u64, writes: Vec<(String, bool)>) {
        let mut inner = self.lock();
        let overrides = inner.overrides.remove(gtid).unwrap_or_default();
        for (key, deleted) in writes {
            let version = overrides.get(&key).copied().unwrap_or(Version {
                commit_us,
                origin: gtid.uuid,
                deleted,
            });
            inner.map.insert(key, version);
        }
        inner.seen.insert(gtid);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// The applier kept `version` of `key` while applying `gtid`.
    pub fn add_override(&self, gtid: &Gtid, key: String, version: Version) {
        self.lock()
            .overrides
            .entry(gtid.clone())
            .or_default()
            .insert(key, version);
    }

    /// The transaction `gtid` was rolled back, or is being applied again
    /// after a session died: earlier overrides do not apply.
    pub fn drop_overrides(&self, gtid: &Gtid) {
        self.lock().overrides.remove(gtid);
    }

    /// Wait until every GTID of `executed` has been seen; false on timeout.
    pub async fn wait_seen(&self, executed: &GtidSet, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if executed.is_subset(&self.lock().seen) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return executed.is_subset(&self.lock().seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(us: u64) -> Version {
        Version {
            commit_us: us,
            origin: Uuid([1; 16]),
            deleted: false,
        }
    }

    #[test]
    fn the_map_is_bounded_by_count_and_keeps_rewritten_keys() {
        let mut m = VersionMap::new(3, Duration::from_secs(3600));
        m.insert("a".into(), v(1));
        m.insert("b".into(), v(2));
        m.insert("c".into(), v(3));
        m.insert("d".into(), v(4));
        assert_eq!(m.get("a"), None, "oldest evicted");
        assert_eq!(m.len(), 3);
        // Rewriting "b" queues a newer entry; the old one no longer evicts it.
        m.insert("b".into(), v(5));
        m.insert("e".into(), v(6));
        assert_eq!(m.get("b"), Some(v(5)));
        assert_eq!(m.get("c"), None);
        assert!(m.len() <= 3);
    }

    #[test]
    fn the_map_forgets_versions_older_than_the_window() {
        let mut m = VersionMap::new(1000, Duration::from_secs(10));
        m.insert("old".into(), v(1_000_000));
        m.insert("new".into(), v(5_000_000));
        assert!(m.get("old").is_some());
        m.insert("newer".into(), v(12_000_000));
        assert_eq!(m.get("old"), None);
        assert_eq!(m.get("new"), Some(v(5_000_000)));
    }

    #[tokio::test]
    async fn overrides_replace_the_transactions_own_version_and_seen_wakes_waiters() {
        let mv = std::sync::Arc::new(MasterVersions::new(1000, Duration::from_secs(60)));
        let gtid: Gtid = "11111111-1111-1111-1111-111111111111:7".parse().unwrap();
        let mut executed = GtidSet::new();
        executed.insert(&gtid);
        assert!(!mv.wait_seen(&executed, Duration::from_millis(10)).await);
        let kept = Version {
            commit_us: 99,
            origin: Uuid([2; 16]),
            deleted: false,
        };
        mv.add_override(&gtid, "k".into(), kept);
        let waiter = tokio::spawn({
            let mv = mv.clone();
            let executed = executed.clone();
            async move { mv.wait_seen(&executed, Duration::from_secs(5)).await }
        });
        mv.record(&gtid, 50, vec![("k".into(), false), ("j".into(), true)]);
        assert!(waiter.await.unwrap());
        assert_eq!(mv.get("k"), Some(kept));
        assert_eq!(
            mv.get("j").map(|v| (v.commit_us, v.deleted)),
            Some((50, true))
        );
    }
}
