//! The TOML configuration: masters, channels, listeners and tuning.
//!
//! Loading happens in two passes: serde turns the text into `Raw*` structs
//! (unknown keys are errors, every value keeps its span), then [`Config::from_raw`]
//! checks what serde cannot (names that must exist, secrets that must be readable)
//! and resolves defaults such as the full-mesh channel list. Every error names
//! the file, the line and the key.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::admin::PasswordHash;
use crate::filter::{Glob, Route, Routes};

/// A configuration error, always pointing into the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// A password or other secret: readable by the code that needs it, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// MySQL's `--ssl-mode`, with the same meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SslMode {
    /// Plaintext only.
    Disabled,
    /// TLS when the server offers it, plaintext otherwise; no verification.
    #[default]
    Preferred,
    /// TLS or fail; the certificate is not verified.
    Required,
    /// TLS, and the certificate must chain to `ca`.
    VerifyCa,
    /// As VERIFY_CA, and the certificate must name the host connected to.
    VerifyIdentity,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub ssl_mode: SslMode,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// One MySQL master taking part in the topology.
#[derive(Debug, Clone)]
pub struct Master {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub tls: Tls,
    /// Breaks ties between equal original commit timestamps under
    /// last-writer-wins: the higher priority wins. Defaults to the order in the
    /// file (the first master listed has the highest).
    pub priority: i64,
    /// When the relay acknowledges this master's transactions if it runs
    /// semi-synchronous replication; `None` takes `[source] ack`.
    pub ack: Option<AckMode>,
}

/// When a channel acknowledges a semi-synchronous source's transactions
/// (sources without the semi-sync plugin or component are read as before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// Do not ask for semi-sync: the source sees an asynchronous replica.
    Off,
    /// Once the transaction is read whole, as a native semi-sync replica
    /// acknowledges once it is in its relay log.
    #[default]
    Received,
    /// Once the transaction is committed on the channel's target (or the
    /// target already had it): a commit that returned OK on the source
    /// exists on the targets that acknowledged it.
    Applied,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Off => "off",
            AckMode::Received => "received",
            AckMode::Applied => "applied",
        }
    }
}

/// How apply errors are handled on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictMode {
    /// Stop the channel on an apply error, like MySQL's SQL thread.
    #[default]
    Strict,
    /// `rbr_exec_mode=IDEMPOTENT`: missing rows and duplicate keys are ignored.
    Idempotent,
    /// Detect rows changed on the target since the source's before-image and
    /// keep the version with the later original commit timestamp
    /// (`crate::conflict`).
    LastWriterWins,
}

impl ConflictMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictMode::Strict => "strict",
            ConflictMode::Idempotent => "idempotent",
            ConflictMode::LastWriterWins => "last-writer-wins",
        }
    }
}

/// One direction of replication: every transaction of `source` that `target` lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub name: String,
    /// Indexes into [`Config::masters`].
    pub source: usize,
    pub target: usize,
    pub conflict: ConflictMode,
    /// Which tables and statements the channel relays, and under which names.
    pub routes: Routes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    /// Heartbeat period asked of the source; silence longer than `read_timeout` is a dead link.
    pub heartbeat: Duration,
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Semi-sync acknowledgements, unless a master sets its own.
    pub ack: AckMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplySettings {
    /// Upper bound for one `BINLOG '...'` statement; larger transactions are split.
    pub max_statement_bytes: usize,
    /// A statement on the target that takes longer is treated as a dead link
    /// (the session is dropped, the target rolls back, the channel reconnects).
    /// None: no limit, for long DDL.
    pub statement_timeout: Option<Duration>,
    /// Target sessions per channel applying transactions in parallel.
    pub workers: usize,
    /// Commit on the target in the source's order (gaps in gtid_executed are
    /// harmless, but readers of the target then never see an order the source
    /// did not have).
    pub preserve_commit_order: bool,
    /// Settings of last-writer-wins; used by channels in that mode.
    pub lww: LwwSettings,
}

/// Last-writer-wins: where conflicts are logged and how long row versions are remembered.
#[derive(Debug, Clone, PartialEq)]
pub struct LwwSettings {
    /// JSONL file, one line per conflict.
    pub conflict_log: PathBuf,
    /// Row versions older than this (by original commit time, relative to the
    /// newest seen on the same master) are forgotten: a conflict against such
    /// a row is decided for the incoming version.
    pub version_window: Duration,
    /// At most this many row versions are remembered per master.
    pub version_max_keys: usize,
    /// How long an apply session waits for the version tracker of its target to
    /// catch up before retrying the transaction.
    pub version_wait: Duration,
}

