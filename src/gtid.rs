//! MySQL GTID sets, byte-exact with MySQL 9.7.
//!
//! The relay compares, stores and forwards GTID sets that MySQL produced and
//! must read back, so text and binary forms follow the server exactly:
//!
//! * Text (`@@GLOBAL.gtid_executed`, `GTID_SUBTRACT`): blocks ordered by
//!   (uuid bytes, tag bytes), the untagged intervals of a uuid first, then
//!   `:tag:intervals` per tag in byte order; uuid blocks separated by `",\n"`;
//!   interval ends inclusive; the empty set prints as `""`.
//! * Binary (the SID block of `COM_BINLOG_DUMP_GTID`, the body of a
//!   `Previous_gtids` event): `Gtid_set::encode` of `sql/rpl_gtid_set.cc`.
//!
//! GNOs range over `1..=2^63-2`: MySQL keeps exclusive interval ends in an
//! `int64`, so `i64::MAX` itself can never be a GTID.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use mysql_common::packets::{GnoInterval, Sid};

/// Largest GNO MySQL accepts.
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

/// Longest tag MySQL accepts.
const TAG_MAX_LEN: usize = 32;

/// Format byte of the binary encoding (top byte of the leading `n_sids` word).
const FORMAT_UNTAGGED: u8 = 0;
const FORMAT_TAGGED: u8 = 1;

/// Why a GTID, tag, uuid or GTID set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("malformed GTID text: expected {expected} at byte {pos}, found {found:?} in {input:?}")]
    Syntax {
        expected: &'static str,
        pos: usize,
        found: String,
        input: String,
    },
    #[error(
        "invalid UUID {0:?}: expected 8-4-4-4-12 hex digits, optionally in braces, or 32 hex digits"
    )]
    Uuid(String),
    #[error("invalid GTID tag {0:?}: expected [a-zA-Z_][a-zA-Z0-9_]{{0,31}}")]
    Tag(String),
    #[error("GNO {0:?} out of range 1..={MAX_GNO}")]
    GnoOutOfRange(String),
    #[error("malformed GTID set encoding at byte {pos}: {reason}")]
    Encoding { pos: usize, reason: String },
}

/// A server UUID; orders by bytes, as MySQL's `memcmp` does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        let mut p = Parser::new(s);
        match p.uuid() {
            Ok(uuid) if p.at_end() => Ok(uuid),
            _ => Err(GtidError::Uuid(s.to_owned())),
        }
    }
}

/// A GTID tag (MySQL 8.4+), stored lower-cased as MySQL normalises it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_valid(s: &str) -> bool {
        let mut bytes = s.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && s.len() <= TAG_MAX_LEN
    }
}

impl FromStr for Tag {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        if Tag::is_valid(s) {
            Ok(Tag(s.to_ascii_lowercase()))
        } else {
            Err(GtidError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One transaction id: `uuid:gno` or `uuid:tag:gno`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Gtid {
    pub uuid: Uuid,
    pub tag: Option<Tag>,
    pub gno: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uuid)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        write!(f, ":{}", self.gno)
    }
}

impl FromStr for Gtid {
    type Err = GtidError;

    /// Same lexical rules as a set, but exactly one uuid, at most one tag and one GNO.
    fn from_str(s: &str) -> Result<Self, GtidError> {
        let mut p = Parser::new(s);
        p.skip_ws();
        let uuid = p.uuid()?;
        p.skip_ws();
        p.expect(b':', "':'")?;
        p.skip_ws();
        let tag = if p.at_tag_start() {
            let tag = p.tag()?;
            p.skip_ws();
            p.expect(b':', "':'")?;
            p.skip_ws();
            Some(tag)
        } else {
            None
        };
        let gno = p.gno()?;
        p.skip_ws();
        if !p.at_end() {
            return Err(p.error("end of GTID"));
        }
        Ok(Gtid { uuid, tag, gno })
    }
}

/// The identity intervals are kept under: MySQL's TSID. `None` sorts before
/// every tag, which is where MySQL prints the untagged intervals.
type Tsid = (Uuid, Option<Tag>);

/// A set of GTIDs.
///
/// Per TSID, half-open `[start, end)` intervals, sorted, disjoint and not
/// touching, never empty; so derived equality is set equality.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct GtidSet {
    intervals: BTreeMap<Tsid, Vec<(u64, u64)>>,
}

