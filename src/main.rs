//! The `gtid-relay` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use gtid_relay::channel::Relay;
use gtid_relay::config::{Config, LogFormat};
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
        #[arg(long, short)]
        config: PathBuf,
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
        format: ReportFormat,
        /// Target seconds per chunk checksum query (bounds the load on the masters).
        #[arg(long, default_value = "0.25")]
        chunk_time: f64,
        /// Seconds to wait for the masters to apply each other's in-flight transactions
        /// before a differing chunk is re-checked; past it the chunk is inconclusive.
        #[arg(long, default_value = "30")]
        wait_timeout: f64,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
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

/// Exit status of `verify` when it cannot produce a verdict.
const VERIFY_ERROR: u8 = 2;

fn seconds(name: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds"))
}

async fn verify(
    config: PathBuf,
    options: impl FnOnce() -> anyhow::Result<Options>,
    format: ReportFormat,
) -> anyhow::Result<u8> {
    let options = options()?;
    let config = Config::load(&config)?;
    let report = Verifier::connect(&config, options).await?.run().await?;
    match format {
        ReportFormat::Text => print!("{}", report.to_text()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.verdict.exit_code())
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
    runtime.block_on(async {
        match cli.command {
            Command::Run { config } => match run(config).await.context("gtid-relay run") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
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
                        chunk_time: seconds("chunk-time", chunk_time)?,
                        wait_timeout: seconds("wait-timeout", wait_timeout)?,
                        progress: stderr_is_terminal(),
                    })
                };
                match verify(config, options, format).await {
                    Ok(code) => ExitCode::from(code),
                    Err(e) => {
                        eprintln!("error: gtid-relay verify: {e:#}");
                        ExitCode::from(VERIFY_ERROR)
                    }
                }
            }
        }
    })
}
