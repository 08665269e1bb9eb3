//! Routing inside a transaction: drop the row events of filtered tables, rename
//! routed ones, and turn a filtered DDL into an empty transaction.
//!
//! Rows events name their table only by the table_id of the Table_map event
//! before them, so the router remembers, per transaction, which table ids were
//! dropped. A rename patches the Table_map event's schema and table names in
//! place (mysql_common has no setters) and fixes the header's size and CRC32.

use std::collections::HashSet;

use mysql_common::binlog::events::TableMapEvent;

use crate::filter::Routes;
use crate::source::assemble::{Statement, Step};
use crate::source::event::Format;
use crate::source::event_bytes::{
    CHECKSUM_LEN, HEADER_LEN, LayoutError, STMT_END_F, is_table_map, mark_statement_end, reseal,
    rows_table_and_flags,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("cannot route {kind} event: {message}")]
    Malformed { kind: &'static str, message: String },
    #[error("cannot rename to `{0}`: names are at most 64 bytes")]
    NameTooLong(String),
    #[error("cannot route a binlog event: {0}")]
    Layout(#[from] LayoutError),
}

/// Table_map post-header: 6-byte table id and 2 bytes of flags (MySQL 5.6+).
const TABLE_MAP_POST_HEADER: usize = 8;
const MAX_NAME: usize = 64;

fn malformed(kind: &'static str, message: impl Into<String>) -> RewriteError {
    RewriteError::Malformed {
        kind,
        message: message.into(),
    }
}

/// A serialised Table_map event with its schema and table renamed.
pub fn rename_table_map(
    event: &[u8],
    crc: bool,
    schema: &str,
    table: &str,
) -> Result<Vec<u8>, RewriteError> {
    for name in [schema, table] {
        if name.len() > MAX_NAME {
            return Err(RewriteError::NameTooLong(name.into()));
        }
    }
    let short = || malformed("Table_map", "truncated");
    let db_at = HEADER_LEN + TABLE_MAP_POST_HEADER;
    let db_len = usize::from(*event.get(db_at).ok_or_else(short)?);
    // length byte, name, NUL terminator
    let table_at = db_at + 1 + db_len + 1;
    let table_len = usize::from(*event.get(table_at).ok_or_else(short)?);
    let rest_at = table_at + 1 + table_len + 1;
    if event.len() < rest_at + if crc { CHECKSUM_LEN } else { 0 } {
        return Err(short());
    }
    if event[db_at + 1 + db_len] != 0 || event[table_at + 1 + table_len] != 0 {
        return Err(malformed("Table_map", "names are not NUL-terminated"));
    }
    let mut out = Vec::with_capacity(event.len() + schema.len() + table.len());
    out.extend_from_slice(&event[..db_at]);
    for name in [schema, table] {
        // Both fit in a byte: checked against MAX_NAME above.
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&event[rest_at..]);
    reseal(&mut out, crc)?;
    Ok(out)
}

/// Per-transaction routing state of one channel's reader.
#[derive(Debug, Default)]
pub struct Router {
    dropped: HashSet<u64>,
    /// The last Rows event kept, held back until the next event shows whether it
    /// must end the statement (when the statement's last Rows event is dropped).
    held: Option<(Vec<u8>, bool)>,
}

impl Router {
    /// The steps to send for `step`, made from an event in `format`.
    pub fn route(
        &mut self,
        routes: &Routes,
        format: &Format,
        step: Step,
    ) -> Result<Vec<Step>, RewriteError> {
        let mut out = Vec::with_capacity(2);
        match step {
            Step::Begin(_) => {
                self.dropped.clear();
                self.held = None;
                out.push(step);
            }
            Step::Rows(bytes) => {
                let crc = format.has_crc();
                if is_table_map(&bytes) {
                    // Small: decoding copies it, the Rows events are never decoded.
                    let event = format
                        .decode(&bytes)
                        .map_err(|e| malformed("Table_map", e.to_string()))?;
                    let map: TableMapEvent<'_> = event
                        .read_event()
                        .map_err(|e| malformed("Table_map", e.to_string()))?;
                    let (schema, table) = (map.database_name(), map.table_name());
                    match routes.table(&schema, &table) {
                        // Nothing is sent: a held Rows event stays held.
                        None => {
                            self.dropped.insert(map.table_id());
                        }
                        Some(d) if d.schema == schema && d.table == table => {
                            self.dropped.remove(&map.table_id());
                            self.flush(&mut out);
                            out.push(Step::Rows(bytes));
                        }
                        Some(d) => {
                            self.dropped.remove(&map.table_id());
                            self.flush(&mut out);
                            let renamed = rename_table_map(&bytes, crc, &d.schema, &d.table)?;
                            out.push(Step::Rows(renamed));
                        }
                    }
                } else {
                    let (table_id, flags) = rows_table_and_flags(&bytes)
                        .ok_or_else(|| malformed("Rows", "truncated post-header"))?;
                    if self.dropped.contains(&table_id) {
                        if flags & STMT_END_F != 0
                            && let Some((held, held_crc)) = &mut self.held
                        {
                            mark_statement_end(held, *held_crc)?;
                        }
                    } else {
                        self.flush(&mut out);
                        self.held = Some((bytes, crc));
                    }
                }
            }
            Step::Ddl(stmt) => match routes.ddl_schema(&stmt.schema) {
                Some(schema) => out.push(Step::Ddl(Statement { schema, ..stmt })),
                // Still commit the GTID, empty, so the masters' sets converge.
                None => {
                    out.push(Step::Query(Statement {
                        sql: b"BEGIN".to_vec(),
                        schema: String::new(),
                        ..stmt
                    }));
                    out.push(Step::Commit);
                }
            },
            // BEGIN carries the source session's default database, which the
            // target may lack once schemas are filtered or renamed; row events
            // name their tables themselves, so BEGIN needs none.
            Step::Query(stmt) if stmt.sql.eq_ignore_ascii_case(b"BEGIN") => {
                self.flush(&mut out);
                out.push(Step::Query(Statement {
                    schema: String::new(),
                    ..stmt
                }));
            }
            other => {
                self.flush(&mut out);
                out.push(other);
            }
        }
        Ok(out)
    }

    fn flush(&mut self, out: &mut Vec<Step>) {
        if let Some((held, _)) = self.held.take() {
            out.push(Step::Rows(held));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
    use mysql_common::binlog::events::{BinlogEventFooter, Event, FormatDescriptionEvent};

    fn fde(crc: bool) -> FormatDescriptionEvent<'static> {
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        if crc {
            fde.with_footer(BinlogEventFooter::new(
                BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
            ))
        } else {
            fde
        }
    }

    /// A Table_map event for `db.table` with one INT column, as a server writes it.
    fn table_map(db: &str, table: &str, crc: bool) -> Vec<u8> {
        let mut e = vec![0u8; HEADER_LEN];
        e[4] = EventType::TABLE_MAP_EVENT as u8;
        e.extend_from_slice(&[42, 0, 0, 0, 0, 0, 1, 0]);
        for name in [db, table] {
            e.push(name.len() as u8);
            e.extend_from_slice(name.as_bytes());
            e.push(0);
        }
        // 1 column, type LONG, no metadata, null bitmap, optional metadata:
        // SIGNEDNESS (1) of length 1 = unsigned flags.
        e.extend_from_slice(&[1, 3, 0, 0, 1, 1, 0]);
        if crc {
            e.extend_from_slice(&[0; 4]);
        }
        reseal(&mut e, crc).unwrap();
        e
    }

    fn parse(bytes: &[u8], crc: bool) -> Event {
        Event::read(&fde(crc), bytes).unwrap()
    }

    #[test]
    fn renamed_table_map_parses_with_new_names() {
        for crc in [true, false] {
            let original = table_map("app", "users", crc);
            let renamed = rename_table_map(&original, crc, "app_copy", "people").unwrap();
            let event = parse(&renamed, crc);
            assert_eq!(event.header().event_size() as usize, renamed.len());
            if crc {
                let stored = u32::from_le_bytes(renamed[renamed.len() - 4..].try_into().unwrap());
                assert_eq!(
                    event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32),
                    stored
                );
            }
            let map: TableMapEvent<'_> = event.read_event().unwrap();
            assert_eq!(map.database_name(), "app_copy");
            assert_eq!(map.table_name(), "people");
            assert_eq!(map.table_id(), 42);
            assert_eq!(map.columns_count(), 1);
            // Everything after the names is unchanged.
            let original_map_event = parse(&original, crc);
            let original_map: TableMapEvent<'_> = original_map_event.read_event().unwrap();
            assert_eq!(map.null_bitmask(), original_map.null_bitmask());
            // Renaming back restores the original bytes.
            assert_eq!(
                rename_table_map(&renamed, crc, "app", "users").unwrap(),
                original
            );
        }
    }

    #[test]
    fn rename_rejects_bad_input() {
        let original = table_map("a", "b", true);
        assert_eq!(
            rename_table_map(&original[..25], true, "x", "y"),
            Err(malformed("Table_map", "truncated"))
        );
        let long = "x".repeat(65);
        assert_eq!(
            rename_table_map(&original, true, &long, "y"),
            Err(RewriteError::NameTooLong(long.clone()))
        );
    }

    /// A WRITE_ROWS v2 event of one INT row for table `id`, with CRC32.
    fn write_rows(id: u8, flags: u8) -> Vec<u8> {
        let mut e = vec![0u8; HEADER_LEN];
        e[4] = EventType::WRITE_ROWS_EVENT as u8;
        e.extend_from_slice(&[id, 0, 0, 0, 0, 0, flags, 0, 2, 0, 1, 1, 0xff, 0, 7, 0, 0, 0]);
        e.extend_from_slice(&[0; 4]);
        reseal(&mut e, true).unwrap();
        e
    }

    #[test]
    fn statement_end_flag_is_set_and_resealed() {
        let mut e = write_rows(42, 0);
        mark_statement_end(&mut e, true).unwrap();
        let event = parse(&e, true);
        assert_eq!(rows_table_and_flags(&e).unwrap(), (42, STMT_END_F));
        let stored = u32::from_le_bytes(e[e.len() - 4..].try_into().unwrap());
        assert_eq!(
            event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32),
            stored
        );
    }

    #[test]
    fn router_drops_filtered_tables_and_moves_the_statement_end() {
        use crate::filter::{Glob, Route};
        use crate::source::assemble::TxnHeader;
        let routes = Routes {
            rules: vec![Route {
                schema: Glob::new("app"),
                table: Glob::new("*"),
                exclude: false,
                target_schema: Some("app_copy".into()),
                target_table: None,
            }],
            ddl: true,
        };
        let header = TxnHeader {
            gtid: "11111111-1111-1111-1111-111111111111:5".parse().unwrap(),
            last_committed: 0,
            sequence_number: 1,
            original_commit_us: 0,
            immediate_commit_us: 0,
            original_server_version: 0,
            immediate_server_version: 0,
        };
        let fde = fde(true);
        let mut t1 = table_map("app", "t", true);
        t1[HEADER_LEN] = 1;
        reseal(&mut t1, true).unwrap();
        let mut t2 = table_map("other", "t", true);
        t2[HEADER_LEN] = 2;
        reseal(&mut t2, true).unwrap();
        let events = [t1.clone(), write_rows(1, 0), t2, write_rows(2, 1)];
        let mut router = Router::default();
        let format = Format::initial(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32));
        let mut out = router.route(&routes, &format, Step::Begin(header)).unwrap();
        for bytes in events {
            out.extend(router.route(&routes, &format, Step::Rows(bytes)).unwrap());
        }
        out.extend(router.route(&routes, &format, Step::Commit).unwrap());
        let [
            Step::Begin(_),
            Step::Rows(map),
            Step::Rows(rows),
            Step::Commit,
        ] = &out[..]
        else {
            panic!("unexpected steps: {out:?}");
        };
        let map = Event::read(&fde, &map[..]).unwrap();
        let map: TableMapEvent<'_> = map.read_event().unwrap();
        assert_eq!(
            (map.database_name().as_ref(), map.table_id()),
            ("app_copy", 1)
        );
        assert_eq!(rows_table_and_flags(rows).unwrap(), (1, STMT_END_F));
    }
}
