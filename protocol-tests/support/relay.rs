//! Running the relay against sandbox masters: in-process (to read its counters
//! directly) or as the real binary (to kill it, signal it, read its logs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gtid_relay::channel::Relay;
use gtid_relay::config::Config;
use gtid_relay::status::{ChannelStatus, IoRunning, Replicas};

use super::{Sandbox, wait_for};

/// The sandbox's relay account password (deploy/sandbox.sh).
pub const RELAY_PASSWORD: &str = "relay-sandbox-pw";

/// A connection to a sandbox master over loopback TCP, as the relay account.
pub async fn connect(port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("relay"))
        .pass(Some(RELAY_PASSWORD))
        .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to a sandbox master")
}

/// A relay configuration for masters `which` of `sb`, plus `extra` TOML.
pub fn config_text(sb: &Sandbox, which: &[u8], extra: &str) -> String {
    let mut text = String::from(
        "[source]\nheartbeat_secs = 1\nreconnect_min_secs = 0.2\nreconnect_max_secs = 2\n\n",
    );
    text.push_str(extra);
    for &i in which {
        text.push_str(&format!(
            "\n[[masters]]\nname = \"m{i}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"relay\"\npassword = \"{RELAY_PASSWORD}\"\n",
            sb.port(i)
        ));
    }
    text
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create config dir");
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A scratch directory for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("gtid-relay-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The relay running on its own runtime thread inside the test process.
pub struct InProcess {
    pub relay: Arc<Relay>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    pub fn start(config_text: &str) -> InProcess {
        // The relay's log goes to the test's captured output: shown when it fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("GTID_RELAY_LOG").unwrap_or_else(|_| "info".into()),
            ))
            .with_test_writer()
            .try_init();
        let config = Config::parse(Path::new("test.toml"), config_text).expect("valid test config");
        let relay = Arc::new(Relay::new(&config));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = relay.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(runner.run(async {
                let _ = stopped.await;
            }));
        });
        InProcess {
            relay,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn status(&self) -> Vec<ChannelStatus> {
        self.relay.channels()
    }

    pub fn channel(&self, name: &str) -> ChannelStatus {
        self.status()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no channel {name}"))
    }

    /// Wait until every channel has both threads running.
    pub fn wait_running(&self) {
        wait_for("all channels running", Duration::from_secs(30), || {
            self.status()
                .iter()
                .all(|c| c.io_running == IoRunning::Yes && c.sql_running)
                .then_some(())
        });
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `gtid-relay` binary as a child process, killed by pid on drop.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(args: &[&str], log: &Path) -> Process {
        let file = std::fs::File::create(log).expect("create relay log");
        let child = Command::new(env!("CARGO_BIN_EXE_gtid-relay"))
            .args(args)
            .env("GTID_RELAY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("spawn gtid-relay");
        Process {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for exit, up to `timeout`; returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let status = wait_for("gtid-relay to exit", timeout, || {
            self.child.try_wait().ok().flatten()
        });
        status.code()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until all masters `which` report the same gtid_executed; returns it.
pub fn wait_converged(sb: &Sandbox, which: &[u8], timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let sets: Vec<String> = which.iter().map(|&i| sb.gtid_executed(i)).collect();
        if sets.windows(2).all(|w| w[0] == w[1]) {
            return sets[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "masters did not converge within {timeout:?}: {:?}",
            which.iter().zip(&sets).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `CHECKSUM TABLE` of every base table in `schema` on master `i`, sorted.
pub fn checksums(sb: &Sandbox, i: u8, schema: &str) -> String {
    let tables = sb.sql(
        i,
        &format!(
            "SELECT GROUP_CONCAT(CONCAT('`', table_schema, '`.`', table_name, '`') ORDER BY table_name) \
             FROM information_schema.tables WHERE table_schema = '{schema}' AND table_type = 'BASE TABLE'"
        ),
    );
    let tables = tables.trim();
    assert!(
        !tables.is_empty() && tables != "NULL",
        "no tables in {schema} on m{i}"
    );
    sb.sql(i, &format!("CHECKSUM TABLE {tables} EXTENDED"))
}

/// How long two masters get to converge after a change.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// Fail at once when a channel stopped on an error.
pub fn check_channels(relay: &InProcess) {
    for c in relay.status() {
        if let Some(e) = &c.last_sql_error {
            panic!(
                "channel {} stopped: errno {}: {}",
                c.name, e.errno, e.message
            );
        }
        if let Some(e) = &c.last_io_error {
            panic!(
                "channel {} cannot read its source: errno {}: {}",
                c.name, e.errno, e.message
            );
        }
    }
}

/// No channel stopped on an apply error.
pub fn assert_no_error(relay: &InProcess) {
    for c in relay.status() {
        assert!(
            c.last_sql_error.is_none(),
            "{}: {:?}",
            c.name,
            c.last_sql_error
        );
    }
}

/// Wait until masters 1 and 2 hold the same GTIDs; fail at once on an error.
pub fn settle(sb: &Sandbox, relay: &InProcess) -> String {
    wait_for("masters to converge", CONVERGE, || {
        check_channels(relay);
        let (a, b) = (sb.gtid_executed(1), sb.gtid_executed(2));
        (a == b).then_some(a)
    })
}

/// `sql` gives the same output on masters 1 and 2; returns it.
pub fn same(sb: &Sandbox, sql: &str) -> String {
    let (a, b) = (sb.sql(1, sql), sb.sql(2, sql));
    assert_eq!(a, b, "masters differ on: {sql}");
    a
}
