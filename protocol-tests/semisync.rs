//! Semi-synchronous replication with real MySQL 9.7 masters running the
//! semi-sync source plugin: the relay's dump connections ask for semi-sync and
//! acknowledge, both masters' commits are released by the relay's
//! acknowledgements (never by the timeout), with `ack = "applied"` a commit
//! that returned OK on one master is already on the other, after a relay
//! restart a source that fell back to asynchronous returns to semi-sync, and
//! with `ack = "off"` the relay is an asynchronous replica.

use std::time::{Duration, Instant};

use crate::support::relay::{InProcess, config_text, settle};
use crate::support::{Sandbox, wait_for, workload};

/// Long enough that a missing acknowledgement shows as a stalled commit (and
/// in Rpl_semi_sync_source_no_tx), short enough to keep a failure quick.
const TIMEOUT_MS: u64 = 20_000;

fn semi_sync_masters() -> Sandbox {
    // Loaded but off until the relay is connected: with no semi-sync replica,
    // the sandbox's own setup statements would wait for the timeout.
    Sandbox::start(
        2,
        &[
            "--plugin-load-add=semisync_source.so",
            "--rpl-semi-sync-source-enabled=OFF",
        ],
    )
}

fn status(sb: &Sandbox, i: u8, name: &str) -> String {
    let row = sb.sql(
        i,
        &format!("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_{name}'"),
    );
    row.split('\t')
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Both masters see the relay's channel from them as a semi-sync replica;
/// then semi-sync is switched on with a long timeout.
fn enable(sb: &Sandbox, timeout_ms: u64) {
    for i in [1, 2] {
        wait_for(
            "the relay's dump to register as a semi-sync replica",
            Duration::from_secs(30),
            || (status(sb, i, "clients") == "1").then_some(()),
        );
        sb.sql(
            i,
            &format!(
                "SET GLOBAL rpl_semi_sync_source_timeout = {timeout_ms}; \
                 SET GLOBAL rpl_semi_sync_source_enabled = ON"
            ),
        );
        assert_eq!(status(sb, i, "status"), "ON");
    }
}

fn relay(sb: &Sandbox, ack: &str) -> InProcess {
    let relay = InProcess::start(&config_text(sb, &[1, 2], &format!("ack = \"{ack}\"\n")));
    relay.wait_running();
    relay
}

/// No commit on either master waited out the timeout.
fn assert_all_acknowledged(sb: &Sandbox) {
    for i in [1, 2] {
        assert_eq!(
            status(sb, i, "no_tx"),
            "0",
            "m{i} committed without an acknowledgement"
        );
        assert_eq!(
            status(sb, i, "status"),
            "ON",
            "m{i} fell back to asynchronous"
        );
    }
}

#[test]
fn applied_acknowledgements_put_each_commit_on_the_peer_before_it_returns() {
    let sb = semi_sync_masters();
    let relay = relay(&sb, "applied");
    enable(&sb, TIMEOUT_MS);
    sb.sql(
        1,
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, at VARCHAR(8))",
    );
    // A commit on either master returns once the relay committed it on the
    // other: each row is there the moment the INSERT returns, without waiting.
    let started = Instant::now();
    for id in 1..=20 {
        let (writer, peer) = if id % 2 == 0 { (2, 1) } else { (1, 2) };
        sb.sql(
            writer,
            &format!("INSERT INTO s.t VALUES ({id}, 'm{writer}')"),
        );
        assert_eq!(
            sb.value(peer, &format!("SELECT COUNT(*) FROM s.t WHERE id = {id}")),
            "1",
            "row {id} committed on m{writer} is not on m{peer} when its commit returns"
        );
    }
    let per_commit = started.elapsed() / 20;
    assert!(
        per_commit < Duration::from_secs(2),
        "commits waited {per_commit:?} each: acknowledgements are late"
    );
    let yes: u64 = status(&sb, 1, "yes_tx").parse().expect("yes_tx");
    assert!(yes >= 11, "m1 counted {yes} acknowledged transactions");
    // Under concurrent load on both masters, with parallel apply.
    sb.sql(1, &workload::schema_sql());
    settle(&sb, &relay);
    sb.sql(1, &workload::seed_sql("m1"));
    settle(&sb, &relay);
    let report = workload::spawn(&sb, &[1, 2], 2, Duration::from_secs(5))
        .join()
        .expect("workload");
    settle(&sb, &relay);
    assert!(report.total() > 0);
    assert_all_acknowledged(&sb);
    relay.stop();
}

#[test]
fn received_acknowledgements_and_a_relay_restart() {
    let sb = semi_sync_masters();
    let relay = relay(&sb, "received");
    enable(&sb, TIMEOUT_MS);
    sb.sql(
        1,
        "CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY)",
    );
    for id in 1..=10 {
        sb.sql(
            1 + (id % 2) as u8,
            &format!("INSERT INTO r.t VALUES ({id})"),
        );
    }
    settle(&sb, &relay);
    assert_all_acknowledged(&sb);

    // Relay down: m1's next commit waits out a short timeout and m1 turns
    // asynchronous, as with a native replica gone.
    relay.stop();
    sb.sql(1, "SET GLOBAL rpl_semi_sync_source_timeout = 1000");
    let t = Instant::now();
    sb.sql(1, "INSERT INTO r.t VALUES (100)");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "the commit did not wait"
    );
    assert_eq!(status(&sb, 1, "status"), "OFF");
    // Back: the relay catches up, acknowledges, and m1 is semi-synchronous again.
    let relay = self::relay(&sb, "received");
    settle(&sb, &relay);
    sb.sql(
        1,
        &format!("SET GLOBAL rpl_semi_sync_source_timeout = {TIMEOUT_MS}"),
    );
    sb.sql(1, "INSERT INTO r.t VALUES (101)");
    wait_for("m1 to return to semi-sync", Duration::from_secs(30), || {
        sb.sql(1, "INSERT INTO r.t SELECT MAX(id) + 1 FROM r.t");
        (status(&sb, 1, "status") == "ON").then_some(())
    });
    let no_tx = status(&sb, 1, "no_tx");
    let t = Instant::now();
    sb.sql(1, "INSERT INTO r.t SELECT MAX(id) + 1 FROM r.t");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the commit waited {:?}",
        t.elapsed()
    );
    assert_eq!(
        status(&sb, 1, "no_tx"),
        no_tx,
        "acknowledged, not timed out"
    );
    settle(&sb, &relay);
    assert_eq!(
        sb.value(1, "SELECT COUNT(*) FROM r.t"),
        sb.value(2, "SELECT COUNT(*) FROM r.t")
    );
    relay.stop();

    // ack = "off": the relay reads as an asynchronous replica.
    let relay = self::relay(&sb, "off");
    for i in [1, 2] {
        wait_for(
            "the dumps to be asynchronous",
            Duration::from_secs(30),
            || (status(&sb, i, "clients") == "0").then_some(()),
        );
    }
    // Nobody acknowledges: m1's commit waits out its timeout.
    sb.sql(1, "SET GLOBAL rpl_semi_sync_source_timeout = 1000");
    sb.sql(2, "SET GLOBAL rpl_semi_sync_source_timeout = 1000");
    let no_tx: u64 = status(&sb, 1, "no_tx").parse().expect("no_tx");
    sb.sql(1, "INSERT INTO r.t SELECT MAX(id) + 1 FROM r.t");
    let now: u64 = status(&sb, 1, "no_tx").parse().expect("no_tx");
    assert_eq!(now, no_tx + 1, "the commit was not acknowledged");
    settle(&sb, &relay);
    relay.stop();
}
