//! Channels and their supervision.
//!
//! A channel relays S -> T. Each run of it is a *session*: the applier connects
//! to T and reads its `gtid_executed` (the only position there is), the reader
//! dumps from S what T lacks, and a bounded queue between them gives
//! backpressure to the socket. Any error, STOP REPLICA or shutdown ends the
//! session; the next one starts again from T's `gtid_executed`, so nothing
//! queued but unapplied is lost and nothing applied is repeated.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::apply::claims::Claims;
use crate::apply::scheduler::{Progress, Scheduler};
use crate::apply::{Applier, ApplyError, Completed, TargetIdentity};
use crate::config::{
    AckMode, ApplySettings, ChannelConfig, Config, ConflictMode, Master, SourceSettings, SslMode,
};
use crate::conflict::Lww;
use crate::conflict::resolve::Resolver;
use crate::conflict::tracker::Tracker;
use crate::conn;
use crate::filter::{self, Verdict};
use crate::gtid::{Gtid, GtidSet, Uuid};
use crate::identity;
use crate::source::assemble::{Assembler, Step, TxnHeader};
use crate::source::rewrite::Router;
use crate::source::semisync::{AckQueue, spawn_acknowledger};
use crate::source::{self, Registration, SourceError};
use crate::status::{
    ChannelMetrics, ChannelStatus, ControlError, ErrorThread, IoRunning, LastError, MetricsState,
    Replicas, SourceTls, Threads,
};

/// Steps buffered between reader and applier; rows events are ≤ 8 KiB by
/// default, so this bounds the queue to a few MiB.
const QUEUE_STEPS: usize = 512;
/// How long a stopping reader may take to reach a transaction boundary, and an
/// applier to drain the queue, before they are cut off (T rolls back).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a channel reads its target's gtid_executed.
const TARGET_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desired {
    io: bool,
    sql: bool,
}

/// Mutable state behind `SHOW REPLICA STATUS`.
#[derive(Debug)]
struct State {
    io: IoRunning,
    io_state: &'static str,
    sql_running: bool,
    sql_state: &'static str,
    source_uuid: Option<Uuid>,
    source_server_id: Option<u32>,
    target_uuid: Option<Uuid>,
    last_io_error: Option<LastError>,
    last_sql_error: Option<LastError>,
    retrieved: GtidSet,
    /// Each transaction being applied, by dispatch index.
    applying: BTreeMap<u64, Applying>,
    log_file: String,
    log_pos: u64,
    retry_count: u64,
    transactions_received: u64,
    transactions_applied: u64,
    skipped_loop: u64,
    skipped_applied: u64,
    events_received: u64,
    bytes_received: u64,
    reconnects: u64,
    last_applied_original_commit_us: Option<u64>,
    last_applied_gtid: Option<String>,
    last_applied_at: Option<SystemTime>,
    metrics: MetricsState<Step>,
}

impl Default for State {
    fn default() -> Self {
        State {
            io: IoRunning::No,
            io_state: "",
            sql_running: false,
            sql_state: "",
            source_uuid: None,
            source_server_id: None,
            target_uuid: None,
            last_io_error: None,
            last_sql_error: None,
            retrieved: GtidSet::new(),
            applying: BTreeMap::new(),
            log_file: String::new(),
            log_pos: 0,
            retry_count: 0,
            transactions_received: 0,
            transactions_applied: 0,
            skipped_loop: 0,
            skipped_applied: 0,
            events_received: 0,
            bytes_received: 0,
            reconnects: 0,
            last_applied_original_commit_us: None,
            last_applied_gtid: None,
            last_applied_at: None,
            metrics: MetricsState::default(),
        }
    }
}

