//! Semi-synchronous replication, the replica's side: a source with the
//! semi-sync plugin (or component) enabled marks the events whose commit waits
//! for a replica (kPacketFlagSync in the 2-byte header in front of each
//! event); the replica answers with the binlog file and position it holds, and
//! the source releases every commit up to that position.
//!
//! The relay acknowledges on a channel's own dump connection, either once an
//! event is read (`received`, like a native replica's relay log) or once the
//! transaction is committed on the channel's target (`applied`). Applied
//! acknowledgements keep the source's order: with parallel apply, position P
//! is acknowledged only when every transaction in the stream before it is
//! committed (or needs no commit), since the source takes P as covering them.
//!
//! Layout of the acknowledgement (plugin/semisync/semisync_replica.cc,
//! slaveReply): 0xEF, the position as 8 bytes little-endian, the file name,
//! in a packet of its own with sequence id 0.

use std::collections::VecDeque;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::gtid::Gtid;
use crate::wire::PacketWriter;

/// The first byte of an acknowledgement (kPacketMagicNum).
const ACK_MAGIC: u8 = 0xef;

/// A position in the source's binlog: where an event ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckPosition {
    pub file: String,
    pub pos: u64,
}

/// The acknowledgement packet's payload for `at`.
fn ack_payload(at: &AckPosition) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + at.file.len());
    p.push(ACK_MAGIC);
    p.extend_from_slice(&at.pos.to_le_bytes());
    p.extend_from_slice(at.file.as_bytes());
    p
}

/// Sends the newest position `positions` holds, whenever it changes, on the
/// dump connection's write side. Ends when the sender is dropped (the reader's
/// session ended) or the connection fails (the reader sees that too).
pub fn spawn_acknowledger(
    channel: String,
    mut writer: PacketWriter,
    mut positions: watch::Receiver<Option<AckPosition>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while positions.changed().await.is_ok() {
            let Some(at) = positions.borrow_and_update().clone() else {
                continue;
            };
            if let Err(e) = writer.send(&ack_payload(&at)).await {
                warn!(channel = %channel, "cannot send the semi-sync acknowledgement of {}:{}: {e}",
                    at.file, at.pos);
                return;
            }
        }
    })
}

#[derive(Debug)]
struct Entry {
    gtid: Gtid,
    /// Committed on the target, or nothing to commit.
    done: bool,
    /// The source waits for an acknowledgement up to here.
    ack: Option<AckPosition>,
}

/// Binlog positions in the source's order (file names are zero-padded).
fn key(at: &AckPosition) -> (&str, u64) {
    (at.file.as_str(), at.pos)
}

/// Transactions of one dump session in stream order, until they are done;
/// publishes the position to acknowledge.
#[derive(Debug)]
pub struct AckQueue {
    entries: VecDeque<Entry>,
    /// The furthest position published.
    acked: Option<AckPosition>,
    positions: watch::Sender<Option<AckPosition>>,
}

impl AckQueue {
    pub fn new() -> (AckQueue, watch::Receiver<Option<AckPosition>>) {
        let (positions, rx) = watch::channel(None);
        (
            AckQueue {
                entries: VecDeque::new(),
                acked: None,
                positions,
            },
            rx,
        )
    }

    /// `gtid` was handed to the applier (applied mode): its acknowledgement,
    /// if the source asks for one, waits for its commit and for those of the
    /// transactions handed over before it.
    pub fn started(&mut self, gtid: &Gtid) {
        self.entries.push_back(Entry {
            gtid: gtid.clone(),
            done: false,
            ack: None,
        });
    }

