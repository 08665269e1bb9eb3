//! The `gtid-relay` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use tokio::sync::watch;

use gtid_relay::admin;
use gtid_relay::channel::Relay;
use gtid_relay::config::{AdminConfig, Config, LogFormat};
use gtid_relay::identity;
use gtid_relay::status::Replicas;

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
    /// Print the hash of a password (read from standard input) for [[admin.users]].
    HashPassword,
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

async fn run(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    init_logging(config.relay.log_format);
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
            Command::Run { config } => run(config).await.context("gtid-relay run"),
            Command::HashPassword => hash_password(),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
