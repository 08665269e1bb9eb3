//! `gtid-relay check`: connect to every master and report, per master and per
//! channel, whether the relay can run, each problem with the fix to apply.
//!
//! The fatal channel conditions (gtid_mode, purged, diverged) are decided by the
//! same functions `source::open` calls at every connect, so `check` and `run`
//! never disagree and print the same words.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::config::{Config, Master};
use crate::conn::{self, ConnError};
use crate::gtid::{GtidSet, Uuid};
use crate::source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One checked property of one master or one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A master name, or a channel name (`source->target`).
    pub scope: String,
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when nothing failed (warnings allowed): `run` can start every channel.
    pub ok: bool,
    pub passed: usize,
    pub warnings: usize,
    pub failures: usize,
    pub findings: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
enum GatherError {
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("{what} failed: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    #[error("cannot parse @@{name} ({value:?}): {message}")]
    Parse {
        name: &'static str,
        value: String,
        message: String,
    },
}

/// What `check` reads from one master.
struct Facts {
    version: String,
    server_id: u64,
    uuid: Uuid,
    vars: HashMap<String, String>,
    executed: GtidSet,
    purged: GtidSet,
    grants: Grants,
}

impl Facts {
    fn var(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }

    fn num(&self, name: &str) -> Option<u64> {
        self.var(name).parse().ok()
    }

    /// (increment, key residue): two masters with the same class generate the same keys.
    fn key_class(&self) -> Option<(u64, u64)> {
        let inc = self.num("auto_increment_increment")?;
        Some((
            inc,
            effective_offset(inc, self.num("auto_increment_offset")?),
        ))
    }
}

const VARIABLES: &[&str] = &[
    "version",
    "server_id",
    "server_uuid",
    "gtid_mode",
    "enforce_gtid_consistency",
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_checksum",
    "binlog_expire_logs_seconds",
    "auto_increment_increment",
    "auto_increment_offset",
    "max_allowed_packet",
    "gtid_executed",
    "gtid_purged",
    "log_bin_trust_function_creators",
    "local_infile",
];

async fn gather(master: &Master, timeout: Duration) -> Result<Facts, GatherError> {
    let mut c = conn::connect(master, timeout).await?;
    let failed = |what: &'static str| move |source| GatherError::Query { what, source };
    let names: Vec<String> = VARIABLES.iter().map(|v| conn::quote_str(v)).collect();
    let rows: Vec<(String, String)> = c
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({})",
            names.join(", ")
        ))
        .await
        .map_err(failed("SHOW GLOBAL VARIABLES"))?;
    let grants: Vec<String> = c
        .query("SHOW GRANTS")
        .await
        .map_err(failed("SHOW GRANTS"))?;
    let _ = c.disconnect().await;
    let vars: HashMap<String, String> = rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let get = |name: &'static str| vars.get(name).cloned().unwrap_or_default();
    let parse_err = |name: &'static str, value: String, message: String| GatherError::Parse {
        name,
        value,
        message,
    };
    let gtids = |name: &'static str| {
        let text = get(name);
        GtidSet::parse(&text).map_err(|e| parse_err(name, text, e.to_string()))
    };
    let uuid_text = get("server_uuid");
    let server_id_text = get("server_id");
    Ok(Facts {
        version: get("version"),
        server_id: server_id_text
            .parse()
            .map_err(|e: std::num::ParseIntError| {
                parse_err("server_id", server_id_text.clone(), e.to_string())
            })?,
        uuid: uuid_text.parse().map_err(|e: crate::gtid::GtidError| {
            parse_err("server_uuid", uuid_text.clone(), e.to_string())
        })?,
        executed: gtids("gtid_executed")?,
        purged: gtids("gtid_purged")?,
        grants: Grants::parse(&grants),
        vars,
    })
}

