//! `gtid_relay::gtid` against a real MySQL 9.7: parsing, printing, algebra and
//! binary encoding must agree with the server byte for byte.

use std::time::Instant;

use gtid_relay::gtid::{Gtid, GtidSet, MAX_GNO, Uuid};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::Sandbox;

/// Random sets compared per run (each also as the second operand of another).
const PAIRS: usize = 1200;

/// Stay well below Linux's 128 KiB limit for one command-line argument.
const MAX_STATEMENT_BYTES: usize = 100_000;

const TAGS: [Option<&str>; 6] = [
    None,
    Some("a"),
    Some("_b"),
    Some("Tag_1"),
    Some("zz9"),
    Some("t_32_characters_long_tag_abcdefg"),
];

/// Undo the mysql client's batch-mode escaping of a field.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|line| line.split('\t').map(unescape).collect())
        .collect()
}

fn whitespace(rng: &mut StdRng) -> &'static str {
    ["", "", "", " ", "\n", "\t ", "\r\n"][rng.random_range(0..7)]
}

fn gno(rng: &mut StdRng) -> u64 {
    if rng.random_bool(0.2) {
        rng.random_range(MAX_GNO - 300..=MAX_GNO)
    } else {
        rng.random_range(1..200)
    }
}

/// A set in MySQL's loose input syntax: repeated uuids and tags, upper case,
/// whitespace, empty entries, overlapping, unordered and reversed intervals.
fn random_set_text(rng: &mut StdRng, uuids: &[Uuid]) -> String {
    let mut text = String::new();
    for _ in 0..rng.random_range(1..5) {
        if !text.is_empty() {
            text.push(',');
        }
        if rng.random_bool(0.05) {
            text.push(',');
        }
        text.push_str(whitespace(rng));
        let uuid = uuids[rng.random_range(0..uuids.len())].to_string();
        if rng.random_bool(0.2) {
            text.push_str(&uuid.to_uppercase());
        } else {
            text.push_str(&uuid);
        }
        for _ in 0..rng.random_range(0..4) {
            text.push_str(whitespace(rng));
            text.push(':');
            if rng.random_bool(0.3) {
                if let Some(tag) = TAGS[rng.random_range(0..TAGS.len())] {
                    text.push_str(tag);
                    text.push(':');
                }
            }
            let start = gno(rng);
            text.push_str(&start.to_string());
            if rng.random_bool(0.7) {
                let end = if rng.random_bool(0.1) {
                    start.saturating_sub(rng.random_range(1..5))
                } else {
                    start.saturating_add(rng.random_range(0..60)).min(MAX_GNO)
                };
                text.push_str(whitespace(rng));
                text.push('-');
                text.push_str(&end.to_string());
            }
        }
        text.push_str(whitespace(rng));
    }
    text
}

/// `SELECT` over a `VALUES` table; rows come back in `column_0` order.
fn values_query(select: &str, rows: &[String]) -> String {
    format!(
        "SELECT {select} FROM (VALUES {}) AS v ORDER BY column_0",
        rows.join(",")
    )
}

fn sql_literal(text: &str) -> String {
    assert!(!text.contains(['\'', '\\']), "{text:?}");
    format!("'{text}'")
}

