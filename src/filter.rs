//! Which transactions a channel sends to its target, and which of their
//! tables (routes).

use crate::gtid::{Gtid, GtidSet, Uuid};

/// What to do with a transaction, decided at its GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// It originated on the target: sending it back would be an echo.
    SkipLoop,
    /// The target already executed it (through this or another channel).
    SkipApplied,
}

/// The loop rule first, then the target's executed set.
pub fn decide(gtid: &Gtid, target_uuid: &Uuid, target_executed: &GtidSet) -> Verdict {
    if gtid.uuid == *target_uuid {
        Verdict::SkipLoop
    } else if target_executed.contains(gtid) {
        Verdict::SkipApplied
    } else {
        Verdict::Apply
    }
}

/// A `*` / `?` pattern over schema or table names (case-sensitive, as names
/// are on Linux servers with the default lower_case_table_names=0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Glob {
        Glob(pattern.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_literal(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        // Iterative matching with backtracking to the last `*`: linear in practice.
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some('?') => {
                    pi += 1;
                    ni += 1;
                }
                Some(c) if *c == n[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// One route rule: which tables it matches, and where included ones go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub schema: Glob,
    pub table: Glob,
    /// An exclude rule drops what it matches, whatever the include rules say.
    pub exclude: bool,
    /// New schema name on the target (None: unchanged).
    pub target_schema: Option<String>,
    /// New table name on the target (None: unchanged); only for a literal `table`.
    pub target_table: Option<String>,
}

/// The routes of one channel. Semantics follow MySQL's replication filters:
/// exclude rules win; with include rules, a table must match one of them
/// (the first match decides the rename); without any, everything passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub rules: Vec<Route>,
    /// Relay DDL statements at all.
    pub ddl: bool,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            rules: Vec::new(),
            ddl: true,
        }
    }
}

/// Where a routed object goes on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub schema: String,
    pub table: String,
}

impl Routes {
    /// True when every transaction passes unchanged: the reader skips routing.
    pub fn is_identity(&self) -> bool {
        self.rules.is_empty() && self.ddl
    }

    fn has_includes(&self) -> bool {
        self.rules.iter().any(|r| !r.exclude)
    }

    /// Where rows of `schema.table` go; None when they are filtered out.
    pub fn table(&self, schema: &str, table: &str) -> Option<Destination> {
        let hit = |r: &&Route| r.schema.matches(schema) && r.table.matches(table);
        if self.rules.iter().filter(|r| r.exclude).any(|r| hit(&r)) {
            return None;
        }
        match self.rules.iter().filter(|r| !r.exclude).find(hit) {
            Some(r) => Some(Destination {
                schema: r.target_schema.clone().unwrap_or_else(|| schema.into()),
                table: r.target_table.clone().unwrap_or_else(|| table.into()),
            }),
            None if self.has_includes() => None,
            None => Some(Destination {
                schema: schema.into(),
                table: table.into(),
            }),
        }
    }

