//! `gtid-relay gtid-mode enable|disable`: the MySQL manual's online procedure for
//! changing GTID_MODE on a running topology (masters and their native replicas),
//! step by step, never advancing while a step is incomplete on any server.
//!
//! There is no state file: every step has a condition on the servers' current
//! values (gtid_mode, enforce_gtid_consistency, replicas' Auto_Position), so a
//! run interrupted anywhere resumes by skipping the steps the servers show done.
//! Every change uses SET PERSIST, so a server restarted mid-procedure comes back
//! in the mode it had reached.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};

use crate::conn::{quote_ident, quote_str};

#[derive(Debug, thiserror::Error)]
pub enum GtidModeError {
    #[error("--server: not a mysql://user:password@host:port URL: {0}")]
    Url(String),
    #[error("{server}: cannot connect within {timeout:?}")]
    ConnectTimeout { server: String, timeout: Duration },
    #[error("{server}: {what}: {source}")]
    Query {
        server: String,
        what: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{server}: unexpected {name} value {value:?}")]
    Unexpected {
        server: String,
        name: &'static str,
        value: String,
    },
    #[error(
        "{server}: {count} GTID consistency violation(s) logged under ENFORCE_GTID_CONSISTENCY=WARN, e.g. {example:?}. \
         Change the application's statements (no non-transactional tables, no CREATE TABLE ... SELECT, \
         no temporary tables inside transactions), then run again; enforce_gtid_consistency stays WARN meanwhile"
    )]
    Violations {
        server: String,
        count: u64,
        example: String,
    },
    #[error(
        "timed out after {timeout:?} waiting for {what}; nothing was changed past this step, run again to resume"
    )]
    Timeout { what: String, timeout: Duration },
    #[error(
        "{server}: channel '{channel}' replicates from {source_desc}, which is not among the --server URLs; \
         pass every server of the topology"
    )]
    UnknownSource {
        server: String,
        channel: String,
        source_desc: String,
    },
    #[error(
        "{server}: channel '{channel}' is not applying (IO: {io}, SQL: {sql}); last error: {error}"
    )]
    ReplicaStopped {
        server: String,
        channel: String,
        io: String,
        sql: String,
        error: String,
    },
    #[error("{server}: {name} is {found} after the step that should have made it {wanted}")]
    NotApplied {
        server: String,
        name: &'static str,
        found: String,
        wanted: String,
    },
    #[error("writing progress: {0}")]
    Output(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, GtidModeError>;

/// One server given with `--server`.
#[derive(Clone)]
pub struct Server {
    /// `user@host:port`: what is printed; the password never is.
    pub label: String,
    host: String,
    port: u16,
    opts: Opts,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Server {
    pub fn from_url(url: &str) -> Result<Server> {
        // The error of a URL that does not parse may quote it; never print it.
        let opts = Opts::from_url(url).map_err(|e| {
            GtidModeError::Url(match e {
                mysql_async::UrlError::UnsupportedScheme { scheme } => {
                    format!("unsupported scheme {scheme:?}")
                }
                _ => "cannot parse it".into(),
            })
        })?;
        let host = opts.ip_or_hostname().to_string();
        let port = opts.tcp_port();
        let label = format!("{}@{host}:{port}", opts.user().unwrap_or(""));
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .stmt_cache_size(0)
            .into();
        Ok(Server {
            label,
            host,
            port,
            opts,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Enable,
    Disable,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// How long ENFORCE_GTID_CONSISTENCY=WARN is watched before ON.
    pub observe: Duration,
    /// Bound of every wait.
    pub wait_timeout: Duration,
    /// Stop after this plan step (1-based), as if interrupted.
    pub pause_after_step: Option<usize>,
}

/// GTID_MODE values in the only order the server allows moving through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Off,
    OffPermissive,
    OnPermissive,
    On,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_uppercase().as_str() {
            "OFF" => Some(Mode::Off),
            "OFF_PERMISSIVE" => Some(Mode::OffPermissive),
            "ON_PERMISSIVE" => Some(Mode::OnPermissive),
            "ON" => Some(Mode::On),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "OFF",
            Mode::OffPermissive => "OFF_PERMISSIVE",
            Mode::OnPermissive => "ON_PERMISSIVE",
            Mode::On => "ON",
        }
    }
}

/// One replication channel of a server (a row of SHOW REPLICA STATUS).
#[derive(Debug, Clone)]
struct Channel {
    name: String,
    source_uuid: String,
    source_host: String,
    source_port: u16,
    auto_position: bool,
    io_running: String,
    sql_running: String,
    last_error: String,
}

#[derive(Debug, Clone)]
struct State {
    mode: Mode,
    enforce: String,
    uuid: String,
    channels: Vec<Channel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// WARN, watch the error logs for violations, then ON.
    EnforceOn,
    EnforceOff,
    Mode(Mode),
    /// No anonymous transaction in flight, and every replica has applied its
    /// source's binlog up to the position read afterwards.
    DrainAnonymous,
    /// No GTID owned by a session, and replicas caught up the same way.
    DrainGtids,
    AutoPosition(bool),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::EnforceOn => f.write_str(
                "ENFORCE_GTID_CONSISTENCY=WARN, watch for violations, then ON on every server",
            ),
            Step::EnforceOff => f.write_str("ENFORCE_GTID_CONSISTENCY=OFF on every server"),
            Step::Mode(m) => write!(f, "GTID_MODE={} on every server", m.as_str()),
            Step::DrainAnonymous => f.write_str(
                "wait for ONGOING_ANONYMOUS_TRANSACTION_COUNT=0 everywhere and for every replica to apply its source's binlog",
            ),
            Step::DrainGtids => f.write_str(
                "wait for an empty GTID_OWNED everywhere and for every replica to apply its source's binlog",
            ),
            Step::AutoPosition(true) => f.write_str("replicas: SOURCE_AUTO_POSITION=1"),
            Step::AutoPosition(false) => {
                f.write_str("replicas: SOURCE_AUTO_POSITION=0 at the applier's file/position")
            }
        }
    }
}

fn plan(direction: Direction) -> Vec<Step> {
    match direction {
        Direction::Enable => vec![
            Step::EnforceOn,
            Step::Mode(Mode::OffPermissive),
            Step::Mode(Mode::OnPermissive),
            Step::DrainAnonymous,
            Step::Mode(Mode::On),
            Step::AutoPosition(true),
        ],
        Direction::Disable => vec![
            Step::AutoPosition(false),
            Step::Mode(Mode::OnPermissive),
            Step::Mode(Mode::OffPermissive),
            Step::DrainGtids,
            Step::Mode(Mode::Off),
            Step::EnforceOff,
        ],
    }
}

/// Whether the servers already show `step` done.
fn is_done(step: Step, direction: Direction, states: &[State]) -> bool {
    let all = |f: &dyn Fn(&State) -> bool| states.iter().all(f);
    match step {
        Step::EnforceOn => all(&|s| s.enforce.eq_ignore_ascii_case("ON")),
        Step::EnforceOff => all(&|s| s.enforce.eq_ignore_ascii_case("OFF")),
        Step::Mode(m) => match direction {
            Direction::Enable => all(&|s| s.mode >= m),
            Direction::Disable => all(&|s| s.mode <= m),
        },
        // Once every server is past the wait's mode, there is nothing left to drain.
        Step::DrainAnonymous => all(&|s| s.mode == Mode::On),
        Step::DrainGtids => all(&|s| s.mode == Mode::Off),
        Step::AutoPosition(on) => all(&|s| s.channels.iter().all(|c| c.auto_position == on)),
    }
}

struct Session<'a, W: Write> {
    servers: &'a [Server],
    conns: Vec<Conn>,
    options: &'a Options,
    out: &'a mut W,
}