#[test]
fn random_sets_agree_with_mysql() {
    let sb = Sandbox::start(1, &[]);
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x6774_6964);
    let uuids: Vec<Uuid> = (0..4).map(|_| Uuid(rng.random())).collect();
    let pairs: Vec<(String, String)> = (0..PAIRS)
        .map(|_| {
            let a = random_set_text(&mut rng, &uuids);
            let mut b = random_set_text(&mut rng, &uuids);
            // Often a superset of a, so GTID_SUBSET is exercised both ways.
            if rng.random_bool(0.3) {
                b = format!("{b},{a}");
            }
            (a, b)
        })
        .collect();

    let select = "GTID_SUBTRACT(column_1, ''), GTID_SUBTRACT(column_1, column_2), \
                  GTID_SUBSET(column_1, column_2), \
                  GTID_SUBTRACT(CONCAT(column_1, ',', column_2), '')";
    let mut statements = 0;
    let mut checked = 0;
    // Guard against a generator that drifted into trivial sets.
    let (mut tagged, mut huge, mut subsets, mut empty) = (0, 0, 0, 0);
    let mut start = 0;
    while start < pairs.len() {
        let mut values = Vec::new();
        let mut bytes = 0;
        let mut end = start;
        while end < pairs.len() && bytes < MAX_STATEMENT_BYTES / 2 {
            let (a, b) = &pairs[end];
            let row = format!("ROW({end}, {}, {})", sql_literal(a), sql_literal(b));
            bytes += row.len();
            values.push(row);
            end += 1;
        }
        let out = sb.sql(1, &values_query(select, &values));
        statements += 1;
        let got = rows(&out);
        assert_eq!(got.len(), end - start, "rows returned");
        for ((a_text, b_text), row) in pairs[start..end].iter().zip(&got) {
            let a = GtidSet::parse(a_text).unwrap_or_else(|e| panic!("{a_text:?}: {e}"));
            let b = GtidSet::parse(b_text).unwrap_or_else(|e| panic!("{b_text:?}: {e}"));
            let ctx = format!("a={a_text:?} b={b_text:?}");
            assert_eq!(row[0], a.to_string(), "normalisation of {ctx}");
            assert_eq!(row[1], a.subtract(&b).to_string(), "a - b for {ctx}");
            assert_eq!(row[2] == "1", a.is_subset(&b), "a ⊆ b for {ctx}");
            assert_eq!(row[3], a.union(&b).to_string(), "a ∪ b for {ctx}");
            // What the server printed parses back to the same set.
            assert_eq!(GtidSet::parse(&row[0]).as_ref(), Ok(&a), "{ctx}");
            checked += 1;
            tagged += usize::from(row[0].split([':', ',']).any(|part| {
                part.len() <= 32 && part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            }));
            huge += usize::from(row[0].contains(":922337203685477"));
            subsets += usize::from(row[2] == "1");
            empty += usize::from(row[0].is_empty());
        }
        start = end;
    }
    assert_eq!(checked, PAIRS);
    for (what, n) in [("tagged", tagged), ("huge GNO", huge), ("subset", subsets)] {
        assert!(n > PAIRS / 10, "only {n} {what} cases");
    }
    assert!(
        subsets < PAIRS - PAIRS / 10,
        "{subsets} of {PAIRS} are subsets"
    );
    eprintln!(
        "gtid_sets: {PAIRS} pairs ({} sets; {tagged} tagged, {huge} with huge GNOs, \
         {subsets} subsets, {empty} empty) checked in {statements} statements, {:?}",
        2 * PAIRS,
        began.elapsed()
    );
}

#[test]
fn edge_cases_agree_with_mysql() {
    let sb = Sandbox::start(1, &[]);
    let u = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
    let accepted = [
        String::new(),
        " ,, ".to_owned(),
        u.to_owned(),
        format!("{u}:tag"),
        format!("{u}:3-0"),
        format!("{u} : 99 - 1 : Tag:1"),
        format!("{u}:007:x:1:y:2:X:3"),
        format!("{{{}}}:1", u.to_uppercase()),
        format!("{}:1", u.replace('-', "")),
        format!("{u}:1-{MAX_GNO}"),
        format!("{u}:{MAX_GNO}"),
        format!("{u}:1\x0b:\x0c2"),
    ];
    let values: Vec<String> = accepted
        .iter()
        .enumerate()
        .map(|(i, text)| format!("ROW({i}, {})", sql_literal(text)))
        .collect();
    let out = sb.sql(1, &values_query("GTID_SUBTRACT(column_1, '')", &values));
    let got = rows(&out);
    assert_eq!(got.len(), accepted.len());
    for (text, row) in accepted.iter().zip(&got) {
        let ours = GtidSet::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(row[0], ours.to_string(), "{text:?}");
    }

    let rejected = [
        format!("{u}:0"),
        format!("{u}:{}", MAX_GNO + 1),
        format!("{u}:1-{}", MAX_GNO + 1),
        format!("{u}:3-"),
        format!("{u}:1:"),
        format!("{u}:tag:1: :2"),
        format!("{u}:{}:1", "a".repeat(33)),
        format!("{u}:tag-x:1"),
        format!("{u}:1-0x5"),
        format!("{{{}}}:1", u.replace('-', "")),
        format!("{u}}}:1"),
        format!("+{u}:1"),
    ];
    for text in &rejected {
        let server = sb.try_sql(
            1,
            &format!("SELECT GTID_SUBTRACT({}, '')", sql_literal(text)),
        );
        assert!(server.is_err(), "server accepted {text:?}: {server:?}");
        assert!(GtidSet::parse(text).is_err(), "we accepted {text:?}");
    }
}

