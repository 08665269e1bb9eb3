//! Fault injection: every scenario ends with the same proof — all masters'
//! gtid_executed equal, table checksums equal, and every workload commit
//! present exactly once on every master.

use std::thread::sleep;
use std::time::{Duration, Instant};

use gtid_relay::status::IoRunning;

use crate::support::proxy::{Mode, Proxy};
use crate::support::relay::{
    InProcess, Process, TempDir, checksums, config_text, wait_converged, write_config,
};
use crate::support::workload::{self, Report};
use crate::support::{Sandbox, wait_for};

/// Kills per run of the kill -9 scenario; `GTID_RELAY_LONG=1` runs the long mode.
fn kills() -> usize {
    if std::env::var_os("GTID_RELAY_LONG").is_some() {
        30
    } else {
        10
    }
}

/// Two masters with the workload's schema and counters, relayed once.
fn prepared(n: u8, extra_toml: &str) -> (Sandbox, String) {
    let masters: Vec<u8> = (1..=n).collect();
    let sb = Sandbox::start(n, &[]);
    let text = config_text(&sb, &masters, extra_toml);
    let relay = InProcess::start(&text);
    relay.wait_running();
    sb.sql(1, &workload::schema_sql());
    wait_converged(&sb, &masters, Duration::from_secs(30));
    for &m in &masters {
        sb.sql(m, &workload::seed_sql(&format!("m{m}")));
    }
    wait_converged(&sb, &masters, Duration::from_secs(30));
    relay.stop();
    (sb, text)
}

fn prove_exactly_once(sb: &Sandbox, masters: &[u8], report: &Report) {
    wait_converged(sb, masters, Duration::from_secs(300));
    let first = checksums(sb, masters[0], workload::SCHEMA);
    for &m in masters {
        assert_eq!(
            checksums(sb, m, workload::SCHEMA),
            first,
            "checksums of m{m}"
        );
        workload::assert_exactly_once(sb, m, report);
    }
}

#[test]
fn relay_killed_with_sigkill_under_load_loses_and_duplicates_nothing() {
    let (sb, text) = prepared(2, "");
    let dir = TempDir::new("kill9");
    let config = write_config(&dir.0, &text);
    let config = config.to_str().expect("utf8 path");
    let kills = kills();
    let load = workload::spawn(
        &sb,
        &[1, 2],
        2,
        Duration::from_millis(2_200) * kills as u32 + Duration::from_secs(2),
    );
    let mut survived = 0;
    for k in 0..kills {
        let mut relay =
            Process::spawn(&["run", "--config", config], &dir.0.join(format!("log{k}")));
        sleep(Duration::from_millis(300 + rand::random::<u64>() % 1_700));
        relay.signal("KILL");
        relay.wait(Duration::from_secs(10));
        survived += 1;
    }
    let report = load.join().expect("workload");
    let _relay = Process::spawn(&["run", "--config", config], &dir.0.join("final"));
    prove_exactly_once(&sb, &[1, 2], &report);
    eprintln!(
        "kill -9: survived {survived} kills; {} transactions checked exactly once on both masters",
        report.total()
    );
}

#[test]
fn masters_stopped_killed_and_restarted_under_load_converge_without_help() {
    let (sb, text) = prepared(2, "");
    let relay = InProcess::start(&text);
    relay.wait_running();

    // Load on m1 while m2 stops cleanly, comes back, then dies by SIGKILL and comes back.
    let load = workload::spawn(&sb, &[1], 3, Duration::from_secs(12));
    sleep(Duration::from_secs(2));
    sb.stop(2);
    sleep(Duration::from_secs(2));
    sb.restart(2);
    sleep(Duration::from_secs(2));
    sb.kill(2);
    sleep(Duration::from_secs(2));
    sb.restart(2);
    let first = load.join().expect("workload");

    // And the other way round: load on m2 while m1 dies and comes back.
    let load = workload::spawn(&sb, &[2], 3, Duration::from_secs(8));
    sleep(Duration::from_secs(2));
    sb.kill(1);
    sleep(Duration::from_secs(2));
    sb.restart(1);
    let report = first.merge(load.join().expect("workload"));

    prove_exactly_once(&sb, &[1, 2], &report);
    let reconnects: u64 = relay.status().iter().map(|c| c.reconnects).sum();
    assert!(reconnects > 0, "the relay must have reconnected");
    eprintln!(
        "master faults: {} transactions checked, {reconnects} reconnects",
        report.total()
    );
    relay.stop();
}

