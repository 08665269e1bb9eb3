//! Row values as last-writer-wins handles them: SQL literals for comparing and
//! writing rows on the target, readable JSON for the conflict log, and the
//! canonical key text of a row for the version map.
//!
//! Literals are built from hex (`X'…'`) rather than quoted text so that they do
//! not depend on the session's `sql_mode` (NO_BACKSLASH_ESCAPES) or character
//! set. Hex literals count as numbers in numeric context, so numeric values are
//! checked to be plain decimal text and written bare instead.

use mysql_async::Value;
use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use serde_json::Value as Json;

use super::ConflictError;
use super::schema::{Column, ColumnKind, TableInfo};
use crate::admin::clock::utc_text;
use crate::conn::hex;

/// `X'…'`; an empty hex literal is written `''` (X'' is valid but reads badly).
fn hex_literal(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "''".to_string()
    } else {
        format!("X'{}'", hex(bytes))
    }
}

/// Decimal text (`-12.50`, `3e-7`), safe to write bare into SQL.
fn numeric_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    ok.then_some(text)
}

fn not_numeric(bytes: &[u8]) -> ConflictError {
    ConflictError::Decode(format!(
        "expected a number, got {:?}",
        String::from_utf8_lossy(bytes)
    ))
}

fn datetime_text(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> String {
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
}

fn time_text(neg: bool, days: u32, h: u8, mi: u8, s: u8, us: u32) -> String {
    let hours = u64::from(days) * 24 + u64::from(h);
    format!(
        "{}{hours:02}:{mi:02}:{s:02}.{us:06}",
        if neg { "-" } else { "" }
    )
}

fn json_literal(text: &str) -> String {
    format!(
        "CAST(CONVERT({} USING utf8mb4) AS JSON)",
        hex_literal(text.as_bytes())
    )
}

/// A SET column's binlog value: its member bitmap, little-endian.
fn set_bits(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

fn jsonb_to_json(v: &mysql_common::binlog::jsonb::Value<'_>) -> Result<Json, ConflictError> {
    v.clone()
        .parse()
        .map(Json::from)
        .map_err(|e| ConflictError::Decode(format!("JSON column value: {e}")))
}

/// Text in the column's character set (coercible, so the column's collation
/// and index apply); bytes when the character set is unknown.
fn text_literal_of(col: &Column, bytes: &[u8]) -> String {
    match &col.charset {
        Some(cs) if bytes.is_empty() => format!("_{cs}''"),
        Some(cs) => format!("_{cs} X'{}'", hex(bytes)),
        None => hex_literal(bytes),
    }
}

/// Date and time text as MySQL prints it, safe to quote.
fn temporal_literal(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b' '))
        .then(|| format!("'{text}'"))
}

/// A value from a rows event as an SQL expression of the column's type.
pub fn binlog_literal(col: &Column, v: &BinlogValue<'_>) -> Result<String, ConflictError> {
    let kind = col.kind;
    match v {
        BinlogValue::Jsonb(j) => Ok(json_literal(&jsonb_to_json(j)?.to_string())),
        BinlogValue::JsonDiff(_) => Err(ConflictError::Unsupported(
            "partial JSON updates (binlog_row_value_options=PARTIAL_JSON)".into(),
        )),
        BinlogValue::Value(v) => Ok(match v {
            Value::NULL => "NULL".into(),
            // The old TIMESTAMP type is binlogged as seconds.
            Value::Int(i) if kind == ColumnKind::Timestamp => timestamp_literal(&i.to_string()),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => format!("CAST('{f}' AS FLOAT)"),
            Value::Double(d) => format!("{d:e}"),
            Value::Date(y, mo, d, h, mi, s, us) => {
                format!("'{}'", datetime_text(*y, *mo, *d, *h, *mi, *s, *us))
            }
            Value::Time(neg, days, h, mi, s, us) => {
                format!("'{}'", time_text(*neg, *days, *h, *mi, *s, *us))
            }
            Value::Bytes(b) => match kind {
                ColumnKind::Exact | ColumnKind::Float | ColumnKind::Double => {
                    numeric_text(b).ok_or_else(|| not_numeric(b))?.to_string()
                }
                ColumnKind::Timestamp => {
                    timestamp_literal(numeric_text(b).ok_or_else(|| not_numeric(b))?)
                }
                ColumnKind::Set => set_bits(b).to_string(),
                ColumnKind::Json => json_literal(&String::from_utf8_lossy(b)),
                ColumnKind::Text => text_literal_of(col, b),
                _ => hex_literal(b),
            },
        }),
    }
}

