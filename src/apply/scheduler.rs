//! Parallel apply: transactions go to a pool of target sessions, scheduled by
//! the source's logical clock like `replica_parallel_type=LOGICAL_CLOCK`.
//!
//! A transaction with `last_committed = L` may start once every transaction of
//! the same binlog file with `sequence_number <= L` has committed (the source
//! committed them in one group, so they do not conflict). The clock restarts
//! with every binlog file, so a new FORMAT_DESCRIPTION event is a barrier; so
//! is DDL, which runs alone. Steps stream to the worker as they arrive:
//! nothing holds a whole transaction.
//!
//! Crash safety needs no bookkeeping here: a transaction is either committed on
//! the target (and in its gtid_executed) or not, so after any failure the next
//! session asks the source for exactly the holes.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::{Applier, ApplyError, Completed};
use crate::gtid::Gtid;
use crate::source::assemble::{Step, TxnHeader};

/// Steps queued per worker; the reader already buffers upstream.
const WORKER_QUEUE: usize = 64;

/// What the scheduler tells the channel as transactions start and finish.
pub trait Progress: Send + Sync + 'static {
    /// Whether the target is known to have `gtid` already (another channel
    /// into it committed it since the reader let it through).
    fn already_applied(&self, gtid: &Gtid) -> bool;
    fn started(&self, index: u64, header: &TxnHeader);
    /// The transaction started as `index` ended; `done` says how, when the
    /// applier could tell (None: it ended without completing a transaction).
    fn finished(&self, index: u64, done: Option<&Completed>);
    /// The transaction was not started: the target already had it.
    fn skipped(&self, header: &TxnHeader);
}

/// Commits in dispatch order when preserving commit order: transaction `i`
/// commits only after `i - 1` did.
struct CommitOrder {
    next: std::sync::Mutex<u64>,
    turn: Notify,
}

impl CommitOrder {
    async fn wait_turn(&self, index: u64) {
        loop {
            let notified = self.turn.notified();
            if *self.next.lock().unwrap_or_else(|p| p.into_inner()) == index {
                return;
            }
            notified.await;
        }
    }

    fn done(&self, index: u64) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next = (*next).max(index + 1);
        drop(next);
        self.turn.notify_waiters();
    }
}

/// A step for a worker, tagged with the dispatch index of its transaction.
struct Work {
    index: u64,
    step: Step,
}

/// What a worker reports when a transaction ends.
struct Done {
    worker: usize,
    index: u64,
    result: Result<Option<Completed>, ApplyError>,
}

/// How often a transaction that hit a temporary conflict is sent again on its
/// session (MySQL's replica_transaction_retries default) before the channel's
/// session is restarted instead.
const RETRIES: u32 = 10;
/// A transaction is kept for a retry up to this size; a larger one is retried
/// by restarting the session, which asks the source for it again.
const RETRY_BUFFER_BYTES: usize = 4 << 20;

/// The steps of the transaction in progress, for sending it again.
#[derive(Default)]
struct Replay {
    steps: Vec<Step>,
    bytes: usize,
    overflowed: bool,
}

impl Replay {
    fn record(&mut self, step: &Step) {
        if matches!(step, Step::Begin(_)) {
            *self = Replay::default();
        }
        if self.overflowed {
            return;
        }
        self.bytes += match step {
            Step::Rows(event) => event.len(),
            Step::Query(stmt) | Step::Ddl(stmt) => stmt.sql.len(),
            _ => 0,
        };
        if self.bytes > RETRY_BUFFER_BYTES {
            self.overflowed = true;
            self.steps = Vec::new();
        } else {
            self.steps.push(step.clone());
        }
    }

    /// Roll back and send the recorded steps again; the result of the last.
    async fn run(&self, applier: &mut Applier) -> Result<Option<Completed>, ApplyError> {
        applier.rollback().await;
        let mut last = Ok(None);
        for step in &self.steps {
            last = Ok(applier.apply(step.clone()).await?);
        }
        last
    }
}

