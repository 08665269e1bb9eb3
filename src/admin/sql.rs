//! The statements the admin endpoint understands, parsed from COM_QUERY text.
//!
//! Tolerant like MySQL's lexer: any case, whitespace, `/* */`, `-- ` and `#` comments,
//! trailing `;`. Anything else becomes [`Statement::Unsupported`] (a real MySQL statement
//! the relay does not serve, error 1235) or [`Statement::Unknown`] (error 1064).

use crate::status::Threads;

/// Which names `SHOW ... STATUS` / `SHOW REPLICAS` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// MySQL 8.0.22+ names: `Replica_IO_Running`, `Source_Host`, ...
    Replica,
    /// The `SHOW SLAVE ...` names: `Slave_IO_Running`, `Master_Host`, ...
    Slave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Session,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Version,
    Database,
    User,
    CurrentUser,
    Now,
    UtcTimestamp,
    ConnectionId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Var {
        scope: Scope,
        name: String,
    },
    Func(Func),
    Int(String),
    Str(String),
    Null,
    /// A bare name: a column of the table in FROM.
    Column(String),
    Star,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    pub expr: Expr,
    /// The result column's name: the alias, or the expression's text as written.
    pub name: String,
}

/// The performance_schema tables monitoring tools read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfTable {
    ReplicationConnectionStatus,
    ReplicationApplierStatusByWorker,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Only whitespace and comments (MySQL error 1065).
    Empty,
    ShowReplicaStatus {
        channel: Option<String>,
        naming: Naming,
    },
    ShowReplicas {
        naming: Naming,
    },
    Start {
        threads: Threads,
        channel: Option<String>,
    },
    Stop {
        threads: Threads,
        channel: Option<String>,
    },
    ShowVariables {
        like: Option<String>,
    },
    ShowStatus {
        like: Option<String>,
    },
    ShowWarnings,
    Select {
        items: Vec<SelectItem>,
        from: Option<PerfTable>,
        limit: Option<u64>,
    },
    /// `SET NAMES`, `SET autocommit=1`, `SET SESSION x=...`: accepted, no effect.
    SetSession,
    Use(String),
    /// BEGIN / COMMIT / ROLLBACK / START TRANSACTION: nothing to do, nothing is written.
    Transaction,
    /// Valid MySQL the relay does not serve (error 1235); says what.
    Unsupported(String),
    /// Not SQL the relay recognises (error 1064): the text from where parsing failed,
    /// and its line.
    Unknown {
        near: String,
        line: usize,
    },
}

/// `slave_syntax`: also accept the `SLAVE` spellings MySQL 9.7 removed (else they are
/// syntax errors, as on 9.7).
pub fn parse(sql: &str, slave_syntax: bool) -> Statement {
    match tokenize(sql) {
        Ok(tokens) if tokens.is_empty() => Statement::Empty,
        Ok(tokens) => Parser {
            src: sql,
            toks: tokens,
            pos: 0,
            slave_syntax,
        }
        .statement(),
        Err(at) => unknown_at(sql, at),
    }
}

fn unknown_at(sql: &str, at: usize) -> Statement {
    let rest = sql.get(at..).unwrap_or("");
    // MySQL quotes at most 80 characters of the remainder.
    let near: String = rest.chars().take(80).collect();
    let line = sql.get(..at).unwrap_or("").matches('\n').count() + 1;
    Statement::Unknown { near, line }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// `backquoted` identifier.
    Ident(String),
    Str(String),
    Num(String),
    /// `@@name` or `@@scope.name`, without the `@@`.
    SysVar(String),
    UserVar(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

/// Splits into tokens, dropping comments; `Err` carries the offset of an unterminated
/// string or comment.
fn tokenize(sql: &str) -> Result<Vec<Token>, usize> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        let tok = match c {
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'#' => {
                i = skip_line(b, i);
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").ok_or(start)?;
                i += 2 + end + 2;
                continue;
            }
            b'\'' | b'"' => {
                let (s, next) = quoted(sql, i, c, true).ok_or(start)?;
                i = next;
                Tok::Str(s)
            }
            b'`' => {
                let (s, next) = quoted(sql, i, c, false).ok_or(start)?;
                i = next;
                Tok::Ident(s)
            }
            b'@' => {
                let sys = b.get(i + 1) == Some(&b'@');
                i += if sys { 2 } else { 1 };
                let s = i;
                while i < b.len() && (word_byte(b[i]) || b[i] == b'.') {
                    i += 1;
                }
                let name = sql[s..i].to_string();
                if sys {
                    Tok::SysVar(name)
                } else {
                    Tok::UserVar(name)
                }
            }
            _ if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                Tok::Num(sql[start..i].to_string())
            }
            _ if word_byte(c) => {
                while i < b.len() && word_byte(b[i]) {
                    i += 1;
                }
                Tok::Word(sql[start..i].to_string())
            }
            _ => {
                // Non-ASCII bytes are words above, so this is one ASCII character.
                i += 1;
                Tok::Punct(char::from(c))
            }
        };
        out.push(Token { tok, start, end: i });
    }
    // Trailing semicolons end the statement; they are not part of it.
    while matches!(
        out.last(),
        Some(Token {
            tok: Tok::Punct(';'),
            ..
        })
    ) {
        out.pop();
    }
    Ok(out)
}