/// Run every check against the masters and channels of `config`.
pub async fn check(config: &Config) -> Report {
    let timeout = config.source.connect_timeout;
    let gathered =
        futures_util::future::join_all(config.masters.iter().map(|m| gather(m, timeout))).await;
    let mut findings = Vec::new();
    let mut facts: Vec<Option<Facts>> = Vec::new();
    for (m, g) in config.masters.iter().zip(gathered) {
        match g {
            Ok(f) => {
                findings.push(pass(
                    &m.name,
                    "connection",
                    format!("{}@{}:{}, MySQL {}", m.user, m.host, m.port, f.version),
                ));
                facts.push(Some(f));
            }
            Err(e) => {
                findings.push(fail(
                    &m.name,
                    "connection",
                    e.to_string(),
                    "check host, port, user, password and TLS settings in the configuration, \
                     and that the account exists for the relay's address",
                ));
                facts.push(None);
            }
        }
    }
    for (i, m) in config.masters.iter().enumerate() {
        let Some(f) = &facts[i] else { continue };
        let is_source = config.channels.iter().any(|c| c.source == i);
        let is_target = config.channels.iter().any(|c| c.target == i);
        master_checks(&mut findings, m, f, is_source, is_target);
        identity_checks(&mut findings, config, &facts, i);
    }
    for ch in &config.channels {
        let (s, t) = (&config.masters[ch.source], &config.masters[ch.target]);
        let (Some(sf), Some(tf)) = (&facts[ch.source], &facts[ch.target]) else {
            findings.push(Finding {
                scope: ch.name.clone(),
                check: "channel",
                status: Status::Warn,
                detail: "not checked: a master of this channel could not be reached".into(),
                fix: None,
            });
            continue;
        };
        channel_checks(&mut findings, &ch.name, s, sf, t, tf);
    }
    Report::new(findings)
}

impl Report {
    fn new(findings: Vec<Finding>) -> Report {
        let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
        let failures = count(Status::Fail);
        Report {
            ok: failures == 0,
            passed: count(Status::Pass),
            warnings: count(Status::Warn),
            failures,
            findings,
        }
    }
}

/// Pass when no other master has the same `check` value, else fail naming them.
fn unique(
    n: &str,
    check: &'static str,
    value: String,
    shared_by: &[&str],
    why: &str,
    fix: &str,
) -> Finding {
    if shared_by.is_empty() {
        pass(n, check, format!("{check}={value} is unique"))
    } else {
        fail(
            n,
            check,
            format!(
                "{check}={value} is also used by {}{why}",
                shared_by.join(", ")
            ),
            fix,
        )
    }
}

fn pass(scope: &str, check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        scope: scope.to_string(),
        check,
        status: Status::Pass,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(
    scope: &str,
    check: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        scope: scope.to_string(),
        check,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn warn(
    scope: &str,
    check: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        status: Status::Warn,
        ..fail(scope, check, detail, fix)
    }
}

/// Pass when `value` (compared case-insensitively) equals `want`, else fail with `fix`.
fn expect(
    out: &mut Vec<Finding>,
    scope: &str,
    check: &'static str,
    value: &str,
    want: &str,
    why: &str,
    fix: String,
) {
    if value.eq_ignore_ascii_case(want) {
        out.push(pass(scope, check, format!("{check}={value}")));
    } else {
        out.push(fail(scope, check, format!("{check}={value}; {why}"), fix));
    }
}

fn version_status(version: &str) -> (Status, String) {
    let numbers: Vec<u32> = version
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect();
    let v = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
        numbers.get(2).copied().unwrap_or(0),
    );
    if version.to_ascii_lowercase().contains("mariadb") {
        return (
            Status::Fail,
            format!("{version} is MariaDB, whose GTIDs are a different protocol"),
        );
    }
    if v >= (8, 0, 26) {
        (Status::Pass, format!("MySQL {version} is supported"))
    } else {
        (
            Status::Fail,
            format!("MySQL {version} is older than 8.0.26, the oldest supported version"),
        )
    }
}

