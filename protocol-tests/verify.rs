//! `gtid-relay verify` against two masters kept in sync by the relay: no false
//! alarms under live bidirectional load, a row changed behind the relay's back
//! found in exactly its chunk, and the same per-table verdict as pt-table-checksum.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::relay::{
    InProcess, Process, RELAY_PASSWORD, TempDir, config_text, wait_converged, write_config,
};
use crate::support::{Sandbox, workload};

/// Two masters with the relay running between them and the workload schema seeded.
fn relayed_pair() -> (Sandbox, InProcess) {
    let sb = Sandbox::start(2, &[]);
    let relay = InProcess::start(&config_text(&sb, &[1, 2], ""));
    relay.wait_running();
    sb.sql(1, &workload::schema_sql());
    wait_converged(&sb, &[1, 2], Duration::from_secs(30));
    for m in [1, 2] {
        sb.sql(m, &workload::seed_sql(&format!("m{m}")));
    }
    (sb, relay)
}

/// `rows` rows in `table` (created on master 1 and relayed), as one statement.
fn fill(sb: &Sandbox, table: &str, rows: u32, select: &str) {
    sb.sql(
        1,
        &format!(
            "SET SESSION cte_max_recursion_depth = {rows}; \
             INSERT INTO {table} WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {rows}) \
             SELECT {select} FROM r"
        ),
    );
}

