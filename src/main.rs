//! The `gtid-relay` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use tokio::sync::watch;

use gtid_relay::admin;
use gtid_relay::channel::Relay;
use gtid_relay::config::{AdminConfig, Config, LogFormat};
use gtid_relay::gravity;
use gtid_relay::identity;
use gtid_relay::metrics;
use gtid_relay::status::Replicas;
use gtid_relay::verify::{Options, Verifier, stderr_is_terminal};

#[derive(Parser)]
#[command(
    name = "gtid-relay",
    version,
    about = "Active-active MySQL replication that keeps every transaction's original GTID"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Relay every configured channel until SIGINT/SIGTERM.
    Run {
        /// The TOML configuration file.
        #[arg(long, short, required_unless_present = "gravity_config")]
        config: Option<PathBuf>,
        /// A Gravity MySQL-to-MySQL configuration file, once per direction,
        /// instead of --config (docs/routing.md).
        #[arg(long, conflicts_with = "config")]
        gravity_config: Vec<PathBuf>,
        #[command(flatten)]
        hosts: HostMapArg,
    },
    /// Print the native configuration equivalent to Gravity configuration files.
    ImportGravity {
        /// Gravity configuration files, one per direction.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        hosts: HostMapArg,
    },
    /// Print the hash of a password (read from standard input) for [[admin.users]].
    HashPassword,
    /// Check every master and channel before `run`; exit 1 when something fails.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Change gtid_mode online on masters and their native replicas (the MySQL
    /// manual's procedure), resuming from whatever state the servers are in.
    GtidMode {
        #[arg(value_enum)]
        action: GtidModeAction,
        /// mysql://user:password@host:port, once per server (masters and replicas).
        #[arg(long = "server", required = true)]
        servers: Vec<String>,
        /// Print the plan for the servers' current state and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long to watch the error logs for GTID consistency violations
        /// under ENFORCE_GTID_CONSISTENCY=WARN before switching it ON.
        #[arg(long, default_value_t = 10.0)]
        observe_secs: f64,
        /// Upper bound for each wait (anonymous transactions, replicas catching up).
        #[arg(long, default_value_t = 300.0)]
        wait_timeout_secs: f64,
        /// Stop after this many steps (to test resuming an interrupted run).
        #[arg(long, hide = true)]
        pause_after_step: Option<usize>,
    },
    /// Checksum every replicated table on all masters, online. Exit status:
    /// 0 consistent, 1 differences found, 2 inconclusive or error (docs/verify.md).
    Verify {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this schema.
        #[arg(long)]
        schema: Option<String>,
        /// Only tables of this name.
        #[arg(long)]
        table: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
        /// Target seconds per chunk checksum query (bounds the load on the masters).
        #[arg(long, default_value = "0.25")]
        chunk_time: f64,
        /// Seconds to wait for the masters to apply each other's in-flight transactions
        /// before a differing chunk is re-checked; past it the chunk is inconclusive.
        #[arg(long, default_value = "30")]
        wait_timeout: f64,
    },
}

#[derive(clap::Args)]
struct HostMapArg {
    /// Connect elsewhere than a Gravity file says: HOST:PORT=HOST:PORT
    /// (repeatable, or comma-separated in the environment variable).
    #[arg(
        long = "gravity-host-map",
        env = "GTID_RELAY_GRAVITY_HOST_MAP",
        value_delimiter = ','
    )]
    entries: Vec<String>,
}

/// The configuration of `run`: a native file, or Gravity files translated.
fn load_config(
    config: Option<PathBuf>,
    gravity: &[PathBuf],
    hosts: &HostMapArg,
) -> anyhow::Result<(Config, Vec<String>)> {
    match config {
        Some(path) => Ok((Config::load(&path)?, Vec::new())),
        None => {
            let imported = gravity::import(gravity, &gravity::HostMap::parse(&hosts.entries)?)?;
            let config = Config::parse(Path::new("<imported from Gravity>"), &imported.toml)?;
            Ok((config, imported.warnings))
        }
    }
}

