//! deploy/monitoring against the real thing: promtool (Debian's prometheus
//! package, in the sandbox chroot) checks the rules and runs their unit tests;
//! a Prometheus server scrapes the relay binary between two sandbox masters
//! with the same rules loaded, and its own API shows the channel-stopped alert
//! fire on STOP REPLICA through the admin endpoint and resolve on START
//! REPLICA, and the lag alert fire when a target is killed; every query of the
//! Grafana dashboard returns data from it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::admin::{PASSWORD, mysql, real_relay};
use crate::support::relay::{TempDir, wait_converged};
use crate::support::{KillOnDrop, Sandbox, repo_root, wait_for, workload};

fn monitoring_dir() -> PathBuf {
    repo_root().join("deploy/monitoring")
}

/// The sandbox chroot with Prometheus installed, and a fresh directory in it
/// (path as seen inside) for this test's files.
fn chroot_with_prometheus(sb: &Sandbox, name: &str) -> (PathBuf, String) {
    sb.run(&["install-monitoring"]);
    let root = sb.chroot_dir();
    let inner = format!("/tmp/{}-{name}", sb.namespace());
    let outer = root.join(inner.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&outer);
    std::fs::create_dir_all(&outer).expect("create the test's directory in the chroot");
    (root, inner)
}

fn in_chroot(root: &Path, dir: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(["sh", "-c", &format!("cd {dir} && exec \"$@\""), "sh"])
        .args(args)
        .output()
        .expect("run in the chroot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let sb = Sandbox::empty(1);
    let (root, inner) = chroot_with_prometheus(&sb, "promtool");
    let outer = root.join(inner.trim_start_matches('/'));
    for f in ["gtid-relay.rules.yml", "gtid-relay.rules.test.yml"] {
        std::fs::copy(monitoring_dir().join(f), outer.join(f)).expect("copy the rules");
    }
    let (ok, out) = in_chroot(
        &root,
        &inner,
        &["promtool", "check", "rules", "gtid-relay.rules.yml"],
    );
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = in_chroot(
        &root,
        &inner,
        &["promtool", "test", "rules", "gtid-relay.rules.test.yml"],
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let _ = std::fs::remove_dir_all(&outer);
}

/// `GET path` with HTTP/1.0, so that the server closes the connection and
/// sends no chunked body; returns the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1)? == "200").then(|| body.to_string())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Debian's Prometheus server in the chroot, scraping the relay's metrics
/// every second with the project's rules, their `for` shortened to seconds.
struct Prometheus {
    _child: KillOnDrop,
    port: u16,
}

impl Prometheus {
    fn start(sb: &Sandbox, metrics_port: u16, port: u16) -> Prometheus {
        let (root, inner) = chroot_with_prometheus(sb, "prometheus");
        let outer = root.join(inner.trim_start_matches('/'));
        let rules = std::fs::read_to_string(monitoring_dir().join("gtid-relay.rules.yml"))
            .expect("read the rules");
        // The expressions are the shipped ones; only how long a condition
        // must hold before it fires is shortened, to keep the test short.
        let rules: String = rules
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 3s", &l[..l.len() - l.trim_start().len()]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(outer.join("rules.yml"), rules).expect("write the rules");
        std::fs::write(
            outer.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{inner}/rules.yml\"]\n\
                 scrape_configs:\n  - job_name: gtid-relay\n    static_configs:\n      \
                 - targets: [\"127.0.0.1:{metrics_port}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(outer.join("prometheus.log")).expect("log file");
        let child = Command::new("chroot")
            .arg(&root)
            .args([
                "prometheus",
                &format!("--config.file={inner}/prometheus.yml"),
                &format!("--storage.tsdb.path={inner}/data"),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            _child: KillOnDrop(child),
            port,
        };
        wait_for("prometheus to be ready", Duration::from_secs(60), || {
            http_get(port, "/-/ready")
        });
        prometheus
    }

    fn api(&self, path: &str) -> Json {
        let body = http_get(self.port, path).unwrap_or_else(|| panic!("prometheus {path}"));
        let json: Json = serde_json::from_str(&body).expect("prometheus answers JSON");
        assert_eq!(json["status"], "success", "{path}: {json}");
        json["data"].clone()
    }

    fn query(&self, expr: &str) -> Vec<Json> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alert `name` of `channel` in `state` ("pending", "firing"), if any.
    fn alert(&self, name: &str, channel: &str, state: &str) -> Option<Json> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()?
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["channel"] == channel
                    && a["state"] == state
            })
            .cloned()
    }
}

/// Every `expr` of the dashboard's panels, with Grafana's variables given
/// values as a dashboard showing all relays and channels would.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_dir().join("gtid-relay.dashboard.json"))
        .expect("read the dashboard");
    let dashboard: Json = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$instance", ".*")
                .replace("$channel", ".*")
                .replace("$__rate_interval", "30s")
                .replace("$__range", "10m");
            queries.push((panel["title"].as_str().unwrap_or("?").to_string(), expr));
        }
    }
    queries
}

