//! The source side of a channel: connect to S as a replica and read its binlog
//! from the GTIDs the target lacks.
//!
//! `open` does what MySQL's IO thread does before COM_BINLOG_DUMP_GTID: identify
//! the source, refuse a source that cannot serve the target (no GTIDs, purged
//! binlogs, diverged history), negotiate checksums and heartbeats, register.

pub mod assemble;
pub mod client;
pub mod context;
pub mod event;
pub mod event_bytes;
pub mod load_data;
pub(crate) mod payload;
pub mod rewrite;
pub mod semisync;

use std::time::Duration;

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType};
use mysql_common::binlog::events::RotateEvent;

use crate::config::{AckMode, Master};
use crate::conn::{self, ConnError};
use crate::gtid::{GtidSet, Uuid};
use crate::wire::{PacketWriter, WireError};

use self::client::{Client, ClientError};
use self::event::{Format, RawEvent};
use self::event_bytes::{CHECKSUM_LEN, HEADER_LEN, LayoutError};
use self::payload::{PayloadError, Unpacker};
use self::semisync::AckPosition;

/// MySQL's ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG, the Last_IO_Errno for 1236.
pub const ER_SOURCE_FATAL_ERROR_READING_BINLOG: u32 = 13114;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("source {master}: {message}")]
    Query {
        master: String,
        errno: u32,
        message: String,
        transient: bool,
    },
    #[error(
        "source {master} has gtid_mode={mode}; gtid-relay needs gtid_mode=ON and \
         enforce_gtid_consistency=ON on every master (see `gtid-relay gtid-mode enable`)"
    )]
    GtidModeOff { master: String, mode: String },
    #[error(
        "Got fatal error 1236 from source when reading data from binary log: target {target} holds \
         GTIDs of source {master} ({uuid}) that the source never executed: {extra}. The masters \
         have diverged (RESET BINARY LOGS AND GTIDS on {master}, or {master} restored from an \
         older backup); the channel stops. Reseed {target} from {master} \
         (e.g. mysqldump --set-gtid-purged=ON) or remove those transactions"
    )]
    Diverged {
        master: String,
        target: String,
        uuid: Uuid,
        extra: GtidSet,
    },
    #[error(
        "Got fatal error 1236 from source when reading data from binary log: source {master} has purged \
         binary logs containing GTIDs that target {target} still needs: {missing}. Reseed {target} \
         (e.g. mysqldump --single-transaction --set-gtid-purged=ON from a master that has them) \
         and start the channel again"
    )]
    Purged {
        master: String,
        target: String,
        missing: GtidSet,
    },
    #[error("Got fatal error {code} from source when reading data from binary log: '{message}'")]
    Stream { code: u16, message: String },
    #[error("source {master} connection lost: {message}")]
    Lost { master: String, message: String },
    #[error("source {master} sent nothing, not even a heartbeat, for {after:?}; reconnecting")]
    Stalled { master: String, after: Duration },
    #[error(
        "source {master}: event at {file}:{pos} has a bad checksum (expected {expected:#010x}, got {got:#010x})"
    )]
    Checksum {
        master: String,
        file: String,
        pos: u64,
        expected: u32,
        got: u32,
    },
}

impl SourceError {
    /// Like MySQL's IO thread: fatal errors stop the channel, the rest are retried.
    pub fn is_fatal(&self) -> bool {
        match self {
            SourceError::Connect(_) | SourceError::Lost { .. } | SourceError::Stalled { .. } => {
                false
            }
            SourceError::Checksum { .. } => false,
            SourceError::Query { transient, .. } => !transient,
            SourceError::GtidModeOff { .. }
            | SourceError::Diverged { .. }
            | SourceError::Purged { .. } => true,
            SourceError::Stream { .. } => true,
        }
    }