fn import_gravity(files: &[PathBuf], hosts: &HostMapArg) -> anyhow::Result<()> {
    let imported = gravity::import(files, &gravity::HostMap::parse(&hosts.entries)?)?;
    // Check that the output loads before printing it.
    Config::parse(Path::new("<imported from Gravity>"), &imported.toml)?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", imported.toml);
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GtidModeAction {
    Enable,
    Disable,
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("GTID_RELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// The admin endpoint's settings: its accounts and TLS from the configuration,
/// and an identity that stays the same across restarts.
fn admin_settings(config: &Config, admin: &AdminConfig) -> admin::Settings {
    let hostname = identity::hostname();
    let seed = identity::seed(&[
        &hostname,
        &config.relay.report_host,
        &config.relay.report_port.to_string(),
    ]);
    let users = admin
        .users
        .iter()
        .map(|u| admin::User {
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
        })
        .collect();
    let mut settings = admin::Settings::new(admin.listen, users);
    settings.tls = admin
        .tls_cert
        .clone()
        .zip(admin.tls_key.clone())
        .map(|(cert, key)| admin::TlsFiles { cert, key });
    settings.require_secure_transport = admin.require_secure_transport;
    settings.server_id = config
        .relay
        .server_id
        .unwrap_or_else(|| identity::server_id(seed));
    settings.server_uuid = identity::uuid(seed);
    settings.hostname = hostname;
    settings.slave_syntax = admin.slave_syntax;
    settings
}

async fn run(config: Config, warnings: Vec<String>) -> anyhow::Result<()> {
    init_logging(config.relay.log_format);
    for w in warnings {
        tracing::warn!("gravity {w}");
    }
    let relay = Arc::new(Relay::new(&config));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = match &config.admin {
        Some(admin) => {
            let listener = admin::bind(admin_settings(&config, admin))
                .await
                .with_context(|| format!("admin endpoint on {}", admin.listen))?;
            tracing::info!(listen = %listener.local_addr(), "admin endpoint ready");
            let replicas: Arc<dyn Replicas> = relay.clone();
            Some(tokio::spawn(
                listener.serve(replicas, stopped(stop_rx.clone())),
            ))
        }
        None => None,
    };
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let replicas: Arc<dyn Replicas> = relay.clone();
            let server = metrics::bind(addr, replicas)
                .await
                .with_context(|| format!("metrics endpoint on {addr}"))?;
            tracing::info!(listen = %server.local_addr(), "metrics endpoint ready");
            Some(tokio::spawn(server.serve(stopped(stop_rx.clone()))))
        }
        None => None,
    };
    let relay_task = tokio::spawn(relay.run(stopped(stop_rx)));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(admin) = admin {
        match admin.await {
            Ok(Err(e)) => tracing::error!("admin endpoint: {e}"),
            Err(e) => tracing::error!("admin endpoint task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(metrics) = metrics {
        match metrics.await {
            Ok(Err(e)) => tracing::error!("metrics endpoint: {e}"),
            Err(e) => tracing::error!("metrics endpoint task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    relay_task.await.context("relay task")?;
    Ok(())
}

/// Reads the password from standard input so that it stays out of the shell history.
fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    println!("{}", admin::PasswordHash::from_password(password));
    Ok(())
}

/// Prints the report; returns whether the relay can run.
async fn check(config: PathBuf, format: OutputFormat) -> anyhow::Result<bool> {
    let config = Config::load(&config)?;
    let report = gtid_relay::preflight::check(&config).await;
    match format {
        OutputFormat::Text => print!("{report}"),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        ),
    }
    Ok(report.ok)
}

async fn gtid_mode(
    action: GtidModeAction,
    servers: Vec<String>,
    options: gtid_relay::gtid_mode::Options,
) -> anyhow::Result<()> {
    use gtid_relay::gtid_mode::{Direction, Server, run};
    let servers = servers
        .iter()
        .map(|url| Server::from_url(url))
        .collect::<Result<Vec<_>, _>>()?;
    let direction = match action {
        GtidModeAction::Enable => Direction::Enable,
        GtidModeAction::Disable => Direction::Disable,
    };
    run(direction, &servers, &options, &mut std::io::stdout()).await?;
    Ok(())
}

/// Exit status of `verify` when it cannot produce a verdict.
const VERIFY_ERROR: u8 = 2;

fn seconds(name: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{name} must be a positive number of seconds"))
}

async fn verify(
    config: PathBuf,
    options: impl FnOnce() -> anyhow::Result<Options>,
    format: OutputFormat,
) -> anyhow::Result<u8> {
    let options = options()?;
    let config = Config::load(&config)?;
    let report = Verifier::connect(&config, options).await?.run().await?;
    match format {
        OutputFormat::Text => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.verdict.exit_code())
}

/// A long statement's BINLOG text or a large row event is a buffer of several
/// MiB that must go back to the system once sent, or the relay's footprint
/// grows with every large transaction it has ever seen. Two caches would keep
/// them: glibc raises its mmap threshold to the largest block freed so far (up
/// to 32 MiB) and then keeps such blocks in its per-thread arenas; and
/// mysql_async's packet buffer pool keeps up to 128 buffers of up to 4 MiB.
/// Runs before any thread exists: both settings are read once, at first use.
fn return_large_buffers_to_the_system() {
    const LARGE: usize = 256 << 10;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as libc::c_int);
    }
    if std::env::var_os("MYSQL_ASYNC_BUFFER_SIZE_CAP").is_none() {
        // SAFETY: single-threaded here (the runtime is built afterwards).
        unsafe { std::env::set_var("MYSQL_ASYNC_BUFFER_SIZE_CAP", LARGE.to_string()) };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    return_large_buffers_to_the_system();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gtid-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                gravity_config,
                hosts,
            } => async {
                let (config, warnings) = load_config(config, &gravity_config, &hosts)?;
                run(config, warnings).await
            }
            .await
            .context("gtid-relay run")
            .map(|()| ExitCode::SUCCESS),
            Command::ImportGravity { files, hosts } => import_gravity(&files, &hosts)
                .context("gtid-relay import-gravity")
                .map(|()| ExitCode::SUCCESS),
            Command::Check { config, format } => check(config, format)
                .await
                .context("gtid-relay check")
                .map(|ok| {
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }),
            Command::GtidMode {
                action,
                servers,
                dry_run,
                observe_secs,
                wait_timeout_secs,
                pause_after_step,
            } => async {
                let options = gtid_relay::gtid_mode::Options {
                    dry_run,
                    observe: seconds("--observe-secs", observe_secs)?,
                    wait_timeout: seconds("--wait-timeout-secs", wait_timeout_secs)?,
                    pause_after_step,
                };
                gtid_mode(action, servers, options).await
            }
            .await
            .context("gtid-relay gtid-mode")
            .map(|()| ExitCode::SUCCESS),
            Command::HashPassword => hash_password().map(|()| ExitCode::SUCCESS),
            Command::Verify {
                config,
                schema,
                table,
                format,
                chunk_time,
                wait_timeout,
            } => {
                let options = || {
                    Ok(Options {
                        schema,
                        table,
                        chunk_time: seconds("--chunk-time", chunk_time)?,
                        wait_timeout: seconds("--wait-timeout", wait_timeout)?,
                        progress: stderr_is_terminal(),
                    })
                };
                // verify has its own exit status for errors (2), like "inconclusive".
                Ok(match verify(config, options, format).await {
                    Ok(code) => ExitCode::from(code),
                    Err(e) => {
                        eprintln!("error: gtid-relay verify: {e:#}");
                        ExitCode::from(VERIFY_ERROR)
                    }
                })
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
