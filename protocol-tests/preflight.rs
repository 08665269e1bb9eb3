//! `gtid-relay check` against healthy and deliberately misconfigured masters,
//! and `run` refusing a failing channel with the same words.

use std::process::Command;
use std::time::{Duration, Instant};

use gtid_relay::status::IoRunning;

use crate::support::relay::{InProcess, TempDir, config_text, write_config};
use crate::support::{Sandbox, wait_for};

/// Runs `gtid-relay check`; returns (exit code, stdout).
fn check(config: &std::path::Path, json: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtid-relay"));
    cmd.args(["check", "--config"]).arg(config);
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.output().expect("run gtid-relay check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_passes_on_healthy_masters() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let dir = TempDir::new("check-healthy");
    let path = write_config(&dir.0, &config_text(&sb, &[1, 2], ""));
    let (code, text) = check(&path, false);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    for check in [
        "gtid_mode",
        "binlog_format",
        "auto_increment",
        "target_privileges",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(check) && l.contains("pass")),
            "{check} not passed:\n{text}"
        );
    }
    println!("healthy check took {:?}", started.elapsed());
}

/// The finding of `check` for `scope`, from the JSON report.
fn finding<'a>(report: &'a serde_json::Value, scope: &str, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .find(|f| f["scope"] == scope && f["check"] == check)
        .unwrap_or_else(|| panic!("no finding {scope}/{check} in {report:#}"))
}

#[test]
fn check_reports_each_misconfiguration_with_its_fix() {
    let started = Instant::now();
    let mut sb = Sandbox::empty(2);
    sb.start_instance(1, &[], &[]);
    // Equal server_id, offset colliding with master 1, statement-based binlog.
    sb.start_instance(
        2,
        &[],
        &[
            "--binlog-format=STATEMENT",
            "--server-id=101",
            "--auto-increment-offset=1",
        ],
    );
    sb.sql(
        2,
        "SET sql_log_bin = 0; REVOKE REPLICATION_APPLIER ON *.* FROM 'relay'@'127.0.0.1'",
    );
    // m1 -> m2: m1 writes what m2 never gets, then purges the binlog holding it.
    sb.sql(
        1,
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1)",
    );
    let m1_uuid = sb.server_uuid(1);
    sb.sql(1, "FLUSH BINARY LOGS");
    let current = sb.value(1, "SHOW BINARY LOG STATUS");
    let current = current.split('\t').next().expect("binlog file");
    sb.sql(1, &format!("PURGE BINARY LOGS TO '{current}'"));
    // m2 -> m1: m1 holds a GTID of m2's UUID that m2 never executed.
    let m2_uuid = sb.server_uuid(2);
    sb.sql(
        1,
        &format!("SET GTID_NEXT = '{m2_uuid}:5'; BEGIN; COMMIT; SET GTID_NEXT = AUTOMATIC"),
    );

    let dir = TempDir::new("check-broken");
    let path = write_config(&dir.0, &config_text(&sb, &[1, 2], ""));
    let (code, text) = check(&path, false);
    println!("{text}");
    assert_eq!(code, 1, "{text}");

    let (code, json) = check(&path, true);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&json).expect("check JSON parses");
    assert_eq!(report["ok"], false);

    let f = finding(&report, "m2", "binlog_format");
    assert_eq!(f["status"], "fail");
    assert!(f["fix"].as_str().unwrap().contains("binlog_format = 'ROW'"));
    let f = finding(&report, "m2", "server_id");
    assert_eq!(f["status"], "fail");
    assert!(
        f["detail"].as_str().unwrap().contains("also used by m1"),
        "{f}"
    );
    let f = finding(&report, "m2", "auto_increment");
    assert_eq!(f["status"], "fail");
    assert!(
        f["detail"].as_str().unwrap().contains("same keys as m1"),
        "{f}"
    );
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("auto_increment_offset = 2"),
        "{f}"
    );
    let f = finding(&report, "m2", "target_privileges");
    assert_eq!(f["status"], "fail");
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("GRANT REPLICATION_APPLIER ON *.*"),
        "{f}"
    );
    let purged = finding(&report, "m1->m2", "gtid_position");
    assert_eq!(purged["status"], "fail");
    let detail = purged["detail"].as_str().unwrap();
    assert!(
        detail.contains("has purged binary logs") && detail.contains(&m1_uuid),
        "{purged}"
    );
    assert!(
        purged["fix"]
            .as_str()
            .unwrap()
            .contains("--set-gtid-purged=ON")
    );
    let diverged = finding(&report, "m2->m1", "gtid_position");
    assert_eq!(diverged["status"], "fail");
    assert!(
        diverged["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{m2_uuid}:5")),
        "{diverged}"
    );
    // Healthy parts still pass.
    assert_eq!(finding(&report, "m1", "binlog_format")["status"], "pass");
    assert_eq!(
        finding(&report, "m1", "source_privileges")["status"],
        "pass"
    );

    // `run` refuses both channels with the very message `check` printed.
    let relay = InProcess::start(&config_text(&sb, &[1, 2], ""));
    for (channel, f) in [("m1->m2", purged), ("m2->m1", diverged)] {
        let message = wait_for(
            &format!("{channel} to stop with an error"),
            Duration::from_secs(20),
            || {
                let st = relay.channel(channel);
                match (&st.io_running, &st.last_io_error) {
                    (IoRunning::No, Some(e)) => Some(e.message.clone()),
                    _ => None,
                }
            },
        );
        assert!(
            message.contains(f["detail"].as_str().unwrap()),
            "run said {message:?}, check said {}",
            f["detail"]
        );
    }
    relay.stop();
    println!("misconfigured check took {:?}", started.elapsed());
}

#[test]
fn unreachable_master_fails_with_the_connection_error() {
    let sb = Sandbox::start(1, &[]);
    let dir = TempDir::new("check-unreachable");
    // m2 points at a port nothing listens on; m1 has a wrong password.
    let text = config_text(&sb, &[1], "").replace("relay-sandbox-pw", "wrong-password")
        + &format!(
            "\n[[masters]]\nname = \"m2\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"relay\"\npassword = \"x\"\n",
            sb.spare_port(0)
        );
    let path = write_config(&dir.0, &text);
    let (code, json) = check(&path, true);
    assert_eq!(code, 1, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("check JSON parses");
    let m1 = finding(&report, "m1", "connection");
    assert_eq!(m1["status"], "fail");
    assert!(m1["detail"].as_str().unwrap().contains("1045"), "{m1}");
    assert!(!json.contains("wrong-password"));
    let m2 = finding(&report, "m2", "connection");
    assert_eq!(m2["status"], "fail");
    assert!(
        m2["detail"]
            .as_str()
            .unwrap()
            .contains("cannot connect to m2"),
        "{m2}"
    );
}
