//! What a replica applies differently from its source: an event created or
//! altered through replication is `REPLICA_SIDE_DISABLED` on the replica
//! (sql/event_parse_data.cc, `check_originator_id`), so that only the master
//! where it was created runs it. The native applier sets that status itself;
//! a client session can only ask for it in the statement, so the applier
//! adds `DISABLE ON REPLICA` to `CREATE EVENT` and `ALTER EVENT`, in place of
//! any ENABLE or DISABLE the source gave (the server logs the statement as
//! the target ran it).

use super::sql_text::{Lexeme, Token, lex};

const STATUS: &[u8] = b" DISABLE ON REPLICA ";

/// The statement with the event status a replica gives it, or `None` when
/// it is not `CREATE|ALTER [DEFINER = …] EVENT` or already says
/// `DISABLE ON REPLICA|SLAVE`.
pub fn rewrite(sql: &[u8]) -> Option<Vec<u8>> {
    let lexemes = lex(sql);
    let first = lexemes.first()?;
    if !(first.is_word("CREATE") || first.is_word("ALTER")) {
        return None;
    }
    let event = event_keyword(&lexemes)?;
    // The clauses before the body: ON SCHEDULE, ON COMPLETION, RENAME TO,
    // then the status, then COMMENT; DO (reserved) starts the body.
    let head = &lexemes[event + 1..];
    let body = head.iter().position(|l| l.is_word("DO"));
    let clauses = &head[..body.unwrap_or(head.len())];
    let mut status: Option<(usize, usize)> = None;
    for (i, l) in clauses.iter().enumerate() {
        if l.is_word("ENABLE") {
            status = Some((l.span.start, l.span.end));
        } else if l.is_word("DISABLE") {
            let on = clauses.get(i + 1).is_some_and(|n| n.is_word("ON"));
            let whom = clauses.get(i + 2);
            if on && whom.is_some_and(|w| w.is_word("REPLICA") || w.is_word("SLAVE")) {
                return None;
            }
            status = Some((l.span.start, l.span.end));
        }
    }
    let insert_at = clauses
        .iter()
        .find(|l| l.is_word("COMMENT"))
        .or_else(|| body.map(|b| &head[b]))
        .map_or(sql.len(), |l| l.span.start);
    let mut out = Vec::with_capacity(sql.len() + STATUS.len());
    match status {
        // The status stands right where it goes: replace it.
        Some((start, end)) => {
            out.extend_from_slice(&sql[..start]);
            out.extend_from_slice(STATUS.trim_ascii());
            out.extend_from_slice(&sql[end..]);
        }
        None => {
            out.extend_from_slice(&sql[..insert_at]);
            out.extend_from_slice(STATUS);
            out.extend_from_slice(&sql[insert_at..]);
        }
    }
    Some(out)
}

/// Index of the EVENT keyword after `CREATE|ALTER [DEFINER = user]`.
fn event_keyword(lexemes: &[Lexeme]) -> Option<usize> {
    let mut i = 1;
    if lexemes.get(i)?.is_word("DEFINER") {
        i += 1;
        if lexemes.get(i)?.token != Token::Punct(b'=') {
            return None;
        }
        i += 1;
        // user, then @host, or CURRENT_USER, then ()
        i += 1;
        if lexemes
            .get(i)
            .is_some_and(|l| matches!(l.token, Token::Punct(b'@' | b'(')))
        {
            i += 2;
        }
    }
    lexemes.get(i)?.is_word("EVENT").then_some(i)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn text(sql: &str) -> Option<String> {
        rewrite(sql.as_bytes()).map(|b| String::from_utf8(b).expect("utf8"))
    }

    #[test]
    fn created_and_altered_events_are_disabled_on_the_replica() {
        assert_eq!(
            text("CREATE DEFINER=`root`@`localhost` EVENT d.e ON SCHEDULE EVERY 1 SECOND DO INSERT INTO t VALUES (1)")
                .as_deref(),
            Some("CREATE DEFINER=`root`@`localhost` EVENT d.e ON SCHEDULE EVERY 1 SECOND  DISABLE ON REPLICA DO INSERT INTO t VALUES (1)")
        );
        assert_eq!(
            text("CREATE DEFINER=CURRENT_USER() EVENT e ON SCHEDULE AT NOW() ON COMPLETION PRESERVE ENABLE COMMENT 'do it' DO SET @a = 1")
                .as_deref(),
            Some("CREATE DEFINER=CURRENT_USER() EVENT e ON SCHEDULE AT NOW() ON COMPLETION PRESERVE DISABLE ON REPLICA COMMENT 'do it' DO SET @a = 1")
        );
        assert_eq!(
            text("ALTER DEFINER=u@h EVENT e DISABLE").as_deref(),
            Some("ALTER DEFINER=u@h EVENT e DISABLE ON REPLICA")
        );
        assert_eq!(
            text("ALTER EVENT e RENAME TO f").as_deref(),
            Some("ALTER EVENT e RENAME TO f DISABLE ON REPLICA ")
        );
        // The body's own words are not clauses.
        assert_eq!(
            text("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO ALTER EVENT x ENABLE").as_deref(),
            Some(
                "CREATE EVENT e ON SCHEDULE EVERY 1 DAY  DISABLE ON REPLICA DO ALTER EVENT x ENABLE"
            )
        );
    }

    #[test]
    fn other_statements_and_replica_disabled_events_are_left_alone() {
        assert_eq!(
            text("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DISABLE ON SLAVE DO SET @a=1"),
            None
        );
        assert_eq!(text("ALTER EVENT e DISABLE ON REPLICA"), None);
        assert_eq!(text("CREATE TABLE event (a INT)"), None);
        assert_eq!(text("DROP EVENT e"), None);
        assert_eq!(text("CREATE DEFINER=`u`@`h` PROCEDURE p() BEGIN END"), None);
    }
}
