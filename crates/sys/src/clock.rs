//! The system clock, read in one place.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. A clock before 1970 is broken: 0 then matches no recent
/// TOTP step, so a broken clock refuses codes rather than accepting old ones.
#[allow(clippy::disallowed_methods)] // the one place the wall clock is read
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
