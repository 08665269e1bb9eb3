//! What a native applier does beyond applying rows, reproduced case by case
//! against real MySQL 9.7 masters (issue: fidelity): binlog rotation under
//! load and across a source restart, events, the default database, the
//! statement's microseconds, user variables, XA transactions, client
//! character sets and foreign keys on non-unique keys. Each case is written on
//! m1 in a session as an application would run it; m2 must end up as a
//! native replica of m1 would.

use std::time::Duration;

use crate::support::relay::{
    InProcess, assert_no_error, check_channels, checksums, config_text, same, settle,
    wait_converged,
};
use gtid_relay::status::{IoRunning, Replicas, Threads};

use crate::support::{Sandbox, wait_for, workload};

fn relay(sb: &Sandbox) -> InProcess {
    let relay = InProcess::start(&config_text(sb, &[1, 2], ""));
    relay.wait_running();
    relay
}

fn binlog_files(sb: &Sandbox, i: u8) -> usize {
    sb.sql(i, "SHOW BINARY LOGS").lines().count()
}

#[test]
fn binlog_rotation_under_load_and_a_source_restart_keep_channels_running() {
    // 8 KiB binlog files: the load rotates them every few transactions.
    let sb = Sandbox::start(2, &["--max-binlog-size=8192"]);
    let relay = relay(&sb);
    sb.sql(1, &workload::schema_sql());
    settle(&sb, &relay);
    for m in [1, 2] {
        sb.sql(m, &workload::seed_sql(&format!("m{m}")));
    }
    settle(&sb, &relay);

    let load = workload::spawn(&sb, &[1, 2], 2, Duration::from_secs(6));
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(800));
        sb.sql(1, "FLUSH BINARY LOGS");
        sb.sql(2, "FLUSH LOGS");
        check_channels(&relay);
    }
    let report = load.join().expect("workload");
    settle(&sb, &relay);
    let files = binlog_files(&sb, 1);
    assert!(files > 10, "m1 rotated its binlog {files} times");

    // A source restart starts a new binlog file whose FORMAT_DESCRIPTION
    // says the server started (`created`): both channels go on after it.
    sb.stop(1);
    sb.restart(1);
    let more = workload::run(&sb, &[1, 2], 2, Duration::from_secs(2));
    wait_converged(&sb, &[1, 2], Duration::from_secs(60));
    assert_no_error(&relay);
    assert_eq!(
        checksums(&sb, 1, workload::SCHEMA),
        checksums(&sb, 2, workload::SCHEMA)
    );
    let report = report.merge(more);
    for m in [1, 2] {
        workload::assert_exactly_once(&sb, m, &report);
    }
    relay.stop();
}