/// A transaction being applied.
#[derive(Debug)]
struct Applying {
    gtid: Gtid,
    original_commit_us: u64,
    began: Instant,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn last_error(errno: u32, message: String) -> Option<LastError> {
    Some(LastError {
        errno,
        message,
        at: SystemTime::now(),
    })
}

pub struct Channel {
    config: ChannelConfig,
    source: Master,
    target: Master,
    registration: Registration,
    source_settings: SourceSettings,
    apply_settings: ApplySettings,
    /// T's executed set as known to every channel into T (a mesh delivers some
    /// transactions by two paths; the first to commit wins, the rest skip).
    target_executed: Arc<Mutex<GtidSet>>,
    /// S's executed set, shared the same way: every transaction this channel
    /// reads from S's binlog is committed on S, which the channels into S and
    /// their Executed_Gtid_Set learn at once rather than at the next refresh.
    source_executed: Arc<Mutex<GtidSet>>,
    /// Set when other channels deliver to the same target: they take turns on a GTID.
    claims: Option<Arc<Claims>>,
    /// Shared last-writer-wins state, when this channel resolves conflicts so.
    lww: Option<Arc<Lww>>,
    state: Mutex<State>,
    desired: watch::Sender<Desired>,
    /// The current dump's semi-sync acknowledgements, when the source asks for them.
    acks: Mutex<Option<AckQueue>>,
}

/// How a session ended.
enum SessionEnd {
    /// Stopped on request, or a fatal error already cleared the desired state.
    Stopped,
    /// A transient failure: try again after a backoff.
    Retry,
}

impl Channel {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acks(&self) -> MutexGuard<'_, Option<AckQueue>> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn executed(&self) -> MutexGuard<'_, GtidSet> {
        self.target_executed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Supervise sessions until `shutdown` turns true.
    async fn supervise(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut desired_rx = self.desired.subscribe();
        let mut backoff = self.source_settings.reconnect_min;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let desired = *desired_rx.borrow_and_update();
            if !desired.io && !desired.sql {
                {
                    let mut st = self.state();
                    st.io = IoRunning::No;
                    st.io_state = "";
                    st.sql_running = false;
                    st.sql_state = "";
                }
                tokio::select! {
                    _ = desired_rx.changed() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let started = tokio::time::Instant::now();
            match self
                .clone()
                .session(desired, &mut desired_rx, &mut shutdown)
                .await
            {
                SessionEnd::Stopped => backoff = self.source_settings.reconnect_min,
                SessionEnd::Retry => {
                    // A session that ran for a while earned a fresh backoff.
                    if started.elapsed() > self.source_settings.reconnect_max {
                        backoff = self.source_settings.reconnect_min;
                    }
                    {
                        let mut st = self.state();
                        st.retry_count += 1;
                        st.reconnects += 1;
                        if desired.io {
                            st.io = IoRunning::Connecting;
                            st.io_state = "Waiting to reconnect after a failed source event read";
                        }
                    }
                    debug!(channel = %self.name(), ?backoff, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = desired_rx.changed() => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.source_settings.reconnect_max);
                }
            }
        }
        let mut st = self.state();
        st.io = IoRunning::No;
        st.sql_running = false;
    }

    /// One session: connect T, start reader and/or applier, run until something ends it.
    async fn session(
        self: Arc<Self>,
        desired: Desired,
        desired_rx: &mut watch::Receiver<Desired>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        if desired.io {
            let mut st = self.state();
            st.io = IoRunning::Connecting;
            st.io_state = "Connecting to source";
        }
        let (appliers, target) = match self.connect_appliers().await {
            Ok(x) => x,
            Err(e) => return self.apply_failed(e),
        };
        self.executed().union_with(&target.executed);
        self.state().target_uuid = Some(target.uuid);

        let refresher = tokio::spawn(self.clone().follow_target());
        let (tx, rx) = mpsc::channel::<Step>(QUEUE_STEPS);
        self.state().metrics.queue = Some(tx.downgrade());
        let (stop_tx, stop_rx) = watch::channel(false);
        let span = info_span!("channel", channel = %self.name());
        let mut reader: Option<JoinHandle<Result<(), SourceError>>> = if desired.io {
            Some(tokio::spawn(
                self.clone()
                    .read(target.uuid, tx, stop_rx)
                    .instrument(span.clone()),
            ))
        } else {
            drop(tx);
            None
        };
        let mut watcher: Option<JoinHandle<Result<(), SourceError>>> = desired
            .io
            .then(|| tokio::spawn(self.clone().watch_source()));
        // With the applier stopped the queue stays open and fills up, so the
        // reader blocks on it: backpressure instead of unbounded buffering.
        let mut parked_rx = None;
        let mut applier_task: Option<JoinHandle<Result<(), ApplyError>>> = if desired.sql {
            Some(tokio::spawn(
                self.clone().apply(appliers, rx).instrument(span),
            ))
        } else {
            parked_rx = Some(rx);
            for applier in appliers {
                applier.close().await;
            }
            None
        };

        let mut end = SessionEnd::Stopped;
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            if reader.is_none() && applier_task.is_none() {
                break;
            }
            if reader.is_none()
                && let Some(w) = watcher.take()
            {
                w.abort();
            }
            let deadline = stopping.map(|t| t + STOP_GRACE);
            tokio::select! {
                r = join(&mut reader) => {
                    reader = None;
                    if let Err(e) = r {
                        end = end.worse(self.read_failed(e));
                    }
                    if parked_rx.is_some() {
                        break;
                    }
                }
                w = join(&mut watcher), if stopping.is_none() => {
                    watcher = None;
                    if let Err(e) = w {
                        end = end.worse(self.read_failed(e));
                        abort(&mut reader).await;
                        let _ = stop_tx.send(true);
                        stopping = Some(tokio::time::Instant::now());
                    }
                }
                a = join(&mut applier_task) => {
                    applier_task = None;
                    if let Err(e) = a {
                        end = end.worse(self.apply_failed(e));
                    }
                    // Nothing consumes the queue any more: the reader must go.
                    abort(&mut reader).await;
                }
                _ = desired_rx.changed(), if stopping.is_none() => {
                    let _ = stop_tx.send(true);
                    stopping = Some(tokio::time::Instant::now());
                }
                _ = shutdown.changed(), if stopping.is_none() => {
                    let _ = stop_tx.send(true);
                    stopping = Some(tokio::time::Instant::now());
                }
                _ = sleep_until(deadline) => {
                    warn!(channel = %self.name(), "stop grace period over; abandoning the transaction in progress");
                    for task in [reader.take().map(|t| t.abort_handle()), applier_task.take().map(|t| t.abort_handle())]
                        .into_iter()
                        .flatten()
                    {
                        task.abort();
                    }
                }
            }
        }
        drop(parked_rx);
        refresher.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        {
            let mut st = self.state();
            st.applying.clear();
            if st.io != IoRunning::Connecting || !desired.io {
                st.io = IoRunning::No;
            }
            st.sql_running = false;
        }
        end
    }

