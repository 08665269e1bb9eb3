//! The applier's side of last-writer-wins: detect, decide, restore.
//!
//! For each rows event, before its `BINLOG` statement runs, one query reads and
//! locks (`FOR UPDATE`) the target's rows under the event's keys and compares
//! them, in the server, with the before- and after-images:
//!
//! | event  | target row            | meaning                                |
//! |--------|-----------------------|----------------------------------------|
//! | update | = before or = after   | no conflict                            |
//! | update | other, or absent      | conflict (changed or deleted locally)  |
//! | delete | = before              | no conflict                            |
//! | delete | other                 | conflict (changed locally)             |
//! | delete | absent                | none: deleted on both sides            |
//! | insert | = after               | none: inserted identically             |
//! | insert | other                 | conflict (key taken locally)           |
//! | insert | absent                | conflict if deleted locally later      |
//!
//! For a conflict the target's version of the row comes from the version map
//! of the target, once its tracker has read up to the target's gtid_executed
//! as of the (locked) read, so the version of the row just read is in it.
//!
//! Applying: the `BINLOG` statement stays strict (`rbr_exec_mode=IDEMPOTENT`
//! would also silence a key inserted locally between the comparison and the
//! statement, which READ COMMITTED does not lock: strict fails it with 1062
//! and the transaction is retried). Where the event would fail on the row as
//! found (an update or delete of an absent row, an insert of a taken key), the
//! row is first made what the event expects (the before-image inserted, the
//! taken key deleted). After the statement, still inside the transaction, each
//! conflicting row is set to the winning version explicitly: the after-image
//! (or a delete) when the incoming version wins, the saved local row (or a
//! delete) when the local one does. Setting the winner explicitly, rather than
//! dropping the losing rows from the event, keeps the event bytes untouched (no
//! row boundaries to find, no lengths or CRCs to fix). A restored
//! local row is binlogged inside the incoming transaction; the tracker is told
//! (an override) to record it with the local version's time, not the incoming
//! transaction's; rows already as the event leaves them get the later of the
//! two versions the same way. Tables without a key are applied as in `strict`
//! mode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_common::binlog::row::BinlogRow;
use serde_json::{Map, Value as Json, json};
use tracing::{info, warn};

use super::schema::TableInfo;
use super::values::{binlog_json, binlog_literal, row_key, text_json, text_literal};
use super::versions::Version;
use super::{ConflictError, Decision, Lww, decide};
use crate::admin::clock::utc_text;
use crate::conn::quote_ident;
use crate::gtid::GtidSet;
use crate::source::assemble::TxnHeader;
use crate::status::ConflictCounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
        }
    }
}

/// The target's row under one key of the event, as read before applying it.
struct Found {
    same_before: bool,
    same_after: bool,
    /// Stored columns, in table order (text protocol).
    values: Vec<Value>,
}

pub struct Resolver {
    lww: Arc<Lww>,
    channel: String,
    target: String,
    target_index: usize,
    reader: EventStreamReader,
    tables: HashMap<(String, String), Option<Arc<TableInfo>>>,
    warned_no_key: HashSet<(String, String)>,
    header: Option<TxnHeader>,
    /// SQL setting conflicting rows to their winners, run after the pending BINLOG statement.
    fixups: Vec<String>,
    /// The pending BINLOG statement has rows of a table without a key, which
    /// are applied strictly: their errors are not retried.
    unkeyed: bool,
    /// Conflict log lines of the current transaction, written once it commits.
    records: Vec<Json>,
    /// The current transaction's decisions, counted once it commits.
    decided: ConflictCounts,
    overrides: bool,
}

impl Resolver {
    pub fn new(lww: Arc<Lww>, channel: &str, target_index: usize, target: &str) -> Resolver {
        Resolver {
            lww,
            channel: channel.to_string(),
            target: target.to_string(),
            target_index,
            reader: EventStreamReader::new(BinlogVersion::Version4),
            tables: HashMap::new(),
            warned_no_key: HashSet::new(),
            header: None,
            fixups: Vec::new(),
            unkeyed: false,
            records: Vec::new(),
            decided: ConflictCounts::default(),
            overrides: false,
        }
    }

