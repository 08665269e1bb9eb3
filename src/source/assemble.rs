//! Transaction assembly: turn the binlog event stream into typed steps.
//!
//! A GTID transaction is `GTID (or GTID_TAGGED) → Query BEGIN → (Table_map,
//! Rows…)… → Xid or Query COMMIT`, or `GTID → Query <DDL>` for a statement that
//! commits itself. Events unpacked from a TRANSACTION_PAYLOAD arrive as ordinary
//! events right after it, so the payload event itself is skipped.

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::consts::StatusVarKey;
use mysql_common::binlog::events::{
    Event, EventData, ExecuteLoadQueryEvent, GtidEvent, QueryEvent, StatusVarVal, StatusVars,
};

use crate::conn::hex;
use crate::gtid::{Gtid, Tag, Uuid};
use crate::source::context::ContextVar;
use crate::source::event::{RawEvent, kind_of};
use crate::source::event_bytes;
use crate::source::load_data::{self, LoadData, Spool};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssembleError {
    #[error("cannot decode {kind} event: {message}")]
    Decode { kind: String, message: String },
    #[error(
        "the source sent an anonymous (non-GTID) transaction; set gtid_mode=ON on the source \
         (`gtid-relay gtid-mode enable`)"
    )]
    Anonymous,
    #[error("{kind} event outside a transaction")]
    OutsideTransaction { kind: String },
    #[error("transaction {gtid} ended without COMMIT before the next GTID")]
    Unterminated { gtid: String },
    #[error("unsupported event {kind}: {why}")]
    Unsupported { kind: String, why: &'static str },
    #[error("cannot spool the file of a statement-based LOAD DATA to the temporary directory: {0}")]
    Spool(String),
}

/// What the GTID event says about its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnHeader {
    pub gtid: Gtid,
    /// Logical clock, restarting with every binlog file.
    pub last_committed: u64,
    pub sequence_number: u64,
    /// µs since the epoch on the origin master, and on the immediate source.
    pub original_commit_us: u64,
    pub immediate_commit_us: u64,
    pub original_server_version: u32,
    pub immediate_server_version: u32,
}

impl TxnHeader {
    /// When the transaction committed on its origin; a server that does not
    /// log the original time (0) gives its own.
    pub fn commit_us(&self) -> u64 {
        if self.original_commit_us != 0 {
            self.original_commit_us
        } else {
            self.immediate_commit_us
        }
    }
}

/// Session state a Query event was executed with on the source (its status variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    pub flags2: Option<u32>,
    pub sql_mode: Option<u64>,
    pub auto_increment: Option<(u16, u16)>,
    /// character_set_client, collation_connection, collation_server (collation ids).
    pub charset: Option<(u16, u16, u16)>,
    pub time_zone: Option<String>,
    pub lc_time_names: Option<u16>,
    pub collation_database: Option<u16>,
    pub explicit_defaults_for_timestamp: Option<bool>,
    pub default_collation_for_utf8mb4: Option<u16>,
    pub sql_require_primary_key: Option<u8>,
    pub default_table_encryption: Option<u8>,
}

/// A statement to run as SQL text on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: Vec<u8>,
    /// The source session's default database ("" for none).
    pub schema: String,
    pub settings: SessionSettings,
    pub thread_id: u32,
    /// Event timestamp (seconds) and the Microseconds status variable.
    pub timestamp: u32,
    pub micros: Option<u32>,
    /// User variables, insert ids and RAND seeds the statement reads, from
    /// the INTVAR, RAND and USER_VAR events logged in front of it.
    pub context: Vec<ContextVar>,
    /// The file a `LOAD DATA LOCAL INFILE` statement reads (statement-based
    /// LOAD DATA, see `load_data`).
    pub infile: Option<LoadData>,
}

/// An XA transaction's identifier, as XA statements spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xid {
    pub format_id: i32,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

