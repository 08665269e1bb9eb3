//! `LOAD DATA` logged as a statement (a session with binlog_format=STATEMENT):
//! the source logs the file's contents in BEGIN_LOAD_QUERY and APPEND_BLOCK
//! events, then the statement in an EXECUTE_LOAD_QUERY event whose text names
//! the file on the source. The relay spools the contents to an unnamed
//! temporary file (memory stays bounded whatever the file's size) and replays
//! the statement as `LOAD DATA LOCAL INFILE`, the way mysqlbinlog output does;
//! the apply session streams the spooled contents when the target asks for them.
//!
//! Layouts: sql/log_event.h (Begin_load_query_log_event, Append_block_log_event,
//! Delete_file_log_event: a 4-byte file id, then the block;
//! Execute_load_query_log_event: the byte range of the statement that names
//! the file, which a replica replaces).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use mysql_common::binlog::consts::LoadDuplicateHandling;

/// The file name a replayed statement gives the target; the target only
/// echoes it back when it asks for the contents.
pub const LOCAL_NAME: &str = "gtid-relay-load-data";

/// A file being received, block by block.
#[derive(Debug)]
pub struct Spool {
    file_id: u32,
    file: File,
    len: u64,
}

impl Spool {
    /// A spool for file `file_id` under the temporary directory (TMPDIR).
    pub fn create(file_id: u32) -> io::Result<Spool> {
        Ok(Spool {
            file_id,
            file: tempfile::tempfile()?,
            len: 0,
        })
    }

    pub fn file_id(&self) -> u32 {
        self.file_id
    }

    pub fn append(&mut self, block: &[u8]) -> io::Result<()> {
        self.file.write_all(block)?;
        self.len += block.len() as u64;
        Ok(())
    }

    /// The whole file, to be read by the apply sessions (a transaction may be
    /// sent again, so it stays until the last step that names it is gone).
    pub fn finish(self) -> LoadData {
        LoadData(Arc::new(self))
    }
}

/// A received file, shared by the steps of its statement.
#[derive(Debug, Clone)]
pub struct LoadData(Arc<Spool>);

impl LoadData {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.0.len
    }

    /// Up to `max` bytes from `offset`; empty at the end.
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let want = usize::try_from(self.0.len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max);
        let mut buf = vec![0; want];
        self.0.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

impl PartialEq for LoadData {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LoadData {}

/// The first four bytes of a BEGIN_LOAD_QUERY, APPEND_BLOCK or DELETE_FILE
/// event's body: the file id; the rest is the block.
pub fn split_block(body: &[u8]) -> Option<(u32, &[u8])> {
    let (id, block) = body.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*id), block))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the file name range {start}..{end} lies outside the {len}-byte statement")]
pub struct BadRange {
    start: u32,
    end: u32,
    len: usize,
}

/// The statement a replica runs for an EXECUTE_LOAD_QUERY event: the range
/// `start..end` of `query` (` [LOCAL] INFILE '<source file>' [REPLACE|IGNORE]
/// INTO`) becomes ` LOCAL INFILE '<LOCAL_NAME>' [REPLACE|IGNORE] INTO`.
/// LOCAL implies IGNORE for duplicate keys (the server cannot stop a client
/// halfway through the file), as in mysqlbinlog's output; the source
/// succeeded on the same rows.
pub fn local_infile_query(
    query: &[u8],
    start: u32,
    end: u32,
    dup: LoadDuplicateHandling,
) -> Result<Vec<u8>, BadRange> {
    let bad = || BadRange {
        start,
        end,
        len: query.len(),
    };
    let (s, e) = (start as usize, end as usize);
    if s > e {
        return Err(bad());
    }
    let (head, tail) = (
        query.get(..s).ok_or_else(bad)?,
        query.get(e..).ok_or_else(bad)?,
    );
    let dup = match dup {
        LoadDuplicateHandling::LOAD_DUP_REPLACE => " REPLACE",
        LoadDuplicateHandling::LOAD_DUP_IGNORE => " IGNORE",
        LoadDuplicateHandling::LOAD_DUP_ERROR => "",
    };
    let mut sql = head.to_vec();
    sql.extend_from_slice(format!(" LOCAL INFILE '{LOCAL_NAME}'{dup} INTO").as_bytes());
    sql.extend_from_slice(tail);
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_range_is_replaced() {
        // As MySQL 9.7 logs `LOAD DATA INFILE '/tmp/ld.txt' REPLACE INTO TABLE t …`.
        let query =
            b"LOAD DATA INFILE '/tmp/ld.txt' REPLACE INTO TABLE `t` FIELDS TERMINATED BY '\\t'";
        let sql = local_infile_query(query, 9, 43, LoadDuplicateHandling::LOAD_DUP_REPLACE)
            .expect("range inside");
        assert_eq!(
            String::from_utf8(sql).expect("ascii"),
            "LOAD DATA LOCAL INFILE 'gtid-relay-load-data' REPLACE INTO TABLE `t` FIELDS TERMINATED BY '\\t'"
        );
        let sql = local_infile_query(query, 9, 43, LoadDuplicateHandling::LOAD_DUP_ERROR)
            .expect("range inside");
        assert!(sql.starts_with(b"LOAD DATA LOCAL INFILE 'gtid-relay-load-data' INTO TABLE"));
    }

    #[test]
    fn a_range_outside_the_statement_is_an_error() {
        let dup = LoadDuplicateHandling::LOAD_DUP_ERROR;
        assert!(local_infile_query(b"LOAD DATA", 9, 43, dup).is_err());
        assert!(local_infile_query(b"LOAD DATA INFILE 'x' INTO", 12, 9, dup).is_err());
    }

    #[test]
    fn blocks_are_spooled_and_read_back() {
        let mut spool = Spool::create(7).expect("temporary file");
        spool.append(b"1\ta\n").expect("write");
        spool.append(b"2\tb\n").expect("write");
        assert_eq!(spool.file_id(), 7);
        let data = spool.finish();
        assert_eq!(data.size(), 8);
        assert_eq!(data.read_at(0, 5).expect("read"), b"1\ta\n2");
        assert_eq!(data.read_at(5, 100).expect("read"), b"\tb\n");
        assert!(data.read_at(8, 100).expect("read").is_empty());
        assert_eq!(data, data.clone());
    }

    #[test]
    fn block_events_name_their_file() {
        assert_eq!(split_block(&[3, 0, 0, 0, b'x']), Some((3, &b"x"[..])));
        assert_eq!(split_block(&[3, 0]), None);
    }
}
