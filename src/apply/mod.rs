//! The apply side of a channel: one session on the target that replays each
//! transaction under its original GTID.
//!
//! Row events go through `BINLOG '<base64>'` statements exactly as mysqlbinlog
//! output does (after the source's FORMAT_DESCRIPTION event), DDL runs as SQL
//! text with the source session's settings. `sql_log_bin` stays on, so the
//! target binlogs every relayed transaction under its original GTID.

pub mod claims;
pub mod scheduler;
mod session;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::config::{ApplySettings, ConflictMode, Master};
use crate::conflict::ConflictError;
use crate::conflict::resolve::Resolver;
use crate::conn::{self, ConnError, quote_ident, quote_str};
use crate::gtid::{GtidSet, Uuid};
use crate::source::assemble::{Statement, Step, TxnHeader};

use claims::{Claim, Claims};
use session::SessionState;

const ER_BAD_DB_ERROR: u32 = 1049;

/// Under last-writer-wins the target is written to concurrently by design, so
/// errors a replica counts as temporary are retried (the transaction is sent
/// again and compared again): deadlock (1213), lock wait timeout (1205), and a
/// row that appeared (1062) or vanished (1032) between the comparison and the
/// BINLOG statement — under READ COMMITTED an absent key is not locked —
/// unless the statement holds rows of a table without a key, applied strictly.
const LWW_RETRIED_ALWAYS: [u32; 2] = [1213, 1205];
const LWW_RETRIED_KEYED: [u32; 2] = [1062, 1032];

/// MySQL's UNDEFINED_SERVER_VERSION in GTID events.
const UNDEFINED_SERVER_VERSION: u32 = 0x00FF_FFFF;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("target {target}: {what}: error {errno}: {message}")]
    Setup {
        target: String,
        what: &'static str,
        errno: u32,
        message: String,
        transient: bool,
    },
    #[error(
        "Worker failed executing transaction '{gtid}' on target {target}; Error '{message}' \
         (errno {errno}) on {what}"
    )]
    Transaction {
        target: String,
        gtid: String,
        errno: u32,
        message: String,
        what: String,
        transient: bool,
    },
    #[error(
        "Worker failed executing transaction '{gtid}' on target {target}; last-writer-wins: {source}"
    )]
    Conflict {
        target: String,
        gtid: String,
        #[source]
        source: ConflictError,
    },
}

impl ApplyError {
    pub fn errno(&self) -> u32 {
        match self {
            ApplyError::Connect(e) => e.errno(),
            ApplyError::Setup { errno, .. } | ApplyError::Transaction { errno, .. } => *errno,
            ApplyError::Conflict { source, .. } => source.errno(),
        }
    }

    /// Lost connections are retried; an error in a transaction stops the channel (strict).
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Connect(_) => true,
            ApplyError::Setup { transient, .. } | ApplyError::Transaction { transient, .. } => {
                *transient
            }
            ApplyError::Conflict { source, .. } => source.is_transient(),
        }
    }
}

/// A transaction the applier finished.
pub struct Completed {
    pub header: TxnHeader,
    /// The target already had it (delivered through another channel) and skipped it.
    pub skipped: bool,
}

/// The target as the applier found it on connect.
pub struct TargetIdentity {
    pub uuid: Uuid,
    pub executed: GtidSet,
}

pub struct Applier {
    conn: Conn,
    target: String,
    max_statement_bytes: usize,
    statement_timeout: Option<Duration>,
    /// The FORMAT_DESCRIPTION event this session has loaded.
    fde: Option<Vec<u8>>,
    /// Base64 of row events not yet sent, inside the current transaction.
    pending_rows: String,
    current: Option<TxnHeader>,
    /// `SET GTID_NEXT` for `current` is still to be sent.
    gtid_next_pending: bool,
    /// Set when other channels deliver to the same target (then a GTID may arrive twice).
    claims: Option<Arc<Claims>>,
    /// This session's claim on the current GTID.
    claim: Option<Claim>,
    /// The target already had the current GTID and skips the transaction.
    skipped_by_target: bool,
    session: SessionState,
    /// Last-writer-wins conflict resolution, when the channel uses it.
    resolver: Option<Resolver>,
    /// The BINLOG statement being run is applied strictly even under
    /// last-writer-wins (rows of a table without a key).
    strict_statement: bool,
}