impl std::fmt::Display for Xid {
    /// `X'<gtrid>',X'<bqual>',<formatID>`, as the server logs it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "X'{}',X'{}',{}",
            hex(&self.gtrid),
            hex(&self.bqual),
            self.format_id
        )
    }
}

/// A serialised FORMAT_DESCRIPTION event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fde {
    pub event: Vec<u8>,
    /// The events it describes end with a CRC32 trailer.
    pub crc: bool,
}

/// One step of the relayed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A FORMAT_DESCRIPTION event; apply sessions load it first.
    FormatDescription(Fde),
    /// A transaction starts.
    Begin(TxnHeader),
    /// `BEGIN` or another statement inside a BEGIN…COMMIT transaction.
    Query(Statement),
    /// A Table_map or Rows event, serialised with its checksum, for a `BINLOG` statement.
    Rows(Vec<u8>),
    /// XID or `COMMIT`: the transaction is complete.
    Commit,
    /// `ROLLBACK`: the transaction ends without effect.
    Rollback,
    /// A statement that commits itself (DDL); the transaction is complete.
    Ddl(Statement),
    /// The end of an XA transaction's first part (XA_PREPARE_LOG_EVENT):
    /// `XA PREPARE`, or `XA COMMIT … ONE PHASE`. Its `XA COMMIT` or
    /// `XA ROLLBACK` comes later as a transaction of its own (a `Ddl`).
    XaPrepare { xid: Xid, one_phase: bool },
}

impl Step {
    /// True when the step ends the current transaction.
    pub fn ends_transaction(&self) -> bool {
        matches!(
            self,
            Step::Commit | Step::Rollback | Step::Ddl(_) | Step::XaPrepare { .. }
        )
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// After the GTID event; `began` once Query BEGIN (or XA START) was
    /// seen; `context`: INTVAR, RAND and USER_VAR events for the next
    /// statement; `load`: the file of a LOAD DATA being received.
    InTxn {
        gtid: Gtid,
        began: bool,
        context: Vec<ContextVar>,
        load: Option<Spool>,
    },
}

/// Feeds on events, yields steps.
#[derive(Debug, Default)]
pub struct Assembler {
    state: State,
}

fn kind(event: &Event) -> String {
    kind_of(event.header().event_type())
}

fn decode_err(kind: String, e: impl std::fmt::Display) -> AssembleError {
    AssembleError::Decode {
        kind,
        message: e.to_string(),
    }
}

pub(crate) fn header_of(event: &Event, g: &GtidEvent) -> Result<TxnHeader, AssembleError> {
    let tag = match g.tag() {
        Some(t) => Some(
            t.as_str()
                .parse::<Tag>()
                .map_err(|e| decode_err(kind(event), e))?,
        ),
        None => None,
    };
    Ok(TxnHeader {
        gtid: Gtid {
            uuid: Uuid(g.sid()),
            tag,
            gno: g.gno(),
        },
        last_committed: g.last_committed(),
        sequence_number: g.sequence_number(),
        original_commit_us: g.original_commit_timestamp(),
        immediate_commit_us: g.immediate_commit_timestamp(),
        original_server_version: g.original_server_version(),
        immediate_server_version: g.immediate_server_version(),
    })
}

/// The text, default database and session of a Query (or EXECUTE_LOAD_QUERY) event.
struct Logged<'a> {
    sql: &'a [u8],
    schema: String,
    status_vars: &'a StatusVars<'a>,
    thread_id: u32,
}

impl<'a> Logged<'a> {
    fn query(q: &'a QueryEvent<'a>) -> Logged<'a> {
        Logged {
            sql: q.query_raw(),
            schema: q.schema().into_owned(),
            status_vars: q.status_vars(),
            thread_id: q.thread_id(),
        }
    }

    fn load(q: &'a ExecuteLoadQueryEvent<'a>) -> Logged<'a> {
        Logged {
            sql: q.query_raw(),
            schema: q.schema().into_owned(),
            status_vars: q.status_vars(),
            thread_id: q.thread_id(),
        }
    }
}

