//! The `gtid-relay` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use gtid_relay::channel::Relay;
use gtid_relay::config::{Config, LogFormat};

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
        #[arg(long, short)]
        config: PathBuf,
    },
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

async fn run(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    init_logging(config.relay.log_format);
    let relay = Arc::new(Relay::new(&config));
    relay.run(shutdown_signal()).await;
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

fn seconds(what: &str, s: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what}: {s} is not a duration"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await.context("gtid-relay run").map(|()| true),
            Command::Check { config, format } => {
                check(config, format).await.context("gtid-relay check")
            }
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
            .map(|()| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
