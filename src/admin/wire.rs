//! The server's generic responses (OK, ERR, EOF, text result sets); the framing is
//! crate::wire's.

use mysql_common::constants::{CapabilityFlags, ColumnType, StatusFlags};
use mysql_common::io::WriteMysqlExt;

pub use crate::wire::{Io, Packets, WireError};

/// Largest command the endpoint accepts. Admin statements are tiny; the cap bounds the
/// memory a client can make a connection hold. Reported as `@@max_allowed_packet`.
pub const MAX_PACKET: usize = 4 * 1024 * 1024;

pub fn status_flags() -> StatusFlags {
    StatusFlags::SERVER_STATUS_AUTOCOMMIT
}

pub fn ok_packet(affected_rows: u64) -> Vec<u8> {
    let mut p = vec![0x00];
    put_lenenc_int(&mut p, affected_rows);
    put_lenenc_int(&mut p, 0); // last insert id
    p.extend_from_slice(&status_flags().bits().to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes()); // warnings
    p
}

/// EOF, or with CLIENT_DEPRECATE_EOF its replacement (an OK packet with header 0xfe).
fn end_packet(caps: CapabilityFlags) -> Vec<u8> {
    if caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
        let mut p = ok_packet(0);
        p[0] = 0xfe;
        p
    } else {
        eof_packet()
    }
}

pub fn eof_packet() -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&status_flags().bits().to_le_bytes());
    p
}

/// A MySQL error as the client shows it: `ERROR code (state): message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: u16,
    pub state: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(code: u16, state: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            state,
            message: message.into(),
        }
    }

    pub fn packet(&self) -> Vec<u8> {
        let mut p = vec![0xff];
        p.extend_from_slice(&self.code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(self.state.as_bytes());
        p.extend_from_slice(self.message.as_bytes());
        p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    Text,
    Int,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub name: String,
    pub kind: ColKind,
}

impl Col {
    pub fn text(name: impl Into<String>) -> Col {
        Col {
            name: name.into(),
            kind: ColKind::Text,
        }
    }

    pub fn int(name: impl Into<String>) -> Col {
        Col {
            name: name.into(),
            kind: ColKind::Int,
        }
    }
}

/// A text-protocol result set; `None` is SQL NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<Col>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// utf8mb4_0900_ai_ci, and `binary` for numbers, as MySQL labels them.
const UTF8MB4: u16 = 255;
const BINARY: u16 = 63;

pub fn write_result_set(packets: &mut Packets, caps: CapabilityFlags, rs: &ResultSet) {
    let mut p = Vec::new();
    put_lenenc_int(&mut p, rs.columns.len() as u64);
    packets.write(&p);
    for col in &rs.columns {
        packets.write(&column_definition(col));
    }
    if !caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
        packets.write(&eof_packet());
    }
    for row in &rs.rows {
        let mut p = Vec::new();
        for value in row {
            match value {
                Some(v) => put_lenenc_str(&mut p, v.as_bytes()),
                None => p.push(0xfb),
            }
        }
        packets.write(&p);
    }
    packets.write(&end_packet(caps));
}

fn column_definition(col: &Col) -> Vec<u8> {
    let (ty, charset, len, flags) = match col.kind {
        ColKind::Text => (ColumnType::MYSQL_TYPE_VAR_STRING, UTF8MB4, 1024u32, 0u16),
        // BINARY_FLAG, as MySQL sets on numeric columns.
        ColKind::Int => (ColumnType::MYSQL_TYPE_LONGLONG, BINARY, 21u32, 128u16),
    };
    let mut p = Vec::new();
    put_lenenc_str(&mut p, b"def");
    put_lenenc_str(&mut p, b""); // schema
    put_lenenc_str(&mut p, b""); // table
    put_lenenc_str(&mut p, b""); // org_table
    put_lenenc_str(&mut p, col.name.as_bytes());
    put_lenenc_str(&mut p, col.name.as_bytes());
    put_lenenc_int(&mut p, 0x0c);
    p.extend_from_slice(&charset.to_le_bytes());
    p.extend_from_slice(&len.to_le_bytes());
    p.push(ty as u8);
    p.extend_from_slice(&flags.to_le_bytes());
    p.push(0); // decimals
    p.extend_from_slice(&[0, 0]);
    p
}

fn put_lenenc_int(p: &mut Vec<u8>, v: u64) {
    // Writing into a Vec cannot fail.
    let _ = p.write_lenenc_int(v);
}

fn put_lenenc_str(p: &mut Vec<u8>, v: &[u8]) {
    let _ = p.write_lenenc_str(v);
}