impl GtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses MySQL's input forms: whitespace anywhere between tokens, empty
    /// and repeated entries, repeated uuids and tags, unordered or overlapping
    /// intervals, tags without intervals; `a-b` with `b < a` is empty.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let mut set = GtidSet::new();
        let mut p = Parser::new(s);
        loop {
            p.skip_ws();
            match p.peek() {
                None => return Ok(set),
                Some(b',') => {
                    p.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let uuid = p.uuid()?;
            let mut tag = None;
            p.skip_ws();
            while p.peek() == Some(b':') {
                p.pos += 1;
                p.skip_ws();
                if p.at_tag_start() {
                    tag = Some(p.tag()?);
                } else if let Some((start, end)) = p.interval()? {
                    set.add_interval(&(uuid, tag.clone()), start, end);
                }
                p.skip_ws();
            }
            if !matches!(p.peek(), None | Some(b',')) {
                return Err(p.error("',', ':' or end of set"));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    pub fn contains(&self, gtid: &Gtid) -> bool {
        self.intervals
            .get(&(gtid.uuid, gtid.tag.clone()))
            .is_some_and(|ivs| {
                let i = ivs.partition_point(|&(_, end)| end <= gtid.gno);
                ivs.get(i).is_some_and(|&(start, _)| start <= gtid.gno)
            })
    }

    /// Adds one GTID; true if it was not in the set before.
    ///
    /// # Panics
    /// If `gtid.gno` is outside `1..=MAX_GNO`, which no MySQL server produces.
    pub fn insert(&mut self, gtid: &Gtid) -> bool {
        assert!(
            (1..=MAX_GNO).contains(&gtid.gno),
            "GNO {} out of range",
            gtid.gno
        );
        if self.contains(gtid) {
            return false;
        }
        self.add_interval(&(gtid.uuid, gtid.tag.clone()), gtid.gno, gtid.gno + 1);
        true
    }

    pub fn union_with(&mut self, other: &GtidSet) {
        for (tsid, theirs) in &other.intervals {
            let merged = match self.intervals.get(tsid) {
                Some(ours) => union_intervals(ours, theirs),
                None => theirs.clone(),
            };
            self.intervals.insert(tsid.clone(), merged);
        }
    }

    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut set = self.clone();
        set.union_with(other);
        set
    }

    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        self.combine(other, |ours, theirs| match theirs {
            Some(theirs) => subtract_intervals(ours, theirs),
            None => ours.to_vec(),
        })
    }

    pub fn intersect(&self, other: &GtidSet) -> GtidSet {
        self.combine(other, |ours, theirs| match theirs {
            Some(theirs) => intersect_intervals(ours, theirs),
            None => Vec::new(),
        })
    }

    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.intervals.iter().all(|(tsid, ours)| {
            other
                .intervals
                .get(tsid)
                .is_some_and(|theirs| subtract_intervals(ours, theirs).is_empty())
        })
    }

    /// Number of GTIDs, saturating at `u64::MAX` (only reachable with many
    /// near-full TSIDs).
    pub fn count(&self) -> u64 {
        self.intervals
            .values()
            .flatten()
            .fold(0u64, |n, &(start, end)| n.saturating_add(end - start))
    }

    /// The GTIDs that originate from `uuid`, all tags included.
    pub fn for_uuid(&self, uuid: &Uuid) -> GtidSet {
        let intervals = self
            .intervals
            .range((*uuid, None)..)
            .take_while(|((u, _), _)| u == uuid)
            .map(|(tsid, ivs)| (tsid.clone(), ivs.clone()))
            .collect();
        GtidSet { intervals }
    }

    /// The distinct source uuids, in MySQL's order.
    pub fn uuids(&self) -> impl Iterator<Item = Uuid> + '_ {
        let mut prev = None;
        self.intervals
            .keys()
            .map(|(uuid, _)| *uuid)
            .filter(move |uuid| prev.replace(*uuid) != Some(*uuid))
    }

    /// The set as mysql_common SIDs, for COM_BINLOG_DUMP_GTID.
    pub fn to_sids(&self) -> Vec<Sid<'static>> {
        self.intervals
            .iter()
            .map(|((uuid, tag), ivs)| {
                let sid = Sid::new(uuid.0).with_intervals(
                    ivs.iter()
                        .map(|&(start, end)| GnoInterval::new(start, end))
                        .collect(),
                );
                match tag {
                    Some(tag) => sid.with_tag(
                        mysql_common::packets::Tag::new(tag.0.clone())
                            .expect("a normalised tag is a valid mysql_common tag"),
                    ),
                    None => sid,
                }
            })
            .collect()
    }

    /// MySQL's `Gtid_set::encode`: the untagged format when no GTID has a
    /// tag (what pre-8.4 servers understand), the tagged one otherwise.
    ///
    /// In the tagged format MySQL repeats the format byte in the low byte of
    /// the `n_sids` word; mysql_common writes 0 there. Servers ignore that
    /// byte, and we match what MySQL itself writes into binlogs.
    pub fn encode(&self) -> Vec<u8> {
        let tagged = self.intervals.keys().any(|(_, tag)| tag.is_some());
        let n_sids = self.intervals.len() as u64;
        let header = if tagged {
            (u64::from(FORMAT_TAGGED) << 56) | (n_sids << 8) | u64::from(FORMAT_TAGGED)
        } else {
            n_sids
        };
        let mut buf = header.to_le_bytes().to_vec();
        for ((uuid, tag), ivs) in &self.intervals {
            buf.extend_from_slice(&uuid.0);
            if tagged {
                let tag = tag.as_ref().map_or("", Tag::as_str);
                // MySQL's variable-length unsigned integer; a length of at most
                // 32 always fits the one-byte form `len << 1`.
                buf.push((tag.len() as u8) << 1);
                buf.extend_from_slice(tag.as_bytes());
            }
            buf.extend_from_slice(&(ivs.len() as u64).to_le_bytes());
            for &(start, end) in ivs {
                buf.extend_from_slice(&start.to_le_bytes());
                buf.extend_from_slice(&end.to_le_bytes());
            }
        }
        buf
    }

    /// Inverse of [`GtidSet::encode`], as strict as MySQL's
    /// `Gtid_set::add_gtid_encoding`; also accepts mysql_common's tagged header.
    pub fn decode(bytes: &[u8]) -> Result<Self, GtidError> {
        let mut r = Reader { bytes, pos: 0 };
        let header = r.u64()?;
        let tagged = match (header >> 56) as u8 {
            FORMAT_UNTAGGED => false,
            FORMAT_TAGGED => true,
            other => return Err(encoding_error(0, format!("unknown format byte {other}"))),
        };
        let n_sids = if tagged {
            (header & 0x00ff_ffff_ffff_ff00) >> 8
        } else {
            header & 0x00ff_ffff_ffff_ffff
        };
        let mut set = GtidSet::new();
        for _ in 0..n_sids {
            let uuid = Uuid(r.take(16)?.try_into().expect("took 16 bytes"));
            let tag = if tagged { r.tag()? } else { None };
            let tsid = (uuid, tag);
            let n_intervals = r.u64()?;
            if n_intervals
                .checked_mul(16)
                .is_none_or(|n| n > r.remaining())
            {
                return Err(encoding_error(
                    r.pos - 8,
                    format!("{n_intervals} intervals do not fit"),
                ));
            }
            let mut last = 0;
            for _ in 0..n_intervals {
                let at = r.pos;
                let (start, end) = (r.u64()?, r.u64()?);
                // Signed in MySQL: a set bit 63 is a negative, invalid GNO.
                if start <= last || end <= start || end > i64::MAX as u64 {
                    return Err(encoding_error(
                        at,
                        format!("interval [{start}, {end}) after {last}"),
                    ));
                }
                last = end;
                set.add_interval(&tsid, start, end);
            }
        }
        if r.remaining() != 0 {
            return Err(encoding_error(
                r.pos,
                format!("{} trailing bytes", r.remaining()),
            ));
        }
        Ok(set)
    }

    /// Adds `[start, end)`, keeping the per-TSID invariant.
    fn add_interval(&mut self, tsid: &Tsid, start: u64, end: u64) {
        debug_assert!(0 < start && start < end && end <= MAX_GNO + 1);
        let ivs = self.intervals.entry(tsid.clone()).or_default();
        *ivs = union_intervals(ivs, &[(start, end)]);
    }

    /// Applies `op` per TSID of `self` (with `other`'s intervals for the same
    /// TSID, if any), dropping TSIDs left empty.
    fn combine(
        &self,
        other: &GtidSet,
        op: impl Fn(&[(u64, u64)], Option<&[(u64, u64)]>) -> Vec<(u64, u64)>,
    ) -> GtidSet {
        let intervals = self
            .intervals
            .iter()
            .filter_map(|(tsid, ours)| {
                let ivs = op(ours, other.intervals.get(tsid).map(Vec::as_slice));
                (!ivs.is_empty()).then(|| (tsid.clone(), ivs))
            })
            .collect();
        GtidSet { intervals }
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        GtidSet::parse(s)
    }
}

