//! `gtid-relay verify`: an online consistency check of every replicated table
//! across all masters while writes go on.
//!
//! Tables are walked in key order in chunks whose size adapts to a time target
//! (pt-table-checksum's nibbling); each chunk's row count and 64-bit XOR of row
//! hashes is computed over the same key range on every master at once. A chunk
//! that differs may only be in flight, so it is re-checked after every master
//! has executed the union of all masters' `gtid_executed`, row by row: a row
//! that matches in any round was in flight; one that differs while its contents
//! stay the same over several settled rounds is divergence; one that keeps
//! changing and never matches before the wait timeout is inconclusive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};
use serde::Serialize;

use crate::config::Config;
use crate::conn::{ConnError, connect, quote_ident, quote_str};
use crate::gtid::{GtidError, GtidSet};

/// Schemas that belong to the server, never to the application.
const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "sys", "performance_schema", "information_schema"];
/// Re-check rounds for a differing chunk of a table without a key.
const RECHECK_ROUNDS: usize = 5;
/// Consecutive settled rounds in which a differing row must keep the same
/// contents on every master before it counts as diverged rather than in flight.
const STABLE_ROUNDS: usize = 3;
/// Suspect rows compared one by one at a matching point per round.
const MAX_ROW_PROBES: usize = 100;
/// Pause between re-check rounds so a hot row is sampled at different moments.
const RECHECK_PAUSE: Duration = Duration::from_millis(200);
const FIRST_CHUNK_ROWS: u64 = 1000;
const MIN_CHUNK_ROWS: u64 = 10;
const MAX_CHUNK_ROWS: u64 = 1_000_000;
/// Rows listed per differing chunk; the inspect query shows the rest.
const MAX_ROWS_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("{master}: {what}: {source}")]
    Query {
        master: String,
        what: String,
        source: mysql_async::Error,
    },
    #[error("{master}: @@GLOBAL.gtid_executed is not a GTID set: {source}")]
    Gtid { master: String, source: GtidError },
    #[error("{master}: {what}: the server returned no row")]
    NoRow { master: String, what: String },
    #[error("the configuration lists no masters")]
    NoMasters,
}

/// What to check and how hard to push the masters.
#[derive(Debug, Clone)]
pub struct Options {
    pub schema: Option<String>,
    pub table: Option<String>,
    /// Target duration of one chunk's checksum query on the slowest master.
    pub chunk_time: Duration,
    /// Bound on each wait for the masters to execute each other's transactions.
    pub wait_timeout: Duration,
    /// Print a progress line on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Consistent,
    /// The masters' GTID sets did not converge in time (or a table could not be read):
    /// neither consistency nor divergence is proven.
    Inconclusive,
    Different,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Consistent => "consistent",
            Status::Inconclusive => "inconclusive",
            Status::Different => "DIFFERENT",
        }
    }

    /// The process exit status documented in docs/verify.md.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Consistent => 0,
            Status::Different => 1,
            Status::Inconclusive => 2,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub verdict: Status,
    pub masters: Vec<String>,
    pub tables: Vec<TableReport>,
    pub chunks: u64,
    pub rechecked: u64,
    pub rows: u64,
    pub elapsed_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub schema: String,
    pub table: String,
    /// The index walked; `None` when the table was checked as one chunk.
    pub index: Option<String>,
    pub key_columns: Vec<String>,
    pub chunks: u64,
    /// Chunks that differed at first and were re-checked after the masters
    /// executed each other's in-flight transactions.
    pub rechecked: u64,
    /// Rows on the first master.
    pub rows: u64,
    pub status: Status,
    pub note: Option<String>,
    pub differences: Vec<ChunkDiff>,
}

#[derive(Debug, Serialize)]
pub struct ChunkDiff {
    pub chunk: u64,
    pub status: Status,
    /// Exclusive lower bound of the key range as SQL literals (`None`: from the start).
    pub lower: Option<Vec<String>>,
    /// Inclusive upper bound (`None`: to the end).
    pub upper: Option<Vec<String>>,
    /// The range as a WHERE condition.
    pub range: String,
    pub masters: Vec<MasterChunk>,
    /// Masters whose chunk differs from the first master's.
    pub differing_masters: Vec<String>,
    /// Keys that differed in every re-check round (at most 20 listed).
    pub rows: Vec<RowDiff>,
    pub inspect: String,
    pub repair: String,
}

#[derive(Debug, Serialize)]
pub struct MasterChunk {
    pub master: String,
    pub rows: u64,
    pub checksum: String,
}

#[derive(Debug, Serialize)]
pub struct RowDiff {
    pub key: Vec<String>,
    pub hashes: Vec<RowHash>,
}

