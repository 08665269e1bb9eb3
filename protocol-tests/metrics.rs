//! `/metrics` of the real binary, scraped while a workload runs and a target
//! goes away and comes back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::relay::{Process, TempDir, config_text, wait_converged, write_config};

/// Apply sessions of the relay under test.
const WORKERS: u32 = 4;
use crate::support::workload;
use crate::support::{Sandbox, wait_for};

/// One HTTP/1.1 request; returns (status code, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn scrape(port: u16) -> Option<String> {
    match http_get(port, "/metrics")? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// The value of the sample `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

fn channel_value(text: &str, name: &str, channel: &str) -> f64 {
    sample(text, name, &[("channel", channel)])
        .unwrap_or_else(|| panic!("no {name}{{channel=\"{channel}\"}} in:\n{text}"))
}

#[test]
fn metrics_follow_a_workload_and_a_target_outage() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let port = sb.spare_port(0);
    let dir = TempDir::new("metrics");
    let config = write_config(
        &dir.0,
        &config_text(
            &sb,
            &[1, 2],
            &format!(
                "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[apply]\nworkers = {WORKERS}\n\n"
            ),
        ),
    );
    let mut relay = Process::spawn(
        &["run", "--config", config.to_str().expect("utf8 path")],
        &dir.0.join("relay.log"),
    );
    let running = |text: &str, channel: &str| {
        sample(text, "gtid_relay_io_running", &[("channel", channel)]) == Some(1.0)
            && sample(text, "gtid_relay_sql_running", &[("channel", channel)]) == Some(1.0)
    };
    wait_for("both channels running", Duration::from_secs(30), || {
        scrape(port).filter(|t| running(t, "m1->m2") && running(t, "m2->m1"))
    });
    assert_eq!(http_get(port, "/other").map(|r| r.0), Some(404));

    sb.sql(1, &workload::schema_sql());
    wait_converged(&sb, &[1, 2], Duration::from_secs(20));
    sb.sql(1, &workload::seed_sql("m1"));
    wait_converged(&sb, &[1, 2], Duration::from_secs(20));
    let before = scrape(port).expect("scrape");
    let applied_before = channel_value(&before, "gtid_relay_transactions_applied_total", "m1->m2");
    assert!(applied_before >= 2.0, "schema and seed applied:\n{before}");

    // Load on m1; m2 (the target of m1->m2) goes away for a few seconds.
    let load = workload::spawn(&sb, &[1], 1, Duration::from_secs(6));
    sleep(Duration::from_millis(1_500));
    sb.stop(2);
    wait_for(
        "m1->m2's lag to disappear while its target is down",
        Duration::from_secs(15),
        || {
            scrape(port).filter(|t| {
                sample(t, "gtid_relay_sql_running", &[("channel", "m1->m2")]) == Some(0.0)
                    && sample(t, "gtid_relay_lag_seconds", &[("channel", "m1->m2")]).is_none()
            })
        },
    );
    sleep(Duration::from_secs(3));
    sb.restart(2);

    // Catching up, the applier works on transactions written while m2 was down.
    let mut max_lag = 0.0_f64;
    let mut max_queue = 0.0_f64;
    // Catch-up time depends on the machine; 120 s like the suite's other convergence waits.
    let deadline = Instant::now() + Duration::from_secs(120);
    let caught_up = loop {
        let text = scrape(port).expect("scrape");
        if let Some(lag) = sample(&text, "gtid_relay_lag_seconds", &[("channel", "m1->m2")]) {
            max_lag = max_lag.max(lag);
            max_queue = max_queue.max(channel_value(&text, "gtid_relay_queue_depth", "m1->m2"));
            if lag == 0.0 && max_lag >= 1.0 && load.is_finished() {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "lag never rose and fell back (max {max_lag}):\n{text}"
        );
        sleep(Duration::from_millis(50));
    };
    let report = load.join().expect("workload");
    wait_converged(&sb, &[1, 2], Duration::from_secs(30));
    let after = scrape(port).expect("scrape");
    let commits = report.total() as f64;

    let applied = channel_value(&after, "gtid_relay_transactions_applied_total", "m1->m2");
    // The transactions in flight when m2 shut down (one per apply worker) may
    // have committed without their OK reaching the relay: m2 then has their
    // GTIDs, they are never sent again, and so never counted as applied.
    assert!(
        applied - applied_before + f64::from(WORKERS) >= commits,
        "applied {applied} - {applied_before} < {commits} workload commits"
    );
    let received = channel_value(&after, "gtid_relay_transactions_received_total", "m1->m2");
    assert!(
        received >= applied,
        "received {received} < applied {applied}"
    );
    let latency_count = channel_value(&after, "gtid_relay_apply_duration_seconds_count", "m1->m2");
    assert!(
        latency_count >= applied,
        "one latency sample per applied transaction"
    );
    assert!(channel_value(&after, "gtid_relay_apply_duration_seconds_sum", "m1->m2") > 0.0);
    assert!(channel_value(&after, "gtid_relay_received_bytes_total", "m1->m2") > 0.0);
    assert!(channel_value(&after, "gtid_relay_events_received_total", "m1->m2") > commits);
    assert!(channel_value(&after, "gtid_relay_reconnects_total", "m1->m2") >= 1.0);
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("gtid_relay_errors_total{")
                && l.contains("channel=\"m1->m2\"")
                && l.contains("thread=\"sql\"")),
        "the outage shows as errors of the m1->m2 applier:\n{after}"
    );
    // Strict mode decides no conflicts; the series exist for dashboards.
    for decision in ["incoming-wins", "local-wins"] {
        assert_eq!(
            sample(
                &after,
                "gtid_relay_conflicts_total",
                &[("channel", "m1->m2"), ("decision", decision)]
            ),
            Some(0.0)
        );
    }
    for reason in ["loop", "applied", "filtered"] {
        assert!(
            sample(
                &after,
                "gtid_relay_transactions_skipped_total",
                &[("channel", "m1->m2"), ("reason", reason)]
            )
            .is_some()
        );
    }
    assert!(sample(&after, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    assert!(sample(&after, "process_open_fds", &[]).is_some_and(|v| v >= 3.0));
    assert!(sample(&after, "process_cpu_seconds_total", &[]).is_some_and(|v| v > 0.0));
    assert!(after.ends_with("# EOF\n"));
    assert!(
        sample(
            &caught_up,
            "gtid_relay_lag_seconds",
            &[("channel", "m1->m2")]
        ) == Some(0.0)
    );

    // Stopped with the relay.
    relay.signal("TERM");
    assert_eq!(relay.wait(Duration::from_secs(20)), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    eprintln!(
        "metrics: {commits} commits, max lag {max_lag} s, max queue {max_queue}, {:?}",
        started.elapsed()
    );
}