    /// The default database a DDL statement runs in on the target; None when it
    /// is filtered out. Like replicate-do-db/replicate-rewrite-db for statements,
    /// only the statement's default database is considered: a DDL naming another
    /// database in its text follows the rules of its default one.
    pub fn ddl_schema(&self, schema: &str) -> Option<String> {
        if !self.ddl {
            return None;
        }
        // A whole-schema exclude drops DDL there; a table-level one cannot tell.
        if self
            .rules
            .iter()
            .any(|r| r.exclude && r.table.as_str() == "*" && r.schema.matches(schema))
        {
            return None;
        }
        match self
            .rules
            .iter()
            .find(|r| !r.exclude && r.schema.matches(schema))
        {
            Some(r) => Some(r.target_schema.clone().unwrap_or_else(|| schema.into())),
            None if self.has_includes() => None,
            None => Some(schema.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str, n: &str| Glob::new(p).matches(n);
        assert!(g("*", ""));
        assert!(g("*", "anything"));
        assert!(g("app", "app"));
        assert!(!g("app", "apps"));
        assert!(g("app*", "apps"));
        assert!(g("secret*", "secret"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*_log", "audit_log"));
        assert!(!g("*_log", "audit_logs"));
        assert!(g("a*b*c", "axxbyybzc"));
        assert!(!g("a*b*c", "axxbyyb"));
        assert!(g("t_??", "t_01"));
        assert!(g("stock_user", "stock_user"));
        assert!(!g("App", "app"));
        assert!(Glob::new("app").is_literal());
        assert!(!Glob::new("a*").is_literal());
    }

    fn rule(schema: &str, table: &str, exclude: bool) -> Route {
        Route {
            schema: Glob::new(schema),
            table: Glob::new(table),
            exclude,
            target_schema: None,
            target_table: None,
        }
    }

    fn dest(s: &str, t: &str) -> Option<Destination> {
        Some(Destination {
            schema: s.into(),
            table: t.into(),
        })
    }

    #[test]
    fn no_rules_pass_everything() {
        let r = Routes::default();
        assert!(r.is_identity());
        assert_eq!(r.table("x", "y"), dest("x", "y"));
        assert_eq!(r.ddl_schema(""), Some(String::new()));
    }

    #[test]
    fn excludes_win_over_includes() {
        let r = Routes {
            rules: vec![rule("app", "*", false), rule("app", "secret*", true)],
            ddl: true,
        };
        assert_eq!(r.table("app", "t1"), dest("app", "t1"));
        assert_eq!(r.table("app", "secrets"), None);
        assert_eq!(r.table("other", "t1"), None);
        assert_eq!(r.ddl_schema("app"), Some("app".into()));
        assert_eq!(r.ddl_schema("other"), None);
        assert_eq!(r.ddl_schema(""), None);
    }

    #[test]
    fn only_excludes_pass_the_rest() {
        let r = Routes {
            rules: vec![rule("tmp*", "*", true)],
            ddl: true,
        };
        assert_eq!(r.table("app", "t"), dest("app", "t"));
        assert_eq!(r.table("tmp1", "t"), None);
        assert_eq!(r.ddl_schema("tmp1"), None);
        assert_eq!(r.ddl_schema("app"), Some("app".into()));
    }

    #[test]
    fn renames_and_ddl_off() {
        let mut renamed = rule("app", "*", false);
        renamed.target_schema = Some("app_copy".into());
        let mut one = rule("app", "users", false);
        one.target_table = Some("people".into());
        let r = Routes {
            rules: vec![one, renamed],
            ddl: true,
        };
        assert_eq!(r.table("app", "users"), dest("app", "people"));
        assert_eq!(r.table("app", "t"), dest("app_copy", "t"));
        // The first include rule matching the schema decides the DDL's database.
        assert_eq!(r.ddl_schema("app"), Some("app".into()));
        let off = Routes {
            rules: vec![],
            ddl: false,
        };
        assert!(!off.is_identity());
        assert_eq!(off.ddl_schema("app"), None);
        assert_eq!(off.table("app", "t"), dest("app", "t"));
    }

    const T: &str = "11111111-1111-1111-1111-111111111111";
    const S: &str = "22222222-2222-2222-2222-222222222222";

    #[test]
    fn loop_rule_wins_over_everything() {
        let t: Uuid = T.parse().unwrap();
        let executed = GtidSet::parse(&format!("{S}:1-5")).unwrap();
        assert_eq!(
            decide(&format!("{T}:9").parse().unwrap(), &t, &executed),
            Verdict::SkipLoop
        );
        assert_eq!(
            decide(&format!("{S}:3").parse().unwrap(), &t, &executed),
            Verdict::SkipApplied
        );
        assert_eq!(
            decide(&format!("{S}:6").parse().unwrap(), &t, &executed),
            Verdict::Apply
        );
        assert_eq!(
            decide(&format!("{S}:tag:3").parse().unwrap(), &t, &executed),
            Verdict::Apply
        );
    }
}