impl Applier {
    pub async fn connect(
        target: &Master,
        conflict: ConflictMode,
        settings: &ApplySettings,
        claims: Option<Arc<Claims>>,
        resolver: Option<Resolver>,
        timeout: Duration,
    ) -> Result<(Applier, TargetIdentity), ApplyError> {
        let mut c = conn::connect(target, timeout).await?;
        let setup_err = |what: &'static str, e: mysql_async::Error| ApplyError::Setup {
            target: target.name.clone(),
            what,
            errno: conn::errno_of(&e),
            message: e.to_string(),
            transient: conn::is_transient(&e),
        };
        // Behave like a replica applier session (mysqlbinlog output sets the same).
        let mut init = String::from("SET @@SESSION.pseudo_replica_mode = 1");
        if conflict == ConflictMode::Idempotent {
            init.push_str(", @@SESSION.rbr_exec_mode = 'IDEMPOTENT'");
        }
        if conflict == ConflictMode::LastWriterWins {
            // The comparison reads rows FOR UPDATE. Under REPEATABLE READ a key
            // that is absent would take a gap lock, which the rows of another
            // worker's transaction (independent on the source) may need: with
            // commit order preserved that worker can wait for the lock while
            // the lock holder waits for its commit turn, a cycle InnoDB cannot
            // see (it ends in a lock wait timeout). READ COMMITTED locks only
            // the rows read, which the transaction writes anyway.
            init.push_str(", @@SESSION.transaction_isolation = 'READ-COMMITTED'");
        }
        c.query_drop(init)
            .await
            .map_err(|e| setup_err("preparing the apply session", e))?;
        let (uuid, executed): (String, String) = c
            .query_first("SELECT @@server_uuid, @@GLOBAL.gtid_executed")
            .await
            .map_err(|e| setup_err("reading the target's gtid_executed", e))?
            .ok_or_else(|| ApplyError::Setup {
                target: target.name.clone(),
                what: "reading the target's gtid_executed",
                errno: conn::CR_SERVER_LOST,
                message: "no row".into(),
                transient: true,
            })?;
        let bad = |what: &'static str, message: String| ApplyError::Setup {
            target: target.name.clone(),
            what,
            errno: 0,
            message,
            transient: false,
        };
        let identity = TargetIdentity {
            uuid: uuid
                .parse()
                .map_err(|e| bad("parsing server_uuid", format!("{e}")))?,
            executed: GtidSet::parse(&executed)
                .map_err(|e| bad("parsing gtid_executed", format!("{e}")))?,
        };
        Ok((
            Applier {
                conn: c,
                target: target.name.clone(),
                max_statement_bytes: settings.max_statement_bytes,
                statement_timeout: settings.statement_timeout,
                fde: None,
                pending_rows: String::new(),
                current: None,
                gtid_next_pending: false,
                claims,
                claim: None,
                skipped_by_target: false,
                session: SessionState::default(),
                resolver,
                strict_statement: false,
            },
            identity,
        ))
    }

    fn complete(&mut self) -> Option<Completed> {
        self.claim = None;
        let skipped = std::mem::take(&mut self.skipped_by_target);
        self.current
            .take()
            .map(|header| Completed { header, skipped })
    }

    /// Apply one step. Returns the transaction it completed, if any.
    pub async fn apply(&mut self, step: Step) -> Result<Option<Completed>, ApplyError> {
        match step {
            Step::FormatDescription(fde) => {
                if self.fde.as_ref() != Some(&fde) {
                    let sql = format!("BINLOG '{}'", BASE64.encode(&fde));
                    self.exec(sql, "the source's FORMAT_DESCRIPTION event")
                        .await?;
                    if let Some(r) = &mut self.resolver {
                        r.format_description(&fde)
                            .map_err(|e| self.conflict_error(e))?;
                    }
                    self.fde = Some(fde);
                }
                Ok(None)
            }
            // GTID_NEXT is set right before the transaction's first statement:
            // a statement failing in between (a USE, say) would release the GTID.
            Step::Begin(header) => {
                if let Some(r) = &mut self.resolver {
                    r.begin(&header);
                }
                self.current = Some(header);
                self.gtid_next_pending = true;
                Ok(None)
            }
            Step::Query(stmt) => {
                self.flush_rows().await?;
                self.statement(&stmt).await?;
                Ok(None)
            }
            Step::Rows(event) => {
                // Last-writer-wins looks at each event before it is applied,
                // inside the transaction (GTID_NEXT and BEGIN are sent by now),
                // unless the target skips the transaction anyway.
                if !self.skipped_by_target
                    && let Some(r) = &mut self.resolver
                    && let Err(e) = r.check(&mut self.conn, &event).await
                {
                    return Err(self.conflict_error(e));
                }
                if !self.pending_rows.is_empty() {
                    self.pending_rows.push('\n');
                }
                BASE64.encode_string(&event, &mut self.pending_rows);
                // The target forgets its table maps at the end of each BINLOG
                // statement: a Rows event whose Table_map came in an earlier BINLOG
                // statement crashes MySQL 9.7 (SIGSEGV). So, as mysqlbinlog prints
                // them, a source statement's Table_map and Rows events share one
                // BINLOG statement, cut only after the Rows event that ends it; a
                // single statement's events may exceed max_statement_bytes.
                // Under last-writer-wins each source statement is applied
                // before the next one is compared with the target.
                if (self.pending_rows.len() >= self.max_statement_bytes || self.resolver.is_some())
                    && ends_statement(&event)
                {
                    self.flush_rows().await?;
                }
                Ok(None)
            }
            Step::Commit => {
                self.flush_rows().await?;
                self.exec(
                    "COMMIT; SET @@SESSION.GTID_NEXT = 'AUTOMATIC'".to_string(),
                    "COMMIT",
                )
                .await?;
                if let Some(r) = &mut self.resolver {
                    r.committed();
                }
                Ok(self.complete())
            }
            Step::Rollback => {
                // The source rolled back; commit an empty transaction so that the
                // GTID is still executed on the target, as a native replica does.
                self.pending_rows.clear();
                if let Some(r) = &mut self.resolver {
                    r.rolled_back();
                }
                let gtid = self.current_gtid();
                let sql = format!(
                    "ROLLBACK; SET @@SESSION.GTID_NEXT = {}; BEGIN; COMMIT; SET @@SESSION.GTID_NEXT = 'AUTOMATIC'",
                    quote_str(&gtid)
                );
                self.exec(sql, "ROLLBACK").await?;
                Ok(self.complete())
            }
            Step::Ddl(stmt) => {
                if let Some(r) = &mut self.resolver {
                    r.schema_changed();
                }
                self.statement(&stmt).await?;
                self.exec(
                    "SET @@SESSION.GTID_NEXT = 'AUTOMATIC'".to_string(),
                    "SET GTID_NEXT",
                )
                .await?;
                Ok(self.complete())
            }
        }
    }

    /// Abandon the transaction in progress (its events will be sent again).
    pub async fn rollback(&mut self) {
        self.pending_rows.clear();
        if let Some(r) = &mut self.resolver {
            r.rolled_back();
        }
        let gtid_was_set = !std::mem::take(&mut self.gtid_next_pending);
        if self.current.take().is_some() && gtid_was_set {
            let _ = self
                .conn
                .query_drop("ROLLBACK; SET @@SESSION.GTID_NEXT = 'AUTOMATIC'")
                .await;
        }
        // Only now may another channel take the GTID: the server released it.
        self.claim = None;
    }

    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }

    async fn flush_rows(&mut self) -> Result<(), ApplyError> {
        if self.pending_rows.is_empty() {
            return Ok(());
        }
        let mut sql = String::with_capacity(self.pending_rows.len() + 10);
        sql.push_str("BINLOG '");
        sql.push_str(&self.pending_rows);
        sql.push('\'');
        self.pending_rows.clear();
        let Some((fixups, unkeyed)) = self.resolver.as_mut().map(Resolver::take_statement) else {
            return self.exec(sql, "row events").await;
        };
        // Errors on rows of tables without a key stop the channel, as in strict mode.
        self.strict_statement = unkeyed;
        let applied = self.exec(sql, "row events").await;
        self.strict_statement = false;
        applied?;
        for fixup in fixups {
            let what = format!("keeping the winning version: {}", truncate(&fixup, 200));
            self.exec(fixup, &what).await?;
        }
        Ok(())
    }

    fn conflict_error(&self, source: ConflictError) -> ApplyError {
        ApplyError::Conflict {
            target: self.target.clone(),
            gtid: self.current_gtid(),
            source,
        }
    }

    async fn statement(&mut self, stmt: &Statement) -> Result<(), ApplyError> {
        let settings = self.session.prepare(stmt);
        // The common case, a DML transaction's BEGIN: session settings, GTID_NEXT
        // and BEGIN in one round trip. BEGIN needs no default database, and
        // nothing in the batch can fail in a way that releases the GTID.
        if self.gtid_next_pending
            && self.claims.is_none()
            && stmt.sql.eq_ignore_ascii_case(b"BEGIN")
            && let Some(header) = &self.current
        {
            let sql = format!("{settings}{}; BEGIN", begin_sql(header));
            self.gtid_next_pending = false;
            return self.exec(sql, "SET GTID_NEXT and BEGIN").await;
        }
        self.exec(settings, "setting the source session's variables")
            .await?;
        if !stmt.schema.is_empty() && self.session.schema() != Some(stmt.schema.as_str()) {
            match self
                .exec(format!("USE {}", quote_ident(&stmt.schema)), "USE")
                .await
            {
                Ok(()) => self.session.set_schema(Some(&stmt.schema)),
                // CREATE/DROP DATABASE are logged with the database they name as the
                // default one, which the target may not have (a replica sets it
                // unchecked). They name their database, so run them without it.
                Err(e) if e.errno() == ER_BAD_DB_ERROR && names_its_database(&stmt.sql) => {
                    self.session.set_schema(None);
                }
                Err(e) => return Err(e),
            }
        }
        if self.gtid_next_pending {
            self.set_gtid_next().await?;
        }
        let text = String::from_utf8_lossy(&stmt.sql).into_owned();
        let what = format!("query: {}", truncate(&text, 200));
        self.exec_bytes(&stmt.sql, what).await
    }

    /// `SET GTID_NEXT` for the current transaction. When other channels also
    /// deliver to this target, find out whether the server will skip it: after
    /// SET GTID_NEXT the session owns the GTID unless it is already executed.
    async fn set_gtid_next(&mut self) -> Result<(), ApplyError> {
        self.gtid_next_pending = false;
        let Some(header) = &self.current else {
            return Ok(());
        };
        let sql = begin_sql(header);
        if let Some(claims) = &self.claims {
            let gtid = header.gtid.clone();
            self.claim = Some(claims.claim(&gtid).await);
        }
        self.exec(sql, "SET GTID_NEXT").await?;
        if self.claims.is_some() {
            let owned: Option<String> = self
                .conn
                .query_first("SELECT @@SESSION.gtid_owned")
                .await
                .map_err(|e| self.error(&e, "SELECT @@SESSION.gtid_owned".into()))?;
            self.skipped_by_target = owned.is_none_or(|o| o.is_empty());
        }
        Ok(())
    }

    fn current_gtid(&self) -> String {
        self.current
            .as_ref()
            .map(|h| h.gtid.to_string())
            .unwrap_or_default()
    }

    async fn exec(&mut self, sql: String, what: &str) -> Result<(), ApplyError> {
        self.exec_bytes(sql.as_bytes(), what.to_string()).await
    }

    async fn exec_bytes(&mut self, sql: &[u8], what: String) -> Result<(), ApplyError> {
        let run = self.conn.query_drop(sql);
        let result = match self.statement_timeout {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(ApplyError::Transaction {
                        target: self.target.clone(),
                        gtid: self.current_gtid(),
                        errno: conn::CR_SERVER_LOST,
                        message: format!("no answer within {limit:?}; dropping the session"),
                        what,
                        transient: true,
                    });
                }
            },
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut error = self.error(&e, what);
                // A server shutting down fails statements with odd errors (1105
                // "Unknown error", 1053...) before it closes the session: an error
                // on a session that no longer answers is the link, not the data.
                if let ApplyError::Transaction { transient, .. } = &mut error
                    && !*transient
                    && !self.alive().await
                {
                    *transient = true;
                }
                Err(error)
            }
        }
    }

    async fn alive(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.conn.ping()).await,
            Ok(Ok(()))
        )
    }

    fn error(&self, e: &mysql_async::Error, what: String) -> ApplyError {
        let errno = conn::errno_of(e);
        ApplyError::Transaction {
            target: self.target.clone(),
            gtid: self.current_gtid(),
            errno,
            message: match e {
                mysql_async::Error::Server(s) => s.message.clone(),
                other => other.to_string(),
            },
            what,
            transient: conn::is_transient(e)
                || (self.resolver.is_some()
                    && (LWW_RETRIED_ALWAYS.contains(&errno)
                        || (!self.strict_statement && LWW_RETRIED_KEYED.contains(&errno)))),
        }
    }
}

