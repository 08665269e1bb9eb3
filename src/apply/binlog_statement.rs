//! `BINLOG '<base64>'` statements: built in memory from a source statement's
//! row events, or, for a row event too large to copy, assembled in the
//! target's user variables piece by piece.
//!
//! MySQL 9.7 takes a `BINLOG` statement only as one string (no `BINLOG @a, @b`
//! fragments), and a query sent through the driver is copied twice more on its
//! way out, so a 256 MiB row would be held four times over as base64 text. A
//! `BINLOG` statement can however be prepared from a user variable: the event's
//! base64 text goes to the server in pieces of a few MiB, the server joins
//! them, and the relay holds the event once plus one piece.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const PREFIX: &str = "BINLOG '";

/// Raw bytes per piece: a multiple of 3, so the pieces' base64 texts join
/// without padding in between into the text of the whole event.
const PIECE_RAW_BYTES: usize = 3 << 20;

/// The user variables and prepared statement the server-side assembly uses.
const PIECE_VAR: &str = "@gtid_relay_binlog_";
const STATEMENT_VAR: &str = "@gtid_relay_binlog";
const STATEMENT_NAME: &str = "gtid_relay_binlog";

/// Add a serialised event to the `BINLOG '<base64>…` statement being built.
pub fn push_event(statement: &mut String, event: &[u8]) {
    if statement.is_empty() {
        statement.push_str(PREFIX);
    } else {
        statement.push('\n');
    }
    BASE64.encode_string(event, statement);
}

/// Close a statement built with `push_event`.
pub fn finish(statement: &mut String) {
    statement.push('\'');
}

/// Length of the base64 text of `len` bytes plus its separator.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 1
}

/// A `BINLOG` statement made of the events already built (`head`, possibly
/// empty) and one large event, sent as SQL that assigns its text to user
/// variables piece by piece, then prepares and executes it.
pub struct Pieces<'a> {
    /// Base64 text of the events before the large one, each followed by `\n`.
    head: String,
    event: &'a [u8],
    raw_per_piece: usize,
}

impl<'a> Pieces<'a> {
    /// `head` is a statement built with `push_event` (or empty); it is taken.
    pub fn new(head: String, event: &'a [u8]) -> Pieces<'a> {
        Pieces::with_piece_size(head, event, PIECE_RAW_BYTES)
    }

    fn with_piece_size(mut head: String, event: &'a [u8], raw_per_piece: usize) -> Pieces<'a> {
        if !head.is_empty() {
            head.drain(..PREFIX.len());
            head.push('\n');
        }
        Pieces {
            head,
            event,
            raw_per_piece,
        }
    }

    /// Length of the whole `BINLOG` statement, as the server will hold it.
    pub fn statement_len(&self) -> usize {
        PREFIX.len() + self.head.len() + encoded_len(self.event.len())
    }

    pub fn count(&self) -> usize {
        self.event.len().div_ceil(self.raw_per_piece).max(1)
    }

    /// `SET @gtid_relay_binlog_<i> = _latin1'<text>'`: base64 has no quotes
    /// or backslashes, so the text needs no escaping under any sql_mode, and
    /// the introducer keeps it ASCII whatever the session's connection
    /// character set (the source's, after a statement of its own).
    pub fn piece(&self, i: usize) -> String {
        let start = (i * self.raw_per_piece).min(self.event.len());
        let end = (start + self.raw_per_piece).min(self.event.len());
        let head = if i == 0 { self.head.as_str() } else { "" };
        let mut sql =
            String::with_capacity(PIECE_VAR.len() + 16 + head.len() + encoded_len(end - start));
        sql.push_str(&format!("SET {PIECE_VAR}{i} = _latin1'{head}"));
        BASE64.encode_string(&self.event[start..end], &mut sql);
        sql.push('\'');
        sql
    }

    /// Join the pieces into the statement, free them, and run it. EXECUTE
    /// comes last: nothing may follow a row event's statement in one query.
    pub fn execute(&self) -> String {
        let vars: Vec<String> = (0..self.count())
            .map(|i| format!("{PIECE_VAR}{i}"))
            .collect();
        let freed: Vec<String> = vars.iter().map(|v| format!("{v} = NULL")).collect();
        format!(
            "SET {STATEMENT_VAR} = CONCAT(_latin1'{}''', {}, _latin1''''); SET {}; \
             PREPARE {STATEMENT_NAME} FROM {STATEMENT_VAR}; SET {STATEMENT_VAR} = NULL; \
             EXECUTE {STATEMENT_NAME}",
            PREFIX.trim_end_matches('\''),
            vars.join(", "),
            freed.join(", "),
        )
    }

    /// Frees the server's copy of the statement; may travel with the next query.
    pub fn deallocate() -> String {
        format!("DEALLOCATE PREPARE {STATEMENT_NAME}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server ends up preparing: the pieces' literals joined inside
    /// the CONCAT of `execute`.
    fn assembled(p: &Pieces) -> String {
        let mut text = String::from("BINLOG '");
        for i in 0..p.count() {
            let sql = p.piece(i);
            let literal = sql
                .split_once(" = _latin1'")
                .and_then(|(_, rest)| rest.strip_suffix('\''))
                .expect("a quoted literal");
            assert!(!literal.contains('\''), "piece {i} needs no escaping");
            text.push_str(literal);
        }
        text.push('\'');
        text
    }

    #[test]
    fn pieces_join_into_the_statement_built_in_memory() {
        let map = vec![7u8; 40];
        let event: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for raw_per_piece in [3, 9, 300, 999, 1002, 4096] {
            let mut whole = String::new();
            push_event(&mut whole, &map);
            let mut head = whole.clone();
            push_event(&mut whole, &event);
            finish(&mut whole);
            let p = Pieces::with_piece_size(std::mem::take(&mut head), &event, raw_per_piece);
            assert_eq!(assembled(&p), whole, "pieces of {raw_per_piece} bytes");
            assert_eq!(p.statement_len(), whole.len());
            assert_eq!(p.count(), event.len().div_ceil(raw_per_piece));
        }
    }

    #[test]
    fn a_large_event_alone_makes_a_statement() {
        let event = vec![1u8; 10];
        let mut whole = String::new();
        push_event(&mut whole, &event);
        finish(&mut whole);
        let p = Pieces::with_piece_size(String::new(), &event, 6);
        assert_eq!(assembled(&p), whole);
        let exec = p.execute();
        assert!(
            exec.starts_with(
                "SET @gtid_relay_binlog = CONCAT(_latin1'BINLOG ''', @gtid_relay_binlog_0, @gtid_relay_binlog_1, _latin1''''); \
                 SET @gtid_relay_binlog_0 = NULL, @gtid_relay_binlog_1 = NULL; "
            ),
            "{exec}"
        );
        assert!(exec.ends_with("; EXECUTE gtid_relay_binlog"), "{exec}");
    }
}
