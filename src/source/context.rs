//! The events a source logs in front of a statement to carry what the
//! statement reads from its session: INTVAR (LAST_INSERT_ID(), the next
//! auto-increment value), RAND (RAND()'s seeds) and USER_VAR (a user
//! variable's value). In ROW format only statements logged as text still need
//! them, e.g. `SET @a = 6; CREATE EVENT e ON SCHEDULE EVERY @a SECOND …`.
//!
//! Layouts: sql/log_event.h (Intvar_log_event, Rand_log_event,
//! User_var_log_event); decoding is mysql_common's.

use mysql_common::binlog::consts::{IntvarEventType, UserVarFlags};
use mysql_common::binlog::decimal::Decimal;
use mysql_common::binlog::events::{Event, EventData, IntvarEvent, RandEvent, UserVarEvent};
use mysql_common::constants::ItemResult;

/// One value a statement takes from its session on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextVar {
    LastInsertId(u64),
    InsertId(u64),
    RandSeeds(u64, u64),
    UserVar { name: String, value: UserValue },
}

/// A user variable's value, typed as the source held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserValue {
    Null,
    /// Bytes in the character set of collation `collation` (an id).
    Str {
        bytes: Vec<u8>,
        collation: u16,
    },
    Int(i64),
    UInt(u64),
    /// An IEEE double, kept as its bits (so that the type stays `Eq`).
    Real(u64),
    /// Decimal text, e.g. `-12.50`.
    Decimal(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ContextError(String);

impl ContextVar {
    /// Decode an INTVAR, RAND or USER_VAR event.
    pub fn of(event: &Event) -> Result<ContextVar, ContextError> {
        let bad = |e: &dyn std::fmt::Display| ContextError(e.to_string());
        match event.read_data().map_err(|e| bad(&e))? {
            Some(EventData::IntvarEvent(e)) => Self::intvar(&e),
            Some(EventData::RandEvent(e)) => Ok(Self::rand(&e)),
            Some(EventData::UserVarEvent(e)) => Ok(ContextVar::UserVar {
                name: e.name().into_owned(),
                value: UserValue::of(&e)?,
            }),
            _ => Err(ContextError("not an INTVAR, RAND or USER_VAR event".into())),
        }
    }

    fn intvar(e: &IntvarEvent) -> Result<ContextVar, ContextError> {
        match e.subtype() {
            IntvarEventType::LAST_INSERT_ID_EVENT => Ok(ContextVar::LastInsertId(e.value())),
            IntvarEventType::INSERT_ID_EVENT => Ok(ContextVar::InsertId(e.value())),
            IntvarEventType::INVALID_INT_EVENT => {
                Err(ContextError("INTVAR event of an invalid type".into()))
            }
        }
    }

    fn rand(e: &RandEvent) -> ContextVar {
        ContextVar::RandSeeds(e.seed1.0, e.seed2.0)
    }
}

impl UserValue {
    fn of(e: &UserVarEvent<'_>) -> Result<UserValue, ContextError> {
        if e.is_null() {
            return Ok(UserValue::Null);
        }
        let value = e.value();
        let eight = || -> Result<[u8; 8], ContextError> {
            value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ContextError(format!("a {}-byte number", value.len())))
        };
        match e.value_type() {
            Ok(ItemResult::STRING_RESULT) => Ok(UserValue::Str {
                bytes: value.to_vec(),
                collation: u16::try_from(e.charset())
                    .map_err(|_| ContextError(format!("collation id {}", e.charset())))?,
            }),
            Ok(ItemResult::REAL_RESULT) => Ok(UserValue::Real(u64::from_le_bytes(eight()?))),
            Ok(ItemResult::INT_RESULT) if e.flags().contains(UserVarFlags::UNSIGNED) => {
                Ok(UserValue::UInt(u64::from_le_bytes(eight()?)))
            }
            Ok(ItemResult::INT_RESULT) => Ok(UserValue::Int(i64::from_le_bytes(eight()?))),
            Ok(ItemResult::DECIMAL_RESULT) => match value {
                // Precision and scale lead the packed value; mysql_common's
                // decoder assumes scale <= precision (it underflows otherwise).
                [precision, scale, ..] if scale <= precision => Decimal::read_packed(value, false)
                    .map(|d| UserValue::Decimal(d.to_string()))
                    .map_err(|e| ContextError(format!("decimal value: {e}"))),
                _ => Err(ContextError(format!(
                    "a decimal value without a valid precision and scale ({} bytes)",
                    value.len()
                ))),
            },
            Ok(other) => Err(ContextError(format!("user variable of type {other:?}"))),
            Err(e) => Err(ContextError(e.to_string())),
        }
    }
}