/// Binlogged TIMESTAMP values are seconds since the epoch; the session's time
/// zone turns them back into the column's value, as it does for the column.
fn timestamp_literal(seconds: &str) -> String {
    if seconds.trim_start_matches('0').is_empty() || seconds == "0.000000" {
        "'0000-00-00 00:00:00'".into()
    } else {
        format!("FROM_UNIXTIME({seconds})")
    }
}

/// A value read from the target in the text protocol, as an SQL expression.
pub fn text_literal(col: &Column, v: &Value) -> Result<String, ConflictError> {
    match v {
        Value::NULL => Ok("NULL".into()),
        Value::Bytes(b) => Ok(match col.kind {
            ColumnKind::Exact | ColumnKind::Float | ColumnKind::Double => {
                numeric_text(b).ok_or_else(|| not_numeric(b))?.to_string()
            }
            ColumnKind::Json => json_literal(&String::from_utf8_lossy(b)),
            ColumnKind::Date | ColumnKind::Datetime | ColumnKind::Time | ColumnKind::Timestamp => {
                temporal_literal(b).ok_or_else(|| {
                    ConflictError::Decode(format!(
                        "expected a date or time, got {:?}",
                        String::from_utf8_lossy(b)
                    ))
                })?
            }
            ColumnKind::Text => text_literal_of(col, b),
            // ENUM and SET members as text, bytes as bytes.
            _ => hex_literal(b),
        }),
        // The text protocol only sends bytes; anything else is written by
        // mysql_common itself.
        other => Ok(other.as_sql(true)),
    }
}

/// Bytes as a JSON string when they are printable UTF-8, else `{"hex": …}`.
fn bytes_json(b: &[u8]) -> Json {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            Json::String(s.to_string())
        }
        _ => serde_json::json!({ "hex": hex(b) }),
    }
}

fn number_json(text: &str) -> Json {
    if let Ok(i) = text.parse::<i64>() {
        Json::from(i)
    } else if let Ok(u) = text.parse::<u64>() {
        Json::from(u)
    } else {
        // DECIMAL keeps its exact text.
        Json::String(text.to_string())
    }
}

/// A binlog value for the conflict log.
pub fn binlog_json(kind: ColumnKind, v: &BinlogValue<'_>) -> Json {
    match v {
        BinlogValue::Jsonb(j) => jsonb_to_json(j).unwrap_or_else(|e| Json::String(e.to_string())),
        BinlogValue::JsonDiff(_) => Json::String("(partial JSON update)".into()),
        BinlogValue::Value(v) => match v {
            Value::NULL => Json::Null,
            Value::Int(i) if kind == ColumnKind::Timestamp => Json::String(utc_text(*i, 0)),
            Value::Int(i) => Json::from(*i),
            Value::UInt(u) => Json::from(*u),
            Value::Float(f) => {
                serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
            }
            Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
            Value::Date(y, mo, d, h, mi, s, us) => {
                Json::String(datetime_text(*y, *mo, *d, *h, *mi, *s, *us))
            }
            Value::Time(neg, days, h, mi, s, us) => {
                Json::String(time_text(*neg, *days, *h, *mi, *s, *us))
            }
            Value::Bytes(b) => match kind {
                ColumnKind::Exact => number_json(&String::from_utf8_lossy(b)),
                ColumnKind::Timestamp => {
                    let text = String::from_utf8_lossy(b);
                    let (secs, frac) = text.split_once('.').unwrap_or((&text, "0"));
                    let us = format!("{frac:0<6}")
                        .get(..6)
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(0);
                    Json::String(utc_text(secs.parse().unwrap_or(0), us))
                }
                ColumnKind::Set => Json::from(set_bits(b)),
                _ => bytes_json(b),
            },
        },
    }
}

/// A value read from the target (text protocol) for the conflict log.
pub fn text_json(kind: ColumnKind, v: &Value) -> Json {
    match v {
        Value::NULL => Json::Null,
        Value::Bytes(b) => match kind {
            ColumnKind::Exact => number_json(&String::from_utf8_lossy(b)),
            ColumnKind::Float | ColumnKind::Double => String::from_utf8_lossy(b)
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| bytes_json(b), Json::Number),
            ColumnKind::Json => serde_json::from_slice(b).unwrap_or_else(|_| bytes_json(b)),
            _ => bytes_json(b),
        },
        other => Json::String(other.as_sql(true)),
    }
}