/// The statements that open a transaction: the origin's commit time and server
/// versions (as mysqlbinlog sets them), then its GTID.
fn begin_sql(h: &TxnHeader) -> String {
    let mut sql = String::from("SET ");
    if h.original_commit_us != 0 {
        sql.push_str(&format!(
            "@@SESSION.original_commit_timestamp = {}, ",
            h.original_commit_us
        ));
    }
    if h.original_server_version != UNDEFINED_SERVER_VERSION && h.original_server_version != 0 {
        sql.push_str(&format!(
            "@@SESSION.original_server_version = {}, @@SESSION.immediate_server_version = {}, ",
            h.original_server_version, h.immediate_server_version
        ));
    }
    sql.push_str(&format!(
        "@@SESSION.GTID_NEXT = {}",
        quote_str(&h.gtid.to_string())
    ));
    sql
}

/// Event type codes of the Rows events (binlog_event.h).
const ROWS_EVENT_TYPES: [u8; 7] = [23, 24, 25, 30, 31, 32, 39];
/// v4 header length; Rows events then start with a 6-byte table id and 2 bytes of flags.
const EVENT_HEADER_LEN: usize = 19;
const ROWS_FLAGS_OFFSET: usize = EVENT_HEADER_LEN + 6;
/// Rows_event::STMT_END_F: the last Rows event of its statement.
const STMT_END_F: u16 = 1;

