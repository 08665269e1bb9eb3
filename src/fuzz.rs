//! The bodies of the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz,
//! libFuzzer), over the project's real entry points. The corpus replay test
//! below runs each target's corpus on the stable toolchain, so CI checks every
//! input the fuzzers kept, including those that once crashed.
//!
//! A target must not panic on any input; where a parser accepts an input, the
//! target also checks a property (a GTID set survives its text and binary
//! round trips).

use std::path::Path;

use mysql_common::binlog::consts::BinlogChecksumAlg;

use crate::config::Config;
use crate::gtid::GtidSet;
use crate::source::assemble::Assembler;
use crate::source::event::{Format, RawEvent};
use crate::source::event_bytes::HEADER_LEN;
use crate::source::payload::Unpacker;

/// The FORMAT_DESCRIPTION event of a MySQL 9.7.4 binlog (CRC32 checksums),
/// which the binlog targets' events are laid out by.
const FDE_9_7: &[u8] = include_bytes!("fuzz_fde.bin");

/// A fuzz target's body: any bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Each fuzz target by name, as `fuzz/fuzz_targets/<name>.rs` calls it.
pub const TARGETS: [(&str, Target); 6] = [
    ("gtid_text", gtid_text),
    ("gtid_binary", gtid_binary),
    ("config", config),
    ("admin_sql", admin_sql),
    ("payload", payload),
    ("binlog_events", binlog_events),
];

/// `GtidSet::parse`; an accepted set prints as text that parses to itself.
pub fn gtid_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = GtidSet::parse(text) {
        let again = GtidSet::parse(&set.to_string()).expect("a printed GTID set parses");
        assert_eq!(again, set, "text round trip of {text:?}");
    }
}

/// `GtidSet::decode` (the binary form of COM_BINLOG_DUMP_GTID and
/// Previous_gtids); an accepted set encodes to bytes that decode to itself.
pub fn gtid_binary(data: &[u8]) {
    if let Ok(set) = GtidSet::decode(data) {
        let again = GtidSet::decode(&set.encode()).expect("an encoded GTID set decodes");
        assert_eq!(again, set, "binary round trip");
    }
}

/// The relay's TOML configuration.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(Path::new("/fuzz/relay.toml"), text);
    }
}

/// The admin endpoint's SQL front end, with and without the SLAVE spellings.
pub fn admin_sql(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crate::admin::sql::parse(text, true);
        crate::admin::sql::parse(text, false);
    }
}

/// A TRANSACTION_PAYLOAD event unpacked event by event; the first byte picks
/// whether the source's events carry checksums.
pub fn payload(data: &[u8]) {
    let Some((flags, event)) = data.split_first() else {
        return;
    };
    let Ok(mut unpacker) = Unpacker::new(event.to_vec(), flags & 1 == 1) else {
        return;
    };
    // Bounded: a payload's events are bounded by its size, but not its count.
    for _ in 0..10_000 {
        match unpacker.next_event() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// A binlog stream after a 9.7 FORMAT_DESCRIPTION: events framed by the size
/// in their headers (clamped to what is left), assembled into steps.
pub fn binlog_events(data: &[u8]) {
    let crc = Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    let fde = RawEvent::new(FDE_9_7.to_vec(), Format::initial(crc), false)
        .and_then(|e| e.decode().ok())
        .expect("the recorded FORMAT_DESCRIPTION decodes");
    let format = Format::of(&fde).expect("the recorded FORMAT_DESCRIPTION is a format");
    let mut assembler = Assembler::default();
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let announced = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
        let size = announced.clamp(HEADER_LEN, rest.len());
        let (bytes, tail) = rest.split_at(size);
        rest = tail;
        let Some(event) = RawEvent::new(bytes.to_vec(), format.clone(), false) else {
            return;
        };
        if assembler.feed(event).is_err() {
            assembler.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input kept in `fuzz/corpus/<target>/` runs through its target.
    #[test]
    fn every_corpus_input_runs_without_a_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let mut inputs = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.expect("corpus entry").path())
                .collect::<Vec<_>>();
            inputs.sort();
            assert!(!inputs.is_empty(), "{} has no inputs", dir.display());
            for input in inputs {
                let data = std::fs::read(&input).expect("read a corpus input");
                target(&data);
            }
        }
    }
}
