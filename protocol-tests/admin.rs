//! The admin endpoint against real clients: the stock MySQL 9.7 `mysql` client (plaintext
//! and VERIFY_CA TLS), mysqld_exporter, and mysql_async; plus a fuzz/concurrency run.
//!
//! The relay's channels are stood in for by [`FlipReplicas`], whose START/STOP really
//! flip the running state; swap it for real channels once they exist.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use gtid_relay::admin::{self, PasswordHash, Settings, TlsFiles, User};
use gtid_relay::status::{
    ChannelStatus, ControlError, IoRunning, LastError, Replicas, SourceTls, Threads,
};
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use crate::support::{KillOnDrop, Sandbox};

const USER: &str = "admin";
pub(crate) const PASSWORD: &str = "adm1n-Test-pw";
const CHANNEL: &str = "m1->m2";

// ---------------------------------------------------------------- stand-in channels

/// In-process stand-in for the relay's channels: two channels whose START/STOP flip
/// `Replica_IO_Running` / `Replica_SQL_Running`.
struct FlipReplicas {
    channels: Mutex<Vec<ChannelStatus>>,
}

fn channel(name: &str, port: u16) -> ChannelStatus {
    ChannelStatus {
        name: name.to_string(),
        source_name: "m1".into(),
        target_name: "m2".into(),
        source_host: "127.0.0.1".into(),
        source_port: port,
        source_user: "relay".into(),
        source_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
        source_server_id: Some(101),
        target_uuid: Some("4f22fb58-82db-22f2-af44-d91bba53a673".into()),
        relay_server_id: 4001,
        io_running: IoRunning::Yes,
        io_state: "Waiting for source to send event".into(),
        sql_running: true,
        sql_state: "Replica has read all relay log; waiting for more updates".into(),
        last_io_error: None,
        last_sql_error: Some(LastError {
            errno: 1062,
            message: "Duplicate entry '7' for key 't.PRIMARY'".into(),
            // 2024-02-29 13:05:09 UTC
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_211_909),
        }),
        retrieved_gtid_set: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42".into(),
        executed_gtid_set: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-40".into(),
        seconds_behind_source: Some(3),
        source_log_file: "binlog.000002".into(),
        read_source_log_pos: 4711,
        connect_retry_secs: 60,
        retry_count: 10,
        heartbeat_period_secs: 30.0,
        tls: SourceTls::default(),
        conflict_mode: "strict",
        transactions_received: 42,
        transactions_applied: 40,
        transactions_skipped_loop: 0,
        transactions_skipped_applied: 0,
        events_received: 200,
        bytes_received: 65536,
        reconnects: 0,
        last_applied_original_commit_us: Some(1_709_211_909_000_042),
        last_applied_gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:40".into()),
        last_applied_at: Some(SystemTime::now()),
    }
}

impl FlipReplicas {
    fn new() -> Arc<FlipReplicas> {
        Arc::new(FlipReplicas {
            channels: Mutex::new(vec![channel(CHANNEL, 4301), channel("m2->m1", 4302)]),
        })
    }

    fn set(&self, name: Option<&str>, threads: Threads, run: bool) -> Result<(), ControlError> {
        let mut chans = self.channels.lock().unwrap();
        if let Some(n) = name {
            if !chans.iter().any(|c| c.name == n) {
                return Err(ControlError::NoSuchChannel(n.to_string()));
            }
        }
        for c in chans
            .iter_mut()
            .filter(|c| name.is_none_or(|n| n == c.name))
        {
            if threads != Threads::Sql {
                c.io_running = if run { IoRunning::Yes } else { IoRunning::No };
            }
            if threads != Threads::Io {
                c.sql_running = run;
                c.seconds_behind_source = run.then_some(3);
            }
        }
        Ok(())
    }
}