/// A set the server built itself: `@@GLOBAL.gtid_executed` prints as our
/// Display, and the binlog's `Previous_gtids` event holds our `encode()`.
#[test]
fn server_built_set_prints_and_encodes_like_ours() {
    let sb = Sandbox::start(1, &[]);
    let mut rng = StdRng::seed_from_u64(0x7473_6964);
    let uuids: Vec<Uuid> = (0..3).map(|_| Uuid(rng.random())).collect();
    let mut expected = GtidSet::new();
    let mut sql = String::new();
    for _ in 0..80 {
        let uuid = uuids[rng.random_range(0..uuids.len())];
        let tag = [None, Some("alpha"), Some("Beta_2")][rng.random_range(0..3)];
        let gno = if rng.random_bool(0.1) {
            rng.random_range(MAX_GNO - 5..=MAX_GNO)
        } else {
            rng.random_range(1..40)
        };
        let text = match tag {
            Some(tag) => format!("{uuid}:{tag}:{gno}"),
            None => format!("{uuid}:{gno}"),
        };
        let gtid: Gtid = text.parse().expect("generated GTID");
        if expected.insert(&gtid) {
            sql.push_str(&format!("SET GTID_NEXT='{text}'; COMMIT; "));
        }
    }
    sql.push_str("SET GTID_NEXT='AUTOMATIC'; CREATE DATABASE gtid_sets_probe;");
    sb.sql(1, &sql);
    let own: Uuid = sb.server_uuid(1).parse().expect("server uuid");
    expected.insert(&Gtid {
        uuid: own,
        tag: None,
        gno: 1,
    });

    let printed = unescape(&sb.value(1, "SELECT @@GLOBAL.gtid_executed"));
    assert_eq!(printed, expected.to_string());
    assert!(printed.contains(":alpha:") && printed.contains(",\n"));
    assert_eq!(GtidSet::parse(&printed), Ok(expected.clone()));

    sb.sql(1, "FLUSH BINARY LOGS");
    let file = sb.value(1, "SHOW BINARY LOG STATUS");
    let file = file.split('\t').next().expect("binlog file name");
    assert_eq!(sb.value(1, "SELECT @@binlog_checksum"), "CRC32");
    let path = std::path::Path::new(sb.run(&["datadir", "1"]).trim()).join(file);
    let binlog = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body = previous_gtids_body(&binlog).expect("Previous_gtids event");
    assert_eq!(body, expected.encode().as_slice());
    assert_eq!(GtidSet::decode(body), Ok(expected));
}

/// The body of the first `PREVIOUS_GTIDS_LOG_EVENT` (type 35), CRC32 stripped.
fn previous_gtids_body(binlog: &[u8]) -> Option<&[u8]> {
    const HEADER: usize = 19;
    const CHECKSUM: usize = 4;
    let mut pos = 4; // magic "\xfebin"
    while pos + HEADER <= binlog.len() {
        let kind = binlog[pos + 4];
        let size = u32::from_le_bytes(binlog[pos + 9..pos + 13].try_into().ok()?) as usize;
        if kind == 35 {
            return binlog.get(pos + HEADER..pos + size - CHECKSUM);
        }
        pos += size;
    }
    None
}