    fn read_failed(&self, e: SourceError) -> SessionEnd {
        let fatal = e.is_fatal();
        let message = e.to_string();
        {
            let mut st = self.state();
            st.last_io_error = last_error(e.errno(), message.clone());
            st.metrics.exported.record_error(ErrorThread::Io, e.errno());
            st.io = if fatal {
                IoRunning::No
            } else {
                IoRunning::Connecting
            };
        }
        if fatal {
            error!(channel = %self.name(), errno = e.errno(), "{message}; the channel's IO thread stops");
            self.desired.send_modify(|d| d.io = false);
            SessionEnd::Stopped
        } else {
            warn!(channel = %self.name(), errno = e.errno(), "{message}");
            SessionEnd::Retry
        }
    }

    fn apply_failed(&self, e: ApplyError) -> SessionEnd {
        let message = e.to_string();
        let transient = e.is_transient();
        {
            let mut st = self.state();
            st.last_sql_error = last_error(e.errno(), message.clone());
            st.metrics
                .exported
                .record_error(ErrorThread::Sql, e.errno());
        }
        if transient {
            warn!(channel = %self.name(), errno = e.errno(), "{message}");
            SessionEnd::Retry
        } else {
            error!(channel = %self.name(), errno = e.errno(), "{message}; the channel's SQL thread stops");
            self.desired.send_modify(|d| d.sql = false);
            SessionEnd::Stopped
        }
    }

