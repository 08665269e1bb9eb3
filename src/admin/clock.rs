//! Timestamps in MySQL's textual forms. The relay reports UTC (`@@system_time_zone`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Calendar fields of a UTC instant.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    micros: u32,
}

fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    civil_of_secs(i64::try_from(d.as_secs()).unwrap_or(0), d.subsec_micros())
}

/// `secs` since the epoch, before it too.
fn civil_of_secs(secs: i64, micros: u32) -> Civil {
    // Howard Hinnant's civil_from_days.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs.rem_euclid(86_400);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        micros,
    }
}

/// `YYYY-MM-DDThh:mm:ss.uuuuuuZ` for seconds since the epoch (the conflict log).
pub fn utc_text(secs: i64, micros: u32) -> String {
    let c = civil_of_secs(secs, micros);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.year, c.month, c.day, c.hour, c.min, c.sec, c.micros
    )
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
        assert_eq!(utc_text(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc_text(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
    }
}