/// An account of the admin SQL endpoint; the password is stored hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub name: String,
    pub password_hash: PasswordHash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub users: Vec<AdminUser>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_secure_transport: bool,
    /// Also answer the SLAVE/MASTER spellings MySQL 9.7 removed.
    pub slave_syntax: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelaySettings {
    /// Host and port the relay reports to sources (COM_REGISTER_SLAVE, `SHOW REPLICAS`).
    pub report_host: String,
    pub report_port: u16,
    /// Base for the per-channel server_id; derived from the host name and ports when unset.
    pub server_id: Option<u32>,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub relay: RelaySettings,
    pub masters: Vec<Master>,
    pub channels: Vec<ChannelConfig>,
    pub source: SourceSettings,
    pub apply: ApplySettings,
    pub admin: Option<AdminConfig>,
    pub metrics_listen: Option<SocketAddr>,
}

// ---- raw, as written in the file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    relay: Option<Spanned<RawRelay>>,
    masters: Spanned<Vec<Spanned<RawMaster>>>,
    #[serde(default)]
    channels: Option<Vec<Spanned<RawChannel>>>,
    /// Default routes of every channel that lists none of its own.
    #[serde(default)]
    routes: Option<Vec<Spanned<RawRoute>>>,
    #[serde(default)]
    source: Option<RawSource>,
    #[serde(default)]
    apply: Option<RawApply>,
    #[serde(default)]
    admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    report_host: Option<String>,
    report_port: Option<u16>,
    server_id: Option<Spanned<u32>>,
    log_format: Option<LogFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaster {
    name: Spanned<String>,
    host: String,
    #[serde(default = "default_mysql_port")]
    port: u16,
    user: String,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    password_env: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
    priority: Option<i64>,
    ack: Option<AckMode>,
}