#[test]
fn network_resets_stalls_and_slow_links_are_survived() {
    let (sb, _) = prepared(2, "");
    let proxy = Proxy::start(sb.port(1));
    // m1 is reached through the proxy, as source and as target.
    let text = config_text(&sb, &[1, 2], "[apply]\nstatement_timeout_secs = 5\n").replace(
        &format!("port = {}\n", sb.port(1)),
        &format!("port = {}\n", proxy.port),
    );
    let relay = InProcess::start(&text);
    relay.wait_running();

    // A reset under load: every connection through the proxy is cut mid-stream.
    let load = workload::spawn(&sb, &[1, 2], 2, Duration::from_secs(8));
    sleep(Duration::from_secs(3));
    let reconnects = relay.channel("m1->m2").reconnects;
    proxy.reset_all();
    wait_for(
        "m1->m2 to reconnect after the reset",
        Duration::from_secs(60),
        || {
            let c = relay.channel("m1->m2");
            (c.reconnects > reconnects && c.io_running == IoRunning::Yes).then_some(())
        },
    );
    let mut report = load.join().expect("workload");
    if std::panic::catch_unwind(|| wait_converged(&sb, &[1, 2], Duration::from_secs(120))).is_err()
    {
        panic!(
            "not converged after the reset; relay status: {:#?}",
            relay.status()
        );
    }

    // A silent stall of an idle link: no bytes, no FIN; only the heartbeat
    // timeout can notice.
    proxy.set_mode(Mode::Stall);
    let stalled_at = Instant::now();
    let detected = wait_for("stall detection", Duration::from_secs(30), || {
        let c = relay.channel("m1->m2");
        c.last_io_error
            .filter(|e| e.message.contains("sent nothing"))
            .map(|_| stalled_at.elapsed())
    });
    proxy.set_mode(Mode::Pass);

    // A slow link under load: 2 ms per chunk in both directions.
    proxy.set_delay(Duration::from_millis(2));
    let load = workload::spawn(&sb, &[1, 2], 2, Duration::from_secs(4));
    report = report.merge(load.join().expect("workload"));
    proxy.set_delay(Duration::ZERO);

    prove_exactly_once(&sb, &[1, 2], &report);
    let heartbeat_timeout = Duration::from_secs(3);
    assert!(
        detected <= heartbeat_timeout + Duration::from_secs(2),
        "stall detected after {detected:?}"
    );
    eprintln!(
        "network faults: stall detected after {detected:?} (read timeout {heartbeat_timeout:?}); {} transactions checked",
        report.total()
    );
    relay.stop();
}

#[test]
fn two_relays_on_the_same_configuration_deliver_exactly_once() {
    let (sb, text) = prepared(2, "");
    let dir = TempDir::new("tworelays");
    let config = write_config(&dir.0, &text);
    let config = config.to_str().expect("utf8 path");
    let a = Process::spawn(&["run", "--config", config], &dir.0.join("a"));
    let b = Process::spawn(&["run", "--config", config], &dir.0.join("b"));
    let report = workload::run(&sb, &[1, 2], 2, Duration::from_secs(12));
    prove_exactly_once(&sb, &[1, 2], &report);
    // Both really streamed: each source lists two relay registrations.
    let replicas = sb.sql(1, "SHOW REPLICAS");
    assert_eq!(
        replicas.lines().count(),
        2,
        "SHOW REPLICAS on m1:\n{replicas}"
    );
    for relay in [&a, &b] {
        let log = relay.log_text();
        assert!(!log.contains("Worker failed"), "{log}");
    }
    eprintln!("two relays: {} transactions checked", report.total());
}

