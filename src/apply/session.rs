//! The source session's settings, replayed on the apply session before a
//! statement, the way mysqlbinlog prints them: only what changed is sent.
//!
//! Every literal the relay writes carries an introducer (`_utf8mb4'…'`): a
//! SET is parsed in the connection character set the previous statement
//! left, which may be the source's (ucs2, utf16…), where plain ASCII quotes
//! read as something else.

use mysql_common::collations::{Collation, CollationId};

use crate::conn::{hex, quote_ident};
use crate::source::assemble::{SessionSettings, Statement};
use crate::source::context::{ContextVar, UserValue};

// Bits of the Query event's Flags2 status variable (sql/log_event.h).
const OPTION_AUTO_IS_NULL: u32 = 1 << 14;
const OPTION_NO_FOREIGN_KEY_CHECKS: u32 = 1 << 26;
const OPTION_RELAXED_UNIQUE_CHECKS: u32 = 1 << 27;

/// MODE_NO_DIR_IN_CREATE in sql_mode (sql/system_variables.h).
const MODE_NO_DIR_IN_CREATE: u64 = 1 << 7;

/// utf8mb4_0900_ai_ci: what the relay's own statements are written in.
const UTF8MB4: u16 = 255;

/// A string literal in the relay's character set, read the same whatever the
/// session's connection character set (values without backslashes only).
pub fn literal(s: &str) -> String {
    format!("_utf8mb4'{}'", s.replace('\'', "''"))
}

#[derive(Debug, Default)]
pub struct SessionState {
    applied: SessionSettings,
    /// The session's default database; a session starts without one.
    schema: Option<String>,
    /// The target's own NO_DIR_IN_CREATE, which the native applier keeps in
    /// place of the source's (Query_log_event::do_apply_event): a replica
    /// decides for itself whether DATA/INDEX DIRECTORY clauses apply.
    no_dir_in_create: bool,
}

impl SessionState {
    /// A fresh session on a target whose sql_mode has NO_DIR_IN_CREATE or not.
    pub fn new(no_dir_in_create: bool) -> SessionState {
        SessionState {
            no_dir_in_create,
            ..SessionState::default()
        }
    }

