//! `gtid-relay gtid-mode` against a master and a file/position replica, under
//! write load, and resuming an interrupted run.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::support::relay::{RELAY_PASSWORD, checksums, connect};
use crate::support::{Sandbox, wait_for};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-sandbox-pw";

/// Master 1 and replica 2, both with gtid_mode=OFF, the replica attached by
/// file/position; an admin account on both (not binlogged).
fn master_and_replica() -> Sandbox {
    let mut sb = Sandbox::empty(2);
    for i in [1, 2] {
        // performance_schema for the error_log table the WARN step reads.
        sb.start_instance(i, &["--gtid-mode=OFF"], &["--performance-schema=ON"]);
        sb.sql(
            i,
            &format!(
                "SET sql_log_bin = 0; CREATE USER '{ADMIN}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}'; \
                 GRANT ALL ON *.* TO '{ADMIN}'@'127.0.0.1'"
            ),
        );
    }
    let status = sb.sql(1, "SHOW BINARY LOG STATUS");
    let mut cols = status.split('\t');
    let (file, pos) = (cols.next().expect("file"), cols.next().expect("pos"));
    sb.sql(
        2,
        &format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {}, SOURCE_USER = 'relay', \
             SOURCE_PASSWORD = '{RELAY_PASSWORD}', SOURCE_LOG_FILE = '{file}', SOURCE_LOG_POS = {pos}, \
             GET_SOURCE_PUBLIC_KEY = 1; START REPLICA",
            sb.port(1)
        ),
    );
    sb.sql(
        1,
        "CREATE DATABASE load_db; \
         CREATE TABLE load_db.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, n BIGINT NOT NULL, pad VARCHAR(100)); \
         CREATE TABLE load_db.c (k INT PRIMARY KEY, v BIGINT NOT NULL); \
         INSERT INTO load_db.c VALUES (0, 0), (1, 0), (2, 0), (3, 0)",
    );
    wait_for(
        "the replica to have the schema",
        Duration::from_secs(20),
        || (sb.try_sql(2, "SELECT COUNT(*) FROM load_db.c").ok()?.trim() == "4").then_some(()),
    );
    sb
}

fn url(sb: &Sandbox, i: u8) -> String {
    format!("mysql://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:{}", sb.port(i))
}

/// Runs `gtid-relay gtid-mode ARGS --server m1 --server m2`; returns (exit code, stdout+stderr).
fn gtid_mode(sb: &Sandbox, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gtid-relay"))
        .arg("gtid-mode")
        .args(args)
        .args(["--server", &url(sb, 1), "--server", &url(sb, 2)])
        .args(["--observe-secs", "1", "--wait-timeout-secs", "30"])
        .output()
        .expect("run gtid-relay gtid-mode");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Commits and failed transactions of the load.
#[derive(Debug, Default)]
struct Load {
    commits: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Write transactions on master 1 (about 100/s) until `stop` is set or 60 s pass.
fn write_load(port: u16, stop: &AtomicBool) -> Load {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = connect(port).await;
        let mut load = Load::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            n += 1;
            let sql = format!(
                "START TRANSACTION; INSERT INTO load_db.t (n, pad) VALUES ({n}, REPEAT('x', {})); \
                 UPDATE load_db.c SET v = v + 1 WHERE k = {}; COMMIT",
                n % 100,
                n % 4
            );
            match conn.query_drop(sql).await {
                Ok(()) => load.commits += 1,
                Err(e) => {
                    load.errors += 1;
                    load.first_error.get_or_insert(e.to_string());
                    let _ = conn.query_drop("ROLLBACK").await;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = conn.disconnect().await;
        load
    })
}

/// Run `gtid-mode ARGS` while the load writes to master 1.
fn under_load(sb: &Sandbox, args: &[&str]) -> (i32, String, Load, Duration) {
    let stop = AtomicBool::new(false);
    let port = sb.port(1);
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_load(port, &stop));
        // Let the load run in the old mode first.
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        let (code, text) = gtid_mode(sb, args);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let load = writer.join().expect("load thread");
        (code, text, load, took)
    })
}

fn modes(sb: &Sandbox, i: u8) -> String {
    sb.value(
        i,
        "SELECT CONCAT(@@GLOBAL.gtid_mode, ' ', @@GLOBAL.enforce_gtid_consistency)",
    )
}

/// Auto_Position, receiver state, applier state, last receiver and worker errors.
fn replica_status(sb: &Sandbox) -> String {
    sb.value(
        2,
        "SELECT CONCAT_WS(' ', cc.AUTO_POSITION, cs.SERVICE_STATE, a.SERVICE_STATE, cs.LAST_ERROR_NUMBER, \
           (SELECT MAX(LAST_ERROR_NUMBER) FROM performance_schema.replication_applier_status_by_worker)) \
         FROM performance_schema.replication_connection_configuration cc \
         JOIN performance_schema.replication_connection_status cs USING (CHANNEL_NAME) \
         JOIN performance_schema.replication_applier_status a USING (CHANNEL_NAME)",
    )
}

/// Wait until the replica has applied everything master 1 logged.
fn replica_caught_up(sb: &Sandbox) {
    let status = sb.sql(1, "SHOW BINARY LOG STATUS");
    let mut cols = status.split('\t');
    let (file, pos) = (cols.next().expect("file"), cols.next().expect("pos"));
    let waited = sb.value(2, &format!("SELECT SOURCE_POS_WAIT('{file}', {pos}, 30)"));
    assert!(
        waited != "-1" && waited != "NULL",
        "replica did not catch up: {waited}"
    );
}