#[test]
fn purged_gtids_stop_only_that_channel_naming_the_missing_set_and_the_remedy() {
    let sb = Sandbox::start(2, &[]);
    sb.sql(
        1,
        "CREATE DATABASE p; CREATE TABLE p.t (id INT PRIMARY KEY); INSERT INTO p.t VALUES (1)",
    );
    // Purging "before tomorrow" removes every binlog but the active one.
    sb.sql(
        1,
        "FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY",
    );
    let missing = sb.value(1, "SELECT @@GLOBAL.gtid_purged");
    assert!(!missing.is_empty(), "m1 purged nothing");

    let relay = InProcess::start(&config_text(&sb, &[1, 2], ""));
    let error = wait_for("m1->m2 to stop", Duration::from_secs(30), || {
        relay.channel("m1->m2").last_io_error
    });
    assert!(error.message.contains("purged"), "{}", error.message);
    assert!(
        error.message.contains(&missing),
        "names {missing}: {}",
        error.message
    );
    assert!(error.message.contains("mysqldump"), "{}", error.message);
    assert_eq!(relay.channel("m1->m2").io_running, IoRunning::No);

    // The other direction is unaffected.
    sb.sql(2, "CREATE DATABASE fine");
    wait_for("m2->m1 to relay", Duration::from_secs(30), || {
        (sb.value(
            1,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'fine'",
        ) == "1")
            .then_some(())
    });
    relay.stop();
}

#[test]
fn a_diverged_target_is_refused() {
    let sb = Sandbox::start(2, &[]);
    let uuid1 = sb.server_uuid(1);
    sb.sql(1, "CREATE DATABASE a");
    // m2 executes a transaction under m1's UUID that m1 never had.
    sb.sql(
        2,
        &format!(
            "SET GTID_NEXT = '{uuid1}:50'; CREATE DATABASE rogue; SET GTID_NEXT = 'AUTOMATIC'"
        ),
    );
    let relay = InProcess::start(&config_text(&sb, &[1, 2], ""));
    let error = wait_for("m1->m2 to refuse", Duration::from_secs(30), || {
        relay.channel("m1->m2").last_io_error
    });
    assert!(error.message.contains("diverged"), "{}", error.message);
    assert!(
        error.message.contains(&format!("{uuid1}:50")),
        "{}",
        error.message
    );
    assert_eq!(relay.channel("m1->m2").io_running, IoRunning::No);
    assert_eq!(
        sb.value(
            2,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'a'"
        ),
        "0"
    );
    relay.stop();
}

