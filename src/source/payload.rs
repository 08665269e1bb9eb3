//! TRANSACTION_PAYLOAD events (binlog_transaction_compression=ON): a whole
//! transaction's events in one event, usually zstd-compressed. They are
//! unpacked one at a time as the stream asks for them, so a transaction is held
//! compressed, once, and never decompressed whole.
//!
//! Layout (libbinlogevents, Transaction_payload_event): after the common header,
//! fields of (type, length, value) as packed integers, ended by type 0; the
//! payload takes the rest of the body.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use crate::source::event_bytes::{self, CHECKSUM_LEN, HEADER_LEN, LayoutError};

const END_MARK: u64 = 0;
const PAYLOAD_SIZE: u64 = 1;
const COMPRESSION_TYPE: u64 = 2;
const ZSTD: u64 = 0;
const NONE: u64 = 255;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload header: {0}")]
    Header(&'static str),
    #[error("unknown compression type {0}")]
    Compression(u64),
    #[error("decompressing: {0}")]
    Io(#[from] io::Error),
    #[error("an inner event: {0}")]
    Layout(#[from] LayoutError),
    #[error("a TRANSACTION_PAYLOAD inside another")]
    Nested,
}

/// The inner events of one TRANSACTION_PAYLOAD, read lazily.
pub struct Unpacker {
    reader: Box<dyn BufRead + Send>,
}

impl Unpacker {
    /// `event` is the payload event; `crc` whether it ends with a checksum.
    pub fn new(event: Vec<u8>, crc: bool) -> Result<Unpacker, PayloadError> {
        let body_end = event
            .len()
            .checked_sub(if crc { CHECKSUM_LEN } else { 0 })
            .filter(|&end| end >= HEADER_LEN)
            .ok_or(PayloadError::Header("event too short"))?;
        let (start, size, compression) = fields(&event[HEADER_LEN..body_end])?;
        let start = HEADER_LEN + start;
        if start.checked_add(size).is_none_or(|end| end > body_end) {
            return Err(PayloadError::Header("payload larger than the event"));
        }
        let mut payload = Cursor::new(event);
        payload.set_position(start as u64);
        let payload = payload.take(size as u64);
        let reader: Box<dyn BufRead + Send> = match compression {
            ZSTD => Box::new(BufReader::new(zstd::stream::read::Decoder::with_buffer(
                payload,
            )?)),
            NONE => Box::new(payload),
            other => return Err(PayloadError::Compression(other)),
        };
        Ok(Unpacker { reader })
    }

    /// The next inner event (without a checksum trailer, but with room for
    /// one), or None at the end of the payload.
    pub fn next_event(&mut self) -> Result<Option<Vec<u8>>, PayloadError> {
        if self.reader.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        self.reader.read_exact(&mut header)?;
        if event_bytes::is_transaction_payload(&header) {
            return Err(PayloadError::Nested);
        }
        let mut bytes = event_bytes::buffer_for(&header, CHECKSUM_LEN)?;
        self.reader.read_exact(&mut bytes[HEADER_LEN..])?;
        Ok(Some(bytes))
    }
}

/// Where the payload starts in `body`, its size and its compression type.
fn fields(mut body: &[u8]) -> Result<(usize, usize, u64), PayloadError> {
    let total = body.len();
    let (mut size, mut compression) = (None, None);
    loop {
        let field = packed_int(&mut body)?;
        if field == END_MARK {
            break;
        }
        let len = usize::try_from(packed_int(&mut body)?)
            .map_err(|_| PayloadError::Header("field length"))?;
        let value = body
            .get(..len)
            .ok_or(PayloadError::Header("field longer than the event"))?;
        let mut v = value;
        match field {
            PAYLOAD_SIZE => size = Some(packed_int(&mut v)?),
            COMPRESSION_TYPE => compression = Some(packed_int(&mut v)?),
            _ => {}
        }
        body = &body[len..];
    }
    let size = size.ok_or(PayloadError::Header("no payload size"))?;
    let size = usize::try_from(size).map_err(|_| PayloadError::Header("payload size"))?;
    let compression = compression.ok_or(PayloadError::Header("no compression type"))?;
    Ok((total - body.len(), size, compression))
}

/// A length-encoded integer (net_store_length), as the payload header packs them.
fn packed_int(buf: &mut &[u8]) -> Result<u64, PayloadError> {
    let truncated = PayloadError::Header("truncated field");
    let (&first, rest) = buf.split_first().ok_or(truncated)?;
    let width = match first {
        0..=250 => {
            *buf = rest;
            return Ok(u64::from(first));
        }
        252 => 2,
        253 => 3,
        254 => 8,
        _ => return Err(PayloadError::Header("bad packed integer")),
    };
    let bytes = rest
        .get(..width)
        .ok_or(PayloadError::Header("truncated field"))?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    *buf = &rest[width..];
    Ok(u64::from_le_bytes(le))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; HEADER_LEN];
        e[4] = kind;
        e[9..13].copy_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    fn payload_event(compression: u64, payload: &[u8], crc: bool) -> Vec<u8> {
        let mut e = vec![0u8; HEADER_LEN];
        e[4] = 40;
        for (field, value) in [
            (COMPRESSION_TYPE, compression),
            (PAYLOAD_SIZE, payload.len() as u64),
        ] {
            let value = packed(value);
            e.push(field as u8);
            e.push(value.len() as u8);
            e.extend_from_slice(&value);
        }
        e.extend_from_slice(&[3, 1, 9, 0]); // an uncompressed-size field, then the end mark
        e.extend_from_slice(payload);
        if crc {
            e.extend_from_slice(&[0xAA; CHECKSUM_LEN]);
        }
        e
    }

    fn packed(v: u64) -> Vec<u8> {
        match v {
            0..=250 => vec![v as u8],
            251..=0xffff => [&[252u8][..], &(v as u16).to_le_bytes()].concat(),
            _ => [&[254u8][..], &v.to_le_bytes()].concat(),
        }
    }

    fn unpack_all(event: Vec<u8>, crc: bool) -> Result<Vec<Vec<u8>>, PayloadError> {
        let mut u = Unpacker::new(event, crc)?;
        let mut out = vec![];
        while let Some(e) = u.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn an_absurd_payload_size_is_an_error_not_an_overflow() {
        // Header fields: payload size = u64::MAX (packed: 254 + 8 bytes), zstd.
        let mut event = vec![0u8; HEADER_LEN];
        event.extend_from_slice(&[PAYLOAD_SIZE as u8, 9, 254]);
        event.extend_from_slice(&u64::MAX.to_le_bytes());
        event.extend_from_slice(&[COMPRESSION_TYPE as u8, 1, ZSTD as u8, 0]);
        assert!(matches!(
            Unpacker::new(event, false),
            Err(PayloadError::Header(_))
        ));
    }

    #[test]
    fn events_come_out_one_by_one_compressed_or_not() {
        let events = [
            inner(19, b"map"),
            inner(30, &[7u8; 5000]),
            inner(16, b"xid!"),
        ];
        let plain: Vec<u8> = events.concat();
        let packed = zstd::encode_all(&plain[..], 3).expect("compress");
        for (compression, payload) in [(NONE, &plain), (ZSTD, &packed)] {
            for crc in [false, true] {
                let got =
                    unpack_all(payload_event(compression, payload, crc), crc).expect("unpacked");
                assert_eq!(got, events, "compression {compression}, crc {crc}");
                assert!(got.iter().all(|e| e.capacity() >= e.len() + CHECKSUM_LEN));
            }
        }
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let plain = inner(30, b"rows");
        assert!(matches!(
            unpack_all(payload_event(7, &plain, false), false),
            Err(PayloadError::Compression(7))
        ));
        let mut truncated = payload_event(NONE, &plain, false);
        truncated.truncate(truncated.len() - 2);
        assert!(unpack_all(truncated, false).is_err());
        let nested = payload_event(NONE, &inner(40, b"x"), false);
        assert!(matches!(
            unpack_all(nested, false),
            Err(PayloadError::Nested)
        ));
        assert!(matches!(
            unpack_all(
                payload_event(NONE, &inner(30, b""), false)[..HEADER_LEN + 3].to_vec(),
                false
            ),
            Err(PayloadError::Header(_))
        ));
    }
}