#[test]
fn statements_replay_as_a_native_applier_runs_them() {
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb);
    sb.sql(
        1,
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT)",
    );
    settle(&sb, &relay);

    // Events: created and altered through replication, disabled on the
    // replica, so that only the master where they were made runs them.
    sb.sql(
        1,
        "CREATE EVENT d.tick ON SCHEDULE EVERY 1 SECOND DO INSERT INTO d.t VALUES (UNIX_TIMESTAMP(NOW(6)) * 1000000 % 1000000000, @@server_id);
         CREATE EVENT d.quiet ON SCHEDULE EVERY 1 DAY DISABLE COMMENT 'off' DO SET @x = 1;
         ALTER EVENT d.quiet COMMENT 'still off'",
    );
    settle(&sb, &relay);
    let status =
        "SELECT EVENT_NAME, STATUS, EVENT_COMMENT FROM information_schema.EVENTS ORDER BY 1";
    assert_eq!(
        sb.sql(1, status),
        "quiet\tDISABLED\tstill off\ntick\tENABLED\t\n"
    );
    assert_eq!(
        sb.sql(2, status),
        "quiet\tREPLICA_SIDE_DISABLED\tstill off\ntick\tREPLICA_SIDE_DISABLED\t\n"
    );
    // The event fires on m1 only: every row it writes comes from m1's server_id.
    wait_for("the event to fire on m1", Duration::from_secs(10), || {
        (sb.value(2, "SELECT COUNT(*) FROM d.t") != "0").then_some(())
    });
    sb.sql(1, "DROP EVENT d.tick");
    settle(&sb, &relay);
    assert_eq!(same(&sb, "SELECT DISTINCT v FROM d.t"), "101\n");

    // The default database: a DDL logged without one runs without one.
    sb.sql(
        1,
        "CREATE DATABASE d2; CREATE TABLE d2.t2 (a INT);
         CREATE VIEW d2.v AS SELECT 1 AS x;
         CREATE FUNCTION d2.f() RETURNS INT DETERMINISTIC RETURN 1",
    );
    // An unqualified DROP FUNCTION without a default database names no
    // stored function (on the source it is a no-op): run in d2 it would drop d2.f.
    sb.sql(1, "DROP FUNCTION IF EXISTS f");
    sb.sql(1, "DROP DATABASE d2");
    sb.sql(1, "CREATE DATABASE d2; USE d2; CREATE TABLE t1 (a INT); CREATE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 2");
    sb.sql(1, "DROP FUNCTION IF EXISTS f");
    settle(&sb, &relay);
    same(
        &sb,
        "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'd2'",
    );
    assert_eq!(same(&sb, "SHOW TABLES FROM d2"), "t1\n");

    // The statement's microseconds: CURRENT_TIMESTAMP(6) defaults filled by
    // a DDL, and the trigger's creation time.
    sb.sql(
        1,
        "CREATE TABLE d.ts (id INT PRIMARY KEY); INSERT INTO d.ts VALUES (1), (2);
         ALTER TABLE d.ts ADD COLUMN at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6);
         CREATE TRIGGER d.bump BEFORE INSERT ON d.ts FOR EACH ROW SET NEW.at = NEW.at",
    );
    settle(&sb, &relay);
    let micros = same(&sb, "SELECT at FROM d.ts ORDER BY id");
    assert!(!micros.contains(".000000"), "microseconds kept: {micros}");
    same(
        &sb,
        "SELECT CREATED FROM information_schema.TRIGGERS WHERE TRIGGER_NAME = 'bump'",
    );

    // User variables (integer, string, double, decimal) that a statement
    // logged as text reads: the source logs their values in front of it.
    sb.sql(
        1,
        "SET @every = 6, @start = _latin1 X'323033312D30312D30312030303A30303A3030',
             @ratio = 2.5e0, @price = 12.50;
         CREATE EVENT d.uv1 ON SCHEDULE EVERY @every SECOND STARTS @start DISABLE DO SET @seen = 1;
         CREATE EVENT d.uv2 ON SCHEDULE EVERY @price MINUTE
           STARTS @start + INTERVAL @ratio * 60 MINUTE DISABLE DO SET @seen = 2",
    );
    settle(&sb, &relay);
    assert_eq!(
        same(
            &sb,
            "SELECT EVENT_NAME, INTERVAL_VALUE, INTERVAL_FIELD, STARTS FROM information_schema.EVENTS \
             WHERE EVENT_NAME LIKE 'uv%' ORDER BY 1"
        ),
        "uv1\t6\tSECOND\t2031-01-01 00:00:00\nuv2\t13\tMINUTE\t2031-01-01 02:30:00\n"
    );

    // Foreign keys on a non-unique key, which the source allowed.
    sb.sql(
        1,
        "CREATE TABLE d.parent (a INT, KEY (a));
         SET restrict_fk_on_non_standard_key = OFF;
         CREATE TABLE d.child (a INT, FOREIGN KEY (a) REFERENCES d.parent (a))",
    );
    settle(&sb, &relay);
    same(&sb, "SHOW CREATE TABLE d.child");

    // A target that gives tables without a key an invisible one of its own
    // (GIPK mode): the native applier creates them as the source logged them.
    sb.sql(2, "SET GLOBAL sql_generate_invisible_primary_key = ON");
    sb.sql(
        1,
        "CREATE TABLE d.nokey (a INT); INSERT INTO d.nokey VALUES (1), (1)",
    );
    settle(&sb, &relay);
    same(
        &sb,
        "SET show_gipk_in_create_table_and_information_schema = ON; SHOW CREATE TABLE d.nokey",
    );
    sb.sql(2, "SET GLOBAL sql_generate_invisible_primary_key = OFF");

    // Client character sets: a ucs2 connection collation, and a database
    // whose name is not ASCII used from a koi8r client.
    sb.sql(
        1,
        "SET NAMES latin1; SET character_set_connection = ucs2;
         CREATE TABLE d.u (a VARCHAR(10) DEFAULT 'abc');
         SET NAMES utf8mb4; CREATE DATABASE `проба`; USE `проба`; CREATE TABLE t (a INT);
         SET NAMES koi8r; CREATE TABLE `t2` (a INT)",
    );
    settle(&sb, &relay);
    same(&sb, "SHOW CREATE TABLE d.u");
    assert_eq!(
        same(
            &sb,
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'проба' ORDER BY 1"
        ),
        "74\n7432\n"
    );

    // XA: prepared and committed, one phase, rolled back, and one left
    // prepared across a relay restart, committed afterwards.
    sb.sql(
        1,
        "XA START 'x1'; INSERT INTO d.t VALUES (1, 1); XA END 'x1'; XA PREPARE 'x1'; XA COMMIT 'x1';
         XA START 'x2'; INSERT INTO d.t VALUES (2, 2); XA END 'x2'; XA COMMIT 'x2' ONE PHASE;
         XA START 'x3'; INSERT INTO d.t VALUES (3, 3); XA END 'x3'; XA PREPARE 'x3'; XA ROLLBACK 'x3';
         XA START 'x4', 'b', 7; INSERT INTO d.t VALUES (4, 4); XA END 'x4', 'b', 7; XA PREPARE 'x4', 'b', 7",
    );
    settle(&sb, &relay);
    relay.stop();
    assert_eq!(
        sb.sql(2, "XA RECOVER"),
        "7\t2\t1\tx4b\n",
        "m2 holds x4 prepared, like m1"
    );
    let relay = self::relay(&sb);
    sb.sql(1, "XA COMMIT 'x4', 'b', 7");
    settle(&sb, &relay);
    assert_eq!(
        same(&sb, "SELECT id, v FROM d.t WHERE id < 10 ORDER BY id"),
        "1\t1\n2\t2\n4\t4\n"
    );
    assert_eq!(sb.sql(2, "XA RECOVER"), "");
    relay.stop();
}