impl fmt::Display for GtidSet {
    /// Exactly `@@GLOBAL.gtid_executed`, e.g.
    /// `"3e11fa47-...:1-5:tag_a:1-3:7,\n4f...:9"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<Uuid> = None;
        for ((uuid, tag), ivs) in &self.intervals {
            if prev != Some(*uuid) {
                if prev.is_some() {
                    f.write_str(",\n")?;
                }
                write!(f, "{uuid}")?;
                prev = Some(*uuid);
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
            for &(start, end) in ivs {
                write!(f, ":{start}")?;
                if end - 1 > start {
                    write!(f, "-{}", end - 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Union of two normalised interval lists; touching intervals merge.
fn union_intervals(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (start, end) in all {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// `a` minus `b`, both normalised.
fn subtract_intervals(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut start, end) in a {
        while j < b.len() && b[j].1 <= start {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < end {
            if b[k].0 > start {
                out.push((start, b[k].0));
            }
            start = start.max(b[k].1);
            k += 1;
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

/// `a` intersected with `b`, both normalised.
fn intersect_intervals(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0);
        let end = a[i].1.min(b[j].1);
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Cursor over GTID text, following the token rules of MySQL 9.7's parser.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos == self.input.len()
    }

    /// MySQL skips the C `isspace` set: space, `\t`, `\n`, `\v`, `\f`, `\r`.
    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
        ) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &'static str) -> GtidError {
        let rest = &self.input.as_bytes()[self.pos..];
        let found = if rest.is_empty() {
            "end of input".to_owned()
        } else {
            String::from_utf8_lossy(&rest[..rest.len().min(24)]).into_owned()
        };
        GtidError::Syntax {
            expected,
            pos: self.pos,
            found,
            input: self.input.chars().take(120).collect(),
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), GtidError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn hex_byte(&mut self) -> Result<u8, GtidError> {
        let digit = |p: &mut Self| {
            let d = p.peek().and_then(|b| (b as char).to_digit(16));
            d.map(|d| {
                p.pos += 1;
                d as u8
            })
            .ok_or_else(|| p.error("a hex digit"))
        };
        Ok(digit(self)? << 4 | digit(self)?)
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, the same in braces, or 32 hex
    /// digits: the forms MySQL 9.7 accepts, any case.
    fn uuid(&mut self) -> Result<Uuid, GtidError> {
        let braced = self.peek() == Some(b'{');
        if braced {
            self.pos += 1;
        }
        // Braces require hyphens; otherwise the character after the first 8
        // digits decides between the hyphenated and the 32-digit form.
        let mut hyphenated = braced;
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            if i == 4 && !braced {
                hyphenated = self.peek() == Some(b'-');
            }
            if hyphenated && matches!(i, 4 | 6 | 8 | 10) {
                self.expect(b'-', "'-' in UUID")?;
            }
            *byte = self.hex_byte()?;
        }
        if braced {
            self.expect(b'}', "'}' closing UUID")?;
        }
        Ok(Uuid(bytes))
    }

    fn at_tag_start(&self) -> bool {
        self.peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
    }

    fn tag(&mut self) -> Result<Tag, GtidError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        self.input[start..self.pos].parse()
    }

    /// A decimal number; `None` when out of `u64` range.
    fn number(&mut self) -> Result<(&'a str, Option<u64>), GtidError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("a number"));
        }
        let text = &self.input[start..self.pos];
        Ok((text, text.parse().ok()))
    }

    fn gno(&mut self) -> Result<u64, GtidError> {
        match self.number()? {
            (_, Some(gno)) if (1..=MAX_GNO).contains(&gno) => Ok(gno),
            (text, _) => Err(GtidError::GnoOutOfRange(text.to_owned())),
        }
    }

    /// `start[-end]` with an inclusive end, as half-open `[start, end+1)`;
    /// `None` when `end < start`, which MySQL accepts as empty.
    fn interval(&mut self) -> Result<Option<(u64, u64)>, GtidError> {
        let start = self.gno()?;
        self.skip_ws();
        if self.peek() != Some(b'-') {
            return Ok(Some((start, start + 1)));
        }
        self.pos += 1;
        self.skip_ws();
        let end = match self.number()? {
            (_, Some(end)) if end <= MAX_GNO => end,
            (text, _) => return Err(GtidError::GnoOutOfRange(text.to_owned())),
        };
        Ok((end >= start).then_some((start, end + 1)))
    }
}

fn encoding_error(pos: usize, reason: String) -> GtidError {
    GtidError::Encoding { pos, reason }
}

/// Bounds-checked reader over an encoded GTID set.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize) -> Result<&[u8], GtidError> {
        let end = self.pos + n;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| {
            encoding_error(
                self.pos,
                format!("{n} bytes needed, {} left", self.remaining()),
            )
        })?;
        self.pos = end;
        Ok(slice)
    }

    fn u64(&mut self) -> Result<u64, GtidError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    /// Length (MySQL variable-length unsigned integer) and bytes of a tag;
    /// an empty tag is an untagged TSID.
    fn tag(&mut self) -> Result<Option<Tag>, GtidError> {
        let at = self.pos;
        let first = self.take(1)?[0];
        let len = if first & 1 == 0 {
            usize::from(first >> 1)
        } else {
            // MySQL writes tag lengths (at most 32) in the one-byte form.
            return Err(encoding_error(at, "tag length too long".to_owned()));
        };
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                encoding_error(
                    at,
                    format!("invalid tag {:?}", String::from_utf8_lossy(bytes)),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::ComBinlogDumpGtid;
    use mysql_common::proto::MySerialize;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const U1: &str = "00000000-0000-0000-0000-000000000001";
    const U2: &str = "7f000000-0000-0000-0000-00000000abcd";
    const U3: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Normalisations observed on a MySQL 9.7 server (`GTID_SUBTRACT(x, '')`).
    #[test]
    fn prints_like_mysql() {
        let a = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
        for (input, expected) in [
            ("", String::new()),
            (" \r,, ,\t", String::new()),
            (a, String::new()),
            (&format!("{a}:abc"), String::new()),
            (&format!("{a}:3-0"), String::new()),
            (&format!("{a}:5-4:6"), format!("{a}:6")),
            (&format!("{a}:007"), format!("{a}:7")),
            (&format!("{a}:1-3:4-6"), format!("{a}:1-6")),
            (&format!("{a}:2:1-3:1:5-6"), format!("{a}:1-3:5-6")),
            (
                &format!("{a} : TAG : 1 : Foo:2"),
                format!("{a}:foo:2:tag:1"),
            ),
            (&format!("{a}:1-3 , {a}:tag:5"), format!("{a}:1-3:tag:5")),
            (
                &format!("{a}:x:1,{a}:_:2,{a}:X_1:3,{a}:a:4,{a}:9"),
                format!("{a}:9:_:2:a:4:x:1:x_1:3"),
            ),
            (&format!("{a}\x0b:\x0c1"), format!("{a}:1")),
            (
                "AAAAAAAA-BBBB-cccc-DDDD-EEEEEEEEEEEE:1,AAAAAAAABBBBccccDDDDEEEEEEEEEEEE:2,\
                 {aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}:3",
                "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:1-3".to_owned(),
            ),
            (
                &format!("{U3}:t:2, {U1}:tag:1:tag2:4, {U2}:1, {U1}:3"),
                format!("{U1}:3:tag:1:tag2:4,\n{U2}:1,\n{U3}:t:2"),
            ),
            (
                &format!("{a}:9223372036854775806"),
                format!("{a}:9223372036854775806"),
            ),
        ] {
            assert_eq!(set(input).to_string(), expected, "input {input:?}");
        }
    }

    /// Inputs a MySQL 9.7 server rejects.
    #[test]
    fn rejects_what_mysql_rejects() {
        let a = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
        let tag33 = "a".repeat(33);
        for input in [
            format!("{a}:0"),
            format!("{a}:9223372036854775807"),
            format!("{a}:5-9223372036854775807"),
            format!("{a}:12345678901234567890"),
            format!("{a}:3-"),
            format!("{a}:+5"),
            format!("{a}:5--7"),
            format!("{a}:1-0x5"),
            format!("{a}:1 2"),
            format!("{a}:1:"),
            format!("{a}::1"),
            format!("{a}:tag:"),
            format!("{a}:tag:1: :2"),
            format!("{a}:9tag:1"),
            format!("{a}:tag-x:1"),
            format!("{a}:é:1"),
            format!("{a}:{tag33}:1"),
            format!("{a}}}:1"),
            format!("{{{a}:1"),
            format!("+{a}:1"),
            "{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}:1".to_owned(),
            "aaaaaaaa-aaaaaaaa-aaaa-aaaa-aaaaaaaaaaaa:1".to_owned(),
            "aaaaaaaaaaaaaaaa-aaaa-aaaa-aaaaaaaaaaaa:1".to_owned(),
            "aaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaaa:1".to_owned(),
            "1-2".to_owned(),
            ":1".to_owned(),
        ] {
            assert!(GtidSet::parse(&input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn errors_name_the_offending_text() {
        let err = GtidSet::parse(&format!("{U1}:1-3:x-y")).unwrap_err();
        assert!(err.to_string().contains("\"-y\""), "{err}");
        let err = GtidSet::parse(&format!("{U1}:99999999999999999999")).unwrap_err();
        assert!(err.to_string().contains("99999999999999999999"), "{err}");
        let err = "notauuid".parse::<Uuid>().unwrap_err();
        assert!(err.to_string().contains("notauuid"), "{err}");
    }

    #[test]
    fn single_values() {
        let uuid: Uuid = U2.to_uppercase().parse().expect("uuid");
        assert_eq!(uuid.to_string(), U2);
        let tag: Tag = "Ab_9".parse().expect("tag");
        assert_eq!(tag.as_str(), "ab_9");
        for bad in ["", "9a", "a-b", "é", &"x".repeat(33)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
        let g: Gtid = format!("{U1}:Tag:5").parse().expect("gtid");
        assert_eq!(g.to_string(), format!("{U1}:tag:5"));
        let g: Gtid = format!("{U1}:{MAX_GNO}").parse().expect("gtid");
        assert_eq!((g.tag, g.gno), (None, MAX_GNO));
        for bad in [
            U1.to_owned(),
            format!("{U1}:0"),
            format!("{U1}:1-2"),
            format!("{U1}:t"),
            format!("{U1}:{}", MAX_GNO + 1),
        ] {
            assert!(bad.parse::<Gtid>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn insert_contains_count_uuids() {
        let mut s = GtidSet::new();
        let g = |gno| Gtid {
            uuid: U2.parse().expect("uuid"),
            tag: None,
            gno,
        };
        assert!(s.insert(&g(2)));
        assert!(!s.insert(&g(2)));
        assert!(s.insert(&g(1)) && s.insert(&g(MAX_GNO)));
        assert!(s.contains(&g(1)) && !s.contains(&g(3)));
        assert_eq!(s.to_string(), format!("{U2}:1-2:{MAX_GNO}"));
        s.union_with(&set(&format!("{U1}:x:1-10,{U3}:1")));
        assert_eq!(s.count(), 14);
        let uuids: Vec<String> = s.uuids().map(|u| u.to_string()).collect();
        assert_eq!(uuids, [U1, U2, U3]);
        assert_eq!(
            s.for_uuid(&U1.parse().expect("uuid")).to_string(),
            format!("{U1}:x:1-10")
        );
    }

    /// The SID block mysql_common puts into `COM_BINLOG_DUMP_GTID`.
    fn mysql_common_sid_block(set: &GtidSet) -> Vec<u8> {
        let mut buf = Vec::new();
        ComBinlogDumpGtid::new(1)
            .with_sids(set.to_sids())
            .serialize(&mut buf);
        // command (1), flags (2), server id (4), empty file name (4), position (8)
        let len = u32::from_le_bytes(buf[19..23].try_into().expect("4 bytes")) as usize;
        buf[23..23 + len].to_vec()
    }

    #[test]
    fn decode_rejects_garbage() {
        let good = set(&format!("{U1}:1-5:9,{U2}:t:3")).encode();
        for (bad, why) in [
            (vec![], "empty"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([good.clone(), vec![0]].concat(), "trailing byte"),
            (
                [vec![0, 0, 0, 0, 0, 0, 0, 2], good[8..].to_vec()].concat(),
                "format 2",
            ),
        ] {
            assert!(GtidSet::decode(&bad).is_err(), "{why}");
        }
        // Intervals must ascend without touching, as in MySQL.
        let mut untagged = set(&format!("{U1}:1-2:5-6")).encode();
        untagged[8 + 16 + 8 + 16..8 + 16 + 8 + 24].copy_from_slice(&3u64.to_le_bytes());
        assert!(GtidSet::decode(&untagged).is_err());
    }

    #[derive(Debug, Clone)]
    struct Piece {
        uuid: usize,
        tag: usize,
        start: u64,
        len: u64,
        upper: bool,
    }

    const UUIDS: [&str; 3] = [U3, U1, U2];
    const TAGS: [Option<&str>; 5] = [None, Some("a"), Some("_x"), Some("b9"), Some("A")];

    fn piece() -> impl Strategy<Value = Piece> {
        let start = prop_oneof![4 => 1..40u64, 1 => (MAX_GNO - 40)..=MAX_GNO];
        (0..UUIDS.len(), 0..TAGS.len(), start, 0..6u64, any::<bool>()).prop_map(
            |(uuid, tag, start, len, upper)| Piece {
                uuid,
                tag,
                start,
                len: len.min(MAX_GNO - start),
                upper,
            },
        )
    }

    type Model = BTreeSet<(Uuid, Option<Tag>, u64)>;

    /// A set in MySQL's loose input syntax, and the GTIDs it denotes.
    fn text_and_model(pieces: &[Piece]) -> (String, Model) {
        let mut text = String::from(" ,");
        let mut model = Model::new();
        for p in pieces {
            let uuid = if p.upper {
                UUIDS[p.uuid].to_uppercase()
            } else {
                UUIDS[p.uuid].to_owned()
            };
            text.push_str(&format!("\n{uuid} :"));
            if let Some(tag) = TAGS[p.tag] {
                text.push_str(&format!(" {tag}:"));
            }
            let end = p.start + p.len;
            text.push_str(&format!("{} - {end},", p.start));
            let tag = TAGS[p.tag].map(|t| t.parse().expect("tag"));
            for gno in p.start..=end {
                model.insert((UUIDS[p.uuid].parse().expect("uuid"), tag.clone(), gno));
            }
        }
        (text, model)
    }

    fn model_of(set: &GtidSet) -> Model {
        set.intervals
            .iter()
            .flat_map(|((uuid, tag), ivs)| {
                ivs.iter()
                    .flat_map(|&(s, e)| s..e)
                    .map(move |gno| (*uuid, tag.clone(), gno))
            })
            .collect()
    }

    fn arb_set() -> impl Strategy<Value = (GtidSet, Model)> {
        prop::collection::vec(piece(), 0..8).prop_map(|pieces| {
            let (text, model) = text_and_model(&pieces);
            (set(&text), model)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_builds_the_model((s, model) in arb_set()) {
            prop_assert_eq!(model_of(&s), model.clone());
            prop_assert_eq!(s.count(), model.len() as u64);
            for (uuid, tag, gno) in &model {
                let gtid = Gtid { uuid: *uuid, tag: tag.clone(), gno: *gno };
                prop_assert!(s.contains(&gtid), "missing {}", gtid);
            }
            // Normalised: no empty, touching or unordered intervals.
            for ivs in s.intervals.values() {
                prop_assert!(!ivs.is_empty());
                prop_assert!(ivs.iter().all(|&(a, b)| 0 < a && a < b && b <= MAX_GNO + 1));
                prop_assert!(ivs.windows(2).all(|w| w[0].1 < w[1].0));
            }
        }

        #[test]
        fn display_round_trips((s, _) in arb_set()) {
            let text = s.to_string();
            let back = set(&text);
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn algebra_matches_model((a, ma) in arb_set(), (b, mb) in arb_set()) {
            prop_assert_eq!(model_of(&a.union(&b)), &ma | &mb);
            prop_assert_eq!(model_of(&a.subtract(&b)), &ma - &mb);
            prop_assert_eq!(model_of(&a.intersect(&b)), &ma & &mb);
            prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
            let mut u = a.clone();
            u.union_with(&b);
            prop_assert_eq!(&u, &a.union(&b));
        }

        #[test]
        fn algebra_laws((a, _) in arb_set(), (b, _) in arb_set()) {
            prop_assert_eq!(a.subtract(&b).union(&a.intersect(&b)), a.clone());
            prop_assert!(a.is_subset(&a.union(&b)));
            prop_assert!(a.intersect(&b).is_subset(&b));
            prop_assert!(a.subtract(&b).intersect(&b).is_empty());
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.intersect(&b), b.intersect(&a));
            prop_assert_eq!(a.subtract(&a), GtidSet::new());
            let mut inserted = a.clone();
            for ((uuid, tag), ivs) in &b.intervals {
                for gno in ivs.iter().flat_map(|&(s, e)| s..e) {
                    let gtid = Gtid { uuid: *uuid, tag: tag.clone(), gno };
                    prop_assert_eq!(inserted.insert(&gtid), !a.contains(&gtid));
                    prop_assert!(inserted.contains(&gtid), "missing {}", gtid);
                }
            }
            prop_assert_eq!(inserted, a.union(&b));
        }

        #[test]
        fn per_uuid_parts_partition_the_set((s, _) in arb_set()) {
            let mut rebuilt = GtidSet::new();
            for uuid in s.uuids() {
                let part = s.for_uuid(&uuid);
                prop_assert!(part.uuids().eq([uuid]));
                rebuilt.union_with(&part);
            }
            prop_assert_eq!(rebuilt, s);
        }

        #[test]
        fn encoding_round_trips_and_matches_mysql_common((s, _) in arb_set()) {
            let bytes = s.encode();
            prop_assert_eq!(GtidSet::decode(&bytes), Ok(s.clone()));
            let theirs = mysql_common_sid_block(&s);
            let tagged = s.intervals.keys().any(|(_, t)| t.is_some());
            prop_assert_eq!(bytes[7], u8::from(tagged), "format byte");
            if tagged {
                // Only difference: MySQL repeats the format in the low byte.
                prop_assert_eq!(bytes[0], FORMAT_TAGGED);
                prop_assert_eq!(theirs[0], 0);
                prop_assert_eq!(&bytes[1..], &theirs[1..]);
                prop_assert_eq!(GtidSet::decode(&theirs), Ok(s));
            } else {
                prop_assert_eq!(bytes, theirs);
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = GtidSet::decode(&bytes);
        }

        #[test]
        fn decode_survives_corruption((s, _) in arb_set(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = s.encode();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(decoded) = GtidSet::decode(&bytes) {
                // Whatever decodes re-encodes to a valid, decodable set.
                prop_assert_eq!(GtidSet::decode(&decoded.encode()), Ok(decoded));
            }
        }

        #[test]
        fn parse_never_panics(text in "[0-9a-fA-F:, \\-{}\\n_tT]{0,80}") {
            let _ = GtidSet::parse(&text);
        }
    }
}
