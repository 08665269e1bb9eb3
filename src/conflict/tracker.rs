//! The version tracker of one master: a binlog dump of its own, never slowed
//! by apply queues, that records in [`MasterVersions`] the original commit
//! time and origin of every row write the master binlogs (its own writes and
//! the ones relayed to it).
//!
//! Why not the channels' readers: they stream only what their target lacks and
//! block on a full apply queue. An applier waiting for the version of a row on
//! its target could then wait for a reader that waits for that applier's queue
//! (A→B waits for B's reader, which waits for B→A's applier, which waits for
//! A's reader, which waits for A→B's queue): a cycle. The tracker has no queue.
//!
//! It starts from what every master already has (the intersection of their
//! gtid_executed), so the versions of writes not yet replicated everywhere are
//! known from the start; older ones are outside the window. After a
//! disconnection it resumes from the GTIDs it has seen, so nothing is missed;
//! a transaction is counted as seen only once all its rows are recorded.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{EventData, QueryEvent, TableMapEvent};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::schema::TableInfo;
use super::values::row_key;
use super::{ConflictError, Lww};
use crate::config::{Master, SourceSettings};
use crate::conn;
use crate::gtid::{Gtid, GtidSet};
use crate::source::assemble::header_of;
use crate::source::event_bytes::is_rows;
use crate::source::{self, Registration, SourceError};

#[derive(Debug, thiserror::Error)]
enum TrackError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    #[error("{0}")]
    Decode(String),
}

pub struct Tracker {
    pub index: usize,
    pub master: Master,
    /// Every master of the configuration, for the start position.
    pub masters: Vec<Master>,
    pub lww: Arc<Lww>,
    pub registration: Registration,
    pub settings: SourceSettings,
}

struct Txn {
    gtid: Gtid,
    commit_us: u64,
    began: bool,
    writes: Vec<(String, bool)>,
}

