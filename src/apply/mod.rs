//! The apply side of a channel: one session on the target that replays each
//! transaction under its original GTID.
//!
//! Row events go through `BINLOG '<base64>'` statements exactly as mysqlbinlog
//! output does (after the source's FORMAT_DESCRIPTION event), DDL runs as SQL
//! text with the source session's settings. `sql_log_bin` stays on, so the
//! target binlogs every relayed transaction under its original GTID.

mod binlog_statement;
pub mod claims;
mod deferred;
mod infile;
mod replica_side;
pub mod scheduler;
mod session;
mod sql_text;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Conn};

use crate::config::{ApplySettings, ConflictMode, Master};
use crate::conflict::resolve::Resolver;
use crate::conflict::{self, ConflictError};
use crate::conn::{self, ConnError, quote_ident};
use crate::gtid::{GtidSet, Uuid};
use crate::source::assemble::{Fde, Statement, Step, TxnHeader, Xid, starts_xa};
use crate::source::event_bytes::{self, LayoutError};
use crate::status::ConflictCounts;

use binlog_statement::{Pieces, encoded_len, push_event};
use claims::{Claim, Claimed, Claims};
use deferred::Deferred;
use session::{SessionState, literal};

const ER_BAD_DB_ERROR: u32 = 1049;
const ER_NET_PACKET_TOO_LARGE: u32 = 1153;

const ER_LOCK_DEADLOCK: u32 = 1213;
const ER_DUP_ENTRY: u32 = 1062;
const ER_KEY_NOT_FOUND: u32 = 1032;

/// Back to server-generated GTIDs once a transaction is done.
const GTID_NEXT_AUTOMATIC: &str = "@@SESSION.GTID_NEXT = _utf8mb4'AUTOMATIC'";

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

    /// A conflict with other sessions of the target, on a connection that is
    /// fine: the transaction can be sent again on the same session, as a
    /// replica retries it (replica_transaction_retries). A deadlock InnoDB
    /// broke always; a row that appeared or vanished under last-writer-wins
    /// (where it is marked transient). Not a lock wait timeout: the lock may be
    /// held by a later transaction of this channel waiting for its commit
    /// turn, a cycle only a restart of the session breaks.
    pub fn is_retryable_in_session(&self) -> bool {
        let errno = self.errno();
        let temporary = errno == ER_LOCK_DEADLOCK;
        let raced = matches!(errno, ER_DUP_ENTRY | ER_KEY_NOT_FOUND);
        match self {
            ApplyError::Transaction { transient, .. } => temporary || (*transient && raced),
            ApplyError::Conflict { source, .. } => source.is_transient() && (temporary || raced),
            ApplyError::Connect(_) | ApplyError::Setup { .. } => false,
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
    /// Row conflicts that last-writer-wins decided in it.
    pub conflicts: ConflictCounts,
}

/// Why a transaction is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Another channel of this relay committed it: nothing was sent.
    Known,
    /// The server reported it executed after `SET GTID_NEXT`.
    ByServer,
}

/// The target as the applier found it on connect.
pub struct TargetIdentity {
    pub uuid: Uuid,
    pub executed: GtidSet,
}

