//! Test support: real MySQL 9.7 servers from `deploy/sandbox.sh`.
//!
//! Every [`Sandbox`] gets its own namespace and port range, so tests run in
//! parallel without sharing state. Instances are killed by pid when the sandbox
//! is dropped (also on panic), and a reaper started once per test process
//! removes whatever is left when the process exits, even by SIGKILL.

#![allow(dead_code)] // each test module uses a different part of this

pub mod proxy;
pub mod relay;
pub mod workload;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sandbox_script() -> PathBuf {
    repo_root().join("deploy/sandbox.sh")
}

/// Namespace prefix shared by all sandboxes of this test process.
fn process_ns() -> String {
    format!("t{}", std::process::id())
}

fn ensure_installed() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let status = Command::new(sandbox_script())
            .arg("install")
            .status()
            .expect("run deploy/sandbox.sh install");
        assert!(status.success(), "deploy/sandbox.sh install failed");
    });
}

/// Spawn the per-namespace reaper: it outlives this process and cleans up after
/// it, so it is deliberately never waited for.
#[allow(clippy::zombie_processes)]
pub fn spawn_reaper(ns: &str) {
    Command::new(sandbox_script())
        .args(["reap", &std::process::id().to_string(), ns])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sandbox reaper");
}

/// `count` consecutive free loopback ports after a random base; returns the base
/// (instance N listens on base + N).
pub fn free_port_base(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 400) * 100;
        if (1..=count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range on 127.0.0.1");
}

/// A set of MySQL instances numbered 1..=n in a private namespace.
pub struct Sandbox {
    ns: String,
    port_base: u16,
    started: Vec<u8>,
}

impl Sandbox {
    /// Start `n` GTID-enabled instances with the given extra mysqld options.
    pub fn start(n: u8, extra_mysqld_opts: &[&str]) -> Sandbox {
        let mut sb = Sandbox::empty(n);
        for i in 1..=n {
            sb.start_instance(i, &[], extra_mysqld_opts);
        }
        sb
    }

    /// A namespace with a port range for `n` instances, none started yet.
    pub fn empty(n: u8) -> Sandbox {
        ensure_installed();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let ns = format!("{}-{}", process_ns(), NEXT.fetch_add(1, Ordering::Relaxed));
        spawn_reaper(&ns);
        Sandbox {
            ns,
            port_base: free_port_base(u16::from(n) + 2),
            started: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(sandbox_script());
        cmd.env("SANDBOX_NS", &self.ns)
            .env("SANDBOX_PORT_BASE", self.port_base.to_string());
        cmd
    }

    /// Run a sandbox verb; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run sandbox.sh");
        assert!(
            out.status.success(),
            "sandbox.sh {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `start N [sandbox options] -- [mysqld options]`.
    pub fn start_instance(&mut self, i: u8, sandbox_opts: &[&str], mysqld_opts: &[&str]) {
        let n = i.to_string();
        let mut args = vec!["start", n.as_str()];
        args.extend_from_slice(sandbox_opts);
        if !mysqld_opts.is_empty() {
            args.push("--");
            args.extend_from_slice(mysqld_opts);
        }
        self.run(&args);
        if !self.started.contains(&i) {
            self.started.push(i);
        }
    }

    pub fn stop(&self, i: u8) {
        self.run(&["stop", &i.to_string()]);
    }

    pub fn kill(&self, i: u8) {
        self.run(&["kill", &i.to_string()]);
    }

    /// Restart after stop or kill, keeping the data directory.
    pub fn restart(&self, i: u8) {
        self.run(&["start", &i.to_string()]);
    }

    /// Run SQL as root; returns batch output (tab-separated, no column names).
    pub fn sql(&self, i: u8, sql: &str) -> String {
        self.run(&["sql", &i.to_string(), sql])
    }

    /// Like [`Sandbox::sql`] but returns the error text instead of panicking.
    pub fn try_sql(&self, i: u8, sql: &str) -> Result<String, String> {
        let out = self
            .command()
            .args(["sql", &i.to_string(), sql])
            .output()
            .expect("run sandbox.sh");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// One value (first column of the first row), trimmed.
    pub fn value(&self, i: u8, sql: &str) -> String {
        self.sql(i, sql).lines().next().unwrap_or("").to_string()
    }

    pub fn port(&self, i: u8) -> u16 {
        self.port_base + u16::from(i)
    }

    /// A port in this sandbox's range that no instance uses (for a relay's admin port).
    pub fn spare_port(&self, k: u16) -> u16 {
        let n = u16::try_from(self.started.len()).unwrap_or(0);
        debug_assert!(k < 2);
        self.port_base + n + 1 + k
    }

    pub fn gtid_executed(&self, i: u8) -> String {
        self.value(i, "SELECT REPLACE(@@GLOBAL.gtid_executed, '\\n', '')")
    }

    pub fn server_uuid(&self, i: u8) -> String {
        self.value(i, "SELECT @@server_uuid")
    }

    /// Path of a program inside the MySQL chroot (sysbench, pt-table-checksum, ...).
    pub fn chroot_dir(&self) -> PathBuf {
        PathBuf::from(self.run(&["root"]).trim())
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }
}

/// A helper process (an exporter, a Prometheus server), killed by pid when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for i in &self.started {
            let _ = self
                .command()
                .args(["wipe-now", &i.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Poll `f` until it returns Some, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