fn default_mysql_port() -> u16 {
    3306
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ssl_mode: SslMode,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: Option<String>,
    source: Spanned<String>,
    target: Spanned<String>,
    conflict: Option<ConflictMode>,
    ddl: Option<bool>,
    routes: Option<Vec<Spanned<RawRoute>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    schema: Spanned<String>,
    table: Option<Spanned<String>>,
    #[serde(default)]
    exclude: bool,
    target_schema: Option<Spanned<String>>,
    target_table: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    heartbeat_secs: Option<Spanned<f64>>,
    read_timeout_secs: Option<Spanned<f64>>,
    connect_timeout_secs: Option<Spanned<f64>>,
    reconnect_min_secs: Option<Spanned<f64>>,
    reconnect_max_secs: Option<Spanned<f64>>,
    ack: Option<AckMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApply {
    conflict: Option<ConflictMode>,
    ddl: Option<bool>,
    max_statement_bytes: Option<Spanned<usize>>,
    statement_timeout_secs: Option<Spanned<f64>>,
    workers: Option<Spanned<usize>>,
    preserve_commit_order: Option<bool>,
    conflict_log: Option<PathBuf>,
    version_window_secs: Option<Spanned<f64>>,
    version_max_keys: Option<Spanned<usize>>,
    version_wait_secs: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
    #[serde(default)]
    users: Vec<RawAdminUser>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    require_secure_transport: bool,
    slave_syntax: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminUser {
    name: String,
    password_hash: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

/// Maps byte spans to line numbers and builds errors.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(&span),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key written on the line of `span` (`key = value`), for errors that do not name it.
    fn key_at(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        match line.split_once('=') {
            Some((key, _)) if !key.trim().is_empty() => key.trim().to_string(),
            _ => line.trim().to_string(),
        }
    }

    /// A path in the file is relative to the file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parse `text` as if it were the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let src = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().to_string();
            let key = key_of_serde_error(&message).unwrap_or_else(|| src.key_at(&span));
            src.err(span, key, message)
        })?;
        Config::from_raw(&src, raw)
    }

    fn from_raw(src: &Source<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
        let masters_span = raw.masters.span();
        let mut masters = Vec::new();
        let raw_masters = raw.masters.into_inner();
        let count = i64::try_from(raw_masters.len()).unwrap_or(i64::MAX);
        for (i, m) in raw_masters.into_iter().enumerate() {
            // Unset, the priority follows the order in the file, first highest.
            let listed = count - i64::try_from(i).unwrap_or(count);
            masters.push(resolve_master(src, i, listed, m)?);
        }
        if masters.len() < 2 {
            return Err(src.err(
                masters_span,
                "masters",
                "at least two [[masters]] are needed",
            ));
        }
        let mut seen = BTreeSet::new();
        for m in &masters {
            if !seen.insert(m.name.as_str()) {
                return Err(src.err(
                    masters_span.clone(),
                    "masters",
                    format!("two masters are named '{}'", m.name),
                ));
            }
        }

        let default_conflict = raw
            .apply
            .as_ref()
            .and_then(|a| a.conflict)
            .unwrap_or_default();
        let default_routes = Routes {
            rules: resolve_routes(src, "routes", raw.routes.unwrap_or_default())?,
            ddl: raw.apply.as_ref().and_then(|a| a.ddl).unwrap_or(true),
        };
        let channels = match raw.channels {
            None => full_mesh(&masters, default_conflict, &default_routes),
            Some(list) => resolve_channels(src, &masters, list, default_conflict, &default_routes)?,
        };

        let source = resolve_source(src, raw.source)?;
        let statement_timeout = match raw
            .apply
            .as_ref()
            .and_then(|a| a.statement_timeout_secs.as_ref())
        {
            Some(v) => seconds(src, v, "apply.statement_timeout_secs")?,
            None => None,
        };
        let workers = match raw.apply.as_ref().and_then(|a| a.workers.clone()) {
            Some(w) if !(1..=64).contains(w.get_ref()) => {
                return Err(src.err(w.span(), "apply.workers", "must be between 1 and 64"));
            }
            Some(w) => w.into_inner(),
            None => 16,
        };
        let preserve_commit_order = raw
            .apply
            .as_ref()
            .and_then(|a| a.preserve_commit_order)
            // Off by default, unlike replica_preserve_commit_order: from outside
            // the server, ordered commits cannot share a binlog group commit,
            // which halves catch-up (docs/benchmarks.md); and the target is a
            // master whose own writes interleave with the relayed ones, so its
            // readers never had the source's states to begin with.
            .unwrap_or(false);
        let lww = resolve_lww(src, raw.apply.as_ref())?;
        let apply = ApplySettings {
            lww,
            statement_timeout,
            workers,
            preserve_commit_order,
            max_statement_bytes: match raw.apply.and_then(|a| a.max_statement_bytes) {
                Some(v) if *v.get_ref() < 4096 => {
                    return Err(src.err(
                        v.span(),
                        "apply.max_statement_bytes",
                        "must be at least 4096",
                    ));
                }
                Some(v) => v.into_inner(),
                None => 4 << 20,
            },
        };

        let admin = raw.admin.map(|a| resolve_admin(src, a)).transpose()?;
        let metrics_listen = raw
            .metrics
            .map(|m| parse_addr(src, &m.listen, "metrics.listen"))
            .transpose()?;

        let relay_raw = raw.relay.map(Spanned::into_inner);
        let relay = RelaySettings {
            report_host: relay_raw
                .as_ref()
                .and_then(|r| r.report_host.clone())
                .unwrap_or_else(|| "127.0.0.1".to_string()),
            report_port: relay_raw
                .as_ref()
                .and_then(|r| r.report_port)
                .or(admin.as_ref().map(|a| a.listen.port()))
                .unwrap_or(3307),
            server_id: match relay_raw.as_ref().and_then(|r| r.server_id.clone()) {
                Some(id) if *id.get_ref() == 0 => {
                    return Err(src.err(id.span(), "relay.server_id", "must be at least 1"));
                }
                other => other.map(Spanned::into_inner),
            },
            log_format: relay_raw
                .as_ref()
                .and_then(|r| r.log_format)
                .unwrap_or_default(),
        };

        Ok(Config {
            path: src.path.to_path_buf(),
            relay,
            masters,
            channels,
            source,
            apply,
            admin,
            metrics_listen,
        })
    }

    pub fn channel_source(&self, c: &ChannelConfig) -> &Master {
        &self.masters[c.source]
    }

    pub fn channel_target(&self, c: &ChannelConfig) -> &Master {
        &self.masters[c.target]
    }
}