pub struct Applier {
    conn: Conn,
    /// The assignments that make a fresh session an applier session.
    init: String,
    target: String,
    max_statement_bytes: usize,
    /// The target's limit on a statement, which a BINLOG statement assembled
    /// from pieces must also respect (CONCAT yields NULL beyond it).
    max_allowed_packet: usize,
    statement_timeout: Option<Duration>,
    /// The FORMAT_DESCRIPTION event this session has loaded.
    fde: Option<Fde>,
    /// The `BINLOG '<base64>…` statement being built from the current
    /// transaction's row events, empty when there are none to send.
    pending_rows: String,
    /// The Table_map events of the source statement in progress, announced
    /// again when the statement is cut across BINLOG statements.
    statement_maps: Vec<Vec<u8>>,
    current: Option<TxnHeader>,
    /// The XA transaction `current` opened with `XA START`, until it is prepared.
    xa: Option<String>,
    /// `SET GTID_NEXT` for `current` is still to be sent.
    gtid_next_pending: bool,
    /// Statements that travel in front of the next one sent.
    deferred: Deferred,
    /// Set when other channels deliver to the same target (then a GTID may arrive twice).
    claims: Option<Arc<Claims>>,
    /// The target's executed set as the relay knows it, shared by its channels.
    executed: Arc<Mutex<GtidSet>>,
    /// This session's claim on the current GTID.
    claim: Option<Claim>,
    /// The target already has the current GTID: the rest of the transaction
    /// is not sent.
    skip: Option<Skip>,
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
        executed: Arc<Mutex<GtidSet>>,
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
        // Behave like a replica applier session (mysqlbinlog output sets the
        // same). Like the native applier, accept foreign keys on non-unique
        // keys the source allowed (8.4+), leave a prepared XA transaction
        // detached, for the session of its XA COMMIT (8.0.27+), and create
        // tables as the source logged them, without an invisible primary key
        // of the target's own (8.0.30+; a source that made one logged it).
        let mut init = String::from(
            "@@SESSION.pseudo_replica_mode = 1 \
             /*!80400 , @@SESSION.restrict_fk_on_non_standard_key = 0 */ \
             /*!80027 , @@SESSION.xa_detach_on_prepare = 1 */ \
             /*!80030 , @@SESSION.sql_generate_invisible_primary_key = 0 */",
        );
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
        c.query_drop(format!("SET {init}"))
            .await
            .map_err(|e| setup_err("preparing the apply session", e))?;
        let (uuid, executed_text, max_allowed_packet, no_dir_in_create): (
            String,
            String,
            usize,
            bool,
        ) = c
            .query_first(
                "SELECT @@server_uuid, @@GLOBAL.gtid_executed, @@SESSION.max_allowed_packet, \
                 FIND_IN_SET('NO_DIR_IN_CREATE', @@SESSION.sql_mode) > 0",
            )
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
            executed: GtidSet::parse(&executed_text)
                .map_err(|e| bad("parsing gtid_executed", format!("{e}")))?,
        };
        Ok((
            Applier {
                conn: c,
                init,
                target: target.name.clone(),
                max_statement_bytes: settings.max_statement_bytes,
                max_allowed_packet,
                statement_timeout: settings.statement_timeout,
                fde: None,
                pending_rows: String::new(),
                statement_maps: Vec::new(),
                current: None,
                xa: None,
                gtid_next_pending: false,
                deferred: Deferred::default(),
                claims,
                executed,
                claim: None,
                skip: None,
                session: SessionState::new(no_dir_in_create),
                resolver,
                strict_statement: false,
            },
            identity,
        ))
    }

    /// The current transaction ended and its GTID is executed on the target.
    ///
    /// The GTID goes into the shared executed set right away, before the claim
    /// is released and before the scheduler hears of it: a session waiting for
    /// the claim then skips the transaction without asking the target, and the
    /// lag (which leaves out what the target has) never counts a transaction
    /// the target already committed.
    fn complete(&mut self, conflicts: ConflictCounts) -> Option<Completed> {
        let skipped = self.skip.take().is_some();
        let header = self.current.take();
        if let Some(header) = &header {
            self.executed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(&header.gtid);
        }
        self.claim = None;
        header.map(|header| Completed {
            header,
            skipped,
            conflicts,
        })
    }

    /// The target committed the current transaction.
    fn committed(&mut self) -> Option<Completed> {
        self.release_gtid_next();
        let conflicts = self
            .resolver
            .as_mut()
            .map(Resolver::committed)
            .unwrap_or_default();
        self.complete(conflicts)
    }

    /// Apply one step. Returns the transaction it completed, if any.
    pub async fn apply(&mut self, step: Step) -> Result<Option<Completed>, ApplyError> {
        match step {
            Step::FormatDescription(fde) => {
                if self.fde.as_ref() != Some(&fde) {
                    self.load_format_description(&fde).await?;
                    if let Some(r) = &mut self.resolver {
                        r.format_description(&fde.event)
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
                self.skip = None;
                Ok(None)
            }
            Step::Query(_) | Step::Rows(_) if self.skipping().await => Ok(None),
            Step::Commit | Step::Rollback | Step::Ddl(_) | Step::XaPrepare { .. }
                if self.skipping().await =>
            {
                self.end_skipped().await?;
                Ok(self.complete(ConflictCounts::default()))
            }
            Step::Query(stmt) => {
                self.flush_rows().await?;
                self.statement(&stmt).await?;
                if self.skip.is_none() && starts_xa(&stmt.sql) {
                    // `XA START <xid>`: what follows the two words is the xid.
                    let text = String::from_utf8_lossy(&stmt.sql);
                    self.xa = text.splitn(3, ' ').nth(2).map(str::to_string);
                }
                Ok(None)
            }
            Step::Rows(mut event) => {
                // Last-writer-wins looks at each event before it is applied,
                // inside the transaction: GTID_NEXT and BEGIN must be sent by now.
                if self.resolver.is_some() {
                    self.send_deferred("session settings, GTID_NEXT and BEGIN")
                        .await?;
                    if let Some(r) = &mut self.resolver
                        && let Err(e) = r.check(&mut self.conn, &event).await
                    {
                        return Err(self.conflict_error(e));
                    }
                }
                if event_bytes::is_table_map(&event) {
                    push_event(&mut self.pending_rows, &event);
                    self.statement_maps.push(event);
                    return Ok(None);
                }
                let ends = event_bytes::ends_statement(&event);
                // The target forgets its table maps at the end of each BINLOG
                // statement (a Rows event whose Table_map came in an earlier one
                // crashes MySQL 9.7), so a source statement is sent whole, as
                // mysqlbinlog does, unless it outgrows max_statement_bytes: then
                // it is cut after this event, which is marked to end a statement,
                // and the next BINLOG statement announces its tables again. For
                // row events that is the same change, and memory stays bounded
                // however many rows one statement touches.
                let encoded = encoded_len(event.len());
                let cut = !ends && self.pending_rows.len() + encoded >= self.max_statement_bytes;
                if cut {
                    event_bytes::mark_statement_end(&mut event, self.crc())
                        .map_err(|e| self.malformed(e))?;
                }
                if ends {
                    self.statement_maps.clear();
                }
                if encoded >= self.max_statement_bytes {
                    // One event outgrows a statement on its own (a big BLOB):
                    // it ends this BINLOG statement, never copied as a whole.
                    self.send_rows(Some(event)).await?;
                } else {
                    push_event(&mut self.pending_rows, &event);
                    drop(event);
                    // Under last-writer-wins each source statement is applied
                    // before the next one is compared with the target.
                    if (ends || cut)
                        && (self.pending_rows.len() >= self.max_statement_bytes
                            || self.resolver.is_some())
                    {
                        self.flush_rows().await?;
                    }
                }
                if cut {
                    for map in &self.statement_maps {
                        push_event(&mut self.pending_rows, map);
                    }
                }
                Ok(None)
            }
            Step::Commit => {
                self.flush_rows().await?;
                self.exec("COMMIT".to_string(), "COMMIT").await?;
                Ok(self.committed())
            }
            Step::XaPrepare { xid, one_phase } => {
                self.flush_rows().await?;
                let sql = xa_prepare_statement(&xid, one_phase);
                self.exec(sql.clone(), &sql).await?;
                self.xa = None;
                Ok(self.committed())
            }
            Step::Rollback => {
                // The source rolled back; commit an empty transaction so that the
                // GTID is still executed on the target, as a native replica does.
                self.pending_rows.clear();
                self.statement_maps.clear();
                if let Some(r) = &mut self.resolver {
                    r.rolled_back();
                }
                let gtid = self.current_gtid();
                let sql = format!(
                    "ROLLBACK; SET @@SESSION.GTID_NEXT = {}; BEGIN; COMMIT",
                    literal(&gtid)
                );
                self.exec(sql, "ROLLBACK").await?;
                self.release_gtid_next();
                Ok(self.complete(ConflictCounts::default()))
            }
            Step::Ddl(stmt) => {
                if let Some(r) = &mut self.resolver {
                    r.schema_changed();
                }
                self.statement(&stmt).await?;
                if self.skip.is_some() {
                    self.end_skipped().await?;
                    return Ok(self.complete(ConflictCounts::default()));
                }
                self.release_gtid_next();
                Ok(self.complete(ConflictCounts::default()))
            }
        }
    }

    /// Abandon the transaction in progress (its events will be sent again).
    pub async fn rollback(&mut self) {
        self.pending_rows.clear();
        self.statement_maps.clear();
        self.skip = None;
        if self.deferred.take().is_some() {
            // Settings the session never received: send them all again.
            self.session.forget_settings();
        }
        if let Some(r) = &mut self.resolver {
            r.rolled_back();
        }
        let gtid_was_set = !std::mem::take(&mut self.gtid_next_pending);
        if self.current.take().is_some() && gtid_was_set {
            // Released now, not with the next query: the claim goes below.
            // (When GTID_NEXT was only deferred, this ROLLBACK is harmless.)
            // An XA transaction in progress ends only with its own statements.
            let end = match self.xa.take() {
                Some(xid) => {
                    let _ = self.conn.query_drop(format!("XA END {xid}")).await;
                    format!("XA ROLLBACK {xid}")
                }
                None => "ROLLBACK".to_string(),
            };
            let _ = self
                .conn
                .query_drop(format!("{end}; SET {GTID_NEXT_AUTOMATIC}"))
                .await;
        } else {
            // No GTID of this transaction reached the session; it may still
            // hold the one of its last commit, whose deferred reset went above.
            self.release_gtid_next();
        }
        // Only now may another channel take the GTID: the server released it.
        self.claim = None;
    }

    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }

    async fn flush_rows(&mut self) -> Result<(), ApplyError> {
        self.send_rows(None).await
    }

    /// Send the BINLOG statement built so far, ending with `large`, an event
    /// too large to add to it in memory, when there is one.
    async fn send_rows(&mut self, large: Option<Vec<u8>>) -> Result<(), ApplyError> {
        if self.pending_rows.is_empty() && large.is_none() {
            return Ok(());
        }
        let Some((fixups, unkeyed)) = self.resolver.as_mut().map(Resolver::take_statement) else {
            return self.exec_rows(large).await;
        };
        // Errors on rows of tables without a key stop the channel, as in strict mode.
        self.strict_statement = unkeyed;
        let applied = self.exec_rows(large).await;
        self.strict_statement = false;
        applied?;
        for fixup in fixups {
            let what = format!("keeping the winning version: {}", truncate(&fixup, 200));
            self.exec(fixup, &what).await?;
        }
        Ok(())
    }

    async fn exec_rows(&mut self, large: Option<Vec<u8>>) -> Result<(), ApplyError> {
        // Taken, not copied: a statement may be as large as max_statement_bytes.
        let mut sql = std::mem::take(&mut self.pending_rows);
        let Some(event) = large else {
            binlog_statement::finish(&mut sql);
            return self.exec(sql, "row events").await;
        };
        let pieces = Pieces::new(sql, &event);
        let len = pieces.statement_len();
        if len > self.max_allowed_packet {
            return Err(self.failed(
                ER_NET_PACKET_TOO_LARGE,
                format!(
                    "a {}-byte row event needs a {len}-byte BINLOG statement, more than the target's \
                     max_allowed_packet ({}); raise it on {} (SET PERSIST max_allowed_packet = ...) \
                     and start the channel again",
                    event.len(),
                    self.max_allowed_packet,
                    self.target
                ),
                "row events".into(),
                false,
            ));
        }
        let count = pieces.count();
        for i in 0..count {
            let what = format!(
                "row events (piece {} of {count} of a {len}-byte statement)",
                i + 1
            );
            self.exec_bytes(pieces.piece(i).into_bytes(), what).await?;
        }
        self.exec(pieces.execute(), "row events").await?;
        self.deferred.statement(&Pieces::deallocate());
        Ok(())
    }

    /// Send the deferred statements on their own, when the next statement is
    /// not the applier's to send (last-writer-wins reads inside the
    /// transaction) or the applier needs their answer.
    async fn send_deferred(&mut self, what: &str) -> Result<(), ApplyError> {
        match self.deferred.take() {
            Some(deferred) => self.exec(deferred, what).await,
            None => Ok(()),
        }
    }

    /// The transaction's GTID is committed (or skipped): put the session back
    /// to `GTID_NEXT = AUTOMATIC` in front of its next query, not in a round
    /// trip of its own (until then a statement that writes fails with
    /// ER_GTID_NEXT_TYPE_UNDEFINED_GTID; the next transaction's SET comes first).
    fn release_gtid_next(&mut self) {
        self.deferred.set(GTID_NEXT_AUTOMATIC);
    }

    /// Load the source's FORMAT_DESCRIPTION event: how the BINLOG statements
    /// that follow are laid out.
    async fn load_format_description(&mut self, fde: &Fde) -> Result<(), ApplyError> {
        let sql = format!("BINLOG '{}'", BASE64.encode(&fde.event));
        self.exec(sql, "the source's FORMAT_DESCRIPTION event")
            .await?;
        // Loading a FORMAT_DESCRIPTION event outside a transaction leaves
        // GTID_NEXT at NOT_YET_DETERMINED, where the next BINLOG statement
        // without a GTID would be anonymous (1782): back to AUTOMATIC before
        // anything else is sent.
        self.release_gtid_next();
        Ok(())
    }

    /// Start the session over without a default database, which no statement
    /// can clear (COM_CHANGE_USER does), and make it an applier session again.
    async fn reset_session(&mut self) -> Result<(), ApplyError> {
        // Whatever was deferred (a GTID_NEXT reset, settings) the reset does.
        self.deferred.take();
        if let Err(e) = self.conn.change_user(ChangeUserOpts::default()).await {
            return Err(self.error(&e, "clearing the default database (COM_CHANGE_USER)".into()));
        }
        self.session = self.session.fresh();
        self.deferred.set(&self.init);
        if let Some(fde) = self.fde.clone() {
            self.load_format_description(&fde).await?;
        }
        Ok(())
    }

    /// Give the session the statement's default database, or none, as the
    /// native applier does. None can be given only before the transaction
    /// has sent anything (a row transaction's statements do not need it),
    /// and XA statements, which name no object, do without.
    async fn use_schema(&mut self, stmt: &Statement) -> Result<(), ApplyError> {
        if stmt.schema.is_empty() {
            let xa = sql_text::leading_words(&stmt.sql, 1) == ["XA"];
            if self.session.schema().is_some() && self.gtid_next_pending && !xa {
                self.reset_session().await?;
            }
            return Ok(());
        }
        if self.session.schema() == Some(stmt.schema.as_str()) {
            return Ok(());
        }
        if !stmt.schema.is_ascii() {
            // The name is in the server's system character set (UTF-8),
            // which the source's client character set may not read.
            let charset = self.session.relay_charset();
            self.deferred.set(&charset);
        }
        match self
            .exec(format!("USE {}", quote_ident(&stmt.schema)), "USE")
            .await
        {
            Ok(()) => self.session.set_schema(Some(&stmt.schema)),
            // CREATE/DROP DATABASE are logged with the database they name as the
            // default one, which the target may not have (a replica sets it
            // unchecked). They name their database, so run them without it;
            // the session keeps the one it had.
            Err(e) if e.errno() == ER_BAD_DB_ERROR && database_verb(&stmt.sql).is_some() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Whether the source's events end with a CRC32 (as its FDE announced).
    fn crc(&self) -> bool {
        self.fde.as_ref().is_some_and(|f| f.crc)
    }

    fn malformed(&self, e: LayoutError) -> ApplyError {
        self.failed(
            0,
            e.to_string(),
            "cutting a long statement's row events".into(),
            false,
        )
    }

    /// An error in the current transaction.
    fn failed(&self, errno: u32, message: String, what: String, transient: bool) -> ApplyError {
        ApplyError::Transaction {
            target: self.target.clone(),
            gtid: self.current_gtid(),
            errno,
            message,
            what,
            transient,
        }
    }

    fn conflict_error(&self, source: ConflictError) -> ApplyError {
        ApplyError::Conflict {
            target: self.target.clone(),
            gtid: self.current_gtid(),
            source,
        }
    }

    async fn statement(&mut self, stmt: &Statement) -> Result<(), ApplyError> {
        // BEGIN needs no default database.
        let begin = stmt.sql.eq_ignore_ascii_case(b"BEGIN");
        if !begin {
            self.use_schema(stmt).await?;
        }
        let settings = self.session.prepare(stmt);
        self.deferred.set(&settings);
        if self.gtid_next_pending {
            self.set_gtid_next().await?;
        }
        if self.skip.is_some() {
            return Ok(());
        }
        if begin {
            // Nothing in front of the transaction's next statement can fail in a
            // way that releases the GTID.
            self.deferred.statement("BEGIN");
            return Ok(());
        }
        let text = String::from_utf8_lossy(&stmt.sql).into_owned();
        let what = format!("query: {}", truncate(&text, 200));
        let sql = replica_side::rewrite(&stmt.sql).unwrap_or_else(|| stmt.sql.clone());
        if let Some(data) = &stmt.infile {
            self.conn.set_infile_handler(infile::handler(data.clone()));
        }
        match self.exec_bytes(sql, what).await {
            Err(ApplyError::Transaction {
                errno: infile::ER_CLIENT_LOCAL_FILES_DISABLED,
                message,
                what,
                ..
            }) if stmt.infile.is_some() => {
                return Err(self.failed(
                    infile::ER_CLIENT_LOCAL_FILES_DISABLED,
                    format!("{message} ({})", infile::LOCAL_INFILE_HINT),
                    what,
                    false,
                ));
            }
            result => result?,
        }
        if database_verb(&stmt.sql) == Some(DatabaseVerb::Drop)
            && self.session.schema() == Some(stmt.schema.as_str())
        {
            // Dropping the session's default database leaves it without one.
            self.session.set_schema(None);
        }
        Ok(())
    }

    /// True when the rest of the current transaction is to be skipped. When
    /// other channels deliver to this target, this is where the session waits
    /// for its turn on the GTID, before the transaction's first statement.
    async fn skipping(&mut self) -> bool {
        if self.skip.is_some() {
            return true;
        }
        if let (Some(claims), Some(header), None) = (&self.claims, &self.current, &self.claim) {
            let claims = claims.clone();
            let gtid = header.gtid.clone();
            match claims.claim(&gtid).await {
                Claimed::Held(claim) => self.claim = Some(claim),
                Claimed::Executed => {
                    tracing::debug!(target_name = %self.target, gtid = %gtid,
                        "another channel applied the transaction; skipping it");
                    self.skip = Some(Skip::Known);
                }
            }
        }
        self.skip.is_some()
    }

    /// End a skipped transaction: leave the GTID if the session set it.
    async fn end_skipped(&mut self) -> Result<(), ApplyError> {
        self.pending_rows.clear();
        if self.skip == Some(Skip::ByServer) {
            self.release_gtid_next();
        }
        Ok(())
    }

    /// `SET GTID_NEXT` for the current transaction, deferred to its next
    /// statement. When other channels also deliver to this target, it is sent
    /// now, to find out whether the server will skip the transaction: after
    /// SET GTID_NEXT the session owns the GTID unless it is already executed.
    async fn set_gtid_next(&mut self) -> Result<(), ApplyError> {
        self.gtid_next_pending = false;
        let Some(header) = &self.current else {
            return Ok(());
        };
        self.deferred.set(&gtid_next_assignments(header));
        if self.claims.is_none() {
            return Ok(());
        }
        self.send_deferred("SET GTID_NEXT").await?;
        let owned: Option<String> = self
            .conn
            .query_first("SELECT @@SESSION.gtid_owned")
            .await
            .map_err(|e| self.error(&e, "SELECT @@SESSION.gtid_owned".into()))?;
        if owned.is_none_or(|o| o.is_empty()) {
            self.skip = Some(Skip::ByServer);
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
        self.exec_bytes(sql.into_bytes(), what.to_string()).await
    }

    /// Run `sql` (one or more statements), after the deferred statements.
    ///
    /// Nothing may follow a `BINLOG` statement in one query: applying a Rows
    /// event starts a new statement in the server
    /// (mysql_reset_thd_for_next_command), which clears
    /// SERVER_MORE_RESULTS_EXISTS, so the reply to the BINLOG statement says
    /// nothing follows; the client stops reading there and the next reply
    /// arrives out of turn ("Packets out of sync"). Statements in front of a
    /// BINLOG statement are fine. They go in front in place: a BINLOG
    /// statement may be as large as the largest row event.
    async fn exec_bytes(&mut self, mut sql: Vec<u8>, what: String) -> Result<(), ApplyError> {
        let what = match self.deferred.take() {
            Some(deferred) => {
                sql.splice(0..0, format!("{deferred}; ").into_bytes());
                format!("session settings and {what}")
            }
            None => what,
        };
        let run = self.conn.query_drop(&sql[..]);
        let result = match self.statement_timeout {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(self.failed(
                        conn::CR_SERVER_LOST,
                        format!("no answer within {limit:?}; dropping the session"),
                        what,
                        true,
                    ));
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
        let transient = conn::is_transient(e)
            || (self.resolver.is_some() && conflict::is_raced(errno, !self.strict_statement));
        self.failed(errno, conn::message_of(e), what, transient)
    }
}

/// The assignments that open a transaction: the origin's commit time and
/// server versions (as mysqlbinlog sets them), then its GTID.
fn gtid_next_assignments(h: &TxnHeader) -> String {
    let mut sql = String::new();
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
        literal(&h.gtid.to_string())
    ));
    sql
}

/// What ends the first part of an XA transaction on the target.
fn xa_prepare_statement(xid: &Xid, one_phase: bool) -> String {
    if one_phase {
        format!("XA COMMIT {xid} ONE PHASE")
    } else {
        format!("XA PREPARE {xid}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatabaseVerb {
    Create,
    Drop,
}

/// `CREATE|DROP DATABASE|SCHEMA ...`: which of the two.
fn database_verb(sql: &[u8]) -> Option<DatabaseVerb> {
    match sql_text::leading_words(sql, 2).as_slice() {
        [verb, noun] if noun == "DATABASE" || noun == "SCHEMA" => match verb.as_str() {
            "CREATE" => Some(DatabaseVerb::Create),
            "DROP" => Some(DatabaseVerb::Drop),
            _ => None,
        },
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::{ApplyError, DatabaseVerb, database_verb};

    fn failed(errno: u32, transient: bool) -> ApplyError {
        ApplyError::Transaction {
            target: "m1".into(),
            gtid: String::new(),
            errno,
            message: String::new(),
            what: String::new(),
            transient,
        }
    }

    #[test]
    fn deadlocks_and_lww_races_are_retried_in_the_session() {
        assert!(failed(1213, false).is_retryable_in_session());
        // Last-writer-wins marks a raced key transient; strict mode does not.
        assert!(failed(1062, true).is_retryable_in_session());
        assert!(!failed(1062, false).is_retryable_in_session());
        assert!(!failed(1032, false).is_retryable_in_session());
        // The lock may belong to this channel's next transaction: restart instead.
        assert!(!failed(1205, true).is_retryable_in_session());
        assert!(!failed(2013, true).is_retryable_in_session());
    }

    #[test]
    fn database_statements_are_recognised() {
        assert_eq!(
            database_verb(b"CREATE DATABASE s1"),
            Some(DatabaseVerb::Create)
        );
        assert_eq!(
            database_verb(b"  /* x */ drop schema if exists `s1`"),
            Some(DatabaseVerb::Drop)
        );
        assert_eq!(database_verb(b"CREATE TABLE t (id int)"), None);
        assert_eq!(database_verb(b"DROP TABLE `database`"), None);
    }
}
