//! Wall-clock time as calendar fields (UTC), for the few places that print
//! dates the way another program does (JUnit timestamps, kube-proxy's
//! health answers, HTTP `Date`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant split into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Utc {
    pub fn of(t: SystemTime) -> Utc {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's days-to-civil.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            nanos: d.subsec_nanos(),
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u32,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS` (no zone).
    pub fn iso_seconds(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// HTTP's `Date` (RFC 7231 IMF-fixdate), as Go's net/http writes it.
    pub fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// Go's `time.Time.String()` of a UTC time read from `time.Now()`:
    /// `2006-01-02 15:04:05.999999999 +0000 UTC m=+1.000000001` (fraction
    /// without trailing zeros; `m=` the monotonic reading, seconds since
    /// the process started).
    pub fn go_string(&self, monotonic: Duration) -> String {
        let mut frac = String::new();
        if self.nanos != 0 {
            frac = format!(".{:09}", self.nanos)
                .trim_end_matches('0')
                .to_string();
        }
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC m=+{}.{:09}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            monotonic.as_secs(),
            monotonic.subsec_nanos()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_go_and_http() {
        // 2026-12-01 14:05:09.1203 UTC, a Tuesday.
        let t = UNIX_EPOCH + Duration::new(1_796_133_909, 120_300_000);
        let u = Utc::of(t);
        assert_eq!(u.iso_seconds(), "2026-12-01T14:05:09");
        assert_eq!(u.http_date(), "Tue, 01 Dec 2026 14:05:09 GMT");
        assert_eq!(
            u.go_string(Duration::new(3, 5)),
            "2026-12-01 14:05:09.1203 +0000 UTC m=+3.000000005"
        );
        let whole = Utc::of(UNIX_EPOCH + Duration::from_secs(1_796_133_909));
        assert!(whole
            .go_string(Duration::ZERO)
            .starts_with("2026-12-01 14:05:09 +0000 UTC m=+0.000000000"));
        assert_eq!(
            Utc::of(UNIX_EPOCH).http_date(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