#[derive(Debug, Serialize)]
pub struct RowHash {
    pub master: String,
    /// First 16 hex digits of the row's SHA-256; `None` where the row is missing.
    pub hash: Option<String>,
}

struct Master {
    name: String,
    conn: Conn,
}

/// The shape of one table as the checksum queries need it.
struct Table {
    schema: String,
    name: String,
    columns: Vec<Column>,
    /// Index name and its columns (indices into `columns`); `None` for one chunk.
    key: Option<(String, Vec<usize>)>,
    note: Option<String>,
}

struct Column {
    name: String,
    data_type: String,
    column_type: String,
}

impl Column {
    /// The column's text in the row hash: binary, string and JSON values as hex so
    /// no separator or charset conversion can make two rows hash alike; floats by
    /// their shortest round-trip text, which is equal exactly when the values are.
    fn hash_expr(&self) -> String {
        let q = quote_ident(&self.name);
        match self.data_type.as_str() {
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "binary"
            | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "json" | "enum"
            | "set" | "bit" | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" | "geomcollection"
            | "vector" => format!("HEX({q})"),
            _ => q,
        }
    }

    /// A placeholder that compares with this column exactly: a string parameter
    /// against a DECIMAL would otherwise be compared as a double.
    fn placeholder(&self) -> String {
        if self.data_type == "decimal" {
            format!("CAST(? AS {})", self.column_type.replace(" unsigned", ""))
        } else {
            "?".to_string()
        }
    }
}

/// One chunk: `(lower, upper]` in key order, as the values the server returned.
#[derive(Clone)]
struct Chunk {
    lower: Option<Vec<Value>>,
    upper: Option<Vec<Value>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Sum {
    rows: u64,
    hash: u64,
}

impl Table {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    fn key_cols(&self) -> Vec<&Column> {
        match &self.key {
            Some((_, cols)) => cols.iter().map(|&i| &self.columns[i]).collect(),
            None => Vec::new(),
        }
    }

    /// The table as a FROM clause, forced onto the walked index.
    fn source(&self) -> String {
        match &self.key {
            Some((index, _)) => {
                format!("{} FORCE INDEX ({})", self.qualified(), quote_ident(index))
            }
            None => self.qualified(),
        }
    }

    fn key_list(&self) -> String {
        self.key_cols()
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// SHA-256 of the row (MySQL 9.7 removed MD5 and SHA1): every column, then one
    /// ISNULL marker per column because CONCAT_WS skips NULLs (pt-table-checksum's
    /// construction).
    fn row_hash(&self) -> String {
        let values: Vec<String> = self.columns.iter().map(Column::hash_expr).collect();
        let nulls: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("ISNULL({})", quote_ident(&c.name)))
            .collect();
        format!(
            "SHA2(CONCAT_WS('#', {}, CONCAT({})), 256)",
            values.join(", "),
            nulls.join(", ")
        )
    }

    /// `(k1, .., kn) > (?, .., ?)` (or `<=`) expanded so the optimizer uses a range scan.
    fn compare(&self, greater: bool) -> String {
        let cols = self.key_cols();
        let mut terms = Vec::new();
        for i in 0..cols.len() {
            let mut parts: Vec<String> = cols[..i]
                .iter()
                .map(|c| format!("{} = {}", quote_ident(&c.name), c.placeholder()))
                .collect();
            let last = i + 1 == cols.len();
            let op = match (greater, last) {
                (true, _) => ">",
                (false, false) => "<",
                (false, true) => "<=",
            };
            parts.push(format!(
                "{} {op} {}",
                quote_ident(&cols[i].name),
                cols[i].placeholder()
            ));
            terms.push(format!("({})", parts.join(" AND ")));
        }
        format!("({})", terms.join(" OR "))
    }

    /// Parameters for [`Table::compare`]: the prefix values of every OR term.
    fn compare_params(values: &[Value]) -> Vec<Value> {
        (0..values.len())
            .flat_map(|i| values[..=i].iter().cloned())
            .collect()
    }

    /// WHERE condition and parameters of a chunk.
    fn range(&self, chunk: &Chunk) -> (String, Vec<Value>) {
        let mut conds = Vec::new();
        let mut params = Vec::new();
        if let Some(lower) = &chunk.lower {
            conds.push(self.compare(true));
            params.extend(Self::compare_params(lower));
        }
        if let Some(upper) = &chunk.upper {
            conds.push(self.compare(false));
            params.extend(Self::compare_params(upper));
        }
        if conds.is_empty() {
            ("TRUE".to_string(), params)
        } else {
            (conds.join(" AND "), params)
        }
    }