    /// The source's FORMAT_DESCRIPTION event, needed to decode what follows.
    pub fn format_description(&mut self, fde: &[u8]) -> Result<(), ConflictError> {
        self.reader
            .read(fde)
            .map(|_| ())
            .map_err(|e| ConflictError::Decode(format!("FORMAT_DESCRIPTION event: {e}")))
    }

    pub fn begin(&mut self, header: &TxnHeader) {
        // A session that died in this transaction (aborted, never rolled back
        // here) may have left overrides for it: this attempt decides anew.
        self.lww.versions[self.target_index].drop_overrides(&header.gtid);
        self.header = Some(header.clone());
        self.fixups.clear();
        self.records.clear();
        self.decided = ConflictCounts::default();
        self.overrides = false;
    }

    /// DDL ran: table definitions may differ now.
    pub fn schema_changed(&mut self) {
        self.tables.clear();
    }

    /// What the pending BINLOG statement needs: the SQL to run after it, and
    /// whether it holds rows of a table without a key.
    pub fn take_statement(&mut self) -> (Vec<String>, bool) {
        (
            std::mem::take(&mut self.fixups),
            std::mem::take(&mut self.unkeyed),
        )
    }

    /// The transaction committed: its conflicts go to the log; returns their count.
    pub fn committed(&mut self) -> ConflictCounts {
        let records = std::mem::take(&mut self.records);
        if let Err(e) = self.lww.log.write(&records) {
            // The data is committed; losing the log line must not go unnoticed.
            for r in &records {
                tracing::error!(channel = %self.channel, log = %self.lww.log.path().display(),
                    "cannot write the conflict log: {e}; conflict: {r}");
            }
        }
        self.header = None;
        self.overrides = false;
        std::mem::take(&mut self.decided)
    }

    /// The transaction was abandoned: it will be decided again when re-sent.
    pub fn rolled_back(&mut self) {
        if self.overrides
            && let Some(h) = &self.header
        {
            self.lww.versions[self.target_index].drop_overrides(&h.gtid);
        }
        self.header = None;
        self.fixups.clear();
        self.unkeyed = false;
        self.records.clear();
        self.decided = ConflictCounts::default();
        self.overrides = false;
    }