    /// The same target, a fresh session.
    pub fn fresh(&self) -> SessionState {
        SessionState::new(self.no_dir_in_create)
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub fn set_schema(&mut self, schema: Option<&str>) {
        self.schema = schema.map(str::to_string);
    }

    /// The settings the session holds are no longer known (they were
    /// deferred and never sent): send them all again. The default database
    /// is still known.
    pub fn forget_settings(&mut self) {
        self.applied = SessionSettings::default();
    }

    /// Switch the session's client character set to the relay's, for a
    /// statement of its own that names something outside ASCII (a `USE`);
    /// the source's is sent again with its next statement.
    pub fn relay_charset(&mut self) -> String {
        self.applied.charset = None;
        format!("@@SESSION.character_set_client = {UTF8MB4}")
    }

    /// The assignments of a SET statement that brings the session to `stmt`'s settings.
    pub fn prepare(&mut self, stmt: &Statement) -> String {
        let s = &stmt.settings;
        let mut vars: Vec<String> = Vec::new();
        let mut changed = |new: Option<String>, old: Option<String>| {
            if let Some(v) = new
                && Some(&v) != old.as_ref()
            {
                vars.push(v);
            }
        };
        let flags = |f: Option<u32>| {
            f.map(|f| {
                format!(
                    "@@SESSION.foreign_key_checks = {}, @@SESSION.sql_auto_is_null = {}, @@SESSION.unique_checks = {}",
                    u8::from(f & OPTION_NO_FOREIGN_KEY_CHECKS == 0),
                    u8::from(f & OPTION_AUTO_IS_NULL != 0),
                    u8::from(f & OPTION_RELAXED_UNIQUE_CHECKS == 0),
                )
            })
        };
        changed(flags(s.flags2), flags(self.applied.flags2));
        let own_dir = if self.no_dir_in_create {
            MODE_NO_DIR_IN_CREATE
        } else {
            0
        };
        let mode = s.sql_mode.map(|m| m & !MODE_NO_DIR_IN_CREATE | own_dir);
        let sql_mode = |m: Option<u64>| m.map(|m| format!("@@SESSION.sql_mode = {m}"));
        changed(sql_mode(mode), sql_mode(self.applied.sql_mode));
        let auto_inc = |a: Option<(u16, u16)>| {
            a.map(|(i, o)| format!("@@SESSION.auto_increment_increment = {i}, @@SESSION.auto_increment_offset = {o}"))
        };
        changed(
            auto_inc(s.auto_increment),
            auto_inc(self.applied.auto_increment),
        );
        let charset = |c: Option<(u16, u16, u16)>| {
            c.map(|(client, conn, server)| {
                format!(
                    "@@SESSION.character_set_client = {client}, @@SESSION.collation_connection = {conn}, \
                     @@SESSION.collation_server = {server}"
                )
            })
        };
        changed(charset(s.charset), charset(self.applied.charset));
        let tz = |t: &Option<String>| {
            t.as_ref()
                .map(|t| format!("@@SESSION.time_zone = {}", literal(t)))
        };
        changed(tz(&s.time_zone), tz(&self.applied.time_zone));
        let num = |name: &str, v: Option<u64>| v.map(|v| format!("@@SESSION.{name} = {v}"));
        let pairs: [(&str, Option<u64>, Option<u64>); 6] = [
            (
                "lc_time_names",
                s.lc_time_names.map(u64::from),
                self.applied.lc_time_names.map(u64::from),
            ),
            (
                "collation_database",
                s.collation_database.map(u64::from),
                self.applied.collation_database.map(u64::from),
            ),
            (
                "explicit_defaults_for_timestamp",
                s.explicit_defaults_for_timestamp.map(u64::from),
                self.applied.explicit_defaults_for_timestamp.map(u64::from),
            ),
            (
                "default_collation_for_utf8mb4",
                s.default_collation_for_utf8mb4.map(u64::from),
                self.applied.default_collation_for_utf8mb4.map(u64::from),
            ),
            (
                "sql_require_primary_key",
                s.sql_require_primary_key.map(u64::from),
                self.applied.sql_require_primary_key.map(u64::from),
            ),
            (
                "default_table_encryption",
                s.default_table_encryption.map(u64::from),
                self.applied.default_table_encryption.map(u64::from),
            ),
        ];
        for (name, new, old) in pairs {
            changed(num(name, new), num(name, old));
        }
        // The statement's time, so NOW()/CURRENT_TIMESTAMP defaults match the source.
        let timestamp = match stmt.micros {
            Some(us) => format!("TIMESTAMP = {}.{us:06}", stmt.timestamp),
            None => format!("TIMESTAMP = {}", stmt.timestamp),
        };
        vars.push(timestamp);
        vars.push(format!("@@SESSION.pseudo_thread_id = {}", stmt.thread_id));
        vars.extend(stmt.context.iter().map(assignment));
        self.applied = merge(
            &self.applied,
            &SessionSettings {
                sql_mode: mode,
                ..s.clone()
            },
        );
        vars.join(", ")
    }
}

/// The assignment that gives the session what the source's INTVAR, RAND or
/// USER_VAR event says, as mysqlbinlog prints it.
fn assignment(var: &ContextVar) -> String {
    match var {
        ContextVar::LastInsertId(v) => format!("@@SESSION.last_insert_id = {v}"),
        ContextVar::InsertId(v) => format!("@@SESSION.insert_id = {v}"),
        ContextVar::RandSeeds(a, b) => {
            format!("@@SESSION.rand_seed1 = {a}, @@SESSION.rand_seed2 = {b}")
        }
        ContextVar::UserVar { name, value } => {
            format!("@{} := {}", quote_ident(name), user_value(value))
        }
    }
}

fn user_value(value: &UserValue) -> String {
    match value {
        UserValue::Null => "NULL".into(),
        UserValue::Int(v) => v.to_string(),
        UserValue::UInt(v) => v.to_string(),
        // `{:e}` keeps every digit and an exponent, which makes it a DOUBLE literal.
        UserValue::Real(bits) => format!("{:e}", f64::from_bits(*bits)),
        UserValue::Decimal(text) => text.clone(),
        UserValue::Str { bytes, collation } => {
            let hex = hex(bytes);
            let c = Collation::resolve(CollationId::from(*collation));
            if c.id() == CollationId::UNKNOWN_COLLATION_ID || c.charset() == "binary" {
                format!("_binary X'{hex}'")
            } else {
                format!(
                    "_{} X'{hex}' COLLATE {}",
                    c.charset(),
                    quote_ident(c.collation())
                )
            }
        }
    }
}

/// Settings the session holds after applying `new` on top of `old`.
fn merge(old: &SessionSettings, new: &SessionSettings) -> SessionSettings {
    SessionSettings {
        flags2: new.flags2.or(old.flags2),
        sql_mode: new.sql_mode.or(old.sql_mode),
        auto_increment: new.auto_increment.or(old.auto_increment),
        charset: new.charset.or(old.charset),
        time_zone: new.time_zone.clone().or_else(|| old.time_zone.clone()),
        lc_time_names: new.lc_time_names.or(old.lc_time_names),
        collation_database: new.collation_database.or(old.collation_database),
        explicit_defaults_for_timestamp: new
            .explicit_defaults_for_timestamp
            .or(old.explicit_defaults_for_timestamp),
        default_collation_for_utf8mb4: new
            .default_collation_for_utf8mb4
            .or(old.default_collation_for_utf8mb4),
        sql_require_primary_key: new.sql_require_primary_key.or(old.sql_require_primary_key),
        default_table_encryption: new
            .default_table_encryption
            .or(old.default_table_encryption),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(settings: SessionSettings) -> Statement {
        Statement {
            sql: b"CREATE TABLE t (id INT)".to_vec(),
            schema: "d".into(),
            settings,
            thread_id: 7,
            timestamp: 1_700_000_000,
            micros: Some(42),
            context: Vec::new(),
            infile: None,
        }
    }

    #[test]
    fn only_changed_settings_are_sent_again() {
        let mut state = SessionState::default();
        let s = SessionSettings {
            flags2: Some(OPTION_NO_FOREIGN_KEY_CHECKS),
            sql_mode: Some(1_168_113_696),
            time_zone: Some("SYSTEM".into()),
            ..Default::default()
        };
        let first = state.prepare(&stmt(s.clone()));
        assert_eq!(
            first,
            "@@SESSION.foreign_key_checks = 0, @@SESSION.sql_auto_is_null = 0, @@SESSION.unique_checks = 1, \
             @@SESSION.sql_mode = 1168113696, @@SESSION.time_zone = _utf8mb4'SYSTEM', TIMESTAMP = 1700000000.000042, \
             @@SESSION.pseudo_thread_id = 7"
        );
        let second = state.prepare(&stmt(s));
        assert_eq!(
            second,
            "TIMESTAMP = 1700000000.000042, @@SESSION.pseudo_thread_id = 7"
        );
        let third = state.prepare(&stmt(SessionSettings {
            sql_mode: Some(0),
            ..Default::default()
        }));
        assert!(
            third.starts_with("@@SESSION.sql_mode = 0, TIMESTAMP"),
            "{third}"
        );
    }

    #[test]
    fn context_events_become_typed_assignments() {
        let vars = [
            ContextVar::InsertId(5),
            ContextVar::LastInsertId(7),
            ContextVar::RandSeeds(1, 2),
            ContextVar::UserVar {
                name: "a`b".into(),
                value: UserValue::Str {
                    bytes: b"caf\xe9".to_vec(),
                    collation: 8,
                },
            },
            ContextVar::UserVar {
                name: "r".into(),
                value: UserValue::Real(2.5f64.to_bits()),
            },
            ContextVar::UserVar {
                name: "n".into(),
                value: UserValue::Null,
            },
            ContextVar::UserVar {
                name: "b".into(),
                value: UserValue::Str {
                    bytes: vec![0, 255],
                    collation: 63,
                },
            },
        ];
        let text: Vec<String> = vars.iter().map(assignment).collect();
        assert_eq!(
            text,
            [
                "@@SESSION.insert_id = 5",
                "@@SESSION.last_insert_id = 7",
                "@@SESSION.rand_seed1 = 1, @@SESSION.rand_seed2 = 2",
                "@`a``b` := _latin1 X'636166E9' COLLATE `latin1_swedish_ci`",
                "@`r` := 2.5e0",
                "@`n` := NULL",
                "@`b` := _binary X'00FF'",
            ]
        );
    }

    #[test]
    fn the_target_keeps_its_own_no_dir_in_create() {
        let with_dir = |mode| SessionSettings {
            sql_mode: Some(mode),
            ..Default::default()
        };
        let mut state = SessionState::new(false);
        let sent = state.prepare(&stmt(with_dir(MODE_NO_DIR_IN_CREATE | 1)));
        assert!(sent.starts_with("@@SESSION.sql_mode = 1,"), "{sent}");
        let mut state = SessionState::new(true);
        let sent = state.prepare(&stmt(with_dir(1)));
        assert!(sent.starts_with("@@SESSION.sql_mode = 129,"), "{sent}");
        // Unchanged once applied.
        let again = state.prepare(&stmt(with_dir(1)));
        assert!(!again.contains("sql_mode"), "{again}");
    }
}