    /// The same condition with literals, for people to paste.
    fn range_literal(&self, chunk: &Chunk) -> String {
        let (sql, params) = self.range(chunk);
        let mut out = String::new();
        let mut params = params.iter();
        let mut rest = sql.as_str();
        while let Some(at) = rest.find('?') {
            out.push_str(&rest[..at]);
            match params.next() {
                Some(v) => out.push_str(&v.as_sql(false)),
                None => out.push('?'),
            }
            rest = &rest[at + 1..];
        }
        out.push_str(rest);
        out
    }
}

fn literals(values: &Option<Vec<Value>>) -> Option<Vec<String>> {
    values
        .as_ref()
        .map(|v| v.iter().map(|x| x.as_sql(false)).collect())
}

fn row_values(mut row: Row) -> Vec<Value> {
    (0..row.len())
        .map(|i| row.take::<Value, _>(i).unwrap_or(Value::NULL))
        .collect()
}

impl Master {
    fn err(&self, what: &str) -> impl FnOnce(mysql_async::Error) -> VerifyError + use<> {
        let master = self.name.clone();
        let what = what.to_string();
        move |source| VerifyError::Query {
            master,
            what,
            source,
        }
    }

    async fn rows(
        &mut self,
        what: &str,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, VerifyError> {
        let err = self.err(what);
        self.conn
            .exec::<Row, _, _>(sql, Params::from(params))
            .await
            .map_err(err)
    }

    async fn sum(&mut self, table: &Table, chunk: &Chunk) -> Result<Sum, VerifyError> {
        let (cond, params) = table.range(chunk);
        let sql = format!(
            "SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT({}, 16), 16, 10) AS UNSIGNED)), 0) \
             FROM {} WHERE {cond}",
            table.row_hash(),
            table.source()
        );
        let what = format!("checksum of {}", table.qualified());
        let rows = self.rows(&what, &sql, params).await?;
        let Some(mut row) = rows.into_iter().next() else {
            return Err(VerifyError::NoRow {
                master: self.name.clone(),
                what,
            });
        };
        Ok(Sum {
            rows: row.take::<u64, _>(0).unwrap_or(0),
            hash: row.take::<u64, _>(1).unwrap_or(0),
        })
    }

    /// Key literals → row hash for every row of the chunk.
    async fn row_hashes(
        &mut self,
        table: &Table,
        chunk: &Chunk,
    ) -> Result<BTreeMap<Vec<String>, String>, VerifyError> {
        let (cond, params) = table.range(chunk);
        let keys = table.key_list();
        let sql = format!(
            "SELECT {keys}, {} FROM {} WHERE {cond} ORDER BY {keys}",
            table.row_hash(),
            table.source()
        );
        let rows = self
            .rows(&format!("rows of {}", table.qualified()), &sql, params)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut values = row_values(row);
                let hash = values
                    .pop()
                    .and_then(|v| mysql_async::from_value_opt::<String>(v).ok())
                    .unwrap_or_default();
                (values.iter().map(|v| v.as_sql(false)).collect(), hash)
            })
            .collect())
    }

    /// One row's hash, and this master's gtid_executed when no commit raced the
    /// read (the set read before and after is the same).
    async fn row_at(
        &mut self,
        table: &Table,
        key: &[String],
    ) -> Result<(Option<String>, Option<GtidSet>), VerifyError> {
        let before = self.gtid_executed().await?;
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) = ({})",
            table.row_hash(),
            table.source(),
            table.key_list(),
            key.join(", ")
        );
        let err = self.err(&format!("a row of {}", table.qualified()));
        let hash: Option<String> = self.conn.query_first(sql).await.map_err(err)?;
        let after = self.gtid_executed().await?;
        Ok((hash, (before == after).then_some(before)))
    }

    async fn gtid_executed(&mut self) -> Result<GtidSet, VerifyError> {
        let err = self.err("reading @@GLOBAL.gtid_executed");
        let text: Option<String> = self
            .conn
            .query_first("SELECT @@GLOBAL.gtid_executed")
            .await
            .map_err(err)?;
        GtidSet::parse(&text.unwrap_or_default()).map_err(|source| VerifyError::Gtid {
            master: self.name.clone(),
            source,
        })
    }

    /// True when this master executed `set` within `timeout`.
    async fn wait_executed(&mut self, set: &str, timeout: Duration) -> Result<bool, VerifyError> {
        // WAIT_FOR_EXECUTED_GTID_SET(s, 0) means "do not wait"; keep a positive bound.
        let secs = timeout.as_secs_f64().max(0.001);
        let err = self.err("WAIT_FOR_EXECUTED_GTID_SET");
        let query = self.conn.exec_first::<Option<i64>, _, _>(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
            (set, secs),
        );
        // The server bounds the wait; the client bound only catches a stuck server.
        match tokio::time::timeout(timeout + Duration::from_secs(10), query).await {
            Ok(result) => Ok(result.map_err(err)?.flatten() == Some(0)),
            Err(_) => Ok(false),
        }
    }
}

