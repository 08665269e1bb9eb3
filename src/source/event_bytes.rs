//! The byte layout of serialised v4 binlog events, for the few places that
//! patch events in place (mysql_common has no setters): the header's size field,
//! the CRC32 trailer and the flags of Rows events.

use mysql_common::binlog::consts::EventType;

/// The v4 event header: timestamp, type, server_id, size, log_pos, flags.
pub const HEADER_LEN: usize = 19;
const TYPE_OFFSET: usize = 4;
const EVENT_LEN_OFFSET: usize = 9;
pub const CHECKSUM_LEN: usize = 4;
/// No event is larger than the 1 GiB packet limit a source applies to what it
/// sends replicas (MAX_MAX_ALLOWED_PACKET).
const MAX_EVENT_LEN: usize = 1 << 30;
/// Rows events: the 2 flag bytes follow the 6-byte table id.
const ROWS_FLAGS_OFFSET: usize = HEADER_LEN + 6;
/// Rows_event::STMT_END_F: the last Rows event of its statement.
pub const STMT_END_F: u16 = 0x0001;
/// The Rows event types, old and new.
const ROWS_EVENTS: [EventType; 7] = [
    EventType::WRITE_ROWS_EVENT_V1,
    EventType::UPDATE_ROWS_EVENT_V1,
    EventType::DELETE_ROWS_EVENT_V1,
    EventType::WRITE_ROWS_EVENT,
    EventType::UPDATE_ROWS_EVENT,
    EventType::DELETE_ROWS_EVENT,
    EventType::PARTIAL_UPDATE_ROWS_EVENT,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("event shorter than its {0}")]
    Truncated(&'static str),
    #[error("event larger than 4 GiB")]
    TooLarge,
    #[error("event size {0} in its header is outside {HEADER_LEN} bytes to 1 GiB")]
    Size(usize),
}

/// Set the header's event size to the buffer's length and, when the source
/// uses CRC32 checksums, recompute the trailer over the patched bytes.
pub fn reseal(event: &mut [u8], crc: bool) -> Result<(), LayoutError> {
    let len = u32::try_from(event.len()).map_err(|_| LayoutError::TooLarge)?;
    let Some(size) = event.get_mut(EVENT_LEN_OFFSET..EVENT_LEN_OFFSET + 4) else {
        return Err(LayoutError::Truncated("header"));
    };
    size.copy_from_slice(&len.to_le_bytes());
    if crc {
        let body = event.len().saturating_sub(CHECKSUM_LEN);
        let sum = crc32fast::hash(&event[..body]);
        event[body..].copy_from_slice(&sum.to_le_bytes());
    }
    Ok(())
}

/// A buffer for the event `header` starts: the header, then zeroes for the
/// rest of the size it announces, with `spare` bytes of capacity beyond.
/// A size no source sends is a corrupt header, refused before allocating.
pub fn buffer_for(header: &[u8; HEADER_LEN], spare: usize) -> Result<Vec<u8>, LayoutError> {
    let size = &header[EVENT_LEN_OFFSET..EVENT_LEN_OFFSET + 4];
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    if !(HEADER_LEN..=MAX_EVENT_LEN).contains(&size) {
        return Err(LayoutError::Size(size));
    }
    let mut event = Vec::with_capacity(size + spare);
    event.extend_from_slice(header);
    event.resize(size, 0);
    Ok(event)
}

pub fn is_rows(event_type: EventType) -> bool {
    ROWS_EVENTS.contains(&event_type)
}

fn type_of(event: &[u8]) -> Option<EventType> {
    EventType::try_from(*event.get(TYPE_OFFSET)?).ok()
}

pub fn is_table_map(event: &[u8]) -> bool {
    type_of(event) == Some(EventType::TABLE_MAP_EVENT)
}

pub fn is_transaction_payload(event: &[u8]) -> bool {
    type_of(event) == Some(EventType::TRANSACTION_PAYLOAD_EVENT)
}