    /// The value for Last_IO_Errno.
    pub fn errno(&self) -> u32 {
        match self {
            SourceError::Connect(e) => e.errno(),
            SourceError::Query { errno, .. } => *errno,
            SourceError::GtidModeOff { .. } => 13117, // ER_REPLICA_FATAL_ERROR-style: fatal setup error
            SourceError::Diverged { .. }
            | SourceError::Purged { .. }
            | SourceError::Stream { .. } => ER_SOURCE_FATAL_ERROR_READING_BINLOG,
            SourceError::Lost { .. } | SourceError::Stalled { .. } => conn::CR_SERVER_LOST,
            SourceError::Checksum { .. } => 13122, // ER_NETWORK_READ_EVENT_CHECKSUM_FAILURE
        }
    }
}

/// What the relay tells the source about itself for this channel.
#[derive(Debug, Clone)]
pub struct Registration {
    pub server_id: u32,
    pub replica_uuid: String,
    pub report_host: String,
    pub report_port: u16,
    pub heartbeat: Duration,
}

/// Identity of the source as read at connect time.
#[derive(Debug, Clone)]
pub struct SourceIdentity {
    pub uuid: Uuid,
    pub server_id: u32,
    /// The source's gtid_executed when the dump started.
    pub executed: GtidSet,
}

/// An open binlog dump.
pub struct BinlogSource {
    master: String,
    client: Client,
    read_timeout: Duration,
    /// The source's FORMAT_DESCRIPTION in force.
    format: Format,
    /// The TRANSACTION_PAYLOAD whose events are being handed out.
    unpacking: Option<Unpacker>,
    /// Binlog file and position of the last event, for Source_Log_File / Read_Source_Log_Pos.
    pub log_file: String,
    pub log_pos: u64,
    /// The dump is semi-synchronous: the connection's write side, for the
    /// acknowledgements, until the channel takes it.
    ack_writer: Option<PacketWriter>,
    /// The last event read asked for an acknowledgement of this position.
    ack_request: Option<AckPosition>,
}

fn query_error(master: &Master, what: &str, e: ClientError) -> SourceError {
    SourceError::Query {
        master: master.name.clone(),
        errno: e.errno(),
        message: format!("{what}: {e}"),
        transient: e.is_transient(),
    }
}

/// A source must generate GTIDs for the relay to position by them. Shared with
/// `gtid-relay check`, so both report the same message.
pub fn require_gtid_mode_on(master: &str, gtid_mode: &str) -> Result<(), SourceError> {
    if gtid_mode.eq_ignore_ascii_case("ON") {
        return Ok(());
    }
    Err(SourceError::GtidModeOff {
        master: master.to_string(),
        mode: gtid_mode.to_string(),
    })
}

/// Whether source `master` (UUID `uuid`) can bring a target holding
/// `target_executed` up to date: the target must not hold GTIDs of the source's
/// UUID that the source never executed (diverged), and the source must still
/// have in its binlogs everything the target lacks (purged). The one place this
/// is decided, for both `run` (at every connect) and `check`.
pub fn can_serve(
    master: &str,
    target: &str,
    uuid: &Uuid,
    source_executed: &GtidSet,
    source_purged: &GtidSet,
    target_executed: &GtidSet,
) -> Result<(), SourceError> {
    let extra = target_executed.for_uuid(uuid).subtract(source_executed);
    if !extra.is_empty() {
        return Err(SourceError::Diverged {
            master: master.to_string(),
            target: target.to_string(),
            uuid: *uuid,
            extra,
        });
    }
    let missing = source_purged.subtract(target_executed);
    if !missing.is_empty() {
        return Err(SourceError::Purged {
            master: master.to_string(),
            target: target.to_string(),
            missing,
        });
    }
    Ok(())
}

/// MySQL's ER_UNKNOWN_SYSTEM_VARIABLE.
const ER_UNKNOWN_SYSTEM_VARIABLE: u32 = 1193;

/// The query for a source's semi-sync timeout, in the 8.0.26+ and the older
/// spelling; an unknown variable (ER_UNKNOWN_SYSTEM_VARIABLE) means the
/// semi-sync source plugin or component is not loaded.
pub const SEMI_SYNC_TIMEOUT_QUERIES: [&str; 2] = [
    "SELECT @@GLOBAL.rpl_semi_sync_source_timeout",
    "SELECT @@GLOBAL.rpl_semi_sync_master_timeout",
];