/// Run the procedure for `direction`, printing progress to `out`.
pub async fn run<W: Write>(
    direction: Direction,
    servers: &[Server],
    options: &Options,
    out: &mut W,
) -> Result<()> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    let mut conns = Vec::new();
    for s in servers {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(s.opts.clone()))
            .await
            .map_err(|_| GtidModeError::ConnectTimeout {
                server: s.label.clone(),
                timeout: CONNECT_TIMEOUT,
            })?
            .map_err(|source| GtidModeError::Query {
                server: s.label.clone(),
                what: "connecting".into(),
                source,
            })?;
        conns.push(conn);
    }
    let mut session = Session {
        servers,
        conns,
        options,
        out,
    };
    session.procedure(direction).await
}

impl<W: Write> Session<'_, W> {
    fn say(&mut self, line: impl fmt::Display) -> Result<()> {
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }

    async fn procedure(&mut self, direction: Direction) -> Result<()> {
        let verb = match direction {
            Direction::Enable => "enable",
            Direction::Disable => "disable",
        };
        let states = self.states().await?;
        self.say(format!(
            "gtid-mode {verb}: {} server(s)",
            self.servers.len()
        ))?;
        for (i, st) in states.iter().enumerate() {
            let roles: Vec<String> = st
                .channels
                .iter()
                .map(|c| {
                    format!(
                        "replica of {} (channel '{}', auto_position={})",
                        self.source_label(c),
                        c.name,
                        u8::from(c.auto_position)
                    )
                })
                .collect();
            self.say(format!(
                "  {}: gtid_mode={}, enforce_gtid_consistency={}{}{}",
                self.servers[i].label,
                st.mode.as_str(),
                st.enforce,
                if roles.is_empty() { "" } else { "; " },
                roles.join("; ")
            ))?;
        }
        let steps = plan(direction);
        let total = steps.len();
        for (k, step) in steps.into_iter().enumerate() {
            let n = k + 1;
            let states = self.states().await?;
            if is_done(step, direction, &states) {
                self.say(format!("step {n}/{total}: {step}: already done"))?;
            } else if self.options.dry_run {
                self.say(format!("step {n}/{total}: {step}: would run"))?;
            } else {
                self.say(format!("step {n}/{total}: {step}"))?;
                let started = Instant::now();
                self.execute(step, direction, &states).await?;
                let after = self.states().await?;
                self.verify(step, direction, &after)?;
                self.say(format!(
                    "step {n}/{total} done in {:.1}s",
                    started.elapsed().as_secs_f64()
                ))?;
            }
            if self.options.pause_after_step == Some(n) && !self.options.dry_run {
                self.say(format!("paused after step {n}; run again to continue"))?;
                return Ok(());
            }
        }
        if self.options.dry_run {
            self.say("dry run: nothing was changed")?;
        } else {
            self.say(format!("gtid-mode {verb}: complete"))?;
        }
        Ok(())
    }

    fn source_label(&self, c: &Channel) -> String {
        match self.source_of(c) {
            Some(j) => self.servers[j].label.clone(),
            None => format!("{}:{} ({})", c.source_host, c.source_port, c.source_uuid),
        }
    }

    /// The index of the server a channel replicates from: by UUID, or by address
    /// when the receiver has not connected yet.
    fn source_of(&self, c: &Channel) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.host == c.source_host && s.port == c.source_port)
    }

    fn source_by_uuid(&self, c: &Channel, states: &[State]) -> Option<usize> {
        if c.source_uuid.is_empty() {
            return self.source_of(c);
        }
        states
            .iter()
            .position(|s| s.uuid.eq_ignore_ascii_case(&c.source_uuid))
            .or_else(|| self.source_of(c))
    }

    fn query_err(
        &self,
        i: usize,
        what: &str,
    ) -> impl FnOnce(mysql_async::Error) -> GtidModeError + use<W> {
        let server = self.servers[i].label.clone();
        let what = what.to_string();
        move |source| GtidModeError::Query {
            server,
            what,
            source,
        }
    }

    async fn exec(&mut self, i: usize, sql: String) -> Result<()> {
        let err = self.query_err(i, &sql);
        self.conns[i].query_drop(&sql).await.map_err(err)
    }

    async fn states(&mut self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        for i in 0..self.conns.len() {
            out.push(self.state(i).await?);
        }
        Ok(out)
    }

    async fn state(&mut self, i: usize) -> Result<State> {
        let err = self.query_err(i, "reading gtid_mode");
        let row: Option<(String, String, String)> = self.conns[i]
            .query_first(
                "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.enforce_gtid_consistency, @@server_uuid",
            )
            .await
            .map_err(err)?;
        let (mode, enforce, uuid) = row.unwrap_or_default();
        let mode = Mode::parse(&mode).ok_or_else(|| GtidModeError::Unexpected {
            server: self.servers[i].label.clone(),
            name: "gtid_mode",
            value: mode,
        })?;
        let channels = self.channels(i).await?;
        Ok(State {
            mode,
            enforce,
            uuid,
            channels,
        })
    }

    async fn channels(&mut self, i: usize) -> Result<Vec<Channel>> {
        let err = self.query_err(i, "SHOW REPLICA STATUS");
        let rows: Vec<Row> = self.conns[i]
            .query("SHOW REPLICA STATUS")
            .await
            .map_err(err)?;
        let text = |r: &Row, col: &str| -> String {
            r.get_opt::<Option<String>, _>(col)
                .and_then(|v| v.ok())
                .flatten()
                .unwrap_or_default()
        };
        Ok(rows
            .iter()
            .map(|r| {
                let io_error = text(r, "Last_IO_Error");
                let sql_error = text(r, "Last_SQL_Error");
                Channel {
                    name: text(r, "Channel_Name"),
                    source_uuid: text(r, "Source_UUID"),
                    source_host: text(r, "Source_Host"),
                    source_port: text(r, "Source_Port").parse().unwrap_or(0),
                    auto_position: text(r, "Auto_Position") == "1",
                    io_running: text(r, "Replica_IO_Running"),
                    sql_running: text(r, "Replica_SQL_Running"),
                    last_error: if sql_error.is_empty() {
                        io_error
                    } else {
                        sql_error
                    },
                }
            })
            .collect())
    }

    fn verify(&self, step: Step, direction: Direction, states: &[State]) -> Result<()> {
        if is_done(step, direction, states) {
            return Ok(());
        }
        for (i, st) in states.iter().enumerate() {
            let server = self.servers[i].label.clone();
            let (name, found, wanted) = match step {
                Step::EnforceOn => ("enforce_gtid_consistency", st.enforce.clone(), "ON"),
                Step::EnforceOff => ("enforce_gtid_consistency", st.enforce.clone(), "OFF"),
                Step::Mode(m) => ("gtid_mode", st.mode.as_str().to_string(), m.as_str()),
                Step::DrainAnonymous | Step::DrainGtids => continue,
                Step::AutoPosition(on) => {
                    match st.channels.iter().find(|c| c.auto_position != on) {
                        Some(c) => (
                            "Auto_Position",
                            format!("{} on channel '{}'", u8::from(c.auto_position), c.name),
                            if on { "1" } else { "0" },
                        ),
                        None => continue,
                    }
                }
            };
            if !found.eq_ignore_ascii_case(wanted) {
                return Err(GtidModeError::NotApplied {
                    server,
                    name,
                    found,
                    wanted: wanted.into(),
                });
            }
        }
        Ok(())
    }

    async fn execute(&mut self, step: Step, direction: Direction, states: &[State]) -> Result<()> {
        match step {
            Step::EnforceOn => self.enforce_on(states).await,
            Step::EnforceOff => {
                for (i, st) in states.iter().enumerate() {
                    if !st.enforce.eq_ignore_ascii_case("OFF") {
                        self.set_persist(i, "enforce_gtid_consistency", "OFF")
                            .await?;
                    }
                }
                Ok(())
            }
            Step::Mode(m) => {
                for (i, st) in states.iter().enumerate() {
                    let behind = match direction {
                        Direction::Enable => st.mode < m,
                        Direction::Disable => st.mode > m,
                    };
                    if behind {
                        self.set_persist(i, "gtid_mode", m.as_str()).await?;
                    }
                }
                Ok(())
            }
            Step::DrainAnonymous => {
                self.wait_all(
                    "ONGOING_ANONYMOUS_TRANSACTION_COUNT=0",
                    "SELECT VARIABLE_VALUE = '0' FROM performance_schema.global_status \
                     WHERE VARIABLE_NAME = 'ONGOING_ANONYMOUS_TRANSACTION_COUNT'",
                )
                .await?;
                self.replicas_catch_up(states).await
            }
            Step::DrainGtids => {
                self.wait_all("an empty GTID_OWNED", "SELECT @@GLOBAL.gtid_owned = ''")
                    .await?;
                self.replicas_catch_up(states).await
            }
            Step::AutoPosition(on) => self.auto_position(on, states).await,
        }
    }

    async fn set_persist(&mut self, i: usize, name: &str, value: &str) -> Result<()> {
        let sql = format!("SET PERSIST {name} = {}", quote_str(value));
        self.say(format!("  {}: {sql}", self.servers[i].label))?;
        self.exec(i, sql).await
    }

    async fn enforce_on(&mut self, states: &[State]) -> Result<()> {
        // Server time when the watch begins, in each server's own clock and zone.
        let mut since = Vec::new();
        for (i, st) in states.iter().enumerate() {
            let err = self.query_err(i, "reading the server time");
            let now: Option<String> = self.conns[i]
                .query_first("SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.%f')")
                .await
                .map_err(err)?;
            since.push(now.unwrap_or_default());
            if st.enforce.eq_ignore_ascii_case("OFF") {
                self.set_persist(i, "enforce_gtid_consistency", "WARN")
                    .await?;
            }
        }
        if !self.options.observe.is_zero() {
            self.say(format!(
                "  watching the error logs for GTID consistency violations for {:.0}s",
                self.options.observe.as_secs_f64()
            ))?;
            tokio::time::sleep(self.options.observe).await;
        }
        for (i, since) in since.iter().enumerate() {
            self.check_violations(i, since).await?;
        }
        for (i, st) in states.iter().enumerate() {
            if !st.enforce.eq_ignore_ascii_case("ON") {
                self.set_persist(i, "enforce_gtid_consistency", "ON")
                    .await?;
            }
        }
        Ok(())
    }

    async fn check_violations(&mut self, i: usize, since: &str) -> Result<()> {
        let err = self.query_err(i, "reading @@performance_schema");
        let ps: Option<String> = self.conns[i]
            .query_first("SELECT @@GLOBAL.performance_schema")
            .await
            .map_err(err)?;
        if !matches!(ps.as_deref(), Some("1" | "ON")) {
            self.say(format!(
                "  {}: performance_schema is OFF, so its error log cannot be read here; \
                 search the server's error log file for 'GTID consistency' yourself",
                self.servers[i].label
            ))?;
            return Ok(());
        }
        let err = self.query_err(i, "reading performance_schema.error_log");
        let row: Option<(u64, Option<String>)> = self.conns[i]
            .query_first(format!(
                "SELECT COUNT(*), MIN(DATA) FROM performance_schema.error_log \
                 WHERE LOGGED >= {} AND DATA LIKE '%GTID consistency%'",
                quote_str(since)
            ))
            .await
            .map_err(err)?;
        let (count, example) = row.unwrap_or((0, None));
        if count > 0 {
            return Err(GtidModeError::Violations {
                server: self.servers[i].label.clone(),
                count,
                example: example.unwrap_or_default(),
            });
        }
        self.say(format!(
            "  {}: no GTID consistency violation logged",
            self.servers[i].label
        ))
    }

    /// Poll `condition` (a query returning one true/false value) on every server
    /// until it holds everywhere at once, within the wait timeout.
    async fn wait_all(&mut self, what: &str, condition: &str) -> Result<()> {
        let timeout = self.options.wait_timeout;
        let deadline = Instant::now() + timeout;
        self.say(format!("  waiting for {what} on every server"))?;
        loop {
            let mut pending = Vec::new();
            for i in 0..self.conns.len() {
                let err = self.query_err(i, what);
                let ok: Option<i64> = self.conns[i].query_first(condition).await.map_err(err)?;
                if ok != Some(1) {
                    pending.push(self.servers[i].label.clone());
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(GtidModeError::Timeout {
                    what: format!("{what} on {}", pending.join(", ")),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Read each source's binlog position now, then wait until every replica
    /// channel has applied up to it: everything logged before this point (in
    /// particular every anonymous or GTID transaction of the old mode) is applied.
    async fn replicas_catch_up(&mut self, states: &[State]) -> Result<()> {
        let mut positions: Vec<Option<(String, u64)>> = vec![None; self.conns.len()];
        for (r, st) in states.iter().enumerate() {
            for c in &st.channels {
                let Some(s) = self.source_by_uuid(c, states) else {
                    return Err(GtidModeError::UnknownSource {
                        server: self.servers[r].label.clone(),
                        channel: c.name.clone(),
                        source_desc: format!(
                            "{}:{} ({})",
                            c.source_host, c.source_port, c.source_uuid
                        ),
                    });
                };
                if positions[s].is_none() {
                    positions[s] = Some(self.binlog_position(s).await?);
                }
            }
        }
        let timeout = self.options.wait_timeout;
        let deadline = Instant::now() + timeout;
        for (r, st) in states.iter().enumerate() {
            for c in &st.channels {
                let Some((file, pos)) = self
                    .source_by_uuid(c, states)
                    .and_then(|s| positions[s].clone())
                else {
                    continue;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                self.say(format!(
                    "  {}: waiting for channel '{}' to apply {file}:{pos}",
                    self.servers[r].label, c.name
                ))?;
                let sql = format!(
                    "SELECT SOURCE_POS_WAIT({}, {pos}, {}, {})",
                    quote_str(&file),
                    left.as_secs().max(1),
                    quote_str(&c.name)
                );
                let err = self.query_err(r, &sql);
                let waited: Option<Option<i64>> =
                    self.conns[r].query_first(sql).await.map_err(err)?;
                match waited.flatten() {
                    Some(n) if n >= 0 => {}
                    Some(_) => {
                        return Err(GtidModeError::Timeout {
                            what: format!(
                                "{} channel '{}' to apply {file}:{pos}",
                                self.servers[r].label, c.name
                            ),
                            timeout,
                        });
                    }
                    None => {
                        let now = self.channels(r).await?;
                        let cur = now.iter().find(|x| x.name == c.name).unwrap_or(c);
                        return Err(GtidModeError::ReplicaStopped {
                            server: self.servers[r].label.clone(),
                            channel: c.name.clone(),
                            io: cur.io_running.clone(),
                            sql: cur.sql_running.clone(),
                            error: cur.last_error.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn binlog_position(&mut self, i: usize) -> Result<(String, u64)> {
        let err = self.query_err(i, "SHOW BINARY LOG STATUS");
        // 8.4+ spelling first; 8.0 only knows SHOW MASTER STATUS.
        let row: Option<Row> = match self.conns[i].query_first("SHOW BINARY LOG STATUS").await {
            Ok(row) => row,
            Err(_) => self.conns[i]
                .query_first("SHOW MASTER STATUS")
                .await
                .map_err(err)?,
        };
        let file = row
            .as_ref()
            .and_then(|r| r.get_opt::<String, _>("File"))
            .and_then(|v| v.ok());
        let pos = row
            .as_ref()
            .and_then(|r| r.get_opt::<u64, _>("Position"))
            .and_then(|v| v.ok());
        match (file, pos) {
            (Some(f), Some(p)) => Ok((f, p)),
            _ => Err(GtidModeError::Unexpected {
                server: self.servers[i].label.clone(),
                name: "binary log status",
                value: "no binary log (is log_bin on?)".into(),
            }),
        }
    }

    async fn auto_position(&mut self, on: bool, states: &[State]) -> Result<()> {
        for (r, st) in states.iter().enumerate() {
            for c in st.channels.iter().filter(|c| c.auto_position != on) {
                let ch = quote_str(&c.name);
                self.say(format!(
                    "  {}: STOP REPLICA FOR CHANNEL {ch}",
                    self.servers[r].label
                ))?;
                self.exec(r, format!("STOP REPLICA FOR CHANNEL {ch}"))
                    .await?;
                let change = if on {
                    format!(
                        "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION = 1 FOR CHANNEL {ch}"
                    )
                } else {
                    // Continue from exactly what the applier executed, as the manual says.
                    let (file, pos) = self.applier_position(r, &c.name).await?;
                    format!(
                        "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION = 0, SOURCE_LOG_FILE = {}, \
                         SOURCE_LOG_POS = {pos} FOR CHANNEL {ch}",
                        quote_str(&file)
                    )
                };
                self.say(format!("  {}: {change}", self.servers[r].label))?;
                self.exec(r, change).await?;
                self.say(format!(
                    "  {}: START REPLICA FOR CHANNEL {ch}",
                    self.servers[r].label
                ))?;
                self.exec(r, format!("START REPLICA FOR CHANNEL {ch}"))
                    .await?;
                self.wait_running(r, &c.name).await?;
            }
        }
        Ok(())
    }

    async fn applier_position(&mut self, r: usize, channel: &str) -> Result<(String, u64)> {
        let err = self.query_err(r, "SHOW REPLICA STATUS");
        let rows: Vec<Row> = self.conns[r]
            .query(format!(
                "SHOW REPLICA STATUS FOR CHANNEL {}",
                quote_str(channel)
            ))
            .await
            .map_err(err)?;
        let row = rows.first();
        let file = row
            .and_then(|r| r.get_opt::<String, _>("Relay_Source_Log_File"))
            .and_then(|v| v.ok());
        let pos = row
            .and_then(|r| r.get_opt::<u64, _>("Exec_Source_Log_Pos"))
            .and_then(|v| v.ok());
        match (file, pos) {
            (Some(f), Some(p)) if !f.is_empty() => Ok((f, p)),
            _ => Err(GtidModeError::Unexpected {
                server: self.servers[r].label.clone(),
                name: "Relay_Source_Log_File/Exec_Source_Log_Pos",
                value: format!("none for channel {}", quote_ident(channel)),
            }),
        }
    }

    /// After START REPLICA, both threads must come up (the receiver may take a
    /// moment to connect); an error in either is reported, not waited out.
    async fn wait_running(&mut self, r: usize, channel: &str) -> Result<()> {
        let deadline = Instant::now() + self.options.wait_timeout.min(Duration::from_secs(60));
        loop {
            let chans = self.channels(r).await?;
            let Some(c) = chans.into_iter().find(|c| c.name == channel) else {
                return Ok(());
            };
            if c.io_running == "Yes" && c.sql_running == "Yes" {
                return Ok(());
            }
            let failed =
                c.sql_running == "No" || (c.io_running == "No" && !c.last_error.is_empty());
            if failed || Instant::now() >= deadline {
                return Err(GtidModeError::ReplicaStopped {
                    server: self.servers[r].label.clone(),
                    channel: c.name,
                    io: c.io_running,
                    sql: c.sql_running,
                    error: c.last_error,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(mode: Mode, enforce: &str, auto: &[bool]) -> State {
        State {
            mode,
            enforce: enforce.into(),
            uuid: String::new(),
            channels: auto
                .iter()
                .map(|&a| Channel {
                    name: String::new(),
                    source_uuid: String::new(),
                    source_host: String::new(),
                    source_port: 0,
                    auto_position: a,
                    io_running: "Yes".into(),
                    sql_running: "Yes".into(),
                    last_error: String::new(),
                })
                .collect(),
        }
    }

    fn pending(direction: Direction, states: &[State]) -> Vec<Step> {
        plan(direction)
            .into_iter()
            .filter(|s| !is_done(*s, direction, states))
            .collect()
    }

    #[test]
    fn an_interrupted_enable_resumes_where_the_servers_are() {
        let states = [
            state(Mode::OnPermissive, "ON", &[]),
            state(Mode::OffPermissive, "ON", &[false]),
        ];
        assert_eq!(
            pending(Direction::Enable, &states),
            [
                Step::Mode(Mode::OnPermissive),
                Step::DrainAnonymous,
                Step::Mode(Mode::On),
                Step::AutoPosition(true)
            ]
        );
        let done = [state(Mode::On, "ON", &[]), state(Mode::On, "ON", &[true])];
        assert!(pending(Direction::Enable, &done).is_empty());
    }

    #[test]
    fn half_switched_to_on_still_drains_first() {
        let states = [
            state(Mode::On, "ON", &[]),
            state(Mode::OnPermissive, "ON", &[false]),
        ];
        assert_eq!(pending(Direction::Enable, &states)[0], Step::DrainAnonymous);
    }

    #[test]
    fn disable_starts_with_the_replicas() {
        let states = [state(Mode::On, "ON", &[]), state(Mode::On, "ON", &[true])];
        assert_eq!(
            pending(Direction::Disable, &states),
            plan(Direction::Disable)
        );
        let warn_only = [state(Mode::Off, "WARN", &[false])];
        assert_eq!(pending(Direction::Disable, &warn_only), [Step::EnforceOff]);
    }

    #[test]
    fn urls_never_show_the_password() {
        let s = Server::from_url("mysql://admin:s3cret@127.0.0.1:4301").unwrap();
        assert_eq!(s.label, "admin@127.0.0.1:4301");
        assert!(!format!("{s:?}").contains("s3cret"));
        let e = Server::from_url("http://admin:s3cret@h:1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