/// Row events larger than a BINLOG statement's budget are assembled on the
/// target from pieces (several of them for a 10 MiB row), in the middle of a
/// cut statement and inside multi-statement transactions; a target whose
/// max_allowed_packet cannot hold such a statement stops the channel with a
/// message that names the limit, and nothing of the transaction is applied.
#[test]
fn row_events_larger_than_a_statement_are_assembled_on_the_target() {
    let sb = Sandbox::start(2, &["--max_allowed_packet=64M"]);
    let text = config_text(&sb, &[1, 2], "[apply]\nmax_statement_bytes = 4096\n");
    let relay = InProcess::start(&text);
    relay.wait_running();
    sb.sql(
        1,
        "CREATE DATABASE pieces; CREATE TABLE pieces.b (id INT PRIMARY KEY, body LONGBLOB NOT NULL)",
    );
    let mib = 1 << 20;
    sb.sql(
        1,
        &format!(
            "INSERT INTO pieces.b VALUES (1, RPAD('a', {}, 'x')), (2, 'small'), (3, RPAD('c', {}, 'y'));
             BEGIN; UPDATE pieces.b SET body = CONCAT(body, 'z') WHERE id = 1;
               INSERT INTO pieces.b VALUES (4, 'd'); DELETE FROM pieces.b WHERE id = 3; COMMIT",
            10 * mib,
            5 * mib
        ),
    );
    sb.sql(
        2,
        &format!(
            "INSERT INTO pieces.b VALUES (5, RPAD('e', {}, 'w'))",
            7 * mib
        ),
    );
    wait_converged(&sb, &[1, 2], Duration::from_secs(120));
    assert_eq!(checksums(&sb, 1, "pieces"), checksums(&sb, 2, "pieces"));
    assert_eq!(
        sb.value(
            2,
            "SELECT GROUP_CONCAT(id, ':', LENGTH(body) ORDER BY id) FROM pieces.b"
        ),
        format!("1:{},2:5,4:1,5:{}", 10 * mib + 1, 7 * mib)
    );
    relay.stop();

    // The next row's BINLOG statement (4/3 of 10 MiB) cannot fit in m2's 8 MiB.
    sb.sql(2, "SET GLOBAL max_allowed_packet = 8388608");
    let relay = InProcess::start(&text);
    sb.sql(
        1,
        &format!(
            "INSERT INTO pieces.b VALUES (6, RPAD('f', {}, 'v'))",
            10 * mib
        ),
    );
    let error = wait_for("m1->m2 to stop", Duration::from_secs(60), || {
        relay.channel("m1->m2").last_sql_error
    });
    assert_eq!(error.errno, 1153, "{}", error.message);
    assert!(
        error.message.contains("max_allowed_packet (8388608)"),
        "{}",
        error.message
    );
    assert_eq!(
        sb.value(2, "SELECT COUNT(*) FROM pieces.b WHERE id = 6"),
        "0"
    );
    relay.stop();
    sb.sql(2, "SET GLOBAL max_allowed_packet = 67108864");
    let relay = InProcess::start(&text);
    wait_converged(&sb, &[1, 2], Duration::from_secs(120));
    assert_eq!(checksums(&sb, 1, "pieces"), checksums(&sb, 2, "pieces"));
    relay.stop();
}

/// Size of the largest TRANSACTION_PAYLOAD event in master `m`'s current
/// binlog, in MiB rounded up.
fn largest_payload_event_mib(sb: &Sandbox, m: u8) -> u64 {
    let file = sb.value(m, "SHOW BINARY LOG STATUS");
    let file = file.split('\t').next().expect("binlog file name");
    let events = sb.sql(m, &format!("SHOW BINLOG EVENTS IN '{file}'"));
    let largest = events
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let pos: u64 = cols.get(1)?.parse().ok()?;
            let end: u64 = cols.get(4)?.parse().ok()?;
            (cols.get(2) == Some(&"Transaction_payload")).then_some(end - pos)
        })
        .max()
        .expect("a Transaction_payload event in the binlog");
    largest.div_ceil(1 << 20)
}

/// The relay's peak resident set so far (VmHWM), in MiB.
fn peak_rss_mib(relay: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.pid()))
        .expect("read the relay's /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib / 1024
}

/// One relay process for one large transaction: its peak RSS once the masters
/// have converged on it.
fn relay_peak_for(sb: &Sandbox, config: &str, dir: &TempDir, name: &str, on: u8, sql: &str) -> u64 {
    let relay = Process::spawn(&["run", "--config", config], &dir.0.join(name));
    wait_converged(sb, &[1, 2], Duration::from_secs(60));
    let started = Instant::now();
    sb.sql(on, sql);
    wait_converged(sb, &[1, 2], Duration::from_secs(900));
    let peak = peak_rss_mib(&relay);
    eprintln!(
        "memory: {name}: relayed in {:.1} s, relay peak RSS {peak} MiB",
        started.elapsed().as_secs_f64()
    );
    relay.signal("TERM");
    peak
}