impl Replicas for FlipReplicas {
    fn channels(&self) -> Vec<ChannelStatus> {
        self.channels.lock().unwrap().clone()
    }
    fn start(&self, channel: Option<&str>, threads: Threads) -> Result<(), ControlError> {
        self.set(channel, threads, true)
    }
    fn stop(
        &self,
        channel: Option<&str>,
        threads: Threads,
    ) -> BoxFuture<'static, Result<(), ControlError>> {
        let r = self.set(channel, threads, false);
        Box::pin(async move { r })
    }
}

// ---------------------------------------------------------------- endpoint under test

/// Everything the endpoint logs, to check that no password shows up.
fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: OnceLock<()> = OnceLock::new();
    let buf = LOG.get_or_init(|| Mutex::new(Vec::new()));
    INIT.get_or_init(|| {
        struct W;
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                log_buffer().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("gtid_relay=info")
            .with_writer(|| W)
            .with_ansi(false)
            .try_init();
    });
    buf
}

/// Admin tests run one at a time, so the fuzz test's RSS figures are its own.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Endpoint {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    replicas: Arc<FlipReplicas>,
    stop: Option<oneshot::Sender<()>>,
}

impl Endpoint {
    fn start(tls: bool, require_secure_transport: bool) -> Endpoint {
        Endpoint::start_with(tls, require_secure_transport, true)
    }

