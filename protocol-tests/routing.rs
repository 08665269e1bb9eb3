//! Routes (include/exclude by glob, rename, DDL on/off) and Gravity's
//! configuration files, against real MySQL 9.7 masters. Filtered transactions
//! must still reach the target as empty ones: gtid_executed always converges.

use std::time::{Duration, Instant};

use crate::support::relay::{InProcess, Process, TempDir, checksums, config_text, wait_converged};
use crate::support::{Sandbox, wait_for};

const CONVERGE: Duration = Duration::from_secs(15);

/// Wait until both masters hold the same GTIDs; fail at once on an apply error.
fn settle(sb: &Sandbox, relay: &InProcess) -> String {
    wait_for("masters to converge", CONVERGE, || {
        for c in relay.status() {
            if let Some(e) = &c.last_sql_error {
                panic!("channel {} stopped: {}: {}", c.name, e.errno, e.message);
            }
        }
        let (a, b) = (sb.gtid_executed(1), sb.gtid_executed(2));
        (a == b).then_some(a)
    })
}

fn rows(sb: &Sandbox, i: u8, sql: &str) -> String {
    sb.sql(i, sql).trim().to_string()
}

#[test]
fn routes_filter_rename_and_turn_ddl_off() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    // Each master's own schemas, created unlogged: m1's `app` lives in
    // `app_copy` on m2, and m2 also has an `app` of its own.
    sb.sql(
        1,
        "SET sql_log_bin = 0;
         CREATE DATABASE app; CREATE DATABASE other; CREATE DATABASE m1_only;
         CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         CREATE TABLE app.secret_keys (id INT PRIMARY KEY, v INT);
         CREATE TABLE other.t (id INT PRIMARY KEY)",
    );
    sb.sql(
        2,
        "SET sql_log_bin = 0;
         CREATE DATABASE app; CREATE DATABASE app_copy; CREATE DATABASE other;
         CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         CREATE TABLE app_copy.t (id INT PRIMARY KEY, v INT);
         CREATE TABLE app_copy.secret_keys (id INT PRIMARY KEY, v INT);
         CREATE TABLE other.t (id INT PRIMARY KEY)",
    );
    let relay = InProcess::start(&config_text(
        &sb,
        &[1, 2],
        r#"
[[channels]]
source = "m1"
target = "m2"
[[channels.routes]]
schema = "app"
target_schema = "app_copy"
[[channels.routes]]
schema = "app"
table = "secret*"
exclude = true

[[channels]]
source = "m2"
target = "m1"
ddl = false
[[channels.routes]]
schema = "a?p"
"#,
    ));
    relay.wait_running();

    // A transaction touching only an excluded table: its GTID must still
    // reach m2, as an empty transaction.
    let before = sb.gtid_executed(1);
    sb.sql(1, "INSERT INTO app.secret_keys VALUES (1, 1)");
    let filtered_gtid = sb.value(
        1,
        &format!("SELECT GTID_SUBTRACT(@@GLOBAL.gtid_executed, '{before}')"),
    );
    sb.sql(
        1,
        "INSERT INTO app.t VALUES (1, 10), (2, 20);
         INSERT INTO other.t VALUES (1);
         BEGIN;
           INSERT INTO app.t VALUES (3, 30);
           INSERT INTO app.secret_keys VALUES (2, 2);
           UPDATE app.t SET v = v + 1 WHERE id = 1;
         COMMIT;
         UPDATE app.t JOIN app.secret_keys ON app.t.id = app.secret_keys.id
           SET app.t.v = app.t.v * 100, app.secret_keys.v = 0;
         USE app; ALTER TABLE t ADD COLUMN w INT;
         INSERT INTO app.t VALUES (4, 40, 4);
         USE m1_only; INSERT INTO app.t VALUES (5, 50, 5);
         USE other; CREATE TABLE not_relayed (id INT PRIMARY KEY)",
    );
    sb.sql(
        2,
        "INSERT INTO app.t VALUES (100, 1);
         INSERT INTO app_copy.t (id, v) VALUES (200, 2);
         INSERT INTO other.t VALUES (300);
         USE app; CREATE TABLE only_m2 (id INT PRIMARY KEY)",
    );
    let executed = settle(&sb, &relay);
    assert!(executed.contains(&sb.server_uuid(1)) && executed.contains(&sb.server_uuid(2)));

    assert_eq!(
        sb.value(
            2,
            &format!("SELECT GTID_SUBSET('{filtered_gtid}', @@GLOBAL.gtid_executed)")
        ),
        "1",
        "the filtered transaction {filtered_gtid} is committed empty on m2"
    );
    // m1 -> m2: app.* lands in app_copy, secrets and other schemas do not.
    assert_eq!(
        rows(
            &sb,
            2,
            "SELECT id, v, w FROM app_copy.t WHERE id < 100 ORDER BY id"
        ),
        rows(
            &sb,
            1,
            "SELECT id, v, w FROM app.t WHERE id < 100 ORDER BY id"
        )
    );
    assert_eq!(
        rows(
            &sb,
            2,
            "SELECT id, v, w FROM app_copy.t WHERE id < 100 ORDER BY id"
        ),
        "1\t1100\tNULL\n2\t2000\tNULL\n3\t30\tNULL\n4\t40\t4\n5\t50\t5"
    );
    assert_eq!(
        rows(&sb, 2, "SELECT COUNT(*) FROM app_copy.secret_keys"),
        "0"
    );
    assert_eq!(rows(&sb, 2, "SELECT COUNT(*) FROM other.t"), "1");
    assert_eq!(
        rows(
            &sb,
            2,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'not_relayed'"
        ),
        "0"
    );
    // m2's own app schema was left alone by the rename.
    assert_eq!(rows(&sb, 2, "SELECT id FROM app.t"), "100");

    // m2 -> m1: `a?p` matches app only; DDL is off on this channel.
    assert_eq!(
        rows(&sb, 1, "SELECT id, v FROM app.t WHERE id = 100"),
        "100\t1"
    );
    assert_eq!(rows(&sb, 1, "SELECT COUNT(*) FROM other.t"), "1");
    assert_eq!(
        rows(
            &sb,
            1,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'only_m2'"
        ),
        "0"
    );
    assert!(
        !sb.sql(1, "SHOW DATABASES").contains("app_copy"),
        "app_copy is m2's"
    );
    relay.stop();
    eprintln!("routes test took {:?}", started.elapsed());
}