/// Run `gtid-relay verify` with `args`; returns its exit code and JSON report.
fn verify(dir: &TempDir, sb: &Sandbox, args: &[&str]) -> (i32, Value, Duration) {
    let config = write_config(&dir.0, &config_text(sb, &[1, 2], ""));
    let config = config.to_str().expect("utf8 path");
    let log = dir.0.join("verify.out");
    let mut all = vec!["verify", "--config", config, "--format", "json"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let mut process = Process::spawn(&all, &log);
    let code = process.wait(Duration::from_secs(60));
    let took = started.elapsed();
    let text = process.log_text();
    let json = text
        .find('{')
        .and_then(|at| serde_json::from_str(&text[at..]).ok())
        .unwrap_or_else(|| panic!("verify printed no JSON report: {text}"));
    (code.unwrap_or(-1), json, took)
}

fn table_statuses(report: &Value) -> BTreeMap<String, String> {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                format!(
                    "{}.{}",
                    t["schema"].as_str().unwrap_or(""),
                    t["table"].as_str().unwrap_or("")
                ),
                t["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_reports_consistent_under_live_bidirectional_load() {
    let (sb, relay) = relayed_pair();
    fill(
        &sb,
        "workload.ledger (origin, seq, payload)",
        30_000,
        "'pre', n, REPEAT('p', n % 50)",
    );
    wait_converged(&sb, &[1, 2], Duration::from_secs(60));
    let dir = TempDir::new("verify-load");

    let load = std::thread::scope(|s| {
        let load = s.spawn(|| workload::run(&sb, &[1, 2], 1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(500));
        // Small chunks, so many chunks are read while rows are in flight.
        let mut runs = Vec::new();
        while !load.is_finished() {
            let (code, report, took) = verify(&dir, &sb, &["--chunk-time", "0.02"]);
            assert_eq!(code, 0, "verify under load: {report:#}");
            runs.push((took, report));
        }
        (load.join().expect("workload"), runs)
    });
    let (report, runs) = load;
    assert!(!runs.is_empty(), "verify ran during the load");
    let rechecked: u64 = runs
        .iter()
        .map(|(_, r)| r["rechecked"].as_u64().unwrap_or(0))
        .sum();
    for (took, r) in &runs {
        eprintln!(
            "verify under load: {:?}, {} chunks, {} rows, {} re-checked",
            took, r["chunks"], r["rows"], r["rechecked"]
        );
    }
    eprintln!(
        "workload: {:?} in {:?}; {} verify runs, {rechecked} chunks differed at first sight",
        report.commits,
        report.elapsed,
        runs.len()
    );
    wait_converged(&sb, &[1, 2], Duration::from_secs(120));
    for m in [1, 2] {
        workload::assert_exactly_once(&sb, m, &report);
    }
    relay.stop();
}

#[test]
fn verify_finds_a_row_changed_behind_the_relays_back_in_exactly_its_chunk() {
    let (sb, relay) = relayed_pair();
    sb.sql(
        1,
        "CREATE DATABASE vt; \
         CREATE TABLE vt.items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), note TEXT); \
         CREATE TABLE vt.other (k VARCHAR(20) NOT NULL, n INT NOT NULL, v DOUBLE, PRIMARY KEY (k, n))",
    );
    fill(
        &sb,
        "vt.items",
        40_000,
        "n, CONCAT('item-', n), n / 100, IF(n % 3 = 0, NULL, 'x')",
    );
    fill(&sb, "vt.other", 5_000, "CONCAT('k', n % 10), n, n / 3");
    wait_converged(&sb, &[1, 2], Duration::from_secs(60));
    // Not binlogged: the relay never sees it, so m2 now really differs.
    sb.sql(
        2,
        "SET sql_log_bin = 0; UPDATE vt.items SET name = 'tampered' WHERE id = 23456",
    );

    let dir = TempDir::new("verify-tampered");
    let (code, report, took) = std::thread::scope(|s| {
        // Writes keep going elsewhere: lag must not show up as a difference.
        let load = s.spawn(|| workload::run(&sb, &[1, 2], 1, Duration::from_secs(6)));
        let result = verify(&dir, &sb, &[]);
        load.join().expect("workload");
        result
    });
    eprintln!(
        "verify with one tampered row: {took:?}, {} chunks, {} rows, {} re-checked",
        report["chunks"], report["rows"], report["rechecked"]
    );
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["verdict"], "different");
    let statuses = table_statuses(&report);
    for (table, status) in &statuses {
        let expected = if table == "vt.items" {
            "different"
        } else {
            "consistent"
        };
        assert_eq!(status, expected, "{table}: {report:#}");
    }
    let items = report["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "items"))
        .expect("vt.items in the report");
    let diffs = items["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "exactly one chunk: {items:#}");
    let diff = &diffs[0];
    let bound = |b: &Value| {
        b.as_array()
            .map(|v| v[0].as_str().unwrap_or("").parse::<i64>())
    };
    let lower = bound(&diff["lower"]).map(|b| b.expect("integer bound"));
    let upper = bound(&diff["upper"]).map(|b| b.expect("integer bound"));
    assert!(
        lower.is_none_or(|l| l < 23456) && upper.is_none_or(|u| 23456 <= u),
        "range ({lower:?}, {upper:?}] contains the row"
    );
    assert!(
        items["chunks"].as_u64().unwrap_or(0) > 1,
        "the table was chunked"
    );
    assert_eq!(diff["differing_masters"], serde_json::json!(["m2"]));
    let rows = diff["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{diff:#}");
    assert_eq!(rows[0]["key"], serde_json::json!(["23456"]));
    assert!(
        diff["inspect"]
            .as_str()
            .is_some_and(|s| s.contains("`vt`.`items`")),
        "{diff:#}"
    );
    relay.stop();
}

/// pt-table-checksum compares through statement-based replication, which the
/// relay (ROW events) does not provide. Instead it runs on each master on its
/// own, with a fixed chunk size so its chunk boundaries depend only on the
/// data, writing its results unlogged; a table is consistent for it when both
/// masters' chunk lists (boundaries, counts, CRCs) are identical.
fn pt_table_checksum(sb: &Sandbox, m: u8, schema: &str) -> BTreeMap<String, String> {
    let out = Command::new("chroot")
        .arg(sb.chroot_dir())
        .args([
            "pt-table-checksum",
            &format!("h=127.0.0.1,P={},u=relay,p={RELAY_PASSWORD}", sb.port(m)),
            "--recursion-method=none",
            "--no-check-replication-filters",
            "--no-check-binlog-format",
            "--set-vars=sql_log_bin=0",
            "--replicate=percona.checksums",
            "--chunk-size=700",
            "--chunk-time=0",
            &format!("--databases={schema}"),
        ])
        .output()
        .expect("run pt-table-checksum in the chroot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pt-table-checksum on m{m}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.sql(
        m,
        &format!(
            "SELECT CONCAT(db, '.', tbl), GROUP_CONCAT(CONCAT_WS('/', chunk, this_cnt, this_crc, \
             lower_boundary, upper_boundary) ORDER BY chunk SEPARATOR ' ') \
             FROM percona.checksums WHERE db = '{schema}' GROUP BY db, tbl"
        ),
    )
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(t, c)| (t.to_string(), c.to_string()))
    .collect()
}

#[test]
fn verify_agrees_with_pt_table_checksum_on_quiescent_data() {
    let (sb, relay) = relayed_pair();
    sb.sql(
        1,
        "CREATE DATABASE pt; \
         CREATE TABLE pt.same (id INT PRIMARY KEY, f FLOAT, b VARBINARY(16), t TIMESTAMP NULL); \
         CREATE TABLE pt.updated (k VARCHAR(10) NOT NULL, n INT NOT NULL, v VARCHAR(30), PRIMARY KEY (k, n)); \
         CREATE TABLE pt.deleted (id BIGINT PRIMARY KEY, d DECIMAL(12,3) NOT NULL)",
    );
    fill(
        &sb,
        "pt.same",
        8_000,
        "n, n / 7, IF(n % 5 = 0, NULL, UNHEX(HEX(n))), IF(n % 4 = 0, NULL, FROM_UNIXTIME(1700000000 + n))",
    );
    fill(
        &sb,
        "pt.updated",
        6_000,
        "CONCAT('k', n % 13), n, IF(n % 2 = 0, NULL, CONCAT('v', n))",
    );
    fill(&sb, "pt.deleted", 6_000, "n * 3, n / 9");
    wait_converged(&sb, &[1, 2], Duration::from_secs(60));
    sb.sql(
        2,
        "SET sql_log_bin = 0; UPDATE pt.updated SET v = NULL WHERE k = 'k11' AND n = 3001; \
         DELETE FROM pt.deleted WHERE id = 9000",
    );
    let dir = TempDir::new("verify-pt");
    // verify first: pt-table-checksum then adds its own (unreplicated) percona schema.
    let (code, report, took) = verify(&dir, &sb, &["--schema", "pt"]);
    eprintln!(
        "verify on quiescent data: {took:?}, {} chunks, {} rows",
        report["chunks"], report["rows"]
    );
    assert_eq!(code, 1, "{report:#}");
    let ours = table_statuses(&report);

    let started = Instant::now();
    let m1 = pt_table_checksum(&sb, 1, "pt");
    let m2 = pt_table_checksum(&sb, 2, "pt");
    eprintln!("pt-table-checksum on both masters: {:?}", started.elapsed());
    let theirs: BTreeMap<String, String> = m1
        .iter()
        .map(|(table, chunks)| {
            let same = m2.get(table) == Some(chunks);
            let status = if same { "consistent" } else { "different" };
            (table.clone(), status.to_string())
        })
        .collect();
    assert_eq!(m1.len(), 3, "pt-table-checksum checked every table: {m1:?}");
    assert_eq!(ours, theirs, "verify vs pt-table-checksum");
    assert_eq!(theirs["pt.same"], "consistent");
    assert_eq!(theirs["pt.updated"], "different");
    assert_eq!(theirs["pt.deleted"], "different");
    relay.stop();
}

#[test]
fn verify_is_inconclusive_when_the_masters_cannot_converge() {
    // No relay: m1's transaction never reaches m2, so lag cannot be told from
    // divergence and verify must not call the table consistent or different.
    let sb = Sandbox::start(2, &[]);
    for m in [1, 2] {
        sb.sql(
            m,
            "SET sql_log_bin = 0; CREATE DATABASE lone; CREATE TABLE lone.t (id INT PRIMARY KEY)",
        );
    }
    sb.sql(1, "INSERT INTO lone.t VALUES (1)");
    let dir = TempDir::new("verify-inconclusive");
    let (code, report, took) = verify(&dir, &sb, &["--wait-timeout", "2"]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["verdict"], "inconclusive");
    let diff = &report["tables"][0]["differences"][0];
    assert_eq!(diff["status"], "inconclusive", "{report:#}");
    assert!(
        took < Duration::from_secs(20),
        "bounded by --wait-timeout: {took:?}"
    );
}
