//! The one wall clock of innoprov: Unix time for records, audits, enrolment windows and
//! generations. A clock before 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Microseconds since the Unix epoch (record generations: unique across restarts).
pub fn now_unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_agree() {
        let (s, us) = (now_unix(), now_unix_micros());
        assert!(s > 1_700_000_000, "after 2023");
        assert!(us / 1_000_000 >= s && us / 1_000_000 <= s + 1);
    }
}