#[test]
fn alerts_fire_and_resolve_on_a_live_relay_and_every_dashboard_query_has_data() {
    let sb = Sandbox::start(2, &[]);
    let (admin_port, metrics_port, prometheus_port) =
        (sb.spare_port(0), sb.spare_port(1), free_prometheus_port());
    let dir = TempDir::new("monitoring");
    let mut relay = real_relay(
        &sb,
        &dir.0,
        admin_port,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n"),
    );
    sb.sql(1, &workload::schema_sql());
    wait_converged(&sb, &[1, 2], Duration::from_secs(30));
    let prometheus = Prometheus::start(&sb, metrics_port, prometheus_port);
    wait_for(
        "prometheus to scrape the relay",
        Duration::from_secs(30),
        || (prometheus.query("up{job=\"gtid-relay\"} == 1").len() == 1).then_some(()),
    );
    let admin = |sql: &str| {
        let (ok, out) = mysql(admin_port, PASSWORD, &[], sql);
        assert!(ok, "{sql}: {out}");
    };

    // Healthy: nothing pending or firing.
    let load = workload::spawn(&sb, &[1, 2], 1, Duration::from_secs(5));
    load.join().expect("workload");
    wait_converged(&sb, &[1, 2], Duration::from_secs(60));
    let alerts = prometheus.api("/api/v1/alerts");
    assert_eq!(alerts["alerts"], Json::Array(Vec::new()), "{alerts}");

    // STOP REPLICA through the admin endpoint: the channel-stopped alert fires
    // for that channel; START REPLICA resolves it.
    admin("STOP REPLICA FOR CHANNEL 'm1->m2'");
    let fired = wait_for(
        "GtidRelayChannelStopped to fire",
        Duration::from_secs(60),
        || prometheus.alert("GtidRelayChannelStopped", "m1->m2", "firing"),
    );
    assert_eq!(fired["labels"]["severity"], "critical", "{fired}");
    assert!(
        fired["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("SHOW REPLICA STATUS FOR CHANNEL 'm1->m2'")),
        "{fired}"
    );
    assert!(
        prometheus
            .alert("GtidRelayChannelStopped", "m2->m1", "firing")
            .is_none(),
        "only the stopped channel"
    );
    admin("START REPLICA FOR CHANNEL 'm1->m2'");
    wait_for(
        "GtidRelayChannelStopped to resolve",
        Duration::from_secs(60),
        || {
            prometheus
                .alert("GtidRelayChannelStopped", "m1->m2", "firing")
                .is_none()
                .then_some(())
        },
    );

    // m2 killed while m1 takes writes: m1->m2's applier retries a dead
    // target, its lag is unknown and growing, and the lag alert fires.
    let load = workload::spawn(&sb, &[1], 1, Duration::from_secs(8));
    sb.kill(2);
    let lagging = wait_for("GtidRelayLagHigh to fire", Duration::from_secs(60), || {
        prometheus.alert("GtidRelayLagHigh", "m1->m2", "firing")
    });
    assert_eq!(lagging["labels"]["target"], "m2", "{lagging}");
    wait_for(
        "GtidRelayReplicationError to fire",
        Duration::from_secs(60),
        || prometheus.alert("GtidRelayReplicationError", "m1->m2", "firing"),
    );
    load.join().expect("workload");
    sb.restart(2);
    wait_converged(&sb, &[1, 2], Duration::from_secs(120));
    wait_for(
        "GtidRelayLagHigh to resolve",
        Duration::from_secs(90),
        || {
            prometheus
                .alert("GtidRelayLagHigh", "m1->m2", "firing")
                .is_none()
                .then_some(())
        },
    );

    // Every dashboard query returns data from this Prometheus.
    let empty: Vec<String> = dashboard_queries()
        .into_iter()
        .filter(|(_, expr)| prometheus.query(expr).is_empty())
        .map(|(title, expr)| format!("{title}: {expr}"))
        .collect();
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );

    relay.signal("TERM");
    assert_eq!(relay.wait(Duration::from_secs(30)), Some(0));
}

/// A port for Prometheus outside the sandbox's range.
fn free_prometheus_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