/// `Some(rpl_semi_sync_source_timeout)` when the source has semi-sync loaded,
/// as MySQL's own replica asks before it requests semi-sync.
async fn semi_sync_timeout(
    c: &mut Client,
    master: &Master,
) -> Result<Option<Duration>, SourceError> {
    for query in SEMI_SYNC_TIMEOUT_QUERIES {
        match c.query_row(query).await {
            Ok(row) => {
                let ms = row
                    .and_then(|r| r.into_iter().next().flatten())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                return Ok(Some(Duration::from_millis(ms)));
            }
            Err(e) if e.errno() == ER_UNKNOWN_SYSTEM_VARIABLE => {}
            Err(e) => return Err(query_error(master, "asking for semi-sync support", e)),
        }
    }
    Ok(None)
}

/// How long a transaction may be on a replica before its source counts it as
/// executed: a source sends a transaction once its binlog is synced, before it
/// commits it, and with semi-sync only commits once acknowledged or after the
/// timeout. A target holding source GTIDs that the source lacks for longer
/// than this has diverged.
pub fn in_flight_grace(semi_sync_timeout: Option<Duration>) -> Duration {
    Duration::from_secs(1)
        + semi_sync_timeout
            .unwrap_or_default()
            .min(Duration::from_secs(120))
}

/// Connect to `master`, check it can serve a target whose executed set is
/// `target_executed`, and start streaming what the target lacks; as a
/// semi-sync replica when the source supports it and `ack` is not off.
pub async fn open(
    master: &Master,
    target_name: &str,
    target_executed: &GtidSet,
    registration: &Registration,
    ack: AckMode,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<(SourceIdentity, BinlogSource), SourceError> {
    let mut c = Client::connect(master, connect_timeout).await?;
    // Nothing in the setup takes long: a source that stops answering is retried.
    c.set_read_timeout(read_timeout);
    let row = c
        .query_row(
            "SELECT @@server_uuid, @@server_id, @@GLOBAL.gtid_mode, @@GLOBAL.gtid_executed, \
             @@GLOBAL.gtid_purged, @@GLOBAL.binlog_checksum",
        )
        .await
        .map_err(|e| query_error(master, "reading the source's identity", e))?;
    let Some([uuid, server_id, gtid_mode, executed, purged, checksum]) = row
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
        })
        .and_then(|r| <[String; 6]>::try_from(r).ok())
    else {
        return Err(SourceError::Lost {
            master: master.name.clone(),
            message: "no answer to the identity query".into(),
        });
    };
    require_gtid_mode_on(&master.name, &gtid_mode)?;
    let unparsable = |what: &str, e: &dyn std::fmt::Display| SourceError::Query {
        master: master.name.clone(),
        errno: 0,
        message: format!("cannot parse the source's {what}: {e}"),
        transient: false,
    };
    let parse = |what: &str, text: &str| GtidSet::parse(text).map_err(|e| unparsable(what, &e));
    let uuid: Uuid = uuid.parse().map_err(|e| unparsable("server_uuid", &e))?;
    let server_id: u32 = server_id.parse().map_err(|e| unparsable("server_id", &e))?;
    let source_executed = parse("gtid_executed", &executed)?;
    let source_purged = parse("gtid_purged", &purged)?;

    let semi_sync_timeout = semi_sync_timeout(&mut c, master).await?;
    let served = can_serve(
        &master.name,
        target_name,
        &uuid,
        &source_executed,
        &source_purged,
        target_executed,
    );
    let source_executed = match served {
        Ok(()) => source_executed,
        Err(SourceError::Diverged { .. }) => {
            // Perhaps only in flight (the relay stopped between applying a
            // transaction and acknowledging it): look again once committed.
            tokio::time::sleep(in_flight_grace(semi_sync_timeout)).await;
            let row = c
                .query_row("SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged")
                .await
                .map_err(|e| query_error(master, "reading the source's GTIDs", e))?;
            let mut values = row
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default);
            let executed = parse("gtid_executed", &values.next().unwrap_or_default())?;
            let purged = parse("gtid_purged", &values.next().unwrap_or_default())?;
            can_serve(
                &master.name,
                target_name,
                &uuid,
                &executed,
                &purged,
                target_executed,
            )?;
            executed
        }
        Err(e) => return Err(e),
    };

    let semi_sync = ack != AckMode::Off && semi_sync_timeout.is_some();
    let heartbeat_ns = registration.heartbeat.as_nanos();
    // Both spellings: 8.4+ reads the source_ ones, older servers the master_ ones.
    let mut setup = format!(
        "SET @source_heartbeat_period = {heartbeat_ns}, @master_heartbeat_period = {heartbeat_ns}, \
         @source_binlog_checksum = @@GLOBAL.binlog_checksum, \
         @master_binlog_checksum = @@GLOBAL.binlog_checksum, \
         @replica_uuid = {uuid}, @slave_uuid = {uuid}",
        uuid = conn::quote_str(&registration.replica_uuid),
    );
    if semi_sync {
        setup.push_str(", @rpl_semi_sync_replica = 1, @rpl_semi_sync_slave = 1");
    }
    c.exec(&setup)
        .await
        .map_err(|e| query_error(master, "preparing the binlog dump", e))?;
    c.dump(
        registration.server_id,
        &registration.report_host,
        registration.report_port,
        target_executed.to_sids(),
        semi_sync,
    )
    .await
    .map_err(|e| query_error(master, "requesting the binlog dump", e))?;
    let (c, ack_writer) = match semi_sync {
        true => {
            let (c, writer) = c.split();
            (c, Some(writer))
        }
        false => (c, None),
    };
    let checksum = checksum
        .eq_ignore_ascii_case("CRC32")
        .then_some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    Ok((
        SourceIdentity {
            uuid,
            server_id,
            executed: source_executed,
        },
        BinlogSource {
            master: master.name.clone(),
            client: c,
            read_timeout,
            format: Format::initial(checksum),
            unpacking: None,
            log_file: String::new(),
            log_pos: 0,
            ack_writer,
            ack_request: None,
        },
    ))
}