    fn start_with(tls: bool, require_secure_transport: bool, slave_syntax: bool) -> Endpoint {
        log_buffer();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut settings = Settings::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![User {
                name: USER.into(),
                password_hash: PasswordHash::from_password(PASSWORD),
            }],
        );
        if tls {
            let out = certs();
            settings.tls = Some(TlsFiles {
                cert: out.join("relay.pem"),
                key: out.join("relay-key.pem"),
            });
        }
        settings.require_secure_transport = require_secure_transport;
        settings.slave_syntax = slave_syntax;
        settings.server_id = 4242;
        settings.server_uuid = "5a33ac69-93ec-33a3-b055-ea2ccb64b784".into();
        settings.hostname = "relay-test".into();
        let listener = rt
            .block_on(admin::bind(settings))
            .expect("bind admin endpoint");
        let addr = listener.local_addr();
        let replicas = FlipReplicas::new();
        let (tx, rx) = oneshot::channel::<()>();
        let r: Arc<dyn Replicas> = replicas.clone();
        rt.spawn(async move {
            listener
                .serve(r, async move {
                    let _ = rx.await;
                })
                .await
        });
        Endpoint {
            rt,
            addr,
            replicas,
            stop: Some(tx),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn certs() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(root.join("certs/make-certs.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "certs/make-certs.sh failed");
    root.join("certs/out")
}

/// The MySQL chroot, with this process's CA copies under /tmp inside it.
struct Chroot {
    root: PathBuf,
    /// Path inside the chroot of a private directory for this test process.
    inner: String,
}

fn chroot() -> &'static Chroot {
    static C: OnceLock<Chroot> = OnceLock::new();
    C.get_or_init(|| {
        let root = Sandbox::empty(1).chroot_dir();
        let inner = format!("/tmp/gtid-relay-admin-{}", std::process::id());
        let dir = root.join(inner.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let out = certs();
        for f in ["ca.pem", "other-ca.pem"] {
            std::fs::copy(out.join(f), dir.join(f)).unwrap();
        }
        Chroot { root, inner }
    })
}

/// Runs the stock `mysql` client in the chroot; returns (success, stdout+stderr).
pub(crate) fn mysql(port: u16, password: &str, extra: &[&str], sql: &str) -> (bool, String) {
    let mut e = extra.to_vec();
    e.extend(["-e", sql]);
    mysql_stdin(port, password, &e, "")
}

/// Runs the stock `mysql` client with `stdin` as its input (a script).
fn mysql_stdin(port: u16, password: &str, extra: &[&str], stdin: &str) -> (bool, String) {
    let c = chroot();
    let port = port.to_string();
    let pw = format!("-p{password}");
    let mut child = Command::new("chroot")
        .arg(&c.root)
        .args([
            "mysql",
            "--no-defaults",
            "-h127.0.0.1",
            "-P",
            &port,
            "-u",
            USER,
            &pw,
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mysql in chroot");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write script");
    drop(input);
    let out: Output = child.wait_with_output().expect("mysql output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn verify_ca(ca: &str) -> Vec<String> {
    vec![
        "--ssl-mode=VERIFY_CA".to_string(),
        format!("--ssl-ca={}/{ca}", chroot().inner),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every statement of the issue, in one `-e` (-E output, --force past errors).
const ALL_STATEMENTS: &str = "SHOW REPLICA STATUS; \
    show replica status for channel 'm1->m2'; \
    SHOW SLAVE STATUS FOR CHANNEL 'm1->m2'; \
    SHOW REPLICAS; SHOW SLAVE HOSTS; \
    SELECT @@version, @@version_comment, @@server_id, @@server_uuid, @@hostname, @@read_only; \
    SELECT @@global.max_allowed_packet, @@session.transaction_isolation, @@character_set_client, \
        @@lower_case_table_names, @@time_zone, @@system_time_zone; \
    SELECT DATABASE(), USER(), 1, NOW() AS now_is; \
    SET NAMES utf8mb4; SET autocommit=1; SET SESSION sql_mode='ANSI'; SHOW WARNINGS; \
    SHOW GLOBAL VARIABLES LIKE 'version%'; SHOW SESSION VARIABLES LIKE 'server\\_id'; \
    SHOW GLOBAL STATUS LIKE 'Uptime'; SHOW STATUS; \
    USE anything; SELECT DATABASE() AS db_after_use; \
    SELECT CHANNEL_NAME, SERVICE_STATE, RECEIVED_TRANSACTION_SET \
        FROM performance_schema.replication_connection_status; \
    SELECT * FROM performance_schema.replication_applier_status_by_worker; \
    /* comment */ SELECT 'still alive' AS marker ;";

fn check_all_statements(out: &str) {
    for needle in [
        "Replica_IO_State: Waiting for source to send event",
        "Seconds_Behind_Source: 3",
        "Channel_Name: m1->m2",
        "Channel_Name: m2->m1",
        "Slave_IO_Running: Yes",
        "Seconds_Behind_Master: 3",
        "Master_Host: 127.0.0.1",
        "Last_SQL_Error_Timestamp: 240229 13:05:09",
        "Last_IO_Error_Timestamp: \n",
        "Retrieved_Gtid_Set: 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42",
        "@@version: 9.7.0-gtid-relay",
        "@@server_id: 4242",
        "@@server_uuid: 5a33ac69-93ec-33a3-b055-ea2ccb64b784",
        "@@hostname: relay-test",
        "@@read_only: 1",
        "@@session.transaction_isolation: REPEATABLE-READ",
        "@@system_time_zone: UTC",
        "DATABASE(): NULL",
        "USER(): admin@127.0.0.1",
        "Variable_name: version_comment",
        "Value: 4242",
        "Variable_name: Uptime",
        "db_after_use: anything",
        "SERVICE_STATE: ON",
        "LAST_APPLIED_TRANSACTION: 3e11fa47-71ca-11e1-9e33-c80aa9429562:40",
        "LAST_APPLIED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP: 2024-02-29 13:05:09.000042",
        "marker: still alive",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // The 9.7 column list, in order: first, 33rd and last.
    let names: Vec<&str> = out
        .split("*************************** 1. row ***************************")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.starts_with("****"))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
        .collect();
    assert_eq!(names.len(), 60, "{names:?}");
    assert_eq!(names[0], "Replica_IO_State");
    assert_eq!(names[32], "Seconds_Behind_Source");
    assert_eq!(names[59], "Network_Namespace");
    let now = out.lines().find(|l| l.contains("now_is:")).unwrap();
    assert!(
        now.trim().len() == "now_is: 2024-01-01 00:00:00".len(),
        "{now}"
    );
}

#[test]
fn admin_mysql_client_runs_every_statement_plaintext_and_verify_ca() {
    let _serial = serial();
    let ep = Endpoint::start(true, false);
    let (ok, out) = mysql(
        ep.port(),
        PASSWORD,
        &["-E", "--ssl-mode=DISABLED"],
        ALL_STATEMENTS,
    );
    assert!(ok, "{out}");
    check_all_statements(&out);

    let tls = verify_ca("ca.pem");
    let mut extra = args(&tls);
    extra.push("-E");
    let (ok, out) = mysql(ep.port(), PASSWORD, &extra, ALL_STATEMENTS);
    assert!(ok, "{out}");
    check_all_statements(&out);
    // The client really negotiated TLS, and caching_sha2_password is its default plugin.
    let (ok, out) = mysql(ep.port(), PASSWORD, &args(&tls), "SHOW STATUS LIKE 'Ssl_%'");
    assert!(ok, "{out}");
    assert!(
        out.contains("Ssl_cipher\tTLS_") && out.contains("Ssl_version\tTLSv1."),
        "{out}"
    );

    // A certificate from another CA is refused by the client.
    let (ok, out) = mysql(
        ep.port(),
        PASSWORD,
        &args(&verify_ca("other-ca.pem")),
        "SELECT 1",
    );
    assert!(!ok && out.contains("2026"), "{out}");
}

#[test]
fn admin_wrong_password_is_1045_over_plaintext_and_tls_and_never_logged() {
    let _serial = serial();
    let ep = Endpoint::start(true, false);
    let wrong = "Wr0ng-pw-NOT-logged";
    let denied =
        "ERROR 1045 (28000): Access denied for user 'admin'@'127.0.0.1' (using password: YES)";
    let (ok, out) = mysql(ep.port(), wrong, &["--ssl-mode=DISABLED"], "SELECT 1");
    assert!(!ok && out.contains(denied), "{out}");
    // Over TLS this goes through caching_sha2's full authentication (cleartext password).
    let (ok, out) = mysql(ep.port(), wrong, &args(&verify_ca("ca.pem")), "SELECT 1");
    assert!(!ok && out.contains(denied), "{out}");
    let (ok, out) = mysql(ep.port(), PASSWORD, &args(&verify_ca("ca.pem")), "SELECT 1");
    assert!(ok, "{out}");
    let log = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    assert!(
        log.contains("admin login refused"),
        "login failures are logged:\n{log}"
    );
    assert!(
        !log.contains(wrong) && !log.contains(PASSWORD),
        "password in log:\n{log}"
    );
}

#[test]
fn admin_require_secure_transport_refuses_plaintext_with_3159() {
    let _serial = serial();
    let ep = Endpoint::start(true, true);
    let (ok, out) = mysql(ep.port(), PASSWORD, &["--ssl-mode=DISABLED"], "SELECT 1");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "ERROR 3159 (HY000): Connections using insecure transport are prohibited while \
             --require_secure_transport=ON."
        ),
        "{out}"
    );
    let (ok, out) = mysql(
        ep.port(),
        PASSWORD,
        &args(&verify_ca("ca.pem")),
        "SELECT 1 AS one",
    );
    assert!(ok && out.contains("one"), "{out}");
}

#[test]
fn admin_start_stop_unknown_channel_and_errors_keep_the_connection() {
    let _serial = serial();
    let ep = Endpoint::start(false, false);
    let sql = "STOP REPLICA IO_THREAD FOR CHANNEL 'm1->m2'; \
        SHOW REPLICA STATUS FOR CHANNEL 'm1->m2'; \
        selec 1; \
        DROP TABLE t; \
        SELECT @@no_such_variable; \
        SELECT 'after errors' AS marker; \
        SHOW REPLICA STATUS FOR CHANNEL 'nope'";
    // A script on stdin: the stock client ends an `-e` batch at the first error even with
    // --force (against MySQL 9.7 too), but runs a script on past errors.
    let (_, out) = mysql_stdin(ep.port(), PASSWORD, &["-E", "--force"], sql);
    for needle in [
        "Replica_IO_Running: No",
        "Replica_SQL_Running: Yes",
        "Seconds_Behind_Source: NULL",
        "ERROR 3074 (HY000) at line 1: Replica channel 'nope' does not exist.",
        "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the manual \
         that corresponds to your MySQL server version for the right syntax to use near \
         'selec 1' at line 1",
        "ERROR 1235 (42000)",
        "ERROR 1193 (HY000) at line 1: Unknown system variable 'no_such_variable'",
        "marker: after errors",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (ok, out) = mysql(ep.port(), PASSWORD, &[], "STOP SLAVE FOR CHANNEL 'nope'");
    assert!(!ok && out.contains("ERROR 3074 (HY000)"), "{out}");
    let c = &ep.replicas.channels()[0];
    assert_eq!((c.io_running, c.sql_running), (IoRunning::No, true));
    let (ok, out) = mysql(
        ep.port(),
        PASSWORD,
        &[],
        "START SLAVE; STOP REPLICA SQL_THREAD",
    );
    assert!(ok, "{out}");
    let chans = ep.replicas.channels();
    assert!(
        chans
            .iter()
            .all(|c| c.io_running == IoRunning::Yes && !c.sql_running)
    );
}

// ---------------------------------------------------------------- mysqld_exporter

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric(body: &str, prefix: &str) -> Option<String> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

/// mysqld_exporter scraping the admin endpoint on `admin_port`, killed on drop.
struct Exporter {
    _child: KillOnDrop,
    http_port: u16,
    log: PathBuf,
}

impl Exporter {
    fn start(admin_port: u16) -> Exporter {
        let c = chroot();
        let cnf_inner = format!("{}/exporter-{admin_port}.cnf", c.inner);
        std::fs::write(
            c.root.join(cnf_inner.trim_start_matches('/')),
            format!(
                "[client]\nuser={USER}\npassword={PASSWORD}\nhost=127.0.0.1\nport={admin_port}\n"
            ),
        )
        .unwrap();
        let http_port = crate::support::free_port_base(1) + 1;
        let log = std::env::temp_dir().join(format!("admin-exporter-{admin_port}.log"));
        let child = Command::new("chroot")
            .arg(&c.root)
            .args([
                "/usr/bin/prometheus-mysqld-exporter",
                &format!("--web.listen-address=127.0.0.1:{http_port}"),
                &format!("--config.my-cnf={cnf_inner}"),
                "--collect.slave_status",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mysqld_exporter");
        Exporter {
            _child: KillOnDrop(child),
            http_port,
            log,
        }
    }

    /// Scrape until `channel`'s replica_io_running metric is `want`; the body.
    fn scrape_until(&self, channel: &str, want: &str) -> String {
        let mut last = String::new();
        for _ in 0..60 {
            if let Some(body) = http_get(self.http_port, "/metrics") {
                let io = body
                    .lines()
                    .find(|l| {
                        l.starts_with("mysql_slave_status_replica_io_running")
                            && l.contains(channel)
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .map(str::to_string);
                if io.as_deref() == Some(want) {
                    return body;
                }
                last = body;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let metrics: Vec<&str> = last.lines().filter(|l| l.starts_with("mysql_")).collect();
        panic!(
            "no replica_io_running {want} for {channel}; exporter log:\n{log}\nmetrics:\n{}",
            metrics.join("\n")
        );
    }
}

// ---------------------------------------------------------------- the real relay

/// The relay binary between two sandbox masters, with its admin endpoint on
/// `port` (TLS from certs/out; the SLAVE spellings off, as on 9.7) and
/// `more` configuration.
pub(crate) fn real_relay(
    sb: &Sandbox,
    dir: &Path,
    port: u16,
    more: &str,
) -> crate::support::relay::Process {
    use crate::support::relay::{Process, config_text, write_config};
    let out = certs();
    let extra = format!(
        "[relay]\nreport_host = \"127.0.0.1\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\nslave_syntax = false\n\
         users = [{{ name = \"{USER}\", password_hash = \"{}\" }}]\n\n{more}",
        out.join("relay.pem").display(),
        out.join("relay-key.pem").display(),
        gtid_relay::admin::PasswordHash::from_password(PASSWORD),
    );
    let config = write_config(dir, &config_text(sb, &[1, 2], &extra));
    let relay = Process::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &dir.join("relay.log"),
    );
    crate::support::wait_for("the admin endpoint", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    relay
}

fn field<'a>(vertical: &'a str, name: &str) -> Option<&'a str> {
    vertical
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
}

/// `SHOW REPLICA STATUS FOR CHANNEL` over TLS (VERIFY_CA against the project's CA).
fn replica_status(port: u16, channel: &str) -> String {
    let tls = verify_ca("ca.pem");
    let mut extra = args(&tls);
    extra.push("-E");
    let (ok, out) = mysql(
        port,
        PASSWORD,
        &extra,
        &format!("SHOW REPLICA STATUS FOR CHANNEL '{channel}'"),
    );
    assert!(ok, "{out}");
    out
}

#[test]
fn admin_controls_and_reports_the_real_relay_between_sandbox_masters() {
    use crate::support::relay::{TempDir, wait_converged};
    let mut sb = Sandbox::empty(2);
    sb.start_instance(1, &[], &[]);
    sb.start_instance(2, &[], &[]);
    let dir = TempDir::new("admin-real");
    let port = sb.spare_port(0);
    let relay = real_relay(&sb, &dir.0, port, "");

    // Both channels running, with MySQL's meanings.
    let status = crate::support::wait_for("channels running", Duration::from_secs(30), || {
        let s = replica_status(port, "m1->m2");
        (field(&s, "Replica_IO_Running") == Some("Yes")
            && field(&s, "Replica_SQL_Running") == Some("Yes"))
        .then_some(s)
    });
    assert_eq!(
        field(&status, "Source_Port"),
        Some(sb.port(1).to_string().as_str()),
        "{status}"
    );
    assert_eq!(
        field(&status, "Source_UUID"),
        Some(sb.server_uuid(1).as_str()),
        "{status}"
    );
    assert_eq!(field(&status, "Auto_Position"), Some("1"), "{status}");
    assert_eq!(
        field(&status, "Seconds_Behind_Source"),
        Some("0"),
        "{status}"
    );

    // Every source lists the relay as a replica with the configured report address.
    let replicas = sb.sql(1, "SHOW REPLICAS");
    assert!(
        replicas.contains(&format!("127.0.0.1\t{port}\t")),
        "SHOW REPLICAS on m1: {replicas}"
    );

    // STOP REPLICA really stops that channel: m1's writes stay on m1.
    let (ok, out) = mysql(port, PASSWORD, &[], "STOP REPLICA FOR CHANNEL 'm1->m2'");
    assert!(ok, "{out}");
    let stopped = replica_status(port, "m1->m2");
    assert_eq!(
        field(&stopped, "Replica_IO_Running"),
        Some("No"),
        "{stopped}"
    );
    assert_eq!(
        field(&stopped, "Seconds_Behind_Source"),
        Some("NULL"),
        "{stopped}"
    );
    sb.sql(1, "CREATE DATABASE while_stopped");
    sb.sql(2, "CREATE DATABASE from_m2");
    crate::support::wait_for("m2->m1 still relaying", Duration::from_secs(30), || {
        (sb.value(
            1,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'from_m2'",
        ) == "1")
            .then_some(())
    });
    assert_eq!(
        sb.value(
            2,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'while_stopped'"
        ),
        "0"
    );
    // The exporter sees the stopped channel, then the started one.
    let exporter = Exporter::start(port);
    let body = exporter.scrape_until("m1->m2", "0");
    assert_eq!(metric(&body, "mysql_up ").as_deref(), Some("1"), "{body}");
    let (ok, out) = mysql(port, PASSWORD, &[], "START REPLICA FOR CHANNEL 'm1->m2'");
    assert!(ok, "{out}");
    exporter.scrape_until("m1->m2", "1");
    wait_converged(&sb, &[1, 2], Duration::from_secs(30));

    // STOP REPLICA SQL_THREAD: the reader keeps running, nothing is applied.
    let (ok, out) = mysql(
        port,
        PASSWORD,
        &[],
        "STOP REPLICA SQL_THREAD FOR CHANNEL 'm2->m1'",
    );
    assert!(ok, "{out}");
    let s = replica_status(port, "m2->m1");
    assert_eq!(field(&s, "Replica_SQL_Running"), Some("No"), "{s}");
    // The channel's session restarts without its applier: the reader reconnects.
    crate::support::wait_for("the IO thread alone", Duration::from_secs(30), || {
        let s = replica_status(port, "m2->m1");
        (field(&s, "Replica_IO_Running") == Some("Yes")
            && field(&s, "Replica_SQL_Running") == Some("No"))
        .then_some(())
    });
    let m1_before = sb.gtid_executed(1);
    sb.sql(2, "CREATE DATABASE sql_stopped");
    // Once the reader has received the transaction, only the stopped SQL
    // thread stands between it and m1.
    let new_on_m2 = sb.value(
        2,
        &format!("SELECT GTID_SUBTRACT(@@GLOBAL.gtid_executed, '{m1_before}')"),
    );
    crate::support::wait_for(
        "the IO thread to receive it",
        Duration::from_secs(30),
        || {
            let s = replica_status(port, "m2->m1");
            // A set of several UUIDs spans lines; Executed_Gtid_Set comes next.
            let retrieved: String = s
                .split("Retrieved_Gtid_Set:")
                .nth(1)?
                .split("Executed_Gtid_Set:")
                .next()?
                .split_whitespace()
                .collect();
            (sb.value(
                1,
                &format!("SELECT GTID_SUBSET('{new_on_m2}', '{retrieved}')"),
            ) == "1")
                .then_some(())
        },
    );
    assert_eq!(
        sb.value(
            1,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'sql_stopped'"
        ),
        "0"
    );
    let (ok, out) = mysql(
        port,
        PASSWORD,
        &[],
        "START REPLICA SQL_THREAD FOR CHANNEL 'm2->m1'",
    );
    assert!(ok, "{out}");
    wait_converged(&sb, &[1, 2], Duration::from_secs(30));

    // A wrong password: 1045, and no password in the relay's log.
    let (ok, out) = mysql(port, "wrong-pw", &[], "SELECT 1");
    assert!(!ok && out.contains("1045"), "{out}");
    let log = relay.log_text();
    assert!(
        !log.contains("wrong-pw") && !log.contains(PASSWORD),
        "{log}"
    );
}

// ---------------------------------------------------------------- mysql_async, fuzz, load

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .into()
}

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "SHOW",
    "REPLICA",
    "SLAVE",
    "STATUS",
    "FOR",
    "CHANNEL",
    "'m1->m2'",
    "START",
    "STOP",
    "IO_THREAD",
    "SQL_THREAD",
    ",",
    "@@",
    "@@version",
    "@@global.",
    "(",
    ")",
    "'",
    "\"",
    "`",
    "/*",
    "*/",
    "--",
    "#",
    ";",
    "LIKE",
    "'%'",
    "FROM",
    "performance_schema.",
    "*",
    "LIMIT",
    "99999999999999999999999",
    "\\",
    "\n",
    "\t",
    "SET",
    "NAMES",
    "=",
    "USE",
    "NULL",
    "é",
    "💥",
    "\0",
    "WHERE",
    "AS",
];

fn random_statement(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        // Random printable garbage.
        0 => (0..rng.random_range(0..200))
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect(),
        // A long statement (still under the packet cap).
        1 => format!("SELECT '{}'", "x".repeat(rng.random_range(0..60_000))),
        // Valid statements the endpoint serves.
        2 => [
            "SHOW REPLICA STATUS",
            "SELECT @@version",
            "SHOW GLOBAL STATUS",
            "SELECT 1",
        ][rng.random_range(0..4)]
        .to_string(),
        // Keyword soup.
        _ => (0..rng.random_range(1..12))
            .map(|_| FRAGMENTS[rng.random_range(0..FRAGMENTS.len())])
            .collect::<Vec<_>>()
            .join(if rng.random_bool(0.5) { " " } else { "" }),
    }
}

/// Runs `per_client` random statements on each of `clients` concurrent connections;
/// every statement must get an answer (a result or a server error), and every
/// connection must still answer `SELECT 1` at the end.
async fn fuzz(port: u16, clients: usize, per_client: usize, seed: u64) {
    let mut handles = Vec::new();
    for c in 0..clients {
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + c as u64);
            let mut conn = mysql_async::Conn::new(opts(port)).await.expect("connect");
            for _ in 0..per_client {
                let q = random_statement(&mut rng);
                match conn.query_drop(&q).await {
                    Ok(()) | Err(mysql_async::Error::Server(_)) => {}
                    Err(e) => panic!("statement {q:?} broke the connection: {e}"),
                }
            }
            let one: Option<u8> = conn.query_first("SELECT 1").await.expect("still usable");
            assert_eq!(one, Some(1));
            conn.disconnect().await.expect("clean quit");
        }));
    }
    for h in handles {
        h.await.expect("fuzz client");
    }
}

#[test]
fn admin_mysql_async_fuzz_and_100_concurrent_clients_keep_memory_flat() {
    let _serial = serial();
    let ep = Endpoint::start(false, false);
    let port = ep.port();
    ep.rt.block_on(async {
        // A second connector: typed results through mysql_async.
        let mut conn = mysql_async::Conn::new(opts(port)).await.expect("connect");
        let row: mysql_async::Row = conn
            .query_first("SHOW REPLICA STATUS FOR CHANNEL 'm1->m2'")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.get::<String, _>("Replica_IO_Running").as_deref(),
            Some("Yes")
        );
        assert_eq!(
            row.get::<Option<u64>, _>("Seconds_Behind_Source"),
            Some(Some(3))
        );
        let version: String = conn.query_first("SELECT @@version").await.unwrap().unwrap();
        assert_eq!(version, "9.7.0-gtid-relay");
        let err = conn
            .query_drop("SHOW REPLICA STATUS FOR CHANNEL 'x'")
            .await
            .unwrap_err();
        assert!(
            matches!(err, mysql_async::Error::Server(ref e) if e.code == 3074),
            "{err}"
        );
        conn.ping().await.unwrap();
        conn.disconnect().await.unwrap();

        // Malformed handshakes on raw sockets must not disturb anything.
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let junk: Vec<u8> = (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect();
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(&junk).await;
        }

        // Warm up allocator, runtime and client pools with the same load, then measure.
        fuzz(port, 100, 100, 1).await;
    });
    // Allocator arenas settle over the first rounds; a leak keeps growing.
    let mut rounds = Vec::new();
    for round in 0..6u64 {
        ep.rt.block_on(fuzz(port, 100, 100, 1_000 * (round + 1)));
        rounds.push(rss_kib());
    }
    eprintln!("admin fuzz: RSS after each 10000-statement round (KiB): {rounds:?}");
    let (before, after) = (rounds[2], rounds[5]);
    eprintln!(
        "admin fuzz: 30000 statements over 100 concurrent clients between the figures; RSS \
         before {before} KiB, after {after} KiB"
    );
    // Keeping as little as 2 KiB per statement would add 60 MiB over these 30,000; the
    // statements themselves average ~6 KB. What remains is client and allocator slack.
    assert!(
        after < before + 48 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // And the endpoint still serves new clients.
    let (ok, out) = mysql(port, PASSWORD, &[], "SELECT 'alive' AS marker");
    assert!(ok && out.contains("alive"), "{out}");
}