/// True for a Rows event that ends its statement (flag STMT_END_F).
pub fn ends_statement(event: &[u8]) -> bool {
    type_of(event).is_some_and(is_rows)
        && rows_table_and_flags(event).is_some_and(|(_, flags)| flags & STMT_END_F != 0)
}

/// The table id and flags at the start of a serialised Rows event's post-header.
pub fn rows_table_and_flags(event: &[u8]) -> Option<(u64, u16)> {
    let id = event.get(HEADER_LEN..ROWS_FLAGS_OFFSET)?;
    let flags = event.get(ROWS_FLAGS_OFFSET..ROWS_FLAGS_OFFSET + 2)?;
    let mut id8 = [0u8; 8];
    id8[..6].copy_from_slice(id);
    Some((
        u64::from_le_bytes(id8),
        u16::from_le_bytes([flags[0], flags[1]]),
    ))
}

/// Set STMT_END_F on a Rows event.
pub fn mark_statement_end(event: &mut [u8], crc: bool) -> Result<(), LayoutError> {
    let Some(flags) = event.get_mut(ROWS_FLAGS_OFFSET..ROWS_FLAGS_OFFSET + 2) else {
        return Err(LayoutError::Truncated("Rows post-header"));
    };
    let value = u16::from_le_bytes([flags[0], flags[1]]) | STMT_END_F;
    flags.copy_from_slice(&value.to_le_bytes());
    reseal(event, crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: u8, flags: u16) -> Vec<u8> {
        let mut e = vec![0u8; 40];
        e[TYPE_OFFSET] = event_type;
        e[ROWS_FLAGS_OFFSET..ROWS_FLAGS_OFFSET + 2].copy_from_slice(&flags.to_le_bytes());
        e
    }

    #[test]
    fn statements_end_at_rows_events_with_stmt_end() {
        assert!(ends_statement(&event(30, 1)));
        assert!(ends_statement(&event(39, 3)));
        assert!(!ends_statement(&event(31, 2)));
        // A Table_map never ends a statement, whatever its bytes there.
        assert!(!ends_statement(&event(19, 1)));
        assert!(is_table_map(&event(19, 1)));
        assert!(!ends_statement(&[0, 0, 0, 0, 30]));
    }

    #[test]
    fn buffers_have_the_announced_size_and_corrupt_sizes_are_refused() {
        let mut header = [7u8; HEADER_LEN];
        header[EVENT_LEN_OFFSET..EVENT_LEN_OFFSET + 4].copy_from_slice(&30u32.to_le_bytes());
        let buffer = buffer_for(&header, CHECKSUM_LEN).expect("a valid size");
        assert_eq!(buffer.len(), 30);
        assert_eq!(&buffer[..HEADER_LEN], &header[..]);
        assert!(buffer.capacity() >= 30 + CHECKSUM_LEN);
        for size in [0u32, 18, (1 << 30) + 1, u32::MAX] {
            header[EVENT_LEN_OFFSET..EVENT_LEN_OFFSET + 4].copy_from_slice(&size.to_le_bytes());
            assert_eq!(
                buffer_for(&header, 0),
                Err(LayoutError::Size(size as usize))
            );
        }
    }

    #[test]
    fn marking_the_end_keeps_other_flags_and_reseals() {
        let mut e = event(31, 4);
        mark_statement_end(&mut e, true).unwrap();
        assert!(ends_statement(&e));
        assert_eq!(e[ROWS_FLAGS_OFFSET], 5);
        assert_eq!(u32::from_le_bytes(e[9..13].try_into().unwrap()), 40);
        let stored = u32::from_le_bytes(e[36..].try_into().unwrap());
        assert_eq!(stored, crc32fast::hash(&e[..36]));
        assert_eq!(
            mark_statement_end(&mut [0u8; 20], true),
            Err(LayoutError::Truncated("Rows post-header"))
        );
    }
}