pub struct Verifier {
    masters: Vec<Master>,
    options: Options,
    progress: Progress,
}

/// Chunk boundaries come from the first master, walked with keyset pagination.
struct Walk {
    lower: Option<Vec<Value>>,
    size: u64,
    done: bool,
}

/// Key literals → row hash per master (`None`: row missing there).
type RowDiffs = BTreeMap<Vec<String>, Vec<Option<String>>>;

enum Recheck {
    Consistent,
    /// The union of the masters' GTID sets was not executed everywhere in time.
    Inconclusive,
    Different {
        sums: Vec<Sum>,
        rows: RowDiffs,
    },
}

impl Verifier {
    /// Connect to every master of `config`, with session settings that make
    /// the row text identical wherever the servers' defaults differ.
    pub async fn connect(config: &Config, options: Options) -> Result<Verifier, VerifyError> {
        if config.masters.is_empty() {
            return Err(VerifyError::NoMasters);
        }
        let mut masters = Vec::new();
        for m in &config.masters {
            let conn = connect(m, config.source.connect_timeout).await?;
            let mut master = Master {
                name: m.name.clone(),
                conn,
            };
            let err = master.err("session settings");
            // TIMESTAMP text depends on the session time zone; the masters' may differ.
            master
                .conn
                .query_drop("SET SESSION time_zone = '+00:00'")
                .await
                .map_err(err)?;
            masters.push(master);
        }
        let progress = Progress::new(options.progress);
        Ok(Verifier {
            masters,
            options,
            progress,
        })
    }

    pub async fn run(mut self) -> Result<Report, VerifyError> {
        let started = Instant::now();
        let masters = self.masters.iter().map(|m| m.name.clone()).collect();
        let names = self.tables().await?;
        let mut tables = Vec::new();
        for (schema, name, missing_on) in names {
            let report = if missing_on.is_empty() {
                match self.describe(&schema, &name).await {
                    Ok(table) => self.check_table(&table).await?,
                    Err(e) => unreadable(&schema, &name, e.to_string()),
                }
            } else {
                TableReport {
                    schema,
                    table: name,
                    index: None,
                    key_columns: Vec::new(),
                    chunks: 0,
                    rechecked: 0,
                    rows: 0,
                    status: Status::Different,
                    note: Some(format!("missing on {}", missing_on.join(", "))),
                    differences: Vec::new(),
                }
            };
            tables.push(report);
        }
        for m in self.masters {
            let _ = m.conn.disconnect().await;
        }
        self.progress.clear();
        let verdict = tables
            .iter()
            .map(|t| t.status)
            .max()
            .unwrap_or(Status::Consistent);
        Ok(Report {
            verdict,
            masters,
            chunks: tables.iter().map(|t| t.chunks).sum(),
            rechecked: tables.iter().map(|t| t.rechecked).sum(),
            rows: tables.iter().map(|t| t.rows).sum(),
            elapsed_secs: started.elapsed().as_secs_f64(),
            tables,
        })
    }

