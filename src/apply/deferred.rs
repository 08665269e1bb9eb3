//! Statements whose result the applier does not need to see on their own
//! (session settings, GTID_NEXT, BEGIN), held back to travel in front of the
//! next statement that is sent, usually a transaction's first BINLOG
//! statement: that saves round trips. Adjacent SETs are joined into one SET
//! statement, which the server parses and runs once instead of once each;
//! assignments still take effect from left to right.

#[derive(Debug, Default)]
pub struct Deferred {
    sql: String,
    /// `sql` ends in a SET statement that more assignments may join.
    open_set: bool,
}

impl Deferred {
    /// Defer `SET <assignments>`.
    pub fn set(&mut self, assignments: &str) {
        if self.open_set {
            self.sql.push_str(", ");
        } else {
            self.separate();
            self.sql.push_str("SET ");
        }
        self.sql.push_str(assignments);
        self.open_set = true;
    }

    /// Defer a statement other than SET.
    pub fn statement(&mut self, sql: &str) {
        self.separate();
        self.sql.push_str(sql);
        self.open_set = false;
    }

    /// Everything deferred, for the caller to send; nothing stays deferred.
    pub fn take(&mut self) -> Option<String> {
        let sql = std::mem::take(self).sql;
        (!sql.is_empty()).then_some(sql)
    }

    fn separate(&mut self) {
        if !self.sql.is_empty() {
            self.sql.push_str("; ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_sets_become_one_statement() {
        let mut d = Deferred::default();
        assert_eq!(d.take(), None);
        d.set("@@SESSION.GTID_NEXT = 'AUTOMATIC'");
        d.set("TIMESTAMP = 1");
        d.set("@@SESSION.GTID_NEXT = 'u:1'");
        d.statement("BEGIN");
        d.statement("DEALLOCATE PREPARE p");
        d.set("@a = NULL");
        assert_eq!(
            d.take().as_deref(),
            Some(
                "SET @@SESSION.GTID_NEXT = 'AUTOMATIC', TIMESTAMP = 1, @@SESSION.GTID_NEXT = 'u:1'; \
                 BEGIN; DEALLOCATE PREPARE p; SET @a = NULL"
            )
        );
        assert_eq!(d.take(), None);
        d.set("TIMESTAMP = 2");
        assert_eq!(d.take().as_deref(), Some("SET TIMESTAMP = 2"));
    }
}
