//! A write workload whose effects can be counted: every committed transaction
//! inserts two ledger rows tagged with its origin and a per-origin sequence
//! number, and increments one of the origin's counters. Afterwards each master
//! must hold exactly 2 ledger rows per commit and counters summing to the
//! commits of every origin: nothing lost, nothing applied twice.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::relay::connect;

use super::Sandbox;

pub const SCHEMA: &str = "workload";
const COUNTERS_PER_ORIGIN: u32 = 16;

pub fn schema_sql() -> String {
    format!(
        "CREATE DATABASE {SCHEMA}; \
         CREATE TABLE {SCHEMA}.ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, origin VARCHAR(8) NOT NULL, \
           seq BIGINT NOT NULL, payload VARCHAR(200), at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           UNIQUE KEY (origin, seq)); \
         CREATE TABLE {SCHEMA}.counters (origin VARCHAR(8) NOT NULL, k INT NOT NULL, value BIGINT NOT NULL, \
           PRIMARY KEY (origin, k))"
    )
}

/// Counter rows of `origin`, created on `origin` itself.
pub fn seed_sql(origin: &str) -> String {
    let rows: Vec<String> = (0..COUNTERS_PER_ORIGIN)
        .map(|k| format!("('{origin}', {k}, 0)"))
        .collect();
    format!("INSERT INTO {SCHEMA}.counters VALUES {}", rows.join(", "))
}

/// Commits per origin.
#[derive(Debug, Clone)]
pub struct Report {
    pub commits: Vec<(String, u64)>,
    pub elapsed: Duration,
}

/// One writer: transactions on `port` as origin `origin`, sequence numbers
/// `first, first + stride, ...`, until `deadline`.
async fn writer(port: u16, origin: String, first: u64, stride: u64, deadline: Instant) -> u64 {
    let mut conn = connect(port).await;
    let mut seq = first;
    let mut commits = 0;
    while Instant::now() < deadline {
        let k = seq % u64::from(COUNTERS_PER_ORIGIN);
        let sql = format!(
            "START TRANSACTION; \
             INSERT INTO {SCHEMA}.ledger (origin, seq, payload) VALUES ('{origin}', {seq}, REPEAT('x', {pad})), \
               ('{origin}', {seq2}, 'second'); \
             UPDATE {SCHEMA}.counters SET value = value + 1 WHERE origin = '{origin}' AND k = {k}; \
             COMMIT",
            pad = seq % 190,
            seq2 = seq + (1 << 40),
        );
        conn.query_drop(sql).await.expect("workload transaction");
        commits += 1;
        seq += stride;
    }
    let _ = conn.disconnect().await;
    commits
}

/// Run `writers` connections per master against `masters` for `duration`.
pub fn run(sb: &Sandbox, masters: &[u8], writers: u64, duration: Duration) -> Report {
    run_on(&targets(sb, masters), writers, duration)
}

/// [`run`] on a background thread, while the test injects faults.
pub fn spawn(
    sb: &Sandbox,
    masters: &[u8],
    writers: u64,
    duration: Duration,
) -> std::thread::JoinHandle<Report> {
    let targets = targets(sb, masters);
    std::thread::spawn(move || run_on(&targets, writers, duration))
}

/// (origin name, port) of each master.
fn targets(sb: &Sandbox, masters: &[u8]) -> Vec<(String, u16)> {
    masters
        .iter()
        .map(|&m| (format!("m{m}"), sb.port(m)))
        .collect()
}

fn run_on(targets: &[(String, u16)], writers: u64, duration: Duration) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let deadline = start + duration;
    // Sequence numbers unique across runs, so that load phases can follow each other.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64 * 1000);
    let commits = rt.block_on(async {
        let mut tasks = Vec::new();
        for (origin, port) in targets {
            for w in 0..writers {
                tasks.push((
                    origin.clone(),
                    tokio::spawn(writer(*port, origin.clone(), base + w, writers, deadline)),
                ));
            }
        }
        let mut per: Vec<(String, u64)> = targets.iter().map(|(o, _)| (o.clone(), 0)).collect();
        for (origin, t) in tasks {
            let n = t.await.expect("writer task");
            if let Some(entry) = per.iter_mut().find(|(o, _)| *o == origin) {
                entry.1 += n;
            }
        }
        per
    });
    Report {
        commits,
        elapsed: start.elapsed(),
    }
}

impl Report {
    pub fn total(&self) -> u64 {
        self.commits.iter().map(|(_, n)| n).sum()
    }

    /// Two phases of load add up.
    pub fn merge(mut self, other: Report) -> Report {
        for (origin, n) in other.commits {
            match self.commits.iter_mut().find(|(o, _)| *o == origin) {
                Some(entry) => entry.1 += n,
                None => self.commits.push((origin, n)),
            }
        }
        self.elapsed += other.elapsed;
        self
    }
}

/// Check the exactly-once invariants on master `i`.
pub fn assert_exactly_once(sb: &Sandbox, i: u8, report: &Report) {
    for (origin, commits) in &report.commits {
        let rows: u64 = sb
            .value(
                i,
                &format!("SELECT COUNT(*) FROM {SCHEMA}.ledger WHERE origin = '{origin}'"),
            )
            .parse()
            .expect("count");
        assert_eq!(rows, 2 * commits, "m{i}: ledger rows of {origin}");
        let sum: u64 = sb
            .value(
                i,
                &format!("SELECT SUM(value) FROM {SCHEMA}.counters WHERE origin = '{origin}'"),
            )
            .parse()
            .expect("sum");
        assert_eq!(sum, *commits, "m{i}: counters of {origin}");
    }
}
