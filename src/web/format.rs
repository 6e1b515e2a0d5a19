//! How pages show times: an absolute UTC time and words relative to now.

/// A moment as pages show it.
#[derive(Debug, Clone)]
pub struct When {
    /// `2026-11-21 14:03 UTC`
    pub absolute: String,
    /// `3 minutes ago`, `in 89 days`
    pub relative: String,
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
}

impl When {
    pub fn at(ts: i64, now: i64) -> Self {
        let (date, hh, mm, ss) = civil(ts);
        When {
            absolute: format!("{date} {hh:02}:{mm:02} UTC"),
            relative: relative(ts, now),
            iso: format!("{date}T{hh:02}:{mm:02}:{ss:02}Z"),
        }
    }

    pub fn maybe(ts: Option<i64>, now: i64) -> Option<Self> {
        ts.map(|t| Self::at(t, now))
    }
}

/// `YYYY-MM-DD` and the time of day of a Unix time (proleptic Gregorian, UTC).
fn civil(ts: i64) -> (String, i64, i64, i64) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), secs / 3_600, secs % 3_600 / 60, secs % 60)
}

fn relative(ts: i64, now: i64) -> String {
    let diff = ts - now;
    let span = diff.abs();
    let (n, unit) = match span {
        0..60 => return if diff <= 0 { "just now".into() } else { "in a moment".into() },
        60..3_600 => (span / 60, "minute"),
        3_600..86_400 => (span / 3_600, "hour"),
        _ => (span / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if diff < 0 { format!("{n} {unit}{plural} ago") } else { format!("in {n} {unit}{plural}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_times_agree_with_known_dates() {
        // 2000-02-29 12:34:56 UTC, 1970-01-01 and 2026-11-18, checked with `date -u -d @N`.
        assert_eq!(When::at(951_827_696, 0).iso, "2000-02-29T12:34:56Z");
        assert_eq!(When::at(0, 0).absolute, "1970-01-01 00:00 UTC");
        assert_eq!(When::at(1_795_000_000, 0).iso, "2026-11-18T11:06:40Z");
    }

    #[test]
    fn relative_words() {
        assert_eq!(relative(100, 130), "just now");
        assert_eq!(relative(0, 120), "2 minutes ago");
        assert_eq!(relative(0, 3_600), "1 hour ago");
        assert_eq!(relative(90 * 86_400, 0), "in 90 days");
    }
}
