//! Timestamps in MySQL's textual forms. The relay reports UTC (`@@system_time_zone`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Calendar fields of a UTC instant.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    min: u64,
    sec: u64,
    micros: u32,
}

fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        micros: d.subsec_micros(),
    }
}

/// `%y%m%d %H:%i:%s`, as in `Last_IO_Error_Timestamp`.
pub fn replica_status_timestamp(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:02}{:02}{:02} {:02}:{:02}:{:02}",
        c.year.rem_euclid(100),
        c.month,
        c.day,
        c.hour,
        c.min,
        c.sec
    )
}

/// `YYYY-MM-DD HH:MM:SS`, as `NOW()` returns it.
pub fn datetime(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.min, c.sec
    )
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, as performance_schema TIMESTAMP(6) columns; MySQL's
/// zero value when unknown.
pub fn datetime_micros(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => format!("{}.{:06}", datetime(t), civil(t).micros),
        None => "0000-00-00 00:00:00.000000".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        // 2024-02-29 13:05:09.000042 UTC
        let t = UNIX_EPOCH + Duration::from_micros(1_709_211_909_000_042);
        assert_eq!(replica_status_timestamp(t), "240229 13:05:09");
        assert_eq!(datetime(t), "2024-02-29 13:05:09");
        assert_eq!(datetime_micros(Some(t)), "2024-02-29 13:05:09.000042");
        assert_eq!(datetime(UNIX_EPOCH), "1970-01-01 00:00:00");
    }
}