    async fn table(
        &mut self,
        conn: &mut Conn,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<TableInfo>>, ConflictError> {
        let name = (schema.to_string(), table.to_string());
        if let Some(info) = self.tables.get(&name) {
            return Ok(info.clone());
        }
        let info = TableInfo::load(conn, schema, table).await?.map(Arc::new);
        self.tables.insert(name, info.clone());
        Ok(info)
    }

    /// Look at one serialised event of the current transaction before it is
    /// applied; for a rows event, detect and decide its conflicts.
    pub async fn check(&mut self, conn: &mut Conn, bytes: &[u8]) -> Result<(), ConflictError> {
        let event = match self.reader.read(bytes) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ConflictError::Decode(e.to_string())),
        };
        let kind = match event.header().event_type() {
            Ok(EventType::WRITE_ROWS_EVENT | EventType::WRITE_ROWS_EVENT_V1) => Kind::Insert,
            Ok(EventType::UPDATE_ROWS_EVENT | EventType::UPDATE_ROWS_EVENT_V1) => Kind::Update,
            Ok(EventType::DELETE_ROWS_EVENT | EventType::DELETE_ROWS_EVENT_V1) => Kind::Delete,
            Ok(EventType::PARTIAL_UPDATE_ROWS_EVENT) => {
                return Err(ConflictError::Unsupported(
                    "partial JSON updates (binlog_row_value_options=PARTIAL_JSON on the source)"
                        .into(),
                ));
            }
            _ => return Ok(()),
        };
        let rows: RowsEventData<'_> = match event.read_data() {
            Ok(Some(EventData::RowsEvent(r))) => r,
            Ok(_) => return Err(ConflictError::Decode("not a rows event".into())),
            Err(e) => return Err(ConflictError::Decode(e.to_string())),
        };
        let Some(tme) = self.reader.get_tme(rows.table_id()).cloned() else {
            return Err(ConflictError::Decode(
                "rows event without its Table_map event".into(),
            ));
        };
        self.check_rows(conn, kind, &rows, &tme).await
    }

    async fn check_rows(
        &mut self,
        conn: &mut Conn,
        kind: Kind,
        rows: &RowsEventData<'_>,
        tme: &TableMapEvent<'static>,
    ) -> Result<(), ConflictError> {
        let (schema, table) = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        // A table missing on the target fails the BINLOG statement itself, with MySQL's error.
        let Some(info) = self.table(conn, &schema, &table).await? else {
            return Ok(());
        };
        if info.key.is_empty() {
            self.unkeyed = true;
            if self.warned_no_key.insert((schema.clone(), table.clone())) {
                warn!(channel = %self.channel, table = %info.display_name(),
                    "table has no primary key: conflicts on it are not resolved (applied as in strict mode)");
            }
            return Ok(());
        }
        let columns = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        if columns != info.columns.len() {
            // Perhaps stale after DDL: read the definition again next time.
            self.tables.clear();
            return Err(ConflictError::Schema {
                table: info.display_name(),
                why: format!(
                    "the source's rows have {columns} columns, the target's table {}",
                    info.columns.len()
                ),
            });
        }
        let mut images: Vec<(Option<BinlogRow>, Option<BinlogRow>)> = Vec::new();
        for row in rows.rows(tme) {
            images.push(row.map_err(|e| ConflictError::Decode(e.to_string()))?);
        }
        if images.is_empty() {
            return Ok(());
        }
        let (found, executed) = read_current(conn, &info, kind, &images).await?;

        // Rows whose target version must be looked up: conflicts, and inserts
        // of a key that is absent, which conflict when the key was deleted on
        // the target after the incoming insert was committed.
        let mut candidates = Vec::new();
        let mut prepare = Vec::new();
        for (i, (before, after)) in images.iter().enumerate() {
            let current = found.get(&i);
            let candidate = match (kind, current) {
                (Kind::Update, Some(f)) => !(f.same_before || f.same_after),
                (Kind::Update, None) => true,
                (Kind::Delete, Some(f)) => !f.same_before,
                (Kind::Insert, Some(f)) => !f.same_after,
                (Kind::Insert, None) => true,
                (Kind::Delete, None) => false,
            };
            // The BINLOG statement runs in strict mode, where an update or
            // delete of an absent row (1032) and an insert of a taken key
            // (1062) fail. Make the row what the event expects first; the
            // winner is written after it (a row already as the event leaves
            // it, deleted on both sides or inserted identically, is no
            // conflict and ends as it was).
            match (kind, current, before, after) {
                (Kind::Update | Kind::Delete, None, Some(b), _) => {
                    prepare.push(insert_binlog(&info, b)?);
                }
                (Kind::Insert, Some(_), _, Some(a)) => prepare.push(delete_sql(&info, a)?),
                _ => {}
            }
            // Rows already as the event leaves them still carry a version:
            // the target's and the incoming one differ, and both masters must
            // record the same (the later) one for the next comparison.
            let no_op = matches!(
                (kind, current),
                (Kind::Delete, None) | (Kind::Insert, Some(_))
            ) && !candidate;
            if candidate || no_op {
                candidates.push((before, after, current, no_op));
            }
        }
        for sql in prepare {
            conn.query_drop(&sql).await.map_err(|e| {
                ConflictError::sql_retryable("preparing a row for the incoming event", &e)
            })?;
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let header = self
            .header
            .clone()
            .ok_or_else(|| ConflictError::Decode("rows event outside a transaction".into()))?;
        let incoming = Version {
            commit_us: header.commit_us(),
            origin: header.gtid.uuid,
            deleted: kind == Kind::Delete,
        };
        self.wait_for_versions(&executed, &incoming).await?;
        let versions = self.lww.versions[self.target_index].clone();
        for (before, after, current, no_op) in candidates {
            let key_image = match (before, after) {
                (Some(b), _) => b,
                (None, Some(a)) => a,
                (None, None) => continue,
            };
            let key = row_key(&info, key_image);
            let local = versions.get(&key);
            let decision = decide(incoming, local, |u| self.lww.priorities.get(u));
            if no_op {
                if decision == Decision::LocalWins
                    && let Some(local) = local
                {
                    versions.add_override(&header.gtid, key, local);
                    self.overrides = true;
                }
                continue;
            }
            if kind == Kind::Insert && current.is_none() {
                // Absent: a conflict only with a later delete on the target.
                if !(decision == Decision::LocalWins && local.is_some_and(|l| l.deleted)) {
                    continue;
                }
            }
            if let (Some(b), Some(a)) = (before, after)
                && row_key(&info, a) != row_key(&info, b)
            {
                return Err(ConflictError::Unsupported(format!(
                    "a conflicting update that changes the primary key (table {})",
                    info.display_name()
                )));
            }
            let fixup = match (decision, current, after) {
                (Decision::IncomingWins, _, Some(a)) if kind != Kind::Delete => {
                    upsert_binlog(&info, a)?
                }
                (Decision::IncomingWins, _, _) => delete_sql(&info, key_image)?,
                (Decision::LocalWins, Some(f), _) => upsert_text(&info, &f.values)?,
                (Decision::LocalWins, None, _) => delete_sql(&info, key_image)?,
            };
            self.fixups.push(fixup);
            if decision == Decision::LocalWins
                && let Some(local) = local
            {
                versions.add_override(&header.gtid, key.clone(), local);
                self.overrides = true;
            }
            info!(channel = %self.channel, gtid = %header.gtid, table = %info.display_name(),
                key = %key_json(&info, key_image), kind = kind.as_str(), decision = decision.as_str(),
                incoming_us = incoming.commit_us, local_us = local.map(|l| l.commit_us), "conflict");
            self.records.push(self.record(
                &header, &info, kind, key_image, before, after, current, incoming, local, decision,
            ));
            match decision {
                Decision::IncomingWins => self.decided.incoming_wins += 1,
                Decision::LocalWins => self.decided.local_wins += 1,
            }
        }
        Ok(())
    }

    /// Wait until the target's tracker has read every transaction the target
    /// had committed when its rows were read (and locked), so that the version
    /// of each row read is in the map. Transactions of the incoming one's own
    /// origin are not waited for: they precede it there, so none of their
    /// versions can be later than the incoming one (without this, every insert
    /// during catch-up would wait for the tracker to read the relay's own
    /// previous commits).
    async fn wait_for_versions(
        &self,
        executed: &GtidSet,
        incoming: &Version,
    ) -> Result<(), ConflictError> {
        let needed = executed.subtract(&executed.for_uuid(&incoming.origin));
        let wait = self.lww.settings.version_wait;
        if self.lww.versions[self.target_index]
            .wait_seen(&needed, wait)
            .await
        {
            Ok(())
        } else {
            Err(ConflictError::TrackerBehind {
                master: self.target.clone(),
                waited: wait,
            })
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        header: &TxnHeader,
        info: &TableInfo,
        kind: Kind,
        key_image: &BinlogRow,
        before: &Option<BinlogRow>,
        after: &Option<BinlogRow>,
        current: Option<&Found>,
        incoming: Version,
        local: Option<Version>,
        decision: Decision,
    ) -> Json {
        let version = |v: &Version| {
            json!({
                "commit_us": v.commit_us,
                "commit_time": utc_text(
                    i64::try_from(v.commit_us / 1_000_000).unwrap_or(i64::MAX),
                    u32::try_from(v.commit_us % 1_000_000).unwrap_or(0),
                ),
                "origin": v.origin.to_string(),
                "deleted": v.deleted,
            })
        };
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        json!({
            "time": utc_text(
                i64::try_from(now_us / 1_000_000).unwrap_or(i64::MAX),
                u32::try_from(now_us % 1_000_000).unwrap_or(0),
            ),
            "channel": self.channel,
            "target": self.target,
            "gtid": header.gtid.to_string(),
            "table": info.display_name(),
            "kind": kind.as_str(),
            "key": key_json(info, key_image),
            "target_row": current.map(|f| text_row_json(info, &f.values)),
            "before": before.as_ref().map(|r| binlog_row_json(info, r)),
            "after": after.as_ref().map(|r| binlog_row_json(info, r)),
            "incoming": version(&incoming),
            "local": local.as_ref().map(version),
            "decision": decision.as_str(),
        })
    }
}

fn key_json(info: &TableInfo, row: &BinlogRow) -> Json {
    let mut m = Map::new();
    for &i in &info.key {
        let c = &info.columns[i];
        m.insert(
            c.name.clone(),
            row.as_ref(i).map_or(Json::Null, |v| binlog_json(c.kind, v)),
        );
    }
    Json::Object(m)
}

fn binlog_row_json(info: &TableInfo, row: &BinlogRow) -> Json {
    let mut m = Map::new();
    for (i, c) in info.columns.iter().enumerate() {
        m.insert(
            c.name.clone(),
            row.as_ref(i).map_or(Json::Null, |v| binlog_json(c.kind, v)),
        );
    }
    Json::Object(m)
}

fn text_row_json(info: &TableInfo, values: &[Value]) -> Json {
    let mut m = Map::new();
    for ((_, c), v) in info.stored().zip(values) {
        m.insert(c.name.clone(), text_json(c.kind, v));
    }
    Json::Object(m)
}

/// A column value of a binlog image; FULL row images have them all.
fn image_value<'a>(
    info: &TableInfo,
    row: &'a BinlogRow,
    i: usize,
) -> Result<&'a mysql_common::binlog::value::BinlogValue<'a>, ConflictError> {
    row.as_ref(i).ok_or_else(|| {
        ConflictError::Unsupported(format!(
            "row images without column {} of {} (set binlog_row_image=FULL on every master)",
            info.columns[i].name,
            info.display_name()
        ))
    })
}