#[test]
fn a_source_that_resets_its_gtids_stops_its_channel_instead_of_stalling() {
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb);
    sb.sql(
        1,
        "CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY); INSERT INTO r.t VALUES (1), (2)",
    );
    settle(&sb, &relay);
    // m1 starts its GTIDs over: its next transactions reuse numbers m2 holds,
    // and its dump thread waits at a position the new binlog has not reached.
    sb.sql(1, "RESET BINARY LOGS AND GTIDS; INSERT INTO r.t VALUES (3)");
    let error = wait_for("m1->m2 to stop", Duration::from_secs(20), || {
        relay.channel("m1->m2").last_io_error
    });
    let status = relay.channel("m1->m2");
    assert_eq!(status.io_running, IoRunning::No, "{error:?}");
    assert_eq!(error.errno, 13114, "{}", error.message);
    assert!(error.message.contains("diverged"), "{}", error.message);
    // The other direction is not affected.
    assert!(relay.channel("m2->m1").last_io_error.is_none());
    relay.stop();
}

/// A file of `rows` lines `id<TAB>text` on the masters' filesystem, for LOAD
/// DATA INFILE; returns the path the servers see.
fn load_file(sb: &Sandbox, name: &str, rows: std::ops::Range<u32>) -> String {
    let inner = format!("/tmp/{}-{name}", sb.namespace());
    let text: String = rows.map(|i| format!("{i}\trow {i:08}\n")).collect();
    let outer = sb.chroot_dir().join(inner.trim_start_matches('/'));
    std::fs::write(&outer, text).expect("write the LOAD DATA file");
    inner
}

#[test]
fn load_data_logged_as_a_statement_replays_from_the_spooled_file() {
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb);
    sb.sql(
        1,
        "CREATE DATABASE ld; CREATE TABLE ld.t (id INT PRIMARY KEY, v VARCHAR(40));
         CREATE TABLE ld.m (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE = MyISAM",
    );
    settle(&sb, &relay);
    let small = load_file(&sb, "small.txt", 1..4);
    // Large enough that the source logs it in several blocks (APPEND_BLOCK events).
    let large = load_file(&sb, "large.txt", 10..40_000);
    let stmt = |sql: &str| format!("SET SESSION binlog_format = STATEMENT; USE ld; {sql}");

    // A target that refuses LOCAL files stops the channel with the setting
    // to change, and holds nothing of the transaction.
    sb.sql(2, "SET GLOBAL local_infile = OFF");
    sb.sql(
        1,
        &stmt(&format!(
            "LOAD DATA INFILE '{small}' INTO TABLE t (id, @v) SET v = CONCAT(@v, '!')"
        )),
    );
    let error = wait_for("m1->m2 to stop", Duration::from_secs(20), || {
        relay.channel("m1->m2").last_sql_error
    });
    assert_eq!(error.errno, 3948, "{}", error.message);
    assert!(
        error.message.contains("local_infile=ON"),
        "{}",
        error.message
    );
    assert_eq!(sb.value(2, "SELECT COUNT(*) FROM ld.t"), "0");
    sb.sql(2, "SET GLOBAL local_infile = ON");
    relay
        .relay
        .start(Some("m1->m2"), Threads::Both)
        .expect("start the channel again");
    wait_for("m1->m2 to restart", Duration::from_secs(20), || {
        let c = relay.channel("m1->m2");
        (c.sql_running && c.last_sql_error.is_none()).then_some(())
    });
    settle(&sb, &relay);

    // REPLACE and IGNORE over existing rows, a file of many blocks, a
    // non-transactional table, and a LOAD inside a larger transaction.
    sb.sql(1, "UPDATE ld.t SET v = 'old'");
    sb.sql(
        1,
        &stmt(&format!(
            "LOAD DATA INFILE '{small}' REPLACE INTO TABLE t;
             LOAD DATA INFILE '{large}' IGNORE INTO TABLE t;
             LOAD DATA INFILE '{large}' IGNORE INTO TABLE t LINES STARTING BY '' (id, v);
             LOAD DATA INFILE '{small}' INTO TABLE m;
             BEGIN; INSERT INTO t VALUES (100000, 'before');
             LOAD DATA INFILE '{small}' INTO TABLE t (@id, v) SET id = @id + 200000;
             COMMIT"
        )),
    );
    settle(&sb, &relay);
    assert_eq!(same(&sb, "SELECT COUNT(*) FROM ld.t"), "39997\n");
    same(&sb, "CHECKSUM TABLE ld.t, ld.m");
    assert_no_error(&relay);
    relay.stop();
}