impl BinlogSource {
    /// The write side of a semi-synchronous dump, for its acknowledgements
    /// (`None` when the source does not run semi-sync, or once taken).
    pub fn take_ack_writer(&mut self) -> Option<PacketWriter> {
        self.ack_writer.take()
    }

    /// Where the source waits for an acknowledgement, if the event last
    /// returned (or the TRANSACTION_PAYLOAD it came from) asked for one.
    pub fn take_ack_request(&mut self) -> Option<AckPosition> {
        self.ack_request.take()
    }

    /// The next event; heartbeats count as traffic but are not returned.
    pub async fn next(&mut self) -> Result<RawEvent, SourceError> {
        loop {
            if let Some(event) = self.next_unpacked()? {
                return Ok(event);
            }
            let (event, ack_requested) = self.read().await?;
            self.verify_checksum(&event)?;
            let header = event.header();
            if header.log_pos() != 0 {
                self.log_pos = u64::from(header.log_pos());
            }
            if ack_requested {
                self.ack_request = Some(AckPosition {
                    file: self.log_file.clone(),
                    pos: self.log_pos,
                });
            }
            match header.event_type() {
                Ok(EventType::HEARTBEAT_EVENT) => continue,
                Ok(EventType::ROTATE_EVENT) => {
                    if let Ok(decoded) = event.decode()
                        && let Ok(r) = decoded.read_event::<RotateEvent<'_>>()
                    {
                        self.log_file = r.name().into_owned();
                        self.log_pos = r.position();
                    }
                }
                Ok(EventType::TRANSACTION_PAYLOAD_EVENT) => {
                    // Its events follow; the payload itself is not handed out.
                    let unpacker = Unpacker::new(event.into_bytes(), self.format.has_crc())
                        .map_err(|e| self.malformed_payload(e))?;
                    self.unpacking = Some(unpacker);
                    continue;
                }
                _ => {}
            }
            return Ok(event);
        }
    }