    /// `gtid` is committed on the target, or the target had it.
    pub fn finished(&mut self, gtid: &Gtid) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.gtid == gtid) {
            e.done = true;
            self.advance();
        }
    }

    /// The source asks for an acknowledgement of `at`, which ends `gtid`.
    /// Without a transaction handed to the applier (`None`: the target's own
    /// transaction, one it has, one routes filter out; or received mode) it
    /// is acknowledged at once: with semi-sync on both masters, the peer's
    /// commit of a transaction the relay applied there waits for it. That
    /// also releases the source's commits before `at` that are still being
    /// applied (the source counts an acknowledgement as covering all before it).
    pub fn requested(&mut self, gtid: Option<&Gtid>, at: AckPosition) {
        let pending = gtid.and_then(|g| self.entries.iter_mut().rev().find(|e| &e.gtid == g));
        match pending {
            Some(e) => {
                e.ack = Some(at);
                self.advance();
            }
            None => self.publish(at),
        }
    }

    /// Acknowledge the furthest position whose transactions, and all before
    /// them, are done.
    fn advance(&mut self) {
        let mut furthest = None;
        while self.entries.front().is_some_and(|e| e.done) {
            if let Some(at) = self.entries.pop_front().and_then(|e| e.ack) {
                furthest = Some(at);
            }
        }
        match furthest {
            Some(at) => self.publish(at),
            None => {
                if let Some(front) = self.entries.front() {
                    debug!(waiting_for = %front.gtid, pending = self.entries.len(),
                        "semi-sync acknowledgement waits for a commit");
                }
            }
        }
    }

    /// Positions only move forward.
    fn publish(&mut self, at: AckPosition) {
        if self.acked.as_ref().is_some_and(|a| key(a) >= key(&at)) {
            return;
        }
        self.acked = Some(at.clone());
        self.positions.send_replace(Some(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gtid(n: u64) -> Gtid {
        format!("3e11fa47-71ca-11e1-9e33-c80aa9429562:{n}")
            .parse()
            .expect("gtid")
    }

    fn at(pos: u64) -> AckPosition {
        AckPosition {
            file: "binlog.000002".into(),
            pos,
        }
    }

    fn latest(rx: &mut watch::Receiver<Option<AckPosition>>) -> Option<u64> {
        rx.has_changed()
            .unwrap_or(false)
            .then(|| rx.borrow_and_update().as_ref().map(|a| a.pos))
            .flatten()
    }

    #[test]
    fn the_payload_is_magic_position_and_file_name() {
        let p = ack_payload(&at(0x0102));
        assert_eq!(p[0], 0xef);
        assert_eq!(&p[1..9], &[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[9..], b"binlog.000002");
    }

    #[test]
    fn received_mode_acknowledges_at_once() {
        let (mut q, mut rx) = AckQueue::new();
        q.requested(Some(&gtid(1)), at(100));
        assert_eq!(latest(&mut rx), Some(100));
        q.requested(None, at(200));
        assert_eq!(latest(&mut rx), Some(200));
    }

    #[test]
    fn applied_mode_waits_for_every_earlier_commit() {
        let (mut q, mut rx) = AckQueue::new();
        for n in 1..=3 {
            q.started(&gtid(n));
            q.requested(Some(&gtid(n)), at(n * 100));
        }
        // 2 and 3 commit first (parallel workers): nothing yet, 1 is pending.
        q.finished(&gtid(3));
        q.finished(&gtid(2));
        assert_eq!(latest(&mut rx), None);
        // 1 commits: the furthest position covers all three.
        q.finished(&gtid(1));
        assert_eq!(latest(&mut rx), Some(300));
    }

    #[test]
    fn transactions_the_applier_never_gets_are_acknowledged_at_once() {
        let (mut q, mut rx) = AckQueue::new();
        q.started(&gtid(1));
        q.requested(Some(&gtid(1)), at(100));
        // A loop transaction (the target's own, which the peer's commit
        // waits for): at once, though 1 is still being applied.
        q.requested(None, at(200));
        assert_eq!(latest(&mut rx), Some(200));
        // 1 commits later: its position is behind, nothing goes back.
        q.finished(&gtid(1));
        assert_eq!(latest(&mut rx), None);
        q.started(&gtid(3));
        q.requested(Some(&gtid(3)), at(300));
        q.finished(&gtid(3));
        assert_eq!(latest(&mut rx), Some(300));
    }

    #[test]
    fn a_transaction_skipped_before_its_commit_event_is_read_is_acknowledged() {
        let (mut q, mut rx) = AckQueue::new();
        q.started(&gtid(1));
        // Skipped at dispatch (the target had it) before the reader saw its end.
        q.finished(&gtid(1));
        q.requested(Some(&gtid(1)), at(100));
        assert_eq!(latest(&mut rx), Some(100));
    }

    #[test]
    fn completions_of_unknown_transactions_are_ignored() {
        let (mut q, mut rx) = AckQueue::new();
        q.finished(&gtid(9));
        q.started(&gtid(1));
        q.requested(Some(&gtid(1)), at(100));
        assert_eq!(latest(&mut rx), None);
    }
}