fn gravity_examples() -> Vec<String> {
    let dir = crate::support::repo_root().join("deploy/examples/gravity");
    ["21_2_22_config.toml", "22_2_21_config.toml"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

/// The seed's two Gravity files, unchanged, run as one bidirectional relay.
#[test]
fn seed_gravity_configs_relay_stock_user_both_ways() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    for i in [1, 2] {
        // The seed's account, with what applying under GTID_NEXT needs.
        sb.sql(
            i,
            "SET sql_log_bin = 0;
             CREATE USER '_gravity'@'127.0.0.1' IDENTIFIED BY '123456sl';
             GRANT ALL PRIVILEGES ON *.* TO '_gravity'@'127.0.0.1';
             CREATE DATABASE stock_user; CREATE DATABASE other;
             CREATE TABLE stock_user.stock (id INT PRIMARY KEY, qty INT);
             CREATE TABLE other.t (id INT PRIMARY KEY)",
        );
    }
    let dir = TempDir::new("gravity");
    let files = gravity_examples();
    let map = format!(
        "172.30.75.21:3307=127.0.0.1:{},172.30.75.22:3307=127.0.0.1:{}",
        sb.port(1),
        sb.port(2)
    );
    let mut relay = Process::spawn(
        &[
            "run",
            "--gravity-config",
            &files[0],
            "--gravity-config",
            &files[1],
            "--gravity-host-map",
            &map,
        ],
        &dir.0.join("relay.log"),
    );
    sb.sql(
        1,
        "INSERT INTO stock_user.stock VALUES (1, 10), (8, 80);
         INSERT INTO other.t VALUES (1);
         USE stock_user; CREATE TABLE added_on_m1 (id INT PRIMARY KEY)",
    );
    // m2's UPDATE scans the table: run it once m1's rows are in, so that it
    // cannot deadlock with the relay inserting them (a real conflict, not ours).
    wait_converged(&sb, &[1, 2], CONVERGE);
    sb.sql(
        2,
        "INSERT INTO stock_user.stock VALUES (2, 20);
         UPDATE stock_user.stock SET qty = qty + 1;
         INSERT INTO other.t VALUES (2)",
    );
    wait_converged(&sb, &[1, 2], CONVERGE);
    sb.sql(1, "INSERT INTO stock_user.added_on_m1 VALUES (1)");
    wait_converged(&sb, &[1, 2], CONVERGE);

    assert_eq!(
        checksums(&sb, 1, "stock_user"),
        checksums(&sb, 2, "stock_user")
    );
    assert_eq!(
        rows(&sb, 2, "SELECT id FROM stock_user.added_on_m1"),
        "1",
        "DDL relayed (enable-ddl = true)"
    );
    assert_eq!(rows(&sb, 1, "SELECT id FROM other.t"), "1");
    assert_eq!(rows(&sb, 2, "SELECT id FROM other.t"), "2");

    relay.signal("TERM");
    assert_eq!(relay.wait(Duration::from_secs(15)), Some(0));
    let log = relay.log_text();
    for setting in ["internal-db-name:", "tag-internal-txn:", "input.mode = "] {
        assert_eq!(
            log.matches(setting).count(),
            1,
            "one warning about {setting}:\n{log}"
        );
    }
    eprintln!("gravity test took {:?}", started.elapsed());
}

#[test]
fn unsupported_gravity_setting_is_a_clear_error() {
    let dir = TempDir::new("gravity-bad");
    let files = gravity_examples();
    let text = std::fs::read_to_string(&files[0])
        .expect("read example")
        .replace("mode = \"replication\"", "mode = \"batch\"");
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, text).expect("write");
    let bad = bad.display().to_string();
    let mut relay = Process::spawn(
        &[
            "run",
            "--gravity-config",
            &bad,
            "--gravity-config",
            &files[1],
        ],
        &dir.0.join("relay.log"),
    );
    assert_eq!(relay.wait(Duration::from_secs(10)), Some(1));
    let log = relay.log_text();
    assert!(
        log.contains(&format!("{bad}:12: input.mode: 'batch' is not supported")),
        "{log}"
    );

    // The translation, for users who move to the native format.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gtid-relay"))
        .arg("import-gravity")
        .args(&files)
        .output()
        .expect("run import-gravity");
    assert!(out.status.success());
    let native = String::from_utf8_lossy(&out.stdout);
    assert!(native.contains("conflict = \"idempotent\""), "{native}");
    assert!(native.contains("schema = \"stock_user\""), "{native}");
}