#[test]
fn enable_then_disable_under_load() {
    let started = Instant::now();
    let sb = master_and_replica();

    let (code, text, load, took) = under_load(&sb, &["enable"]);
    println!("{text}");
    println!("enable: {took:?}, load {load:?}");
    assert_eq!(code, 0, "{text}");
    assert_eq!(load.errors, 0, "{load:?}");
    assert!(load.commits > 0);
    assert_eq!(modes(&sb, 1), "ON ON");
    assert_eq!(modes(&sb, 2), "ON ON");
    assert_eq!(replica_status(&sb), "1 ON ON 0 0");
    replica_caught_up(&sb);
    assert_eq!(checksums(&sb, 1, "load_db"), checksums(&sb, 2, "load_db"));
    // Transactions after the switch carry GTIDs and reached the replica by them.
    let executed = sb.gtid_executed(1);
    assert!(executed.starts_with(&sb.server_uuid(1)), "{executed}");
    assert_eq!(sb.gtid_executed(2), executed);
    // Persisted: a restart keeps the mode.
    assert!(
        sb.value(
            1,
            "SELECT COUNT(*) FROM performance_schema.persisted_variables \
             WHERE VARIABLE_NAME IN ('gtid_mode', 'enforce_gtid_consistency') AND VARIABLE_VALUE = 'ON'"
        ) == "2"
    );

    let (code, text, load, took) = under_load(&sb, &["disable"]);
    println!("{text}");
    println!("disable: {took:?}, load {load:?}");
    assert_eq!(code, 0, "{text}");
    assert_eq!(load.errors, 0, "{load:?}");
    assert_eq!(modes(&sb, 1), "OFF OFF");
    assert_eq!(modes(&sb, 2), "OFF OFF");
    assert_eq!(replica_status(&sb), "0 ON ON 0 0");
    replica_caught_up(&sb);
    assert_eq!(checksums(&sb, 1, "load_db"), checksums(&sb, 2, "load_db"));
    println!("test took {:?}", started.elapsed());
}

#[test]
fn interrupted_enable_resumes_from_the_servers_state() {
    let started = Instant::now();
    let sb = master_and_replica();

    let (code, text) = gtid_mode(&sb, &["enable", "--dry-run"]);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("step 3/6: GTID_MODE=ON_PERMISSIVE on every server: would run"));
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert_eq!(modes(&sb, 1), "OFF OFF", "dry run changed nothing");

    // Interrupted after ON_PERMISSIVE, under load.
    let (code, text, load, _) = under_load(&sb, &["enable", "--pause-after-step", "3"]);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("paused after step 3"), "{text}");
    assert_eq!(load.errors, 0, "{load:?}");
    assert_eq!(modes(&sb, 1), "ON_PERMISSIVE ON");
    assert_eq!(modes(&sb, 2), "ON_PERMISSIVE ON");

    // The next run derives where it is from the servers alone.
    let (code, text, load, _) = under_load(&sb, &["enable"]);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    for n in 1..=3 {
        assert!(
            text.contains(&format!("step {n}/6:")) && text.contains("already done"),
            "{text}"
        );
    }
    assert!(text.contains("step 4/6 done"), "{text}");
    assert_eq!(load.errors, 0, "{load:?}");
    assert_eq!(modes(&sb, 1), "ON ON");
    assert_eq!(modes(&sb, 2), "ON ON");
    assert_eq!(replica_status(&sb), "1 ON ON 0 0");
    replica_caught_up(&sb);
    assert_eq!(checksums(&sb, 1, "load_db"), checksums(&sb, 2, "load_db"));
    println!("test took {:?}", started.elapsed());
}

#[test]
fn a_gtid_consistency_violation_stops_enable_at_warn() {
    let mut sb = Sandbox::empty(1);
    sb.start_instance(1, &["--gtid-mode=OFF"], &["--performance-schema=ON"]);
    sb.sql(
        1,
        &format!(
            "SET sql_log_bin = 0; CREATE USER '{ADMIN}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}'; \
             GRANT ALL ON *.* TO '{ADMIN}'@'127.0.0.1'; SET sql_log_bin = 1; \
             CREATE DATABASE x; CREATE TABLE x.m (a INT) ENGINE=MyISAM; CREATE TABLE x.i (a INT PRIMARY KEY)"
        ),
    );
    let (code, text) = std::thread::scope(|s| {
        // A non-transactional update inside a transaction, while the run watches.
        let violator = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            sb.sql(
                1,
                "BEGIN; INSERT INTO x.i VALUES (1); INSERT INTO x.m VALUES (1); COMMIT",
            );
        });
        let out = Command::new(env!("CARGO_BIN_EXE_gtid-relay"))
            .args(["gtid-mode", "enable", "--server", &url(&sb, 1)])
            .args(["--observe-secs", "4"])
            .output()
            .expect("run gtid-relay gtid-mode");
        violator.join().expect("violator");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    });
    println!("{text}");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("GTID consistency violation") && text.contains("non-transactional"),
        "{text}"
    );
    assert_eq!(modes(&sb, 1), "OFF WARN");
}