fn statement_of(event: &Event, q: Logged<'_>, context: Vec<ContextVar>) -> Statement {
    let mut settings = SessionSettings::default();
    // mysql_common 0.37 reads Q_MICROSECONDS as 4 bytes; it is 3 (24-bit
    // little-endian), so its decoder always fails: read the raw bytes.
    let micros = q
        .status_vars
        .get_status_var(StatusVarKey::Microseconds)
        .and_then(|var| match var.get_value() {
            Ok(StatusVarVal::Microseconds(us)) => Some(us),
            Ok(_) => None,
            Err(&[b0, b1, b2]) => Some(u32::from_le_bytes([b0, b1, b2, 0])),
            Err(_) => None,
        });
    for var in q.status_vars.iter() {
        let Ok(value) = var.get_value() else { continue };
        match value {
            StatusVarVal::Flags2(f) => settings.flags2 = Some(f.0),
            StatusVarVal::SqlMode(m) => settings.sql_mode = Some(m.0),
            StatusVarVal::AutoIncrement { increment, offset } => {
                settings.auto_increment = Some((increment, offset));
            }
            StatusVarVal::Charset {
                charset_client,
                collation_connection,
                collation_server,
            } => settings.charset = Some((charset_client, collation_connection, collation_server)),
            StatusVarVal::TimeZone(tz) => settings.time_zone = Some(tz.as_str().into_owned()),
            StatusVarVal::LcTimeNames(n) => settings.lc_time_names = Some(n),
            StatusVarVal::CharsetDatabase(c) => settings.collation_database = Some(c),
            StatusVarVal::ExplicitDefaultsForTimestamp(b) => {
                settings.explicit_defaults_for_timestamp = Some(b)
            }
            StatusVarVal::DefaultCollationForUtf8mb4(c) => {
                settings.default_collation_for_utf8mb4 = Some(c)
            }
            StatusVarVal::SqlRequirePrimaryKey(v) => settings.sql_require_primary_key = Some(v),
            StatusVarVal::DefaultTableEncryption(v) => settings.default_table_encryption = Some(v),
            _ => {}
        }
    }
    Statement {
        sql: q.sql.to_vec(),
        schema: q.schema,
        settings,
        thread_id: q.thread_id,
        timestamp: event.header().timestamp(),
        micros,
        context,
        infile: None,
    }
}

/// XA_PREPARE_LOG_EVENT's body: one_phase (1), formatID (4), gtrid_length
/// (4), bqual_length (4), then gtrid and bqual (sql/log_event.h).
fn xa_prepare_of(event: &Event) -> Result<Step, AssembleError> {
    let bad = || decode_err(kind(event), "truncated XA_PREPARE event");
    let data = event.data();
    let word = |at: usize| -> Result<i32, AssembleError> {
        data.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_le_bytes)
            .ok_or_else(bad)
    };
    let one_phase = *data.first().ok_or_else(bad)? != 0;
    let format_id = word(1)?;
    let gtrid_len = usize::try_from(word(5)?).map_err(|_| bad())?;
    let bqual_len = usize::try_from(word(9)?).map_err(|_| bad())?;
    let gtrid = data.get(13..13 + gtrid_len).ok_or_else(bad)?;
    let bqual = data
        .get(13 + gtrid_len..13 + gtrid_len + bqual_len)
        .ok_or_else(bad)?;
    Ok(Step::XaPrepare {
        xid: Xid {
            format_id,
            gtrid: gtrid.to_vec(),
            bqual: bqual.to_vec(),
        },
        one_phase,
    })
}

/// `XA START …` (or its synonym `XA BEGIN`), which opens an XA transaction
/// the way BEGIN opens another.
pub fn starts_xa(sql: &[u8]) -> bool {
    let head = |word: &[u8]| {
        sql.get(..word.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(word))
    };
    head(b"XA START") || head(b"XA BEGIN")
}