/// `pk1 = … AND pk2 = …` for the key of `row`.
fn key_condition(info: &TableInfo, row: &BinlogRow) -> Result<String, ConflictError> {
    let mut parts = Vec::new();
    for &i in &info.key {
        let c = &info.columns[i];
        parts.push(format!(
            "{} = {}",
            quote_ident(&c.name),
            binlog_literal(c, image_value(info, row, i)?)?
        ));
    }
    Ok(parts.join(" AND "))
}

/// `(c1 <=> … AND c2 <=> …)`: the stored row equals `row`, byte for byte for text.
fn equals_image(info: &TableInfo, row: Option<&BinlogRow>) -> Result<String, ConflictError> {
    let Some(row) = row else {
        return Ok("0".into());
    };
    let mut parts = Vec::new();
    for (i, c) in info.stored() {
        let lit = binlog_literal(c, image_value(info, row, i)?)?;
        let col = quote_ident(&c.name);
        parts.push(match c.kind {
            super::schema::ColumnKind::Text => {
                format!("CAST({col} AS BINARY) <=> CAST({lit} AS BINARY)")
            }
            _ => format!("{col} <=> {lit}"),
        });
    }
    if parts.is_empty() {
        return Ok("1".into());
    }
    Ok(format!("({})", parts.join(" AND ")))
}