impl Tracker {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut started = false;
        let mut backoff = self.settings.reconnect_min;
        loop {
            let result = tokio::select! {
                r = self.session(&mut started) => r,
                _ = shutdown.changed() => return,
            };
            if let Err(e) = result {
                warn!(master = %self.master.name, "version tracker: {e}; reconnecting in {backoff:?}");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    /// GTIDs every reachable master has: writes outside it are not replicated
    /// everywhere yet, so their versions may still be needed. Plus what the
    /// tracked master has purged: those binlogs cannot be read any more.
    async fn start_position(&self) -> Option<GtidSet> {
        let mut common: Option<GtidSet> = None;
        let mut purged = GtidSet::new();
        for (i, m) in self.masters.iter().enumerate() {
            let Ok(mut c) = conn::connect(m, self.settings.connect_timeout).await else {
                continue;
            };
            let row: Option<(String, String)> = c
                .query_first("SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged")
                .await
                .ok()
                .flatten();
            let _ = c.disconnect().await;
            let Some((executed, gone)) = row else {
                continue;
            };
            if i == self.index {
                purged = GtidSet::parse(&gone).unwrap_or_default();
            }
            if let Ok(set) = GtidSet::parse(&executed) {
                common = Some(match common {
                    None => set,
                    Some(c) => c.intersect(&set),
                });
            }
        }
        common.map(|c| c.union(&purged))
    }

    async fn session(&self, started: &mut bool) -> Result<(), TrackError> {
        let versions = &self.lww.versions[self.index];
        let position = if *started {
            versions.seen()
        } else {
            self.start_position().await.unwrap_or_default()
        };
        let (identity, mut binlog) = source::open(
            &self.master,
            "version tracker",
            &position,
            &self.registration,
            crate::config::AckMode::Off,
            self.settings.connect_timeout,
            self.settings.read_timeout,
        )
        .await?;
        self.lww.priorities.set(identity.uuid, self.master.priority);
        versions.add_seen(&position);
        *started = true;
        info!(master = %self.master.name, from = %position, "version tracker streaming");
        let mut conn: Option<Conn> = None;
        let mut tables: HashMap<u64, TableMapEvent<'static>> = HashMap::new();
        let mut infos: HashMap<(String, String), Option<Arc<TableInfo>>> = HashMap::new();
        let mut txn: Option<Txn> = None;
        let result = loop {
            let raw = match binlog.next().await {
                Ok(e) => e,
                Err(e) => break Err(e.into()),
            };
            let Ok(event_type) = raw.event_type() else {
                continue;
            };
            let decode = |e: &dyn std::fmt::Display| {
                TrackError::Decode(format!("{event_type:?} event: {e}"))
            };
            let tracked = is_rows(event_type)
                || matches!(
                    event_type,
                    EventType::GTID_EVENT
                        | EventType::GTID_TAGGED_LOG_EVENT
                        | EventType::QUERY_EVENT
                        | EventType::XID_EVENT
                        | EventType::TABLE_MAP_EVENT
                );
            if !tracked {
                continue;
            }
            let event = match raw.decode() {
                Ok(e) => e,
                Err(e) => break Err(decode(&e)),
            };
            match event_type {
                EventType::GTID_EVENT | EventType::GTID_TAGGED_LOG_EVENT => {
                    let Ok(Some(EventData::GtidEvent(g))) = event.read_data() else {
                        break Err(decode(&"not a GTID event"));
                    };
                    let header = header_of(&event, &g).map_err(|e| decode(&e))?;
                    txn = Some(Txn {
                        commit_us: header.commit_us(),
                        gtid: header.gtid,
                        began: false,
                        writes: Vec::new(),
                    });
                }
                EventType::QUERY_EVENT => {
                    let q: QueryEvent<'_> = event.read_event().map_err(|e| decode(&e))?;
                    let sql = q.query_raw();
                    let ends = match &mut txn {
                        Some(t) if !t.began && sql.eq_ignore_ascii_case(b"BEGIN") => {
                            t.began = true;
                            false
                        }
                        Some(t) if t.began => {
                            sql.eq_ignore_ascii_case(b"COMMIT")
                                || sql.eq_ignore_ascii_case(b"ROLLBACK")
                        }
                        // DDL: table definitions may have changed.
                        _ => {
                            infos.clear();
                            true
                        }
                    };
                    if ends && let Some(t) = txn.take() {
                        versions.record(&t.gtid, t.commit_us, t.writes);
                    }
                }
                EventType::XID_EVENT => {
                    if let Some(t) = txn.take() {
                        versions.record(&t.gtid, t.commit_us, t.writes);
                    }
                }
                EventType::TABLE_MAP_EVENT => {
                    let Ok(Some(EventData::TableMapEvent(tme))) = event.read_data() else {
                        break Err(decode(&"not a Table_map event"));
                    };
                    tables.insert(tme.table_id(), tme.into_owned());
                }
                t if is_rows(t) => {
                    let Ok(Some(EventData::RowsEvent(rows))) = event.read_data() else {
                        break Err(decode(&"not a Rows event"));
                    };
                    let Some(tme) = tables.get(&rows.table_id()) else {
                        break Err(decode(&"Rows event without its Table_map"));
                    };
                    let name = (
                        tme.database_name().into_owned(),
                        tme.table_name().into_owned(),
                    );
                    if !infos.contains_key(&name) {
                        let c = match &mut conn {
                            Some(c) => c,
                            None => conn.insert(
                                conn::connect(&self.master, self.settings.connect_timeout)
                                    .await
                                    .map_err(|e| TrackError::Decode(e.to_string()))?,
                            ),
                        };
                        let info = TableInfo::load(c, &name.0, &name.1).await?.map(Arc::new);
                        infos.insert(name.clone(), info);
                    }
                    let Some(Some(info)) = infos.get(&name) else {
                        continue;
                    };
                    if info.key.is_empty() {
                        continue;
                    }
                    let Some(t) = &mut txn else { continue };
                    for row in rows.rows(tme) {
                        let (before, after) = row.map_err(|e| decode(&e))?;
                        let after_key = after.as_ref().map(|r| row_key(info, r));
                        if let Some(b) = &before {
                            let k = row_key(info, b);
                            if after_key.as_ref() != Some(&k) {
                                t.writes.push((k, true));
                            }
                        }
                        if let Some(k) = after_key {
                            t.writes.push((k, false));
                        }
                    }
                }
                _ => {}
            }
        };
        debug!(master = %self.master.name, "version tracker session ends");
        binlog.close().await;
        if let Some(c) = conn {
            let _ = c.disconnect().await;
        }
        result
    }
}