    /// The IO half: dump from S, assemble, filter, queue.
    async fn read(
        self: Arc<Self>,
        target_uuid: Uuid,
        tx: mpsc::Sender<Step>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), SourceError> {
        let position = self.executed().clone();
        let ack_mode = self.source.ack.unwrap_or(self.source_settings.ack);
        let opened = source::open(
            &self.source,
            &self.target.name,
            &position,
            &self.registration,
            ack_mode,
            self.source_settings.connect_timeout,
            self.source_settings.read_timeout,
        )
        .await;
        let (identity, mut binlog) = opened?;
        // Semi-sync: acknowledgements go out from a task of their own, so that
        // commits on the target release the source's waiting sessions at once.
        let mut acknowledger = binlog.take_ack_writer().map(|writer| {
            let (queue, positions) = AckQueue::new();
            *self.acks() = Some(queue);
            info!(ack = ack_mode.as_str(), "the source runs semi-synchronous replication: acknowledging its transactions once {}",
                if ack_mode == AckMode::Applied { "committed on the target" } else { "received" });
            spawn_acknowledger(self.name().to_string(), writer, positions)
        });
        let ack_applied = acknowledger.is_some() && ack_mode == AckMode::Applied;
        {
            let mut st = self.state();
            st.io = IoRunning::Yes;
            st.io_state = "Waiting for source to send event";
            st.source_uuid = Some(identity.uuid);
            st.source_server_id = Some(identity.server_id);
            st.last_io_error = None;
            st.retry_count = 0;
        }
        info!(source_uuid = %identity.uuid, from = %position, "streaming from {}", self.source.name);
        let mut assembler = Assembler::default();
        let mut router = Router::default();
        let routes = &self.config.routes;
        let mut skipping = false;
        // The transaction in progress in the stream.
        let mut current: Option<Gtid> = None;
        let result = loop {
            let event = tokio::select! {
                biased;
                _ = stop.changed(), if !assembler.in_transaction() => break Ok(()),
                e = binlog.next() => match e {
                    Ok(e) => e,
                    Err(e) => break Err(e),
                },
            };
            // The source waits at the end of `current`: registered before its
            // last step is queued, so that its commit cannot come first.
            if let Some(at) = binlog.take_ack_request()
                && let Some(queue) = self.acks().as_mut()
            {
                queue.requested(current.as_ref().filter(|_| !skipping), at);
            }
            {
                let mut st = self.state();
                st.events_received += 1;
                st.bytes_received += u64::from(event.header().event_size());
                st.log_pos = binlog.log_pos;
                if st.log_file != binlog.log_file {
                    st.log_file.clone_from(&binlog.log_file);
                }
            }
            let format = event.format().clone();
            let step = match assembler.feed(event) {
                Ok(Some(step)) => step,
                Ok(None) => continue,
                Err(e) => {
                    break Err(SourceError::Stream {
                        code: 0,
                        message: format!("source {}: {e}", self.source.name),
                    });
                }
            };
            if let Step::Begin(header) = &step {
                self.source_executed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(&header.gtid);
                let verdict = filter::decide(&header.gtid, &target_uuid, &self.executed());
                let mut st = self.state();
                st.retrieved.insert(&header.gtid);
                st.transactions_received += 1;
                match verdict {
                    Verdict::Apply => skipping = false,
                    Verdict::SkipLoop => {
                        st.skipped_loop += 1;
                        skipping = true;
                    }
                    Verdict::SkipApplied => {
                        st.skipped_applied += 1;
                        skipping = true;
                    }
                }
                if skipping {
                    debug!(gtid = %header.gtid, ?verdict, "skipped");
                } else if ack_applied && let Some(queue) = self.acks().as_mut() {
                    queue.started(&header.gtid);
                }
                current = Some(header.gtid.clone());
            }
            if skipping && !matches!(step, Step::FormatDescription(_)) {
                continue;
            }
            let steps = if routes.is_identity() {
                vec![step]
            } else {
                match router.route(routes, &format, step) {
                    Ok(steps) => steps,
                    Err(e) => {
                        break Err(SourceError::Stream {
                            code: 0,
                            message: format!("source {}: {e}", self.source.name),
                        });
                    }
                }
            };
            // Blocks while the queue is full; a gone applier ends the session anyway.
            let mut gone = false;
            for step in steps {
                if tx.send(step).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if gone {
                break Ok(());
            }
        };
        *self.acks() = None;
        abort(&mut acknowledger).await;
        binlog.close().await;
        result
    }

    /// The SQL half: apply queued steps on T.
    /// Keep the target's executed set current with what it commits by itself
    /// (local writes, other channels, other relays): Executed_Gtid_Set means the
    /// target's gtid_executed, and the filter skips what the target already has.
    /// Errors end the task quietly; the appliers report a dead target.
    async fn follow_target(self: Arc<Self>) {
        let Ok(mut conn) = conn::connect(&self.target, self.source_settings.connect_timeout).await
        else {
            return;
        };
        loop {
            tokio::time::sleep(TARGET_REFRESH).await;
            let executed: Option<String> =
                match conn.query_first("SELECT @@GLOBAL.gtid_executed").await {
                    Ok(v) => v,
                    Err(_) => return,
                };
            if let Some(set) = executed.and_then(|text| GtidSet::parse(&text).ok()) {
                self.executed().union_with(&set);
            }
        }
    }

    /// The source's own history must not shrink under a running channel:
    /// after RESET BINARY LOGS AND GTIDS (or a restore from an older backup)
    /// a source numbers new transactions with GTIDs the target already holds,
    /// which would be skipped in silence, and its dump thread may wait for
    /// ever at a position its new binlog never reaches. So the check a
    /// connect makes (`source::can_serve`) is made again once a second. Ends
    /// quietly when the source cannot be asked: the reader reports that.
    async fn watch_source(self: Arc<Self>) -> Result<(), SourceError> {
        let Ok(mut conn) = conn::connect(&self.source, self.source_settings.connect_timeout).await
        else {
            return Ok(());
        };
        let mut semi_sync_timeout = None;
        for query in source::SEMI_SYNC_TIMEOUT_QUERIES {
            if let Ok(ms) = conn.query_first::<u64, _>(query).await {
                semi_sync_timeout = ms.map(Duration::from_millis);
                break;
            }
        }
        let grace = source::in_flight_grace(semi_sync_timeout);
        // GTIDs the target holds and the source lacks, and since when: only
        // those still missing after the grace mean divergence.
        let mut suspect: Option<(GtidSet, Instant)> = None;
        loop {
            tokio::time::sleep(TARGET_REFRESH).await;
            // The target's GTIDs first: each of the source's was executed there before.
            let held = self.executed().clone();
            let Ok(Some((uuid, executed))) = conn
                .query_first::<(String, String), _>("SELECT @@server_uuid, @@GLOBAL.gtid_executed")
                .await
            else {
                return Ok(());
            };
            let (Ok(uuid), Ok(executed)) = (uuid.parse::<Uuid>(), GtidSet::parse(&executed)) else {
                continue;
            };
            let extra = held.for_uuid(&uuid).subtract(&executed);
            suspect = match suspect.take() {
                _ if extra.is_empty() => None,
                Some((before, since)) if !before.intersect(&extra).is_empty() => {
                    Some((before.intersect(&extra), since))
                }
                _ => Some((extra, Instant::now())),
            };
            if suspect
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() >= grace)
            {
                source::can_serve(
                    &self.source.name,
                    &self.target.name,
                    &uuid,
                    &executed,
                    &GtidSet::new(),
                    &held,
                )?;
            }
        }
    }