    /// The next event from the network, and whether the source asks for its
    /// acknowledgement; a FORMAT_DESCRIPTION becomes the format of the events
    /// after it, and its own.
    async fn read(&mut self) -> Result<(RawEvent, bool), SourceError> {
        let lost = |message: String| SourceError::Lost {
            master: self.master.clone(),
            message,
        };
        let (bytes, ack_requested) = match self.client.read_event().await {
            Ok(Some(streamed)) => (streamed.bytes, streamed.ack_requested),
            Ok(None) => return Err(lost("the source ended the binlog stream".into())),
            Err(ClientError::Wire(WireError::TimedOut(_))) => {
                return Err(SourceError::Stalled {
                    master: self.master.clone(),
                    after: self.read_timeout,
                });
            }
            Err(ClientError::Server { code, message, .. }) => {
                return Err(SourceError::Stream { code, message });
            }
            Err(e) => return Err(lost(e.to_string())),
        };
        let event = RawEvent::new(bytes, self.format.clone(), false)
            .ok_or_else(|| lost("an event shorter than its header".into()))?;
        if event.event_type() != Ok(EventType::FORMAT_DESCRIPTION_EVENT) {
            return Ok((event, ack_requested));
        }
        let format = event
            .decode()
            .and_then(|fde| Format::of(&fde))
            .map_err(|e| self.malformed(&event, e))?;
        self.format = format.clone();
        let event = RawEvent::new(event.into_bytes(), format, false)
            .ok_or_else(|| lost("an event shorter than its header".into()))?;
        Ok((event, ack_requested))
    }

    fn malformed(&self, event: &RawEvent, e: impl std::fmt::Display) -> SourceError {
        SourceError::Stream {
            code: 0,
            message: format!(
                "source {}: cannot decode {} event at {}:{}: {e}",
                self.master,
                event.kind(),
                self.log_file,
                self.log_pos
            ),
        }
    }

    /// The next event of the TRANSACTION_PAYLOAD being unpacked, if any:
    /// a complete event without a checksum trailer (WL#3549).
    fn next_unpacked(&mut self) -> Result<Option<RawEvent>, SourceError> {
        let Some(unpacker) = &mut self.unpacking else {
            return Ok(None);
        };
        match unpacker.next_event() {
            Ok(Some(bytes)) => RawEvent::new(bytes, self.format.clone(), true)
                .map(Some)
                .ok_or_else(|| {
                    self.malformed_payload(PayloadError::Layout(LayoutError::Truncated("header")))
                }),
            Ok(None) => {
                self.unpacking = None;
                Ok(None)
            }
            Err(e) => Err(self.malformed_payload(e)),
        }
    }

    fn malformed_payload(&self, e: PayloadError) -> SourceError {
        SourceError::Stream {
            code: 0,
            message: format!(
                "source {}: cannot unpack the TRANSACTION_PAYLOAD event at {}:{}: {e}",
                self.master, self.log_file, self.log_pos
            ),
        }
    }

    /// Events read from the network carry a CRC32 when the source uses it.
    fn verify_checksum(&self, event: &RawEvent) -> Result<(), SourceError> {
        if !event.format().has_crc() {
            return Ok(());
        }
        let bytes = event.bytes();
        let Some(body) = bytes
            .len()
            .checked_sub(CHECKSUM_LEN)
            .filter(|&n| n >= HEADER_LEN)
        else {
            return Err(self.malformed(event, "no room for its checksum"));
        };
        let (data, stored) = bytes.split_at(body);
        let got = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let expected = crc32fast::hash(data);
        if got != expected {
            return Err(SourceError::Checksum {
                master: self.master.clone(),
                file: self.log_file.clone(),
                pos: self.log_pos,
                expected,
                got,
            });
        }
        Ok(())
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}