fn skip_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// A quoted string or identifier starting at `i`; returns its value and the next offset.
fn quoted(sql: &str, i: usize, q: u8, backslash: bool) -> Option<(String, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if backslash && c == b'\\' {
            let e = *b.get(j + 1)?;
            out.push(match e {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'0' => 0,
                other => other,
            });
            j += 2;
        } else if c == q {
            if b.get(j + 1) == Some(&q) {
                out.push(q);
                j += 2;
            } else {
                return Some((String::from_utf8_lossy(&out).into_owned(), j + 1));
            }
        } else {
            out.push(c);
            j += 1;
        }
    }
    None
}

/// Words after SHOW that name real MySQL statements the relay does not serve.
const SHOW_UNSUPPORTED: &[&str] = &[
    "BINARY",
    "BINLOG",
    "CHARACTER",
    "CHARSET",
    "COLLATION",
    "COLUMNS",
    "CREATE",
    "DATABASES",
    "ENGINE",
    "ENGINES",
    "ERRORS",
    "EVENTS",
    "FIELDS",
    "FULL",
    "FUNCTION",
    "GRANTS",
    "INDEX",
    "INDEXES",
    "KEYS",
    "MASTER",
    "OPEN",
    "PLUGINS",
    "PRIVILEGES",
    "PROCEDURE",
    "PROCESSLIST",
    "PROFILE",
    "PROFILES",
    "RELAYLOG",
    "SCHEMAS",
    "TABLE",
    "TABLES",
    "TRIGGERS",
];