/// serde names the offending key in backticks ("unknown field `x`", "missing field `y`").
/// The key a "missing field `k`" or "unknown field `k`" message names; other
/// messages (an unknown enum variant names the value) leave it to the span.
fn key_of_serde_error(message: &str) -> Option<String> {
    if !(message.starts_with("missing field") || message.starts_with("unknown field")) {
        return None;
    }
    message.split('`').nth(1).map(str::to_string)
}

fn resolve_master(
    src: &Source<'_>,
    i: usize,
    listed_priority: i64,
    m: Spanned<RawMaster>,
) -> Result<Master, ConfigError> {
    let span = m.span();
    let m = m.into_inner();
    let key = |k: &str| format!("masters[{i}].{k}");
    let name = m.name.get_ref().trim().to_string();
    if name.is_empty() || name.contains(['\'', '`', '"']) {
        return Err(src.err(
            m.name.span(),
            key("name"),
            "must be non-empty and contain no quotes",
        ));
    }
    let password = match (m.password, m.password_file, m.password_env) {
        (Some(p), None, None) => Secret::new(p.into_inner()),
        (None, Some(file), None) => {
            let path = src.resolve(file.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                src.err(
                    file.span(),
                    key("password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Secret::new(text.trim_end_matches(['\n', '\r']))
        }
        (None, None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(v) => Secret::new(v),
            Err(_) => {
                return Err(src.err(
                    var.span(),
                    key("password_env"),
                    format!("environment variable {} is not set", var.get_ref()),
                ));
            }
        },
        (None, None, None) => {
            return Err(src.err(
                span,
                key("password"),
                "set one of password, password_file or password_env",
            ));
        }
        _ => {
            return Err(src.err(
                span,
                key("password"),
                "set only one of password, password_file or password_env",
            ));
        }
    };
    let tls = match m.tls {
        None => Tls::default(),
        Some(t) => {
            let span = t.span();
            let t = t.into_inner();
            let tls = Tls {
                ssl_mode: t.ssl_mode,
                ca: t.ca.map(|p| src.resolve(&p)),
                cert: t.cert.map(|p| src.resolve(&p)),
                key: t.key.map(|p| src.resolve(&p)),
            };
            if matches!(tls.ssl_mode, SslMode::VerifyCa | SslMode::VerifyIdentity)
                && tls.ca.is_none()
            {
                return Err(src.err(
                    span,
                    key("tls.ca"),
                    format!("ssl_mode {} needs a CA file", tls.ssl_mode.as_str()),
                ));
            }
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(src.err(
                    span,
                    key("tls.cert"),
                    "a client certificate needs both cert and key",
                ));
            }
            if tls.ssl_mode == SslMode::Disabled && (tls.ca.is_some() || tls.cert.is_some()) {
                return Err(src.err(
                    span,
                    key("tls.ssl_mode"),
                    "DISABLED cannot be combined with ca/cert/key",
                ));
            }
            tls
        }
    };
    Ok(Master {
        name,
        host: m.host,
        port: m.port,
        user: m.user,
        password,
        tls,
        priority: m.priority.unwrap_or(listed_priority),
        ack: m.ack,
    })
}

fn resolve_lww(src: &Source<'_>, raw: Option<&RawApply>) -> Result<LwwSettings, ConfigError> {
    let secs = |v: Option<&Spanned<f64>>, key: &str, default: f64| match v {
        Some(s) => seconds(src, s, key)?
            .ok_or_else(|| src.err(s.span(), key, "must be a positive number of seconds")),
        None => Ok(Duration::from_secs_f64(default)),
    };
    let version_max_keys = match raw.and_then(|a| a.version_max_keys.as_ref()) {
        Some(v) if *v.get_ref() < 1000 => {
            return Err(src.err(v.span(), "apply.version_max_keys", "must be at least 1000"));
        }
        Some(v) => *v.get_ref(),
        None => 1_000_000,
    };
    Ok(LwwSettings {
        conflict_log: src.resolve(
            raw.and_then(|a| a.conflict_log.as_deref())
                .unwrap_or(Path::new("conflicts.jsonl")),
        ),
        version_window: secs(
            raw.and_then(|a| a.version_window_secs.as_ref()),
            "apply.version_window_secs",
            3600.0,
        )?,
        version_max_keys,
        version_wait: secs(
            raw.and_then(|a| a.version_wait_secs.as_ref()),
            "apply.version_wait_secs",
            30.0,
        )?,
    })
}

fn full_mesh(masters: &[Master], conflict: ConflictMode, routes: &Routes) -> Vec<ChannelConfig> {
    let mut out = Vec::new();
    for (s, source) in masters.iter().enumerate() {
        for (t, target) in masters.iter().enumerate() {
            if s != t {
                out.push(ChannelConfig {
                    name: format!("{}->{}", source.name, target.name),
                    source: s,
                    target: t,
                    conflict,
                    routes: routes.clone(),
                });
            }
        }
    }
    out
}

fn resolve_channels(
    src: &Source<'_>,
    masters: &[Master],
    list: Vec<Spanned<RawChannel>>,
    default_conflict: ConflictMode,
    default_routes: &Routes,
) -> Result<Vec<ChannelConfig>, ConfigError> {
    let find = |i: usize, field: &str, name: &Spanned<String>| {
        masters
            .iter()
            .position(|m| m.name == *name.get_ref())
            .ok_or_else(|| {
                let known: Vec<&str> = masters.iter().map(|m| m.name.as_str()).collect();
                src.err(
                    name.span(),
                    format!("channels[{i}].{field}"),
                    format!(
                        "no master named '{}' (masters: {})",
                        name.get_ref(),
                        known.join(", ")
                    ),
                )
            })
    };
    let mut out: Vec<ChannelConfig> = Vec::new();
    for (i, c) in list.into_iter().enumerate() {
        let span = c.span();
        let c = c.into_inner();
        let source = find(i, "source", &c.source)?;
        let target = find(i, "target", &c.target)?;
        if source == target {
            return Err(src.err(
                span,
                format!("channels[{i}].target"),
                "source and target are the same master",
            ));
        }
        let name = c
            .name
            .unwrap_or_else(|| format!("{}->{}", masters[source].name, masters[target].name));
        if out
            .iter()
            .any(|o| o.name == name || (o.source == source && o.target == target))
        {
            return Err(src.err(
                span,
                format!("channels[{i}]"),
                format!("channel '{name}' is listed twice"),
            ));
        }
        let routes = Routes {
            rules: match c.routes {
                Some(list) => resolve_routes(src, &format!("channels[{i}].routes"), list)?,
                None => default_routes.rules.clone(),
            },
            ddl: c.ddl.unwrap_or(default_routes.ddl),
        };
        out.push(ChannelConfig {
            name,
            source,
            target,
            conflict: c.conflict.unwrap_or(default_conflict),
            routes,
        });
    }
    Ok(out)
}

fn resolve_routes(
    src: &Source<'_>,
    prefix: &str,
    list: Vec<Spanned<RawRoute>>,
) -> Result<Vec<Route>, ConfigError> {
    let name = |i: usize, field: &str, v: &Spanned<String>, glob_ok: bool| {
        let text = v.get_ref();
        let bad = text.is_empty()
            || text.len() > 64
            || text.contains('`')
            || (!glob_ok && text.contains(['*', '?']));
        if bad {
            let what = if glob_ok {
                "a name or a pattern with * and ?"
            } else {
                "a name (no * or ?)"
            };
            Err(src.err(
                v.span(),
                format!("{prefix}[{i}].{field}"),
                format!("'{text}' is not {what} of at most 64 characters"),
            ))
        } else {
            Ok(text.clone())
        }
    };
    let mut out = Vec::new();
    for (i, r) in list.into_iter().enumerate() {
        let span = r.span();
        let r = r.into_inner();
        let schema = Glob::new(name(i, "schema", &r.schema, true)?);
        let table = match &r.table {
            Some(t) => Glob::new(name(i, "table", t, true)?),
            None => Glob::new("*"),
        };
        let target_schema = r
            .target_schema
            .as_ref()
            .map(|t| name(i, "target_schema", t, false))
            .transpose()?;
        let target_table = r
            .target_table
            .as_ref()
            .map(|t| name(i, "target_table", t, false))
            .transpose()?;
        if r.exclude && (target_schema.is_some() || target_table.is_some()) {
            return Err(src.err(
                span,
                format!("{prefix}[{i}].exclude"),
                "an exclude rule cannot rename",
            ));
        }
        // Renaming many tables to one would merge them.
        if target_table.is_some() && !table.is_literal() {
            return Err(src.err(
                span,
                format!("{prefix}[{i}].target_table"),
                "renaming a table needs a literal `table`, not a pattern",
            ));
        }
        out.push(Route {
            schema,
            table,
            exclude: r.exclude,
            target_schema,
            target_table,
        });
    }
    Ok(out)
}

/// A number of seconds: None for zero or less (unset); an error for what no
/// Duration holds (infinite, or beyond about 584 billion years).
fn seconds(src: &Source<'_>, v: &Spanned<f64>, key: &str) -> Result<Option<Duration>, ConfigError> {
    let secs = *v.get_ref();
    if secs.is_nan() || secs <= 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| src.err(v.span(), key, "must be a positive number of seconds"))
}

fn resolve_source(src: &Source<'_>, raw: Option<RawSource>) -> Result<SourceSettings, ConfigError> {
    let secs = |v: &Option<Spanned<f64>>, key: &str, d: f64| -> Result<Duration, ConfigError> {
        Ok(match v {
            Some(v) => seconds(src, v, &format!("source.{key}"))?,
            None => None,
        }
        .unwrap_or_else(|| Duration::from_secs_f64(d)))
    };
    let raw = raw.unwrap_or(RawSource {
        heartbeat_secs: None,
        read_timeout_secs: None,
        connect_timeout_secs: None,
        reconnect_min_secs: None,
        reconnect_max_secs: None,
        ack: None,
    });
    let heartbeat = secs(&raw.heartbeat_secs, "heartbeat_secs", 2.0)?;
    Ok(SourceSettings {
        heartbeat,
        read_timeout: secs(
            &raw.read_timeout_secs,
            "read_timeout_secs",
            heartbeat.as_secs_f64() * 2.0 + 1.0,
        )?,
        connect_timeout: secs(&raw.connect_timeout_secs, "connect_timeout_secs", 10.0)?,
        reconnect_min: secs(&raw.reconnect_min_secs, "reconnect_min_secs", 0.5)?,
        reconnect_max: secs(&raw.reconnect_max_secs, "reconnect_max_secs", 30.0)?,
        ack: raw.ack.unwrap_or_default(),
    })
}

fn parse_addr(src: &Source<'_>, s: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
    s.get_ref().parse().map_err(|_| {
        src.err(
            s.span(),
            key,
            format!("'{}' is not an address:port", s.get_ref()),
        )
    })
}

fn resolve_admin(src: &Source<'_>, a: Spanned<RawAdmin>) -> Result<AdminConfig, ConfigError> {
    let span = a.span();
    let a = a.into_inner();
    let listen = parse_addr(src, &a.listen, "admin.listen")?;
    if a.users.is_empty() {
        return Err(src.err(
            span,
            "admin.users",
            "the admin endpoint needs at least one [[admin.users]]",
        ));
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err(src.err(span, "admin.tls_cert", "set both tls_cert and tls_key"));
    }
    if a.require_secure_transport && a.tls_cert.is_none() {
        return Err(src.err(
            span,
            "admin.require_secure_transport",
            "needs tls_cert and tls_key",
        ));
    }
    let mut users = Vec::new();
    for (i, u) in a.users.into_iter().enumerate() {
        let password_hash = u.password_hash.get_ref().parse().map_err(|_| {
            src.err(
                u.password_hash.span(),
                format!("admin.users[{i}].password_hash"),
                "not a password hash; make one with `gtid-relay hash-password`",
            )
        })?;
        users.push(AdminUser {
            name: u.name,
            password_hash,
        });
    }
    Ok(AdminConfig {
        listen,
        users,
        slave_syntax: a.slave_syntax.unwrap_or(true),
        tls_cert: a.tls_cert.map(|p| src.resolve(&p)),
        tls_key: a.tls_key.map(|p| src.resolve(&p)),
        require_secure_transport: a.require_secure_transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[masters]]
name = "m1"
host = "127.0.0.1"
port = 4301
user = "relay"
password = "pw1"

[[masters]]
name = "m2"
host = "127.0.0.1"
port = 4302
user = "relay"
password = "pw2"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/relay.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn last_writer_wins_settings_and_master_priorities() {
        let c = parse(&format!(
            "[apply]\nconflict = \"last-writer-wins\"\nconflict_log = \"c.jsonl\"\n\
             version_window_secs = 60\n{TWO}\npriority = 9\n"
        ))
        .expect("valid");
        assert!(
            c.channels
                .iter()
                .all(|ch| ch.conflict == ConflictMode::LastWriterWins)
        );
        assert_eq!(c.apply.lww.conflict_log, PathBuf::from("/etc/c.jsonl"));
        assert_eq!(c.apply.lww.version_window, Duration::from_secs(60));
        assert_eq!(c.apply.lww.version_max_keys, 1_000_000);
        // m1 by its place in the file (first of two), m2 as configured.
        assert_eq!((c.masters[0].priority, c.masters[1].priority), (2, 9));
        let defaults = parse(TWO).expect("valid");
        assert_eq!(
            defaults.apply.lww.conflict_log,
            PathBuf::from("/etc/conflicts.jsonl")
        );
        assert!(
            error(&format!("[apply]\nversion_window_secs = 0\n{TWO}"))
                .contains("apply.version_window_secs")
        );
        let unknown = error(&format!("[apply]\nconflict = \"newest\"\n{TWO}"));
        assert!(unknown.contains("last-writer-wins"), "{unknown}");
    }

    #[test]
    fn durations_no_duration_holds_are_errors_naming_the_key() {
        for (table, key) in [
            ("source", "heartbeat_secs"),
            ("source", "reconnect_max_secs"),
            ("apply", "statement_timeout_secs"),
            ("apply", "version_window_secs"),
        ] {
            for value in ["1e20", "inf"] {
                let e = error(&format!("[{table}]\n{key} = {value}\n{TWO}"));
                assert!(e.contains(&format!("{table}.{key}")), "{e}");
            }
        }
        // Zero or less still means unset where it did.
        let c = parse(&format!(
            "[source]\nheartbeat_secs = 0\n[apply]\nstatement_timeout_secs = -1\n{TWO}"
        ))
        .expect("valid");
        assert_eq!(c.source.heartbeat, Duration::from_secs(2));
        assert_eq!(c.apply.statement_timeout, None);
    }

    #[test]
    fn semi_sync_acknowledgements_default_to_received_and_masters_may_differ() {
        let c = parse(TWO).unwrap();
        assert_eq!(c.source.ack, AckMode::Received);
        assert_eq!(c.masters[0].ack, None);
        let text = format!(
            "[source]\nack = \"applied\"\n{}",
            TWO.replacen("password = \"pw2\"", "password = \"pw2\"\nack = \"off\"", 1)
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.source.ack, AckMode::Applied);
        assert_eq!(
            (c.masters[0].ack, c.masters[1].ack),
            (None, Some(AckMode::Off))
        );
        let e = error(&format!("[source]\nack = \"committed\"\n{TWO}"));
        assert!(e.contains("/etc/relay.toml") && e.contains("ack"), "{e}");
    }

    #[test]
    fn two_masters_default_to_a_full_mesh() {
        let c = parse(TWO).unwrap();
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["m1->m2", "m2->m1"]);
        assert_eq!(c.channels[0].conflict, ConflictMode::Strict);
        assert_eq!(c.masters[1].port, 4302);
        assert_eq!(c.relay.report_port, 3307);
        assert_eq!(
            (c.apply.workers, c.apply.preserve_commit_order),
            (16, false)
        );
    }

    #[test]
    fn three_masters_mesh_has_six_channels() {
        let text = format!(
            "{TWO}\n[[masters]]\nname = \"m3\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n[apply]\nconflict = \"idempotent\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.channels.len(), 6);
        assert!(
            c.channels
                .iter()
                .all(|c| c.conflict == ConflictMode::Idempotent)
        );
        assert_eq!(c.masters[2].port, 3306);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = TWO.replace("port = 4302", "port = 4302\nprot = 1");
        let e = error(&text);
        assert!(
            e.starts_with("/etc/relay.toml:13: prot: unknown field `prot`"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let text = TWO.replace("user = \"relay\"\npassword = \"pw2\"", "password = \"pw2\"");
        let e = error(&text);
        assert!(e.contains("user: missing field `user`"), "{e}");
        assert!(e.starts_with("/etc/relay.toml:9:"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = error(&TWO.replace("port = 4301", "port = \"x\""));
        assert!(
            e.starts_with("/etc/relay.toml:5: port: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn channel_to_unknown_master_is_rejected() {
        let text = format!("{TWO}\n[[channels]]\nsource = \"m1\"\ntarget = \"m9\"\n");
        let e = error(&text);
        assert_eq!(
            e,
            "/etc/relay.toml:18: channels[0].target: no master named 'm9' (masters: m1, m2)"
        );
    }

    #[test]
    fn explicit_channels_replace_the_mesh() {
        let text = format!(
            "{TWO}\n[[channels]]\nsource = \"m2\"\ntarget = \"m1\"\nconflict = \"idempotent\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.channels.len(), 1);
        assert_eq!((c.channels[0].source, c.channels[0].target), (1, 0));
        assert_eq!(c.channels[0].conflict, ConflictMode::Idempotent);
    }

    #[test]
    fn missing_password_file_is_a_clear_error() {
        let text = TWO.replace("password = \"pw1\"", "password_file = \"secrets/m1.pw\"");
        let e = error(&text);
        assert!(
            e.starts_with(
                "/etc/relay.toml:7: masters[0].password_file: cannot read /etc/secrets/m1.pw:"
            ),
            "{e}"
        );
    }

    #[test]
    fn password_from_file_and_environment() {
        let dir = std::env::temp_dir().join(format!("gtid-relay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let text = TWO
            .replace("password = \"pw1\"", "password_file = \"pw\"")
            .replace("password = \"pw2\"", "password_env = \"PATH\"");
        let c = Config::parse(&dir.join("relay.toml"), &text).unwrap();
        assert_eq!(c.masters[0].password.expose(), "from-file");
        assert_eq!(
            c.masters[1].password.expose(),
            std::env::var("PATH").unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_never_appear_in_debug() {
        let c = parse(TWO).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw1") && !dbg.contains("pw2"), "{dbg}");
    }

    #[test]
    fn verify_ca_needs_a_ca() {
        let text = TWO.replace(
            "password = \"pw1\"",
            "password = \"pw1\"\ntls = { ssl_mode = \"VERIFY_CA\" }",
        );
        let e = error(&text);
        assert!(
            e.contains("masters[0].tls.ca: ssl_mode VERIFY_CA needs a CA file"),
            "{e}"
        );
    }

    #[test]
    fn bad_ssl_mode_is_named() {
        let text = TWO.replace(
            "password = \"pw1\"",
            "password = \"pw1\"\ntls = { ssl_mode = \"VERIFY\" }",
        );
        let e = error(&text);
        assert!(e.contains("unknown variant `VERIFY`"), "{e}");
        assert!(e.starts_with("/etc/relay.toml:8:"), "{e}");
    }

    #[test]
    fn one_master_is_not_a_topology() {
        let one = TWO
            .split("\n[[masters]]")
            .take(2)
            .collect::<Vec<_>>()
            .join("\n[[masters]]");
        assert!(error(&one).contains("at least two [[masters]]"));
    }

    #[test]
    fn routes_default_and_per_channel() {
        let text = format!(
            "[apply]\nddl = false\n\n[[routes]]\nschema = \"app\"\n\n[[routes]]\nschema = \"app\"\ntable = \"secret*\"\nexclude = true\n{TWO}\n\
             [[channels]]\nsource = \"m1\"\ntarget = \"m2\"\n\n\
             [[channels]]\nsource = \"m2\"\ntarget = \"m1\"\nddl = true\n\
             [[channels.routes]]\nschema = \"app\"\ntarget_schema = \"app_copy\"\n"
        );
        let c = parse(&text).unwrap();
        let (a, b) = (&c.channels[0].routes, &c.channels[1].routes);
        assert!(!a.ddl && b.ddl);
        assert_eq!(a.rules.len(), 2);
        assert_eq!(a.table("app", "secret_x"), None);
        assert_eq!(b.rules.len(), 1);
        assert_eq!(b.table("app", "t").unwrap().schema, "app_copy");
        assert!(parse(TWO).unwrap().channels[0].routes.is_identity());
    }

    #[test]
    fn bad_routes_are_named() {
        let e = error(&format!(
            "[[routes]]\nschema = \"app\"\ntable = \"t*\"\ntarget_table = \"x\"\n{TWO}"
        ));
        assert!(
            e.starts_with("/etc/relay.toml:1: routes[0].target_table: renaming a table needs"),
            "{e}"
        );
        let e = error(&format!(
            "[[routes]]\nschema = \"app\"\ntarget_schema = \"a*\"\n{TWO}"
        ));
        assert!(
            e.starts_with("/etc/relay.toml:3: routes[0].target_schema: 'a*' is not a name"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = error("[[masters]\nname = 1");
        assert!(e.starts_with("/etc/relay.toml:1:"), "{e}");
    }
}