/// Scenario 6: a 1 GB transaction of two million rows in one statement goes
/// through with the relay's peak RSS within 64 MiB, and a 256 MiB single-row
/// BLOB within 64 MiB plus that one event: the event is read into one buffer
/// of its size and sent to the target in pieces, never copied whole.
#[test]
fn huge_transactions_are_relayed_in_bounded_memory() {
    const BUDGET_MIB: u64 = 64;
    const BLOB_MIB: u64 = 256;
    let sb = Sandbox::start(2, &["--max_allowed_packet=1G"]);
    let dir = TempDir::new("memory");
    let text = config_text(&sb, &[1, 2], "");
    let config = write_config(&dir.0, &text);
    let config = config.to_str().expect("utf8 path");
    sb.sql(
        1,
        "CREATE DATABASE big;
         CREATE TABLE big.ledger (id INT PRIMARY KEY, pad VARCHAR(500) NOT NULL);
         CREATE TABLE big.blobs (id INT PRIMARY KEY, body LONGBLOB NOT NULL)",
    );
    let rows = 2_000_000;
    let ledger = relay_peak_for(
        &sb,
        config,
        &dir,
        "ledger",
        1,
        &format!(
            "SET SESSION cte_max_recursion_depth = {rows};
             INSERT INTO big.ledger (id, pad)
               WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})
               SELECT n, RPAD(SHA2(n, 256), 500, 'x') FROM seq"
        ),
    );
    let blob = relay_peak_for(
        &sb,
        config,
        &dir,
        "blob",
        2,
        &format!(
            "INSERT INTO big.blobs VALUES (1, RPAD(SHA2('blob', 256), {}, '*'))",
            BLOB_MIB << 20
        ),
    );
    // The same kind of transaction compressed (binlog_transaction_compression):
    // one TRANSACTION_PAYLOAD event, unpacked one inner event at a time.
    let packed_rows = 500_000;
    let packed = relay_peak_for(
        &sb,
        config,
        &dir,
        "compressed",
        1,
        &format!(
            "SET SESSION binlog_transaction_compression = ON;
             SET SESSION cte_max_recursion_depth = {packed_rows};
             CREATE TABLE big.packed (id INT PRIMARY KEY, pad VARCHAR(500) NOT NULL);
             INSERT INTO big.packed (id, pad)
               WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {packed_rows})
               SELECT n, RPAD(SHA2(n, 256), 500, 'x') FROM seq"
        ),
    );
    let payload_mib = largest_payload_event_mib(&sb, 1);
    let table_bytes: u64 = sb
        .value(
            2,
            "SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'big'",
        )
        .parse()
        .unwrap_or(0);
    eprintln!(
        "memory: ledger {rows} rows ({} MiB of table data on the target): peak {ledger} MiB; \
         {BLOB_MIB} MiB BLOB: peak {blob} MiB; {packed_rows} rows compressed into a \
         {payload_mib} MiB TRANSACTION_PAYLOAD: peak {packed} MiB",
        table_bytes >> 20
    );
    for m in [1, 2] {
        assert_eq!(
            sb.value(m, "SELECT COUNT(*) FROM big.ledger"),
            rows.to_string(),
            "ledger rows on m{m}"
        );
    }
    assert_eq!(
        sb.value(2, "SELECT COUNT(*) FROM big.packed"),
        packed_rows.to_string()
    );
    assert_eq!(checksums(&sb, 1, "big"), checksums(&sb, 2, "big"));
    assert!(
        packed <= BUDGET_MIB + payload_mib,
        "compressed transaction: peak RSS {packed} MiB > {BUDGET_MIB} MiB + the {payload_mib} MiB payload event"
    );
    assert!(
        ledger <= BUDGET_MIB,
        "1 GB transaction: peak RSS {ledger} MiB > {BUDGET_MIB} MiB"
    );
    // The row event is the BLOB plus a few dozen bytes of header and row image.
    let largest_event_mib = BLOB_MIB + 1;
    assert!(
        blob <= BUDGET_MIB + largest_event_mib,
        "{BLOB_MIB} MiB BLOB: peak RSS {blob} MiB > {BUDGET_MIB} MiB + the {largest_event_mib} MiB event"
    );
}
