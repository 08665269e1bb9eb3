//! Binlog events as the source hands them out: the serialised bytes, owned,
//! with the format needed to decode them. Small events are decoded with
//! mysql_common on demand; a Rows event's buffer becomes a `Step::Rows` as is.

use std::sync::Arc;

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType, UnknownEventType};
use mysql_common::binlog::events::{
    BinlogEventFooter, BinlogEventHeader, Event, FormatDescriptionEvent,
};
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

use crate::source::event_bytes::{CHECKSUM_LEN, HEADER_LEN, LayoutError, reseal};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// The FORMAT_DESCRIPTION in force: how events are laid out and checksummed.
#[derive(Debug, Clone)]
pub struct Format(Arc<Layouts>);

#[derive(Debug)]
struct Layouts {
    /// Events from the network.
    network: FormatDescriptionEvent<'static>,
    /// Events unpacked from a TRANSACTION_PAYLOAD: the same without a trailer.
    unpacked: FormatDescriptionEvent<'static>,
}

impl Format {
    fn new(network: FormatDescriptionEvent<'static>) -> Format {
        let mut footer = network.footer();
        footer.set_checksum_enabled(false);
        let unpacked = network.clone().with_footer(footer);
        Format(Arc::new(Layouts { network, unpacked }))
    }

    /// Before the source's FORMAT_DESCRIPTION arrives (the dump starts with a
    /// fake Rotate), events are laid out as v4 with the checksum algorithm the
    /// dump was asked for.
    pub fn initial(checksum: Option<BinlogChecksumAlg>) -> Format {
        let fde =
            FormatDescriptionEvent::new(mysql_common::binlog::consts::BinlogVersion::Version4);
        Format::new(match checksum {
            Some(alg) => fde.with_footer(BinlogEventFooter::new(alg)),
            None => fde,
        })
    }

    /// The format a FORMAT_DESCRIPTION event announces.
    pub fn of(fde: &Event) -> Result<Format, DecodeError> {
        let described = fde
            .read_event::<FormatDescriptionEvent<'_>>()
            .map_err(|e| DecodeError(e.to_string()))?;
        Ok(Format::new(
            described.into_owned().with_footer(fde.footer()),
        ))
    }

    /// Events in this format end with a CRC32 trailer.
    pub fn has_crc(&self) -> bool {
        matches!(
            self.0.network.footer().get_checksum_alg(),
            Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
        )
    }

    /// Decode a whole serialised event (with its trailer when `has_crc`).
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        decode_with(&self.0.network, bytes)
    }
}

/// Decode a whole serialised event laid out as `fde` says.
fn decode_with(fde: &FormatDescriptionEvent<'_>, bytes: &[u8]) -> Result<Event, DecodeError> {
    // Event::read panics on input shorter than the header's size, or too
    // short for the trailer it strips: check both first.
    let header = header_of(bytes).ok_or_else(|| DecodeError("truncated event".into()))?;
    if header.event_size() as usize != bytes.len() || bytes.len() < HEADER_LEN + CHECKSUM_LEN + 1 {
        return Err(DecodeError(format!(
            "event of {} bytes announces {}",
            bytes.len(),
            header.event_size()
        )));
    }
    Event::read(fde, bytes).map_err(|e| DecodeError(e.to_string()))
}

fn header_of(bytes: &[u8]) -> Option<BinlogEventHeader> {
    let header = bytes.get(..HEADER_LEN)?;
    BinlogEventHeader::deserialize((), &mut ParseBuf(header)).ok()
}

/// An event type for messages.
pub fn kind_of(event_type: Result<EventType, UnknownEventType>) -> String {
    match event_type {
        Ok(t) => format!("{t:?}"),
        Err(e) => format!("unknown type {}", e.0),
    }
}

/// One event, owning its bytes.
#[derive(Debug)]
pub struct RawEvent {
    header: BinlogEventHeader,
    /// Header, body and, for events from the network when the source uses
    /// CRC32, the checksum trailer.
    bytes: Vec<u8>,
    format: Format,
    /// Unpacked from a TRANSACTION_PAYLOAD: no trailer (WL#3549).
    unpacked: bool,
}

impl RawEvent {
    /// `None` when `bytes` is shorter than an event header.
    pub fn new(bytes: Vec<u8>, format: Format, unpacked: bool) -> Option<RawEvent> {
        Some(RawEvent {
            header: header_of(&bytes)?,
            bytes,
            format,
            unpacked,
        })
    }

    pub fn header(&self) -> BinlogEventHeader {
        self.header
    }

    pub fn event_type(&self) -> Result<EventType, UnknownEventType> {
        self.header().event_type()
    }

    /// The event's type for messages.
    pub fn kind(&self) -> String {
        kind_of(self.event_type())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    pub fn decode(&self) -> Result<Event, DecodeError> {
        let layouts = &self.format.0;
        let fde = if self.unpacked {
            &layouts.unpacked
        } else {
            &layouts.network
        };
        decode_with(fde, &self.bytes)
    }

    /// The event as a `BINLOG` statement needs it: in the layout the source's
    /// FORMAT_DESCRIPTION announces, i.e. with a CRC32 trailer counted in the
    /// header's size when the source uses checksums. Events from the network
    /// already are; unpacked ones get the trailer appended (their buffers have
    /// room for it), as mysqlbinlog does.
    pub fn into_serialized(self) -> Result<Vec<u8>, LayoutError> {
        let mut bytes = self.bytes;
        if self.unpacked && self.format.has_crc() {
            bytes.extend_from_slice(&[0; CHECKSUM_LEN]);
            reseal(&mut bytes, true)?;
        }
        Ok(bytes)
    }
}