/// Read and lock the target's rows under the event's keys: one query for the
/// whole event, returning for each row found its position in the event, whether
/// it equals the before- and the after-image, and its stored columns.
async fn read_current(
    conn: &mut Conn,
    info: &TableInfo,
    kind: Kind,
    images: &[(Option<BinlogRow>, Option<BinlogRow>)],
) -> Result<(HashMap<usize, Found>, GtidSet), ConflictError> {
    let columns: Vec<String> = info.stored().map(|(_, c)| quote_ident(&c.name)).collect();
    let select_list = columns.join(", ");
    let table = info.qualified();
    let mut parts = Vec::with_capacity(images.len());
    for (i, (before, after)) in images.iter().enumerate() {
        let key_image = match (kind, before, after) {
            (Kind::Insert, _, Some(a)) => a,
            (_, Some(b), _) => b,
            _ => return Err(ConflictError::Decode("a row without its image".into())),
        };
        parts.push(format!(
            "(SELECT {i}, {}, {}, {select_list} FROM {table} WHERE {} FOR UPDATE)",
            equals_image(info, before.as_ref())?,
            equals_image(info, after.as_ref())?,
            key_condition(info, key_image)?,
        ));
    }
    // The target's gtid_executed in the same round trip, read after the rows
    // are locked: the writes of the versions read are all in it.
    let sql = format!(
        "{}; SELECT @@GLOBAL.gtid_executed",
        parts.join(" UNION ALL ")
    );
    let err = |e: mysql_async::Error| {
        ConflictError::sql(
            &format!("reading rows of {} to compare", info.display_name()),
            &e,
        )
    };
    let mut answer = conn.query_iter(sql).await.map_err(err)?;
    let result: Vec<Row> = answer.collect().await.map_err(err)?;
    let executed: Vec<String> = answer.collect().await.map_err(err)?;
    answer.drop_result().await.map_err(err)?;
    let executed = GtidSet::parse(executed.first().map_or("", String::as_str))
        .map_err(|e| ConflictError::Decode(format!("target gtid_executed: {e}")))?;
    let mut found = HashMap::new();
    for row in result {
        let value = |i: usize| row.as_ref(i).cloned().unwrap_or(Value::NULL);
        let flag = |i: usize| matches!(value(i), Value::Bytes(b) if b == b"1");
        let index = match value(0) {
            Value::Bytes(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<usize>().ok()),
            _ => None,
        };
        let Some(index) = index else {
            return Err(ConflictError::Decode(
                "unexpected answer to the row comparison".into(),
            ));
        };
        found.insert(
            index,
            Found {
                same_before: flag(1),
                same_after: flag(2),
                values: (3..row.len()).map(value).collect(),
            },
        );
    }
    Ok((found, executed))
}