impl Assembler {
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::InTxn { .. })
    }

    /// The next step for `event`, if it is one the target needs. Rows events
    /// become steps without being decoded or copied; the rest are small and
    /// decoded with mysql_common.
    pub fn feed(&mut self, event: RawEvent) -> Result<Option<Step>, AssembleError> {
        use EventType::*;
        let Ok(event_type) = event.event_type() else {
            return Err(AssembleError::Unsupported {
                kind: event.kind(),
                why: "unknown event type",
            });
        };
        match event_type {
            t if t == TABLE_MAP_EVENT || event_bytes::is_rows(t) => match self.state {
                State::InTxn { began: true, .. } => {
                    let kind = event.kind();
                    let bytes = event.into_serialized().map_err(|e| decode_err(kind, e))?;
                    Ok(Some(Step::Rows(bytes)))
                }
                _ => Err(AssembleError::OutsideTransaction { kind: event.kind() }),
            },
            FORMAT_DESCRIPTION_EVENT => {
                let crc = event.format().has_crc();
                let kind = event.kind();
                Ok(Some(Step::FormatDescription(Fde {
                    event: event.into_serialized().map_err(|e| decode_err(kind, e))?,
                    crc,
                })))
            }
            // Bookkeeping and informational events: nothing to apply.
            ROTATE_EVENT
            | HEARTBEAT_EVENT
            | PREVIOUS_GTIDS_EVENT
            | TRANSACTION_PAYLOAD_EVENT
            | ROWS_QUERY_EVENT
            | IGNORABLE_EVENT
            | STOP_EVENT
            | TRANSACTION_CONTEXT_EVENT
            | VIEW_CHANGE_EVENT => Ok(None),
            _ => {
                let decoded = event.decode().map_err(|e| decode_err(event.kind(), e))?;
                self.feed_decoded(event_type, &decoded)
            }
        }
    }

    fn feed_decoded(
        &mut self,
        event_type: EventType,
        event: &Event,
    ) -> Result<Option<Step>, AssembleError> {
        use EventType::*;
        match event_type {
            GTID_EVENT | GTID_TAGGED_LOG_EVENT => {
                if let State::InTxn { gtid, .. } = &self.state {
                    return Err(AssembleError::Unterminated {
                        gtid: gtid.to_string(),
                    });
                }
                let Ok(Some(EventData::GtidEvent(g))) = event.read_data() else {
                    return Err(decode_err(kind(event), "not a GTID event"));
                };
                let header = header_of(event, &g)?;
                self.state = State::InTxn {
                    gtid: header.gtid.clone(),
                    began: false,
                    context: Vec::new(),
                    load: None,
                };
                Ok(Some(Step::Begin(header)))
            }
            QUERY_EVENT => {
                let q: QueryEvent<'_> =
                    event.read_event().map_err(|e| decode_err(kind(event), e))?;
                let State::InTxn { began, context, .. } = &mut self.state else {
                    return Err(AssembleError::OutsideTransaction { kind: kind(event) });
                };
                let sql = q.query_raw();
                let context = std::mem::take(context);
                let step = if !*began {
                    if sql.eq_ignore_ascii_case(b"BEGIN") || starts_xa(sql) {
                        *began = true;
                        Step::Query(statement_of(event, Logged::query(&q), context))
                    } else {
                        self.state = State::Idle;
                        Step::Ddl(statement_of(event, Logged::query(&q), context))
                    }
                } else if sql.eq_ignore_ascii_case(b"COMMIT") {
                    self.state = State::Idle;
                    Step::Commit
                } else if sql.eq_ignore_ascii_case(b"ROLLBACK") {
                    self.state = State::Idle;
                    Step::Rollback
                } else {
                    Step::Query(statement_of(event, Logged::query(&q), context))
                };
                Ok(Some(step))
            }
            XID_EVENT => match self.state {
                State::InTxn { began: true, .. } => {
                    self.state = State::Idle;
                    Ok(Some(Step::Commit))
                }
                _ => Err(AssembleError::OutsideTransaction { kind: kind(event) }),
            },
            ANONYMOUS_GTID_EVENT => Err(AssembleError::Anonymous),
            INTVAR_EVENT | RAND_EVENT | USER_VAR_EVENT => match &mut self.state {
                State::InTxn { context, .. } => {
                    let var = ContextVar::of(event).map_err(|e| decode_err(kind(event), e))?;
                    context.push(var);
                    Ok(None)
                }
                State::Idle => Err(AssembleError::OutsideTransaction { kind: kind(event) }),
            },
            BEGIN_LOAD_QUERY_EVENT | APPEND_BLOCK_EVENT | DELETE_FILE_EVENT => {
                self.load_block(event_type, event).map(|()| None)
            }
            EXECUTE_LOAD_QUERY_EVENT => self.execute_load(event).map(Some),
            INCIDENT_EVENT => Err(AssembleError::Unsupported {
                kind: kind(event),
                why: "the source recorded an incident (lost events); resynchronise the target",
            }),
            XA_PREPARE_LOG_EVENT => match self.state {
                State::InTxn { began: true, .. } => {
                    let step = xa_prepare_of(event)?;
                    self.state = State::Idle;
                    Ok(Some(step))
                }
                _ => Err(AssembleError::OutsideTransaction { kind: kind(event) }),
            },
            other => Err(AssembleError::Unsupported {
                kind: format!("{other:?}"),
                why: "not produced by a MySQL 8.0+ source in ROW format",
            }),
        }
    }

    /// A block of a LOAD DATA file: the first (which opens the spool), a
    /// further one, or the notice that the statement failed (its file is dropped).
    fn load_block(&mut self, event_type: EventType, event: &Event) -> Result<(), AssembleError> {
        let State::InTxn {
            began: true, load, ..
        } = &mut self.state
        else {
            return Err(AssembleError::OutsideTransaction { kind: kind(event) });
        };
        let (file_id, block) = load_data::split_block(event.data())
            .ok_or_else(|| decode_err(kind(event), "no file id"))?;
        let spool_err = |e: std::io::Error| AssembleError::Spool(e.to_string());
        if event_type == EventType::BEGIN_LOAD_QUERY_EVENT {
            let mut spool = Spool::create(file_id).map_err(spool_err)?;
            spool.append(block).map_err(spool_err)?;
            *load = Some(spool);
            return Ok(());
        }
        match load {
            Some(spool) if spool.file_id() == file_id => {
                if event_type == EventType::DELETE_FILE_EVENT {
                    *load = None;
                } else {
                    spool.append(block).map_err(spool_err)?;
                }
                Ok(())
            }
            _ => Err(decode_err(
                kind(event),
                format!("file {file_id} was not begun by a BEGIN_LOAD_QUERY event"),
            )),
        }
    }

    /// EXECUTE_LOAD_QUERY: the LOAD DATA statement over the spooled file,
    /// rewritten to read it from the relay.
    fn execute_load(&mut self, event: &Event) -> Result<Step, AssembleError> {
        let q: ExecuteLoadQueryEvent<'_> =
            event.read_event().map_err(|e| decode_err(kind(event), e))?;
        let State::InTxn {
            began: true,
            load,
            context,
            ..
        } = &mut self.state
        else {
            return Err(AssembleError::OutsideTransaction { kind: kind(event) });
        };
        let infile = match load.take() {
            Some(spool) if spool.file_id() == q.file_id() => spool.finish(),
            _ => {
                return Err(decode_err(
                    kind(event),
                    format!("file {} was not sent before the statement", q.file_id()),
                ));
            }
        };
        let sql = load_data::local_infile_query(
            q.query_raw(),
            q.start_pos(),
            q.end_pos(),
            q.dup_handling(),
        )
        .map_err(|e| decode_err(kind(event), e))?;
        let mut stmt = statement_of(event, Logged::load(&q), std::mem::take(context));
        stmt.sql = sql;
        stmt.infile = Some(infile);
        Ok(Step::Query(stmt))
    }

    /// Forget a partially received transaction (the connection dropped).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }
}