async fn worker(
    id: usize,
    mut applier: Applier,
    mut rx: mpsc::Receiver<Work>,
    done: mpsc::UnboundedSender<Done>,
    order: Option<Arc<CommitOrder>>,
) {
    let mut replay = Replay::default();
    while let Some(Work { index, step }) = rx.recv().await {
        let ends = step.ends_transaction();
        if ends && let Some(order) = &order {
            order.wait_turn(index).await;
        }
        replay.record(&step);
        let mut result = applier.apply(step).await;
        let mut retries = 0;
        while let Err(e) = &result
            && e.is_retryable_in_session()
            && !replay.overflowed
            && retries < RETRIES
        {
            retries += 1;
            tracing::debug!(
                worker = id,
                errno = e.errno(),
                retries,
                "{e}; sending the transaction again"
            );
            result = replay.run(&mut applier).await;
        }
        let failed = result.is_err();
        if ends {
            // Not kept past its transaction: the steps may hold up to 4 MiB.
            replay = Replay::default();
        }
        if ends || failed {
            if let Some(order) = &order
                && !failed
            {
                order.done(index);
            }
            if done
                .send(Done {
                    worker: id,
                    index,
                    result,
                })
                .is_err()
                || failed
            {
                break;
            }
        }
    }
    // The queue closed: a transaction still open was not fully received.
    applier.rollback().await;
    applier.close().await;
}

/// In-flight transactions, by dispatch index: (binlog file epoch, sequence_number).
#[derive(Default)]
struct InFlight {
    by_index: BTreeMap<u64, (u64, u64)>,
}

impl InFlight {
    /// May a transaction of `epoch` with `last_committed` start?
    fn allows(&self, epoch: u64, last_committed: u64) -> bool {
        self.by_index
            .values()
            .all(|&(e, seq)| e == epoch && seq > last_committed)
    }
}

pub struct Scheduler {
    workers: Vec<mpsc::Sender<Work>>,
    busy: Vec<bool>,
    tasks: JoinSet<()>,
    done: mpsc::UnboundedReceiver<Done>,
    in_flight: InFlight,
    progress: Arc<dyn Progress>,
    /// Binlog file epoch: bumped at each FORMAT_DESCRIPTION event.
    epoch: u64,
    next_index: u64,
    /// The worker receiving the current transaction's steps.
    current: Option<(usize, u64)>,
    /// A Begin waiting for the next step, which tells DDL from DML.
    pending_begin: Option<TxnHeader>,
    failure: Option<ApplyError>,
}