fn insert(info: &TableInfo, literals: Vec<String>) -> String {
    let names: Vec<String> = info.stored().map(|(_, c)| quote_ident(&c.name)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        info.qualified(),
        names.join(", "),
        literals.join(", "),
    )
}

fn upsert(info: &TableInfo, literals: Vec<String>) -> String {
    let updates: Vec<String> = info
        .stored()
        .map(|(_, c)| quote_ident(&c.name))
        .map(|n| format!("{n} = _lww_new.{n}"))
        .collect();
    format!(
        "{} AS _lww_new ON DUPLICATE KEY UPDATE {}",
        insert(info, literals),
        updates.join(", ")
    )
}

fn binlog_literals(info: &TableInfo, row: &BinlogRow) -> Result<Vec<String>, ConflictError> {
    info.stored()
        .map(|(i, c)| binlog_literal(c, image_value(info, row, i)?))
        .collect()
}

/// Make the row the event's after-image.
fn upsert_binlog(info: &TableInfo, row: &BinlogRow) -> Result<String, ConflictError> {
    Ok(upsert(info, binlog_literals(info, row)?))
}

/// Put the event's before-image where the row was absent. A plain INSERT:
/// under READ COMMITTED the absent key was not locked when it was read, and a
/// row a local writer inserted since must fail the transaction (1062, which
/// is retried and compared again), not be overwritten.
fn insert_binlog(info: &TableInfo, row: &BinlogRow) -> Result<String, ConflictError> {
    Ok(insert(info, binlog_literals(info, row)?))
}

/// Put back the target's row as read before the event.
fn upsert_text(info: &TableInfo, values: &[Value]) -> Result<String, ConflictError> {
    let mut literals = Vec::new();
    for ((_, c), v) in info.stored().zip(values) {
        literals.push(text_literal(c, v)?);
    }
    Ok(upsert(info, literals))
}

fn delete_sql(info: &TableInfo, key_image: &BinlogRow) -> Result<String, ConflictError> {
    Ok(format!(
        "DELETE FROM {} WHERE {}",
        info.qualified(),
        key_condition(info, key_image)?
    ))
}