/// The key of a row image in the version map: table and key values, in a form
/// both the tracker (reading the target's binlog) and the applier (reading the
/// source's) compute identically from binlog values.
pub fn row_key(table: &TableInfo, row: &BinlogRow) -> String {
    let values: Vec<Json> = table
        .key
        .iter()
        .map(|&i| match row.as_ref(i) {
            Some(v) => binlog_json(table.columns[i].kind, v),
            None => Json::Null,
        })
        .collect();
    format!(
        "{}\u{0}{}\u{0}{}",
        table.schema,
        table.table,
        Json::Array(values)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ColumnKind) -> Column {
        Column {
            name: "c".into(),
            kind,
            generated: false,
            charset: None,
        }
    }

    #[test]
    fn literals_do_not_depend_on_escaping() {
        let v = |x: Value| BinlogValue::Value(x);
        let text = Column {
            charset: Some("utf8mb4".into()),
            ..col(ColumnKind::Text)
        };
        assert_eq!(
            binlog_literal(&text, &v(Value::Bytes(b"ab".to_vec()))).unwrap(),
            "_utf8mb4 X'6162'"
        );
        assert_eq!(
            text_literal(
                &col(ColumnKind::Datetime),
                &Value::Bytes(b"2026-01-02 03:04:05".to_vec())
            )
            .unwrap(),
            "'2026-01-02 03:04:05'"
        );
        assert!(text_literal(&col(ColumnKind::Date), &Value::Bytes(b"x'".to_vec())).is_err());
        assert_eq!(
            binlog_literal(&col(ColumnKind::Text), &v(Value::Bytes(b"it's\\".to_vec()))).unwrap(),
            "X'69742773 5C'".replace(' ', "")
        );
        assert_eq!(
            binlog_literal(
                &col(ColumnKind::Exact),
                &v(Value::Bytes(b"-12.50".to_vec()))
            )
            .unwrap(),
            "-12.50"
        );
        assert!(
            binlog_literal(
                &col(ColumnKind::Exact),
                &v(Value::Bytes(b"1; DROP".to_vec()))
            )
            .is_err()
        );
        assert_eq!(
            binlog_literal(&col(ColumnKind::Exact), &v(Value::Int(-3))).unwrap(),
            "-3"
        );
        assert_eq!(
            binlog_literal(&col(ColumnKind::Text), &v(Value::NULL)).unwrap(),
            "NULL"
        );
        assert_eq!(
            binlog_literal(
                &col(ColumnKind::Datetime),
                &v(Value::Date(2026, 1, 2, 3, 4, 5, 6))
            )
            .unwrap(),
            "'2026-01-02 03:04:05.000006'"
        );
        assert_eq!(
            binlog_literal(
                &col(ColumnKind::Timestamp),
                &v(Value::Bytes(b"1700000000.5".to_vec()))
            )
            .unwrap(),
            "FROM_UNIXTIME(1700000000.5)"
        );
        assert_eq!(
            binlog_literal(&col(ColumnKind::Set), &v(Value::Bytes(vec![5, 1]))).unwrap(),
            "261"
        );
        assert_eq!(
            binlog_literal(&col(ColumnKind::Double), &v(Value::Double(0.1))).unwrap(),
            "1e-1"
        );
        assert_eq!(
            text_literal(&col(ColumnKind::Json), &Value::Bytes(b"{}".to_vec())).unwrap(),
            "CAST(CONVERT(X'7B7D' USING utf8mb4) AS JSON)"
        );
        assert_eq!(
            text_literal(&col(ColumnKind::Text), &Value::Bytes(vec![])).unwrap(),
            "''"
        );
    }

    #[test]
    fn log_values_are_readable() {
        let v = |x: Value| BinlogValue::Value(x);
        assert_eq!(
            binlog_json(ColumnKind::Text, &v(Value::Bytes(b"abc".to_vec()))),
            Json::String("abc".into())
        );
        assert_eq!(
            binlog_json(ColumnKind::Bytes, &v(Value::Bytes(vec![0, 255]))),
            serde_json::json!({"hex": "00FF"})
        );
        assert_eq!(
            binlog_json(ColumnKind::Exact, &v(Value::Bytes(b"12.50".to_vec()))),
            Json::String("12.50".into())
        );
        assert_eq!(
            binlog_json(ColumnKind::Exact, &v(Value::Int(7))),
            Json::from(7)
        );
        assert_eq!(
            text_json(ColumnKind::Exact, &Value::Bytes(b"42".to_vec())),
            Json::from(42)
        );
        assert_eq!(
            binlog_json(
                ColumnKind::Timestamp,
                &v(Value::Bytes(b"1700000000.25".to_vec()))
            ),
            Json::String("2023-11-14T22:13:20.250000Z".into())
        );
    }
}