    /// The apply sessions of one session of the channel; the first also reads
    /// the target's identity and position.
    async fn connect_appliers(&self) -> Result<(Vec<Applier>, TargetIdentity), ApplyError> {
        let connect = || {
            Applier::connect(
                &self.target,
                self.config.conflict,
                &self.apply_settings,
                self.claims.clone(),
                self.target_executed.clone(),
                self.lww.as_ref().map(|lww| {
                    Resolver::new(
                        lww.clone(),
                        &self.config.name,
                        self.config.target,
                        &self.target.name,
                    )
                }),
                self.source_settings.connect_timeout,
            )
        };
        let (first, target) = connect().await?;
        let mut appliers = vec![first];
        while appliers.len() < self.apply_settings.workers {
            match connect().await {
                Ok((applier, _)) => appliers.push(applier),
                Err(e) => {
                    for applier in appliers {
                        applier.close().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok((appliers, target))
    }

    /// The SQL half: apply queued steps on T through the scheduler's workers.
    async fn apply(
        self: Arc<Self>,
        appliers: Vec<Applier>,
        rx: mpsc::Receiver<Step>,
    ) -> Result<(), ApplyError> {
        {
            let mut st = self.state();
            st.sql_running = true;
            st.sql_state = IDLE_SQL_STATE;
        }
        let preserve = self.apply_settings.preserve_commit_order;
        Scheduler::new(appliers, preserve, self.clone())
            .run(rx)
            .await
    }

    pub fn status(&self) -> ChannelStatus {
        let executed_set = self.executed().clone();
        let executed = executed_set.to_string();
        let st = self.state();
        // Behind by the oldest transaction in flight that the target still
        // lacks. In a mesh the same transaction arrives by several channels;
        // once one of them committed it, the others only skip it, and their
        // copy's (origin) commit time says nothing about how far behind the
        // target is: counting it made a channel report a minute of lag at the
        // moment every master already had everything.
        let seconds_behind = st.sql_running.then(|| {
            st.applying
                .values()
                .filter(|a| !executed_set.contains(&a.gtid))
                .map(|a| a.original_commit_us)
                .min()
                .map_or(0, |since| now_us().saturating_sub(since) / 1_000_000)
        });
        ChannelStatus {
            name: self.config.name.clone(),
            source_name: self.source.name.clone(),
            target_name: self.target.name.clone(),
            source_host: self.source.host.clone(),
            source_port: self.source.port,
            source_user: self.source.user.clone(),
            source_uuid: st.source_uuid.map(|u| u.to_string()),
            source_server_id: st.source_server_id,
            target_uuid: st.target_uuid.map(|u| u.to_string()),
            relay_server_id: self.registration.server_id,
            io_running: st.io,
            io_state: st.io_state.to_string(),
            sql_running: st.sql_running,
            sql_state: st.sql_state.to_string(),
            last_io_error: st.last_io_error.clone(),
            last_sql_error: st.last_sql_error.clone(),
            retrieved_gtid_set: st.retrieved.to_string(),
            executed_gtid_set: executed,
            seconds_behind_source: seconds_behind,
            source_log_file: st.log_file.clone(),
            read_source_log_pos: st.log_pos,
            connect_retry_secs: u32::try_from(self.source_settings.reconnect_max.as_secs())
                .unwrap_or(u32::MAX),
            retry_count: st.retry_count,
            heartbeat_period_secs: self.source_settings.heartbeat.as_secs_f64(),
            tls: SourceTls {
                allowed: match self.source.tls.ssl_mode {
                    SslMode::Disabled => "No",
                    _ => "Yes",
                },
                ca_file: path_text(&self.source.tls.ca),
                cert: path_text(&self.source.tls.cert),
                key: path_text(&self.source.tls.key),
                verify_server_cert: self.source.tls.ssl_mode == SslMode::VerifyIdentity,
            },
            conflict_mode: self.config.conflict.as_str(),
            transactions_received: st.transactions_received,
            transactions_applied: st.transactions_applied,
            transactions_skipped_loop: st.skipped_loop,
            transactions_skipped_applied: st.skipped_applied,
            events_received: st.events_received,
            bytes_received: st.bytes_received,
            reconnects: st.reconnects,
            last_applied_original_commit_us: st.last_applied_original_commit_us,
            last_applied_gtid: st.last_applied_gtid.clone(),
            last_applied_at: st.last_applied_at,
        }
    }

    fn set_desired(&self, threads: Threads, on: bool) {
        self.desired.send_modify(|d| match threads {
            Threads::Both => {
                d.io = on;
                d.sql = on;
            }
            Threads::Io => d.io = on,
            Threads::Sql => d.sql = on,
        });
    }

    fn halted(&self, threads: Threads) -> bool {
        let st = self.state();
        let io_stopped = st.io == IoRunning::No;
        match threads {
            Threads::Both => io_stopped && !st.sql_running,
            Threads::Io => io_stopped,
            Threads::Sql => !st.sql_running,
        }
    }
}

fn path_text(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

impl SessionEnd {
    fn worse(self, other: SessionEnd) -> SessionEnd {
        match (self, other) {
            (SessionEnd::Retry, _) | (_, SessionEnd::Retry) => SessionEnd::Retry,
            _ => SessionEnd::Stopped,
        }
    }
}

/// Await an optional task; pending forever when there is none. A panicked or
/// aborted task counts as a clean end (aborts only happen on purpose).
async fn join<E>(task: &mut Option<JoinHandle<Result<(), E>>>) -> Result<(), E> {
    match task {
        Some(t) => match t.await {
            Ok(r) => r,
            Err(join_error) => {
                if join_error.is_panic() {
                    error!("channel task panicked: {join_error}");
                }
                Ok(())
            }
        },
        None => std::future::pending().await,
    }
}

/// Abort a task, if there is one, and wait until it is gone.
async fn abort<T>(task: &mut Option<JoinHandle<T>>) {
    if let Some(t) = task.take() {
        t.abort();
        let _ = t.await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A server_id and replica UUID per channel and relay process, so that a source
/// never mistakes one for another: it disconnects an older dump thread that
/// registers with the same id or UUID, which would make two relays running the
/// same configuration (a warm standby) take turns instead of both streaming.
fn registration(config: &Config, index: usize, channel: &ChannelConfig) -> Registration {
    replica_registration(config, index, &[&channel.name])
}

/// The version tracker of a master reads its binlog as one more replica, with
/// its own server_id and replica UUID (a source drops an older dump thread
/// registered under the same ones); its ids follow the channels'.
fn tracker_registration(config: &Config, index: usize, master: &Master) -> Registration {
    let slot = config.channels.len() + index;
    replica_registration(config, slot, &["version-tracker", &master.name])
}

/// Replica `slot` of this relay, named by `names`: `server_id` is the
/// configured base plus the slot, or derived from the names like the UUID.
fn replica_registration(config: &Config, slot: usize, names: &[&str]) -> Registration {
    let mut parts = vec![
        identity::hostname(),
        config.relay.report_host.clone(),
        config.relay.report_port.to_string(),
        std::process::id().to_string(),
    ];
    parts.extend(names.iter().map(|n| n.to_string()));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let seed = identity::seed(&parts);
    Registration {
        server_id: match config.relay.server_id {
            Some(base) => base.wrapping_add(u32::try_from(slot).unwrap_or(0)),
            None => identity::server_id(seed),
        },
        replica_uuid: identity::uuid(seed),
        report_host: config.relay.report_host.clone(),
        report_port: config.relay.report_port,
        heartbeat: config.source.heartbeat,
    }
}

const IDLE_SQL_STATE: &str = "Replica has read all relay log; waiting for more updates";

impl Progress for Channel {
    fn already_applied(&self, gtid: &Gtid) -> bool {
        self.executed().contains(gtid)
    }

    fn started(&self, index: u64, header: &TxnHeader) {
        let mut st = self.state();
        st.applying.insert(
            index,
            Applying {
                gtid: header.gtid.clone(),
                original_commit_us: header.original_commit_us,
                began: Instant::now(),
            },
        );
        st.sql_state = "Waiting for dependent transaction to commit";
    }

    fn finished(&self, index: u64, done: Option<&Completed>) {
        if let (Some(done), Some(queue)) = (done, self.acks().as_mut()) {
            queue.finished(&done.header.gtid);
        }
        let mut st = self.state();
        let began = st.applying.remove(&index).map(|a| a.began);
        if st.applying.is_empty() {
            st.sql_state = IDLE_SQL_STATE;
        }
        let Some(done) = done else {
            warn!(channel = %self.name(), index, "a transaction ended without completing");
            return;
        };
        if let Some(began) = began {
            st.metrics.finished(began, !done.skipped, done.conflicts);
        }
        if done.skipped {
            st.skipped_applied += 1;
        } else {
            st.transactions_applied += 1;
        }
        st.last_applied_original_commit_us = Some(done.header.original_commit_us);
        st.last_applied_gtid = Some(done.header.gtid.to_string());
        st.last_applied_at = Some(SystemTime::now());
        // The applier already put the GTID in the target's executed set.
        st.last_sql_error = None;
    }

    /// Counted like the reader's skips of transactions the target has.
    fn skipped(&self, header: &TxnHeader) {
        debug!(channel = %self.name(), gtid = %header.gtid, "skipped at dispatch");
        if let Some(queue) = self.acks().as_mut() {
            queue.finished(&header.gtid);
        }
        self.state().skipped_applied += 1;
    }
}

/// All channels of one relay process.
pub struct Relay {
    channels: Vec<Arc<Channel>>,
    /// Version trackers, one per master, when some channel uses last-writer-wins.
    trackers: Mutex<Vec<Tracker>>,
    lww: Option<Arc<Lww>>,
}

impl Relay {
    pub fn new(config: &Config) -> Relay {
        let executed_by_master: Vec<Arc<Mutex<GtidSet>>> = config
            .masters
            .iter()
            .map(|_| Arc::new(Mutex::new(GtidSet::new())))
            .collect();
        let claims_by_target: Vec<Arc<Claims>> = executed_by_master
            .iter()
            .map(|executed| Arc::new(Claims::new(executed.clone())))
            .collect();
        let lww = Lww::for_config(config);
        // A pair of masters converges only if both directions decide alike.
        if lww.is_some()
            && let Some(other) = config
                .channels
                .iter()
                .find(|c| c.conflict != ConflictMode::LastWriterWins)
        {
            warn!(channel = %other.name, conflict = other.conflict.as_str(),
                "some channels use last-writer-wins and this one does not: masters can keep \
                 different versions of a row written on both; use last-writer-wins on every channel");
        }
        let trackers = match &lww {
            None => Vec::new(),
            Some(lww) => config
                .masters
                .iter()
                .enumerate()
                .map(|(index, master)| Tracker {
                    index,
                    master: master.clone(),
                    masters: config.masters.clone(),
                    lww: lww.clone(),
                    registration: tracker_registration(config, index, master),
                    settings: config.source.clone(),
                })
                .collect(),
        };
        let channels = config
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (desired, _) = watch::channel(Desired {
                    io: true,
                    sql: true,
                });
                Arc::new(Channel {
                    config: c.clone(),
                    source: config.channel_source(c).clone(),
                    target: config.channel_target(c).clone(),
                    registration: registration(config, i, c),
                    source_settings: config.source.clone(),
                    apply_settings: config.apply.clone(),
                    target_executed: executed_by_master[c.target].clone(),
                    source_executed: executed_by_master[c.source].clone(),
                    claims: (config
                        .channels
                        .iter()
                        .filter(|o| o.target == c.target)
                        .count()
                        > 1)
                    .then(|| claims_by_target[c.target].clone()),
                    lww: lww
                        .clone()
                        .filter(|_| c.conflict == ConflictMode::LastWriterWins),
                    state: Mutex::new(State::default()),
                    desired,
                    acks: Mutex::new(None),
                })
            })
            .collect();
        Relay {
            channels,
            trackers: Mutex::new(trackers),
            lww,
        }
    }

    /// Run every channel until `shutdown` resolves, then stop them cleanly:
    /// each finishes or rolls back the transaction it is in.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some(lww) = &self.lww
            && let Err(e) = lww.log.open()
        {
            error!(log = %lww.log.path().display(), "cannot open the conflict log: {e}");
        }
        let trackers: Vec<Tracker> =
            std::mem::take(&mut *self.trackers.lock().unwrap_or_else(|p| p.into_inner()));
        let mut tasks: Vec<JoinHandle<()>> = trackers
            .into_iter()
            .map(|t| tokio::spawn(t.run(stop_rx.clone())))
            .collect();
        tasks.extend(self
            .channels
            .iter()
            .map(|c| {
                info!(channel = %c.name(), conflict = c.config.conflict.as_str(), server_id = c.registration.server_id, routes = c.config.routes.rules.len(), ddl = c.config.routes.ddl, "starting channel");
                tokio::spawn(c.clone().supervise(stop_rx.clone()))
            }));
        shutdown.await;
        info!("shutting down: stopping channels at transaction boundaries");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        info!("all channels stopped");
    }

    fn select(&self, channel: Option<&str>) -> Result<Vec<Arc<Channel>>, ControlError> {
        match channel {
            None => Ok(self.channels.clone()),
            Some(name) => self
                .channels
                .iter()
                .find(|c| c.name() == name)
                .map(|c| vec![c.clone()])
                .ok_or_else(|| ControlError::NoSuchChannel(name.to_string())),
        }
    }
}

impl Replicas for Relay {
    fn channels(&self) -> Vec<ChannelStatus> {
        self.channels.iter().map(|c| c.status()).collect()
    }

    fn channel_metrics(&self) -> Vec<(ChannelStatus, ChannelMetrics)> {
        self.channels
            .iter()
            .map(|c| (c.status(), c.state().metrics.snapshot()))
            .collect()
    }

    fn start(&self, channel: Option<&str>, threads: Threads) -> Result<(), ControlError> {
        for c in self.select(channel)? {
            info!(channel = %c.name(), ?threads, "START REPLICA");
            c.set_desired(threads, true);
        }
        Ok(())
    }

    fn stop(
        &self,
        channel: Option<&str>,
        threads: Threads,
    ) -> BoxFuture<'static, Result<(), ControlError>> {
        let selected = self.select(channel);
        Box::pin(async move {
            let selected = selected?;
            for c in &selected {
                info!(channel = %c.name(), ?threads, "STOP REPLICA");
                c.set_desired(threads, false);
            }
            let deadline = tokio::time::Instant::now() + STOP_GRACE * 2;
            while !selected.iter().all(|c| c.halted(threads))
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(gtid: &str, age: Duration) -> TxnHeader {
        let original = now_us() - u64::try_from(age.as_micros()).unwrap();
        TxnHeader {
            gtid: gtid.parse().unwrap(),
            last_committed: 0,
            sequence_number: 1,
            original_commit_us: original,
            immediate_commit_us: original,
            original_server_version: 0,
            immediate_server_version: 0,
        }
    }

    /// A transaction still in flight on this channel that the target already
    /// got through another channel does not count as lag.
    #[test]
    fn lag_ignores_transactions_the_target_already_has() {
        let text = "[[masters]]\nname = \"a\"\nhost = \"127.0.0.1\"\nuser = \"r\"\npassword = \"p\"\n\
                    [[masters]]\nname = \"b\"\nhost = \"127.0.0.1\"\nport = 3307\nuser = \"r\"\npassword = \"p\"\n";
        let config = Config::parse(std::path::Path::new("t.toml"), text).unwrap();
        let relay = Relay::new(&config);
        let channel = &relay.channels[0];
        channel.state().sql_running = true;
        let old = header(
            "11111111-1111-1111-1111-111111111111:5",
            Duration::from_secs(60),
        );
        let newer = header(
            "11111111-1111-1111-1111-111111111111:6",
            Duration::from_secs(20),
        );
        channel.started(0, &old);
        channel.started(1, &newer);
        assert!((59..=61).contains(&channel.status().seconds_behind_source.unwrap()));
        channel.executed().insert(&old.gtid);
        assert!((19..=21).contains(&channel.status().seconds_behind_source.unwrap()));
        channel.executed().insert(&newer.gtid);
        assert_eq!(channel.status().seconds_behind_source, Some(0));
    }
}