/// First words of real MySQL statements the relay does not serve.
const VERB_UNSUPPORTED: &[&str] = &[
    "ALTER",
    "ANALYZE",
    "BINLOG",
    "CACHE",
    "CALL",
    "CHANGE",
    "CHECK",
    "CHECKSUM",
    "CLONE",
    "CREATE",
    "DEALLOCATE",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DO",
    "DROP",
    "EXECUTE",
    "EXPLAIN",
    "FLUSH",
    "GRANT",
    "HANDLER",
    "HELP",
    "IMPORT",
    "INSERT",
    "INSTALL",
    "KILL",
    "LOAD",
    "LOCK",
    "OPTIMIZE",
    "PREPARE",
    "PURGE",
    "RELEASE",
    "RENAME",
    "REPAIR",
    "REPLACE",
    "RESET",
    "RESTART",
    "REVOKE",
    "SAVEPOINT",
    "SHUTDOWN",
    "TABLE",
    "TRUNCATE",
    "UNINSTALL",
    "UNLOCK",
    "UPDATE",
    "VALUES",
    "WITH",
    "XA",
];

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    slave_syntax: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_word(&self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    /// Consume the keyword `kw` if it is next.
    fn eat(&mut self, kw: &str) -> bool {
        if self.peek_word().as_deref() == Some(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The `SLAVE` keyword, when those spellings are enabled.
    fn eat_slave(&mut self) -> bool {
        self.slave_syntax && self.eat("SLAVE")
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    /// The syntax error at the current token.
    fn fail(&self) -> Statement {
        let at = self.toks.get(self.pos).map_or(self.src.len(), |t| t.start);
        unknown_at(self.src, at)
    }

    /// `stmt` if nothing follows, else a syntax error at what follows.
    fn end(&self, stmt: Statement) -> Statement {
        if self.at_end() { stmt } else { self.fail() }
    }

    fn text(&self) -> String {
        self.src.trim().trim_end_matches(';').trim().to_string()
    }

    fn statement(mut self) -> Statement {
        let Some(verb) = self.peek_word() else {
            return self.fail();
        };
        self.pos += 1;
        match verb.as_str() {
            "SHOW" => self.show(),
            "SELECT" => self.select(),
            "START" if self.eat("TRANSACTION") => Statement::Transaction,
            "START" => self.replica_control(true),
            "STOP" => self.replica_control(false),
            "SET" => self.set(),
            "USE" => match self.toks.get(self.pos).map(|t| t.tok.clone()) {
                Some(Tok::Word(db) | Tok::Ident(db)) => {
                    self.pos += 1;
                    self.end(Statement::Use(db))
                }
                _ => self.fail(),
            },
            "BEGIN" | "COMMIT" | "ROLLBACK" => {
                self.eat("WORK");
                self.end(Statement::Transaction)
            }
            v if VERB_UNSUPPORTED.contains(&v) => Statement::Unsupported(self.text()),
            _ => {
                self.pos -= 1;
                self.fail()
            }
        }
    }

    fn show(&mut self) -> Statement {
        let scoped = self.eat("GLOBAL") || self.eat("SESSION") || self.eat("LOCAL");
        if self.eat("VARIABLES") {
            return self
                .like()
                .map_or_else(|s| s, |like| Statement::ShowVariables { like });
        }
        if self.eat("STATUS") {
            return self
                .like()
                .map_or_else(|s| s, |like| Statement::ShowStatus { like });
        }
        if scoped {
            return self.fail();
        }
        if self.eat("REPLICA") {
            return self.replica_status(Naming::Replica);
        }
        if self.eat("REPLICAS") {
            return self.end(Statement::ShowReplicas {
                naming: Naming::Replica,
            });
        }
        if self.eat_slave() {
            if self.eat("HOSTS") {
                return self.end(Statement::ShowReplicas {
                    naming: Naming::Slave,
                });
            }
            return self.replica_status(Naming::Slave);
        }
        if self.eat("WARNINGS") {
            if self.eat("LIMIT") && self.number().is_none() {
                return self.fail();
            }
            return self.end(Statement::ShowWarnings);
        }
        match self.peek_word() {
            Some(w) if SHOW_UNSUPPORTED.contains(&w.as_str()) => {
                Statement::Unsupported(self.text())
            }
            _ => self.fail(),
        }
    }

    fn replica_status(&mut self, naming: Naming) -> Statement {
        if !self.eat("STATUS") {
            return self.fail();
        }
        match self.for_channel() {
            Ok(channel) => self.end(Statement::ShowReplicaStatus { channel, naming }),
            Err(e) => e,
        }
    }

    /// `[LIKE 'pattern']`; WHERE is real MySQL but not served.
    fn like(&mut self) -> Result<Option<String>, Statement> {
        if self.eat("LIKE") {
            if let Some(Tok::Str(p)) = self.peek().cloned() {
                self.pos += 1;
                return match self.end(Statement::Empty) {
                    Statement::Empty => Ok(Some(p)),
                    e => Err(e),
                };
            }
            return Err(self.fail());
        }
        if self.eat("WHERE") {
            return Err(Statement::Unsupported(self.text()));
        }
        match self.end(Statement::Empty) {
            Statement::Empty => Ok(None),
            e => Err(e),
        }
    }

    /// `[FOR CHANNEL name]`.
    fn for_channel(&mut self) -> Result<Option<String>, Statement> {
        if !self.eat("FOR") {
            return Ok(None);
        }
        if !self.eat("CHANNEL") {
            return Err(self.fail());
        }
        match self.peek().cloned() {
            Some(Tok::Str(c) | Tok::Ident(c) | Tok::Word(c)) => {
                self.pos += 1;
                Ok(Some(c))
            }
            _ => Err(self.fail()),
        }
    }

    /// `START|STOP REPLICA|SLAVE [IO_THREAD | SQL_THREAD [, ...]] [FOR CHANNEL c]`.
    fn replica_control(&mut self, start: bool) -> Statement {
        if !(self.eat("REPLICA") || self.eat_slave()) {
            return self.fail();
        }
        let (mut io, mut sql) = (false, false);
        loop {
            if self.eat("IO_THREAD") {
                io = true;
            } else if self.eat("SQL_THREAD") {
                sql = true;
            } else {
                break;
            }
            if !self.eat_punct(',') {
                break;
            }
        }
        let threads = match (io, sql) {
            (true, false) => Threads::Io,
            (false, true) => Threads::Sql,
            _ => Threads::Both,
        };
        if start && (self.peek_word().as_deref() == Some("UNTIL") || self.eat("USER")) {
            return Statement::Unsupported(self.text());
        }
        match self.for_channel() {
            Ok(channel) if start => self.end(Statement::Start { threads, channel }),
            Ok(channel) => self.end(Statement::Stop { threads, channel }),
            Err(e) => e,
        }
    }

    fn set(&mut self) -> Statement {
        if self.at_end() {
            return self.fail();
        }
        let global = self.toks[self.pos..].iter().any(|t| match &t.tok {
            Tok::Word(w) => {
                let w = w.to_ascii_uppercase();
                w == "GLOBAL" || w.starts_with("PERSIST")
            }
            Tok::SysVar(v) => {
                let v = v.to_ascii_lowercase();
                v.starts_with("global.") || v.starts_with("persist")
            }
            _ => false,
        });
        if global {
            Statement::Unsupported(self.text())
        } else {
            Statement::SetSession
        }
    }

    fn number(&mut self) -> Option<u64> {
        if let Some(Tok::Num(n)) = self.peek().cloned() {
            self.pos += 1;
            n.parse().ok()
        } else {
            None
        }
    }

    fn select(&mut self) -> Statement {
        let mut items = Vec::new();
        loop {
            match self.select_item() {
                Ok(item) => items.push(item),
                Err(e) => return e,
            }
            if !self.eat_punct(',') {
                break;
            }
        }
        let mut from = None;
        if self.eat("FROM") {
            match self.table() {
                Ok(t) => from = t,
                Err(e) => return e,
            }
        }
        if self.peek_word().as_deref() == Some("WHERE") {
            return Statement::Unsupported(self.text());
        }
        let mut limit = None;
        if self.eat("LIMIT") {
            match self.number() {
                Some(n) => limit = Some(n),
                None => return self.fail(),
            }
        }
        self.end(Statement::Select { items, from, limit })
    }

    /// `DUAL` (None) or one of the served performance_schema tables.
    fn table(&mut self) -> Result<Option<PerfTable>, Statement> {
        let name = |t: Option<&Tok>| match t {
            Some(Tok::Word(w) | Tok::Ident(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        };
        let first = name(self.peek()).ok_or_else(|| self.fail())?;
        self.pos += 1;
        let table = if self.eat_punct('.') {
            if first != "performance_schema" {
                return Err(Statement::Unsupported(self.text()));
            }
            let t = name(self.peek()).ok_or_else(|| self.fail())?;
            self.pos += 1;
            t
        } else if first == "dual" {
            return Ok(None);
        } else {
            first
        };
        match table.as_str() {
            "replication_connection_status" => Ok(Some(PerfTable::ReplicationConnectionStatus)),
            "replication_applier_status_by_worker" => {
                Ok(Some(PerfTable::ReplicationApplierStatusByWorker))
            }
            _ => Err(Statement::Unsupported(self.text())),
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, Statement> {
        let start = self.toks.get(self.pos).ok_or_else(|| self.fail())?.start;
        let tok = self.peek().cloned().ok_or_else(|| self.fail())?;
        self.pos += 1;
        let expr = match tok {
            Tok::SysVar(v) => {
                let lower = v.to_ascii_lowercase();
                let (scope, name) = match lower.split_once('.') {
                    Some(("global", n)) => (Scope::Global, n.to_string()),
                    Some(("session" | "local", n)) => (Scope::Session, n.to_string()),
                    Some(_) => return Err(self.fail()),
                    None => (Scope::Session, lower.clone()),
                };
                Expr::Var { scope, name }
            }
            Tok::Num(n) => Expr::Int(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Punct('*') => Expr::Star,
            Tok::Ident(c) => Expr::Column(c),
            Tok::Word(w) => {
                let upper = w.to_ascii_uppercase();
                let parens = self.peek() == Some(&Tok::Punct('('));
                if parens {
                    self.pos += 1;
                    if !self.eat_punct(')') {
                        return Err(self.fail());
                    }
                }
                match (upper.as_str(), parens) {
                    ("NULL", false) => Expr::Null,
                    ("VERSION", true) => Expr::Func(Func::Version),
                    ("DATABASE" | "SCHEMA", true) => Expr::Func(Func::Database),
                    ("USER" | "SESSION_USER" | "SYSTEM_USER", true) => Expr::Func(Func::User),
                    ("CURRENT_USER", _) => Expr::Func(Func::CurrentUser),
                    ("NOW" | "SYSDATE", true) | ("CURRENT_TIMESTAMP" | "LOCALTIMESTAMP", _) => {
                        Expr::Func(Func::Now)
                    }
                    ("UTC_TIMESTAMP", _) => Expr::Func(Func::UtcTimestamp),
                    ("CONNECTION_ID", true) => Expr::Func(Func::ConnectionId),
                    (_, true) => return Err(Statement::Unsupported(self.text())),
                    ("FROM" | "LIMIT" | "WHERE" | "AS", false) => {
                        self.pos -= 1;
                        return Err(self.fail());
                    }
                    (_, false) => Expr::Column(w),
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.fail());
            }
        };
        let end = self.toks[self.pos - 1].end;
        let mut name = self.src[start..end].to_string();
        let explicit_as = self.eat("AS");
        match self.peek().cloned() {
            Some(Tok::Ident(a) | Tok::Str(a)) => {
                self.pos += 1;
                name = a;
            }
            Some(Tok::Word(a))
                if !matches!(a.to_ascii_uppercase().as_str(), "FROM" | "LIMIT" | "WHERE") =>
            {
                self.pos += 1;
                name = a;
            }
            _ if explicit_as => return Err(self.fail()),
            _ => {}
        }
        Ok(SelectItem { expr, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_statements_in_any_spelling() {
        assert_eq!(
            parse(
                "  show /* x */ replica\n status for channel 'a->b' ;; ",
                true
            ),
            Statement::ShowReplicaStatus {
                channel: Some("a->b".into()),
                naming: Naming::Replica
            }
        );
        assert_eq!(
            parse("SHOW SLAVE STATUS -- legacy\n", true),
            Statement::ShowReplicaStatus {
                channel: None,
                naming: Naming::Slave
            }
        );
        assert_eq!(
            parse("stop slave io_thread for channel `c`", true),
            Statement::Stop {
                threads: Threads::Io,
                channel: Some("c".into())
            }
        );
        assert_eq!(
            parse("START REPLICA IO_THREAD, SQL_THREAD", true),
            Statement::Start {
                threads: Threads::Both,
                channel: None
            }
        );
        assert!(matches!(
            parse("SHOW ALL SLAVES STATUS", true),
            Statement::Unknown { .. }
        ));
        assert!(matches!(
            parse("SHOW SLAVE STATUS NONBLOCKING", true),
            Statement::Unknown { .. }
        ));
    }

    #[test]
    fn selects_keep_the_written_text_as_column_name() {
        let Statement::Select { items, limit, .. } =
            parse("select @@version_comment limit 1", true)
        else {
            panic!("not a select");
        };
        assert_eq!(items[0].name, "@@version_comment");
        assert_eq!(limit, Some(1));
        let Statement::Select { items, .. } = parse("SELECT @@GLOBAL.read_only AS ro, now()", true)
        else {
            panic!("not a select");
        };
        assert_eq!(items[0].name, "ro");
        assert_eq!(
            items[0].expr,
            Expr::Var {
                scope: Scope::Global,
                name: "read_only".into()
            }
        );
        assert_eq!(items[1].name, "now()");
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            parse("selec 1", true),
            Statement::Unknown {
                near: "selec 1".into(),
                line: 1
            }
        );
        assert!(matches!(
            parse("SELECT 'open", true),
            Statement::Unknown { .. }
        ));
        assert!(matches!(
            parse("DROP TABLE t", true),
            Statement::Unsupported(_)
        ));
        assert_eq!(parse(" /* only */ ; ", true), Statement::Empty);
        assert_eq!(
            parse("SHOW SLAVE STATUS", false),
            Statement::Unknown {
                near: "SLAVE STATUS".into(),
                line: 1
            }
        );
    }
}