/// True for a serialised Rows event that ends its statement (flag STMT_END_F).
fn ends_statement(event: &[u8]) -> bool {
    let Some(&event_type) = event.get(4) else {
        return false;
    };
    if !ROWS_EVENT_TYPES.contains(&event_type) {
        return false;
    }
    match event.get(ROWS_FLAGS_OFFSET..ROWS_FLAGS_OFFSET + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]) & STMT_END_F != 0,
        _ => false,
    }
}

/// `CREATE|DROP DATABASE|SCHEMA ...`, after leading blanks and comments.
fn names_its_database(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql);
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("/*") {
        rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
    }
    let words: Vec<String> = rest
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    matches!(
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["CREATE" | "DROP", "DATABASE" | "SCHEMA"]
    )
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::{ends_statement, names_its_database};

    fn event(event_type: u8, flags: u16) -> Vec<u8> {
        let mut e = vec![0u8; 40];
        e[4] = event_type;
        e[25..27].copy_from_slice(&flags.to_le_bytes());
        e
    }

    #[test]
    fn statements_end_at_rows_events_with_stmt_end() {
        assert!(ends_statement(&event(30, 1)));
        assert!(ends_statement(&event(39, 3)));
        assert!(!ends_statement(&event(31, 2)));
        // A Table_map never ends a statement, whatever its bytes there.
        assert!(!ends_statement(&event(19, 1)));
        assert!(!ends_statement(&[0, 0, 0, 0, 30]));
    }

    #[test]
    fn database_statements_are_recognised() {
        assert!(names_its_database(b"CREATE DATABASE s1"));
        assert!(names_its_database(b"  /* x */ drop schema if exists `s1`"));
        assert!(!names_its_database(b"CREATE TABLE t (id int)"));
        assert!(!names_its_database(b"DROP TABLE database"));
    }
}