impl Scheduler {
    pub fn new(
        appliers: Vec<Applier>,
        preserve_commit_order: bool,
        progress: Arc<dyn Progress>,
    ) -> Scheduler {
        let (done_tx, done) = mpsc::unbounded_channel();
        let order = preserve_commit_order.then(|| {
            Arc::new(CommitOrder {
                next: std::sync::Mutex::new(0),
                turn: Notify::new(),
            })
        });
        let mut tasks = JoinSet::new();
        let mut workers = Vec::new();
        for (id, applier) in appliers.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            tasks.spawn(worker(id, applier, rx, done_tx.clone(), order.clone()));
            workers.push(tx);
        }
        Scheduler {
            busy: vec![false; workers.len()],
            workers,
            tasks,
            done,
            in_flight: InFlight::default(),
            progress,
            epoch: 0,
            next_index: 0,
            current: None,
            pending_begin: None,
            failure: None,
        }
    }

    /// Apply every step from `rx` until it closes or a worker fails.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Step>) -> Result<(), ApplyError> {
        loop {
            // Completions are handled as they come, also while no step arrives,
            // so that progress (counters, lag) is current when the channel idles.
            tokio::select! {
                step = rx.recv() => match step {
                    Some(step) => {
                        if self.dispatch(step).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                Some(done) = self.done.recv() => {
                    self.handle(done);
                    if self.failure.is_some() {
                        break;
                    }
                }
            }
        }
        self.finish().await
    }

    async fn dispatch(&mut self, step: Step) -> Result<(), ()> {
        match step {
            Step::FormatDescription(fde) => {
                // A new binlog file: its logical clock starts over.
                self.drain().await?;
                self.epoch += 1;
                for w in 0..self.workers.len() {
                    self.send(w, u64::MAX, Step::FormatDescription(fde.clone()))
                        .await?;
                }
                Ok(())
            }
            Step::Begin(header) => {
                self.pending_begin = Some(header);
                Ok(())
            }
            step => {
                if let Some(header) = self.pending_begin.take() {
                    self.start(header, matches!(step, Step::Ddl(_))).await?;
                }
                let Some((w, index)) = self.current else {
                    // A transaction skipped at start (the target has it): its
                    // steps are dropped. (Steps outside a transaction cannot
                    // happen: the assembler rejects them.)
                    return Ok(());
                };
                let ends = step.ends_transaction();
                self.send(w, index, step).await?;
                if ends {
                    self.current = None;
                }
                Ok(())
            }
        }
    }

    /// Assign the transaction to a worker once its dependencies allow, or
    /// skip it, leaving no current worker, when the target has it by then.
    ///
    /// In a mesh the reader lets a transaction through while the target lacks
    /// it, but another channel into the target often commits it while this
    /// one waits for the transaction's dependencies: applying it here would
    /// cost a worker a wait for the GTID and round trips that the server
    /// skips anyway. Skipping needs no ordering: the target has it.
    async fn start(&mut self, header: TxnHeader, ddl: bool) -> Result<(), ()> {
        if ddl {
            self.drain().await?;
        }
        loop {
            if self.skip_if_applied(&header) {
                return Ok(());
            }
            if ddl || self.in_flight.allows(self.epoch, header.last_committed) {
                break;
            }
            self.wait_one().await?;
        }
        let w = loop {
            if let Some(free) = self.busy.iter().position(|b| !b) {
                break free;
            }
            self.wait_one().await?;
        };
        let index = self.next_index;
        self.next_index += 1;
        self.busy[w] = true;
        self.in_flight
            .by_index
            .insert(index, (self.epoch, header.sequence_number));
        self.progress.started(index, &header);
        tracing::debug!(index, worker = w, gtid = %header.gtid, last_committed = header.last_committed,
            sequence_number = header.sequence_number, epoch = self.epoch, "dispatch");
        self.current = Some((w, index));
        self.send(w, index, Step::Begin(header)).await
    }

    fn skip_if_applied(&mut self, header: &TxnHeader) -> bool {
        if !self.progress.already_applied(&header.gtid) {
            return false;
        }
        // No dispatch index: with commit order preserved, the next transaction
        // waits for the one dispatched before it, not for this one.
        self.progress.skipped(header);
        true
    }

    /// Send a step to worker `w`. DDL runs alone: having drained before it
    /// started, wait for it to finish before anything else starts.
    async fn send(&mut self, w: usize, index: u64, step: Step) -> Result<(), ()> {
        let ddl = matches!(step, Step::Ddl(_));
        if self.workers[w].send(Work { index, step }).await.is_err() {
            // The worker is gone: it reported why on the done channel.
            self.wait_failure().await;
            return Err(());
        }
        if ddl {
            self.drain().await?;
        }
        Ok(())
    }

    /// Handle completions that are already in.
    fn collect_ready(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            self.handle(done);
        }
    }

    fn handle(&mut self, done: Done) {
        tracing::debug!(
            index = done.index,
            worker = done.worker,
            ok = done.result.is_ok(),
            "done"
        );
        self.busy[done.worker] = false;
        self.in_flight.by_index.remove(&done.index);
        match done.result {
            Ok(completed) => self.progress.finished(done.index, completed.as_ref()),
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(e);
                }
            }
        }
    }

    /// Wait for one transaction to end; Err once any worker failed.
    async fn wait_one(&mut self) -> Result<(), ()> {
        match self.done.recv().await {
            Some(done) => self.handle(done),
            None => return Err(()),
        }
        if self.failure.is_some() {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Wait until nothing is in flight.
    async fn drain(&mut self) -> Result<(), ()> {
        while !self.in_flight.by_index.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn wait_failure(&mut self) {
        while self.failure.is_none() {
            match self.done.recv().await {
                Some(done) => self.handle(done),
                None => return,
            }
        }
    }

    /// Stop the workers (they roll back what is open) and report the first failure.
    async fn finish(mut self) -> Result<(), ApplyError> {
        self.workers.clear();
        if self.failure.is_some() {
            // Workers waiting for their commit turn behind the failed one would
            // wait forever; dropping their sessions rolls them back.
            self.tasks.abort_all();
        }
        while self.tasks.join_next().await.is_some() {}
        self.collect_ready();
        match self.failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::gtid::GtidSet;
    use crate::source::assemble::Statement;

    /// Progress of a target that already has every GTID in `executed`.
    struct Recorder {
        executed: GtidSet,
        started: Mutex<Vec<u64>>,
        skipped: Mutex<Vec<String>>,
    }

    impl Progress for Recorder {
        fn already_applied(&self, gtid: &Gtid) -> bool {
            self.executed.contains(gtid)
        }
        fn started(&self, index: u64, _: &TxnHeader) {
            self.started.lock().unwrap().push(index);
        }
        fn finished(&self, index: u64, _: Option<&Completed>) {
            panic!("transaction {index} finished without a worker");
        }
        fn skipped(&self, header: &TxnHeader) {
            self.skipped.lock().unwrap().push(header.gtid.to_string());
        }
    }

    fn transaction(gno: u64, last_committed: u64) -> Vec<Step> {
        let header = TxnHeader {
            gtid: format!("11111111-1111-1111-1111-111111111111:{gno}")
                .parse()
                .unwrap(),
            last_committed,
            sequence_number: gno,
            original_commit_us: 1,
            immediate_commit_us: 1,
            original_server_version: 0,
            immediate_server_version: 0,
        };
        let begin = Statement {
            sql: b"BEGIN".to_vec(),
            schema: String::new(),
            settings: Default::default(),
            thread_id: 1,
            timestamp: 1,
            micros: None,
            context: Vec::new(),
            infile: None,
        };
        vec![
            Step::Begin(header),
            Step::Query(begin),
            Step::Rows(vec![0; 30]),
            Step::Commit,
        ]
    }

    #[test]
    fn a_transaction_is_recorded_for_a_retry_up_to_its_budget() {
        let mut replay = Replay::default();
        for step in transaction(1, 0) {
            replay.record(&step);
        }
        assert_eq!(replay.steps.len(), 4);
        assert!(!replay.overflowed);
        // The next transaction starts a new record.
        let steps = transaction(2, 1);
        replay.record(&steps[0]);
        assert_eq!(replay.steps.len(), 1);
        // One that outgrows the budget is not kept at all.
        replay.record(&Step::Rows(vec![0; RETRY_BUFFER_BYTES + 1]));
        assert!(replay.overflowed);
        assert!(replay.steps.is_empty());
        replay.record(&Step::Commit);
        assert!(replay.steps.is_empty());
    }

    /// Transactions the target got from another channel after the reader let
    /// them through never reach a worker (here there is none to reach).
    #[tokio::test]
    async fn transactions_the_target_has_are_skipped_without_a_worker() {
        let progress = Arc::new(Recorder {
            executed: GtidSet::parse("11111111-1111-1111-1111-111111111111:1-3").unwrap(),
            started: Mutex::default(),
            skipped: Mutex::default(),
        });
        let (tx, rx) = mpsc::channel(64);
        for (gno, last_committed) in [(1, 0), (2, 1), (3, 2)] {
            for step in transaction(gno, last_committed) {
                tx.send(step).await.unwrap();
            }
        }
        drop(tx);
        let run = Scheduler::new(Vec::new(), false, progress.clone()).run(rx);
        tokio::time::timeout(std::time::Duration::from_secs(5), run)
            .await
            .expect("the scheduler does not wait for a worker")
            .expect("no failure");
        assert!(progress.started.lock().unwrap().is_empty());
        assert_eq!(
            *progress.skipped.lock().unwrap(),
            ["1", "2", "3"].map(|n| format!("11111111-1111-1111-1111-111111111111:{n}"))
        );
    }
}