    /// Base tables of user schemas on any master, with the masters that lack each.
    async fn tables(&mut self) -> Result<Vec<(String, String, Vec<String>)>, VerifyError> {
        let mut sql = format!(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ({})",
            SYSTEM_SCHEMAS.map(quote_str).join(", ")
        );
        let mut params = Vec::new();
        if let Some(s) = &self.options.schema {
            sql.push_str(" AND table_schema = ?");
            params.push(Value::from(s.as_str()));
        }
        if let Some(t) = &self.options.table {
            sql.push_str(" AND table_name = ?");
            params.push(Value::from(t.as_str()));
        }
        let mut present: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
        for (i, m) in self.masters.iter_mut().enumerate() {
            for mut row in m.rows("listing tables", &sql, params.clone()).await? {
                let schema: String = row.take(0).unwrap_or_default();
                let name: String = row.take(1).unwrap_or_default();
                present.entry((schema, name)).or_default().insert(i);
            }
        }
        Ok(present
            .into_iter()
            .map(|((schema, name), on)| {
                let missing = self
                    .masters
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !on.contains(i))
                    .map(|(_, m)| m.name.clone())
                    .collect();
                (schema, name, missing)
            })
            .collect())
    }

    /// Columns and the key to walk, read on the first master.
    async fn describe(&mut self, schema: &str, name: &str) -> Result<Table, VerifyError> {
        let m = &mut self.masters[0];
        let what = format!("describing {schema}.{name}");
        let columns: Vec<Column> = m
            .rows(
                &what,
                "SELECT column_name, data_type, column_type, is_nullable FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                vec![schema.into(), name.into()],
            )
            .await?
            .into_iter()
            .map(|mut r| Column {
                name: r.take(0).unwrap_or_default(),
                data_type: r
                    .take::<String, _>(1)
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                column_type: r
                    .take::<String, _>(2)
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
            })
            .collect();
        let nullable: BTreeSet<String> = m
            .rows(
                &what,
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? AND is_nullable = 'YES'",
                vec![schema.into(), name.into()],
            )
            .await?
            .into_iter()
            .filter_map(|mut r| r.take::<String, _>(0))
            .collect();
        // Unique indexes, PRIMARY first; an expression part has no column name.
        let parts = m
            .rows(
                &what,
                "SELECT index_name, column_name FROM information_schema.statistics \
                 WHERE table_schema = ? AND table_name = ? AND non_unique = 0 \
                 ORDER BY index_name <> 'PRIMARY', index_name, seq_in_index",
                vec![schema.into(), name.into()],
            )
            .await?;
        let mut indexes: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for mut r in parts {
            let index: String = r.take(0).unwrap_or_default();
            let column: Option<String> = r.take(1).unwrap_or(None);
            match indexes.last_mut() {
                Some((last, cols)) if *last == index => cols.push(column),
                _ => indexes.push((index, vec![column])),
            }
        }
        let key = indexes.into_iter().find_map(|(index, cols)| {
            let idx: Option<Vec<usize>> = cols
                .iter()
                .map(|c| {
                    let c = c.as_ref().filter(|c| !nullable.contains(*c))?;
                    columns.iter().position(|col| &col.name == c)
                })
                .collect();
            idx.map(|i| (index, i))
        });
        let note = key.is_none().then(|| {
            "no primary key or unique NOT NULL key: checked as one chunk, rows not listed"
                .to_string()
        });
        Ok(Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            key,
            note,
        })
    }

    async fn check_table(&mut self, table: &Table) -> Result<TableReport, VerifyError> {
        let mut report = TableReport {
            schema: table.schema.clone(),
            table: table.name.clone(),
            index: table.key.as_ref().map(|(i, _)| i.clone()),
            key_columns: table.key_cols().iter().map(|c| c.name.clone()).collect(),
            chunks: 0,
            rechecked: 0,
            rows: 0,
            status: Status::Consistent,
            note: table.note.clone(),
            differences: Vec::new(),
        };
        let mut walk = Walk {
            lower: None,
            size: FIRST_CHUNK_ROWS,
            done: false,
        };
        let mut differing = Vec::new();
        while !walk.done {
            let chunk = match self.next_chunk(table, &mut walk).await {
                Ok(c) => c,
                Err(e) => return Ok(unreadable(&table.schema, &table.name, e.to_string())),
            };
            let started = Instant::now();
            let sums = match self.sums(table, &chunk).await {
                Ok(s) => s,
                Err(e) => return Ok(unreadable(&table.schema, &table.name, e.to_string())),
            };
            self.adapt(&mut walk, started.elapsed());
            report.chunks += 1;
            report.rows += sums[0].rows;
            if sums.iter().any(|s| *s != sums[0]) {
                differing.push((report.chunks, chunk));
            }
            self.progress
                .show(&table.schema, &table.name, report.chunks, report.rows);
        }
        report.rechecked = differing.len() as u64;
        for (index, chunk) in differing {
            let recheck = match self.recheck(table, &chunk).await {
                Ok(r) => r,
                Err(e) => return Ok(unreadable(&table.schema, &table.name, e.to_string())),
            };
            let diff = match recheck {
                Recheck::Consistent => continue,
                Recheck::Inconclusive => self.describe_diff(table, index, &chunk, None),
                Recheck::Different { sums, rows } => {
                    self.describe_diff(table, index, &chunk, Some((sums, rows)))
                }
            };
            report.status = report.status.max(diff.status);
            report.differences.push(diff);
        }
        Ok(report)
    }

    /// The next chunk's upper bound: the key `size` rows past the lower bound.
    async fn next_chunk(&mut self, table: &Table, walk: &mut Walk) -> Result<Chunk, VerifyError> {
        if table.key.is_none() {
            walk.done = true;
            return Ok(Chunk {
                lower: None,
                upper: None,
            });
        }
        let chunk = Chunk {
            lower: walk.lower.clone(),
            upper: None,
        };
        let (cond, params) = table.range(&chunk);
        let keys = table.key_list();
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {cond} ORDER BY {keys} LIMIT 1 OFFSET {}",
            table.source(),
            walk.size - 1
        );
        let upper = self.masters[0]
            .rows(
                &format!("chunk boundary of {}", table.qualified()),
                &sql,
                params,
            )
            .await?
            .into_iter()
            .next()
            .map(row_values);
        walk.done = upper.is_none();
        walk.lower.clone_from(&upper);
        Ok(Chunk {
            lower: chunk.lower,
            upper,
        })
    }

    /// Keep each chunk near the time target: production load stays bounded
    /// whatever the row width, and small tables do not take many round trips.
    fn adapt(&self, walk: &mut Walk, took: Duration) {
        let target = self.options.chunk_time.as_secs_f64();
        let took = took.as_secs_f64().max(0.001);
        let factor = (target / took).clamp(0.5, 2.0);
        walk.size = ((walk.size as f64 * factor) as u64).clamp(MIN_CHUNK_ROWS, MAX_CHUNK_ROWS);
    }

    /// The chunk's sum on every master, queried at once so they see close moments.
    async fn sums(&mut self, table: &Table, chunk: &Chunk) -> Result<Vec<Sum>, VerifyError> {
        join_all(self.masters.iter_mut().map(|m| m.sum(table, chunk)))
            .await
            .into_iter()
            .collect()
    }

    async fn executed_sets(&mut self) -> Result<Vec<GtidSet>, VerifyError> {
        join_all(self.masters.iter_mut().map(Master::gtid_executed))
            .await
            .into_iter()
            .collect()
    }

    /// Wait until every master executed what any master had executed. Returns
    /// `None` on timeout, else the union and whether every master already had
    /// exactly it (nothing was in flight).
    async fn settle(&mut self, deadline: Instant) -> Result<Option<(GtidSet, bool)>, VerifyError> {
        let sets = self.executed_sets().await?;
        let union = sets.iter().fold(GtidSet::new(), |acc, s| acc.union(s));
        let quiet = sets.iter().all(|s| *s == union);
        let text = union.to_string();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let done: Vec<bool> = join_all(
            self.masters
                .iter_mut()
                .map(|m| m.wait_executed(&text, timeout)),
        )
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
        Ok(done.into_iter().all(|d| d).then_some((union, quiet)))
    }

    /// Re-check a chunk after the transactions in flight were applied everywhere;
    /// keyed tables narrow down to the rows that differ in every round.
    async fn recheck(&mut self, table: &Table, chunk: &Chunk) -> Result<Recheck, VerifyError> {
        let deadline = Instant::now() + self.options.wait_timeout;
        // Keys still differing, with the hashes of the last round, and for how
        // many consecutive rounds those hashes stayed the same.
        let mut suspects: Option<RowDiffs> = None;
        let mut stable: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        let mut sums = Vec::new();
        for round in 0.. {
            if round > 0 {
                tokio::time::sleep(RECHECK_PAUSE).await;
            }
            let settled = if Instant::now() < deadline {
                self.settle(deadline).await?
            } else {
                None
            };
            let Some((union, quiet)) = settled else {
                return Ok(Self::out_of_time(sums, suspects, &stable));
            };
            sums = self.sums(table, chunk).await?;
            if sums.iter().all(|s| *s == sums[0]) {
                return Ok(Recheck::Consistent);
            }
            if table.key.is_none() {
                if self.quiet_since(round, quiet, &union).await? || round + 1 >= RECHECK_ROUNDS {
                    break;
                }
                continue;
            }
            let maps: Vec<BTreeMap<Vec<String>, String>> =
                join_all(self.masters.iter_mut().map(|m| m.row_hashes(table, chunk)))
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?;
            let keys: BTreeSet<&Vec<String>> = maps.iter().flat_map(|m| m.keys()).collect();
            let differ: RowDiffs = keys
                .into_iter()
                .filter_map(|k| {
                    let hashes: Vec<Option<String>> =
                        maps.iter().map(|m| m.get(k).cloned()).collect();
                    hashes
                        .iter()
                        .any(|h| *h != hashes[0])
                        .then(|| (k.clone(), hashes))
                })
                .collect();
            // A key that matched in any round was in flight, not diverged.
            let mut narrowed: RowDiffs = match &suspects {
                None => differ,
                Some(s) => differ
                    .into_iter()
                    .filter(|(k, _)| s.contains_key(k))
                    .collect(),
            };
            self.drop_rows_in_flight(table, &mut narrowed, deadline)
                .await?;
            if narrowed.is_empty() {
                return Ok(Recheck::Consistent);
            }
            for (key, hashes) in &narrowed {
                let unchanged = suspects.as_ref().and_then(|s| s.get(key)) == Some(hashes);
                let count = stable.entry(key.clone()).or_insert(0);
                *count = if unchanged { *count + 1 } else { 0 };
            }
            suspects = Some(narrowed);
            // Proven: nothing committed anywhere meanwhile, or every differing row
            // kept the same contents over several settled rounds (nobody writes
            // it, so it is not in flight). A row that keeps changing is re-checked
            // until it matches or time runs out.
            let all_stable = suspects
                .iter()
                .flat_map(|s| s.keys())
                .all(|k| stable.get(k).is_some_and(|&n| n >= STABLE_ROUNDS));
            if all_stable || self.quiet_since(round, quiet, &union).await? {
                break;
            }
        }
        Ok(Recheck::Different {
            sums,
            rows: suspects.unwrap_or_default(),
        })
    }

    /// Time ran out: rows that stayed different while unchanged are proven;
    /// rows still changing say nothing either way.
    fn out_of_time(
        sums: Vec<Sum>,
        suspects: Option<RowDiffs>,
        stable: &BTreeMap<Vec<String>, usize>,
    ) -> Recheck {
        let proven: RowDiffs = suspects
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| stable.get(k).is_some_and(|&n| n >= STABLE_ROUNDS))
            .collect();
        if proven.is_empty() || sums.is_empty() {
            Recheck::Inconclusive
        } else {
            Recheck::Different { sums, rows: proven }
        }
    }

    /// Compare each suspect row at a matching point: read it on one master with
    /// the GTID set it reflects, wait for that set on the others and read it
    /// there at once. Under continuous writes to a hot row the masters' whole
    /// sets are never equal, but a row that matches once was only in flight; a
    /// diverged row never matches.
    async fn drop_rows_in_flight(
        &mut self,
        table: &Table,
        suspects: &mut RowDiffs,
        deadline: Instant,
    ) -> Result<(), VerifyError> {
        let keys: Vec<Vec<String>> = suspects.keys().take(MAX_ROW_PROBES).cloned().collect();
        for key in keys {
            for anchor in 0..self.masters.len() {
                let (hash, Some(set)) = self.masters[anchor].row_at(table, &key).await? else {
                    continue;
                };
                let set = set.to_string();
                let mut matched = true;
                for other in (0..self.masters.len()).filter(|&m| m != anchor) {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    if !self.masters[other].wait_executed(&set, timeout).await?
                        || self.masters[other].row_at(table, &key).await?.0 != hash
                    {
                        matched = false;
                        break;
                    }
                }
                if matched {
                    suspects.remove(&key);
                    break;
                }
            }
        }
        Ok(())
    }

    /// True when no transaction committed anywhere between two reads of the
    /// masters' GTID sets: what was read in between is a settled state, so a
    /// difference seen there is proven and needs no further rounds. A commit
    /// becomes visible a moment before its GTID is in gtid_executed, so only a
    /// second quiet round counts (`round > 0`).
    async fn quiet_since(
        &mut self,
        round: usize,
        quiet_before: bool,
        union: &GtidSet,
    ) -> Result<bool, VerifyError> {
        Ok(round > 0 && quiet_before && self.executed_sets().await?.iter().all(|s| s == union))
    }

    fn describe_diff(
        &self,
        table: &Table,
        index: u64,
        chunk: &Chunk,
        found: Option<(Vec<Sum>, RowDiffs)>,
    ) -> ChunkDiff {
        let range = table.range_literal(chunk);
        let names: Vec<String> = self.masters.iter().map(|m| m.name.clone()).collect();
        let order = if table.key.is_some() {
            format!(" ORDER BY {}", table.key_list())
        } else {
            String::new()
        };
        let inspect = format!(
            "SELECT * FROM {} WHERE {range}{order};  -- on each of {}",
            table.qualified(),
            names.join(", ")
        );
        let (status, masters, differing_masters, rows) = match found {
            None => (Status::Inconclusive, Vec::new(), Vec::new(), Vec::new()),
            Some((sums, rows)) => {
                let masters = names
                    .iter()
                    .zip(&sums)
                    .map(|(n, s)| MasterChunk {
                        master: n.clone(),
                        rows: s.rows,
                        checksum: format!("{:016x}", s.hash),
                    })
                    .collect();
                let differing = names
                    .iter()
                    .zip(&sums)
                    .filter(|(_, s)| **s != sums[0])
                    .map(|(n, _)| n.clone())
                    .collect();
                let rows = rows
                    .into_iter()
                    .take(MAX_ROWS_LISTED)
                    .map(|(key, hashes)| RowDiff {
                        key,
                        hashes: names
                            .iter()
                            .zip(hashes)
                            .map(|(master, hash)| RowHash {
                                master: master.clone(),
                                hash: hash.map(|h| h.chars().take(16).collect()),
                            })
                            .collect(),
                    })
                    .collect();
                (Status::Different, masters, differing, rows)
            }
        };
        ChunkDiff {
            chunk: index,
            status,
            lower: literals(&chunk.lower),
            upper: literals(&chunk.upper),
            range,
            masters,
            differing_masters,
            rows,
            inspect,
            repair: "decide which master holds the right rows and rewrite them on that master \
                     only, with sql_log_bin=1 (e.g. DELETE and re-INSERT them in one transaction), \
                     so the fix replicates through the relay under one GTID; never repair with \
                     sql_log_bin=0 on each master"
                .to_string(),
        }
    }
}