fn master_checks(out: &mut Vec<Finding>, m: &Master, f: &Facts, is_source: bool, is_target: bool) {
    let n = m.name.as_str();
    let (status, detail) = version_status(&f.version);
    out.push(Finding {
        scope: n.into(),
        check: "version",
        status,
        detail,
        fix: (status == Status::Fail).then(|| "upgrade to MySQL 8.0.26+, 8.4 or 9.x".into()),
    });

    match source::require_gtid_mode_on(n, f.var("gtid_mode")) {
        Ok(()) => out.push(pass(n, "gtid_mode", "gtid_mode=ON")),
        Err(e) => out.push(fail(
            n,
            "gtid_mode",
            e.to_string(),
            format!(
                "gtid-relay gtid-mode enable --server mysql://USER:PASSWORD@{}:{} (online; add every native replica with --server)",
                m.host, m.port
            ),
        )),
    }
    expect(
        out,
        n,
        "enforce_gtid_consistency",
        f.var("enforce_gtid_consistency"),
        "ON",
        "gtid_mode=ON requires it",
        "gtid-relay gtid-mode enable (sets it online after watching for violations), or SET PERSIST enforce_gtid_consistency = ON".into(),
    );
    expect(
        out,
        n,
        "log_bin",
        f.var("log_bin"),
        "ON",
        "the relay reads and writes the binary log",
        "start mysqld with --log-bin (binary logging cannot be switched on at runtime)".into(),
    );
    expect(
        out,
        n,
        "binlog_format",
        f.var("binlog_format"),
        "ROW",
        "the relay replays row events; statement events would be refused",
        "SET PERSIST binlog_format = 'ROW' (sessions already open keep the old format until they reconnect)".into(),
    );
    expect(
        out,
        n,
        "binlog_row_image",
        f.var("binlog_row_image"),
        "FULL",
        "row events must identify rows on every master",
        "SET PERSIST binlog_row_image = 'FULL'".into(),
    );
    match f.var("binlog_checksum").to_ascii_uppercase().as_str() {
        "CRC32" => out.push(pass(n, "binlog_checksum", "binlog_checksum=CRC32")),
        other => out.push(warn(
            n,
            "binlog_checksum",
            format!("binlog_checksum={other}: events are not verified in transit"),
            "SET PERSIST binlog_checksum = 'CRC32'",
        )),
    }
    if is_source {
        match f.num("binlog_expire_logs_seconds") {
            Some(0) => out.push(pass(
                n,
                "binlog_retention",
                "binlog_expire_logs_seconds=0: binlogs never expire (watch the disk)",
            )),
            Some(s) if s < 86_400 => out.push(warn(
                n,
                "binlog_retention",
                format!(
                    "binlog_expire_logs_seconds={s}: a relay or peer down for more than {}h loses its position (purged GTIDs) and needs a reseed",
                    s / 3600
                ),
                "SET PERSIST binlog_expire_logs_seconds = 604800 (7 days), or more than your longest outage",
            )),
            Some(s) => out.push(pass(
                n,
                "binlog_retention",
                format!("binlog_expire_logs_seconds={s} ({} days)", s / 86_400),
            )),
            None => out.push(warn(
                n,
                "binlog_retention",
                format!(
                    "cannot read binlog_expire_logs_seconds ({:?})",
                    f.var("binlog_expire_logs_seconds")
                ),
                "check the binlog retention by hand",
            )),
        }
    }
    let grantee = f.grants.grantee.as_deref().unwrap_or("the relay account");
    if is_source {
        privilege_check(
            out,
            n,
            "source_privileges",
            &f.grants,
            &["REPLICATION SLAVE", "REPLICATION CLIENT"],
            Status::Fail,
            "reading the binary log",
            grantee,
        );
    }
    if is_target {
        privilege_check(
            out,
            n,
            "target_privileges",
            &f.grants,
            &["REPLICATION_APPLIER", "SESSION_VARIABLES_ADMIN"],
            Status::Fail,
            "applying with GTID_NEXT and BINLOG statements",
            grantee,
        );
        privilege_check(
            out,
            n,
            "target_row_privileges",
            &f.grants,
            &["SELECT", "INSERT", "UPDATE", "DELETE"],
            Status::Fail,
            "applying row changes",
            grantee,
        );
        privilege_check(
            out,
            n,
            "target_ddl_privileges",
            &f.grants,
            &["CREATE", "DROP", "ALTER", "INDEX"],
            Status::Warn,
            "applying DDL (a replicated DDL would stop the channel)",
            grantee,
        );
        privilege_check(
            out,
            n,
            "target_definer_privilege",
            &f.grants,
            &["SET_ANY_DEFINER", "ALLOW_NONEXISTENT_DEFINER"],
            Status::Warn,
            "applying views, routines, triggers and events whose DEFINER is another account, \
             or one that does not exist on the target",
            grantee,
        );
        // A replica's applier may create stored functions with binary logging
        // on; a client session needs SUPER or this setting (error 1419).
        if f.var("log_bin_trust_function_creators") != "ON" && !f.grants.has_global("SUPER") {
            out.push(warn(
                n,
                "target_function_creators",
                "log_bin_trust_function_creators=OFF and the relay account lacks SUPER: \
                 a CREATE FUNCTION or CREATE TRIGGER relayed to this master stops the channel \
                 (error 1419)",
                format!(
                    "SET PERSIST log_bin_trust_function_creators = ON (or SET sql_log_bin = 0; \
                     GRANT SUPER ON *.* TO {grantee})"
                ),
            ));
        }
        // A LOAD DATA logged as a statement is replayed as LOAD DATA LOCAL.
        if f.var("local_infile") == "OFF" {
            out.push(warn(
                n,
                "target_local_infile",
                "local_infile=OFF: a LOAD DATA that a source logged as a statement (a session \
                 with binlog_format=STATEMENT) stops the channel (error 3948); in ROW format it \
                 arrives as rows and needs nothing",
                "SET PERSIST local_infile = ON, if applications run LOAD DATA with \
                 binlog_format=STATEMENT",
            ));
        }
        privilege_check(
            out,
            n,
            "target_gtid_tag_privilege",
            &f.grants,
            &["TRANSACTION_GTID_TAG"],
            Status::Warn,
            "applying tagged GTIDs (uuid:tag:n fails with error 6038)",
            grantee,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn privilege_check(
    out: &mut Vec<Finding>,
    scope: &str,
    check: &'static str,
    grants: &Grants,
    needed: &[&str],
    severity: Status,
    why: &str,
    grantee: &str,
) {
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| !grants.has_global(p))
        .collect();
    if missing.is_empty() {
        out.push(pass(scope, check, format!("{} on *.*", needed.join(", "))));
        return;
    }
    let narrowed: Vec<String> = missing
        .iter()
        .filter_map(|p| {
            grants
                .objects
                .get(*p)
                .map(|objs| format!("{p} only on {}", objs.join(", ")))
        })
        .collect();
    let all_narrowed = narrowed.len() == missing.len();
    let mut detail = format!("missing {} on *.*, needed for {why}", missing.join(", "));
    if !narrowed.is_empty() {
        detail.push_str(&format!(" ({})", narrowed.join("; ")));
    }
    if !grants.roles.is_empty() {
        detail.push_str(&format!(
            "; privileges of granted roles ({}) are not counted",
            grants.roles.join(", ")
        ));
    }
    let fix = format!(
        "SET sql_log_bin = 0; GRANT {} ON *.* TO {grantee}",
        missing.join(", ")
    );
    // Object privileges narrowed to some schemas are legitimate when the routes
    // only replicate those schemas: say so, but do not fail.
    let status = if all_narrowed { Status::Warn } else { severity };
    out.push(Finding {
        scope: scope.into(),
        check,
        status,
        detail,
        fix: Some(fix),
    });
}

/// server_id, server_uuid and auto_increment settings compared across masters.
fn identity_checks(out: &mut Vec<Finding>, config: &Config, facts: &[Option<Facts>], i: usize) {
    let Some(me) = &facts[i] else { return };
    let n = config.masters[i].name.as_str();
    let others: Vec<(&str, &Facts)> = facts
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .filter_map(|(j, f)| f.as_ref().map(|f| (config.masters[j].name.as_str(), f)))
        .collect();

    let sharing = |same: &dyn Fn(&Facts) -> bool| -> Vec<&str> {
        others
            .iter()
            .filter(|(_, f)| same(f))
            .map(|(name, _)| *name)
            .collect()
    };
    out.push(unique(
        n,
        "server_id",
        me.server_id.to_string(),
        &sharing(&|f| f.server_id == me.server_id),
        "",
        "give every master its own server_id: SET PERSIST server_id = <unique number>",
    ));
    out.push(unique(
        n,
        "server_uuid",
        me.uuid.to_string(),
        &sharing(&|f| f.uuid == me.uuid),
        " (a cloned data directory?); the loop rule cannot tell them apart",
        "stop mysqld, delete auto.cnf from its data directory, start it again (a new UUID is generated)",
    ));

    let masters = config.masters.len() as u64;
    let (Some(inc), Some(off)) = (
        me.num("auto_increment_increment"),
        me.num("auto_increment_offset"),
    ) else {
        out.push(warn(
            n,
            "auto_increment",
            "cannot read auto_increment_increment / auto_increment_offset",
            "check them by hand",
        ));
        return;
    };
    let mut problems = Vec::new();
    if inc < masters {
        problems.push(format!(
            "auto_increment_increment={inc} is less than the {masters} masters"
        ));
    }
    let different: Vec<String> = others
        .iter()
        .filter_map(|(name, f)| {
            let theirs = f.num("auto_increment_increment")?;
            (theirs != inc).then(|| format!("{name} uses {theirs}"))
        })
        .collect();
    if !different.is_empty() {
        problems.push(format!(
            "auto_increment_increment={inc} but {}",
            different.join(", ")
        ));
    }
    let mine = effective_offset(inc, off);
    let colliding: Vec<&str> = others
        .iter()
        .filter(|(_, f)| f.key_class() == Some((inc, mine)))
        .map(|(name, _)| *name)
        .collect();
    if !colliding.is_empty() {
        problems.push(format!(
            "auto_increment_offset={off} generates the same keys as {} (offset {mine} mod {inc})",
            colliding.join(", ")
        ));
    }
    if problems.is_empty() {
        out.push(pass(
            n,
            "auto_increment",
            format!("increment {inc}, offset {off}: no key overlaps another master"),
        ));
        return;
    }
    // The first master of a colliding group keeps its offset; each later one
    // gets its own free offset, so following every fix resolves the collision.
    let classes: Vec<Option<(u64, u64)>> = facts
        .iter()
        .map(|f| f.as_ref().and_then(Facts::key_class))
        .collect();
    let must_move = |j: usize| classes[j].is_some() && classes[..j].contains(&classes[j]);
    let want_inc = inc.max(masters);
    let taken: BTreeSet<u64> = (0..facts.len())
        .filter(|&j| !must_move(j))
        .filter_map(|j| classes[j].map(|(_, o)| o % want_inc))
        .collect();
    let rank = (0..i).filter(|&j| must_move(j)).count();
    let free = (1..=want_inc)
        .filter(|o| !taken.contains(&(o % want_inc)))
        .nth(rank);
    let fix = match (must_move(i) || inc < masters, free) {
        (false, _) => {
            "keep this master's offset and change the colliding masters' (see their fix); \
                       use the same increment on every master"
                .to_string()
        }
        (true, Some(o)) => format!(
            "SET PERSIST auto_increment_increment = {want_inc}, auto_increment_offset = {o} \
             (the same increment on every master, a distinct offset each; new sessions pick it up)"
        ),
        (true, None) => format!(
            "raise auto_increment_increment above {want_inc} on every master and give each a distinct offset"
        ),
    };
    out.push(fail(n, "auto_increment", problems.join("; "), fix));
}

/// The residue class of keys a master generates: MySQL ignores an offset larger
/// than the increment.
fn effective_offset(inc: u64, off: u64) -> u64 {
    let inc = inc.max(1);
    let off = if off > inc { 1 } else { off };
    off % inc
}

fn channel_checks(
    out: &mut Vec<Finding>,
    name: &str,
    s: &Master,
    sf: &Facts,
    t: &Master,
    tf: &Facts,
) {
    match source::can_serve(
        &s.name,
        &t.name,
        &sf.uuid,
        &sf.executed,
        &sf.purged,
        &tf.executed,
    ) {
        Ok(()) => {
            let behind = sf.executed.subtract(&tf.executed).count();
            out.push(pass(
                name,
                "gtid_position",
                format!(
                    "{} lacks {behind} GTIDs of {}, all still in its binary logs; no divergence",
                    t.name, s.name
                ),
            ));
        }
        Err(e) => {
            let fix = match &e {
                source::SourceError::Purged { .. } => format!(
                    "reseed {} from a master that has the data: mysqldump --single-transaction --set-gtid-purged=ON, \
                     or SET GLOBAL gtid_purged on {} if those transactions' data is already there",
                    t.name, t.name
                ),
                _ => format!(
                    "reseed {} from {} (mysqldump --single-transaction --set-gtid-purged=ON), or remove the extra transactions",
                    t.name, s.name
                ),
            };
            out.push(fail(name, "gtid_position", e.to_string(), fix));
        }
    }
    match (sf.num("max_allowed_packet"), tf.num("max_allowed_packet")) {
        (Some(sp), Some(tp)) if tp < sp => out.push(warn(
            name,
            "max_allowed_packet",
            format!(
                "{} has max_allowed_packet={tp}, less than {}'s {sp}: a transaction or row that fits on the source may not apply",
                t.name, s.name
            ),
            format!("SET PERSIST max_allowed_packet = {sp} on {}", t.name),
        )),
        (Some(_), Some(tp)) => out.push(pass(
            name,
            "max_allowed_packet",
            format!("{}'s max_allowed_packet={tp} is at least the source's", t.name),
        )),
        _ => out.push(warn(
            name,
            "max_allowed_packet",
            "cannot read max_allowed_packet",
            "compare max_allowed_packet by hand",
        )),
    }
}

/// The privileges `SHOW GRANTS` lists for the current account.
#[derive(Debug, Default)]
struct Grants {
    /// Privileges on `*.*`, upper case (`REPLICATION SLAVE`, `REPLICATION_APPLIER`, ...).
    global: BTreeSet<String>,
    /// Privileges granted on narrower objects, with those objects.
    objects: BTreeMap<String, Vec<String>>,
    /// Roles granted to the account (their privileges are not listed).
    roles: Vec<String>,
    /// The account as SHOW GRANTS names it, e.g. `relay`@`127.0.0.1`.
    grantee: Option<String>,
}

impl Grants {
    fn parse(lines: &[String]) -> Grants {
        let mut g = Grants::default();
        for line in lines {
            let Some(rest) = strip_prefix_ci(line.trim(), "GRANT ") else {
                continue;
            };
            let Some((what, to)) = rest.split_once(" TO ") else {
                continue;
            };
            if g.grantee.is_none() {
                let account = to
                    .trim()
                    .trim_end_matches(" WITH GRANT OPTION")
                    .trim_end_matches(" WITH ADMIN OPTION");
                g.grantee = Some(account.to_string());
            }
            let Some((privs, object)) = what.split_once(" ON ") else {
                g.roles.push(what.trim().to_string());
                continue;
            };
            let object = object.trim();
            for p in privs.split(',') {
                let p = p.trim().to_ascii_uppercase();
                if object == "*.*" {
                    g.global.insert(p);
                } else {
                    g.objects.entry(p).or_default().push(object.to_string());
                }
            }
        }
        g
    }

    fn has_global(&self, privilege: &str) -> bool {
        // ALL [PRIVILEGES] covers the static privileges; dynamic ones (names with
        // an underscore) are listed separately by SHOW GRANTS.
        self.global.contains(privilege)
            || (!privilege.contains('_')
                && (self.global.contains("ALL PRIVILEGES") || self.global.contains("ALL")))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl fmt::Display for Report {
    /// A table: scope, check, result, detail, with the fix on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w_scope = self
            .findings
            .iter()
            .map(|x| x.scope.len())
            .chain([6])
            .max()
            .unwrap_or(6);
        let w_check = self
            .findings
            .iter()
            .map(|x| x.check.len())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "{:w_scope$}  {:w_check$}  RESULT  DETAIL",
            "MASTER", "CHECK"
        )?;
        let indent = w_scope + w_check + 12;
        for x in &self.findings {
            writeln!(
                f,
                "{:w_scope$}  {:w_check$}  {:6}  {}",
                x.scope,
                x.check,
                x.status.label(),
                x.detail
            )?;
            if let Some(fix) = &x.fix {
                writeln!(f, "{:indent$}fix: {fix}", "")?;
            }
        }
        writeln!(
            f,
            "\n{} passed, {} warnings, {} failed: {}",
            self.passed,
            self.warnings,
            self.failures,
            if self.ok {
                "the relay can run"
            } else {
                "fix the failures before `gtid-relay run`"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grants_are_parsed_by_level() {
        let g = Grants::parse(&lines(&[
            "GRANT SELECT, INSERT, REPLICATION SLAVE ON *.* TO `relay`@`127.0.0.1` WITH GRANT OPTION",
            "GRANT REPLICATION_APPLIER,SESSION_VARIABLES_ADMIN ON *.* TO `relay`@`127.0.0.1`",
            "GRANT UPDATE, DELETE ON `shop`.* TO `relay`@`127.0.0.1`",
            "GRANT `r_admin`@`%` TO `relay`@`127.0.0.1`",
        ]));
        assert_eq!(g.grantee.as_deref(), Some("`relay`@`127.0.0.1`"));
        assert!(g.has_global("REPLICATION SLAVE"));
        assert!(g.has_global("SESSION_VARIABLES_ADMIN"));
        assert!(!g.has_global("UPDATE"));
        assert_eq!(g.objects["UPDATE"], ["`shop`.*"]);
        assert_eq!(g.roles, ["`r_admin`@`%`"]);
    }

    #[test]
    fn all_privileges_cover_static_privileges_only() {
        let g = Grants::parse(&lines(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`%`"]));
        assert!(g.has_global("REPLICATION CLIENT"));
        assert!(!g.has_global("REPLICATION_APPLIER"));
    }

    #[test]
    fn narrowed_object_privileges_warn() {
        let g = Grants::parse(&lines(&[
            "GRANT SELECT, INSERT, UPDATE, DELETE ON `shop`.* TO `relay`@`%`",
        ]));
        let mut out = Vec::new();
        privilege_check(
            &mut out,
            "m1",
            "target_row_privileges",
            &g,
            &["SELECT", "INSERT", "UPDATE", "DELETE"],
            Status::Fail,
            "x",
            "`relay`@`%`",
        );
        assert_eq!(out[0].status, Status::Warn);
        assert!(
            out[0].detail.contains("SELECT only on `shop`.*"),
            "{}",
            out[0].detail
        );
    }

    #[test]
    fn versions() {
        assert_eq!(version_status("9.7.0").0, Status::Pass);
        assert_eq!(version_status("8.4.3").0, Status::Pass);
        assert_eq!(version_status("8.0.26-log").0, Status::Pass);
        assert_eq!(version_status("8.0.25").0, Status::Fail);
        assert_eq!(version_status("5.7.44-log").0, Status::Fail);
        assert_eq!(version_status("10.11.6-MariaDB-0+deb12u1").0, Status::Fail);
    }

    #[test]
    fn offsets_larger_than_the_increment_are_ignored_like_mysql() {
        assert_eq!(effective_offset(7, 1), 1);
        assert_eq!(effective_offset(7, 8), 1);
        assert_eq!(effective_offset(7, 7), 0);
        assert_ne!(effective_offset(7, 2), effective_offset(7, 1));
    }
}