fn unreadable(schema: &str, table: &str, reason: String) -> TableReport {
    TableReport {
        schema: schema.to_string(),
        table: table.to_string(),
        index: None,
        key_columns: Vec::new(),
        chunks: 0,
        rechecked: 0,
        rows: 0,
        status: Status::Inconclusive,
        note: Some(format!("unverifiable: {reason}")),
        differences: Vec::new(),
    }
}

/// A one-line progress display on a terminal.
struct Progress {
    enabled: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            last: None,
        }
    }

    fn show(&mut self, schema: &str, table: &str, chunks: u64, rows: u64) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
        if self.enabled && due {
            self.last = Some(Instant::now());
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r\x1b[Kverify {schema}.{table}: chunk {chunks}, {rows} rows"
            );
            let _ = err.flush();
        }
    }

    fn clear(&self) {
        if self.enabled && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// Whether stderr is a terminal (the progress line is only for people).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self
            .tables
            .iter()
            .map(|t| t.schema.len() + t.table.len() + 1)
            .max()
            .unwrap_or(0)
            .max(12);
        out.push_str(&format!(
            "{:<width$}  {:>7}  {:>10}  status\n",
            "schema.table", "chunks", "rows"
        ));
        for t in &self.tables {
            let name = format!("{}.{}", t.schema, t.table);
            out.push_str(&format!(
                "{name:<width$}  {:>7}  {:>10}  {}",
                t.chunks,
                t.rows,
                t.status.as_str()
            ));
            if let Some(note) = &t.note {
                out.push_str(&format!("  ({note})"));
            }
            out.push('\n');
        }
        for t in &self.tables {
            for d in &t.differences {
                out.push_str(&format!(
                    "\n{} {}.{} chunk {}: {}\n",
                    d.status.as_str(),
                    t.schema,
                    t.table,
                    d.chunk,
                    d.range
                ));
                if d.status == Status::Inconclusive {
                    out.push_str(
                        "  the masters did not execute each other's transactions in time; \
                         is every channel running?\n",
                    );
                } else {
                    out.push_str(&format!(
                        "  differs on: {} (compared with {})\n",
                        d.differing_masters.join(", "),
                        self.masters.first().map_or("", String::as_str)
                    ));
                    for m in &d.masters {
                        out.push_str(&format!(
                            "  {}: {} rows, checksum {}\n",
                            m.master, m.rows, m.checksum
                        ));
                    }
                    for r in &d.rows {
                        let hashes: Vec<String> = r
                            .hashes
                            .iter()
                            .map(|h| {
                                format!("{}={}", h.master, h.hash.as_deref().unwrap_or("missing"))
                            })
                            .collect();
                        out.push_str(&format!(
                            "  row ({}): {}\n",
                            r.key.join(", "),
                            hashes.join(" ")
                        ));
                    }
                }
                out.push_str(&format!(
                    "  inspect: {}\n  repair: {}\n",
                    d.inspect, d.repair
                ));
            }
        }
        out.push_str(&format!(
            "\nverdict: {} ({} tables, {} chunks ({} re-checked after replication caught up), \
             {} rows in {:.1} s, {:.0} rows/s)\n",
            self.verdict.as_str(),
            self.tables.len(),
            self.chunks,
            self.rechecked,
            self.rows,
            self.elapsed_secs,
            self.rows as f64 / self.elapsed_secs.max(0.001)
        ));
        out
    }
}
