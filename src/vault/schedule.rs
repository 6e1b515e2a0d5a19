//! When to refresh a token and how long to wait after a failure. Pure functions of the
//! clock's time, so tests move time instead of sleeping.

/// Refresh this far into a token's lifetime (per mille): 80 %.
const REFRESH_AT_PER_MILLE: i64 = 800;
/// The first retry after a transient failure waits this long, doubling each time...
pub const FIRST_BACKOFF_SECS: i64 = 30;
/// ...up to this.
pub const MAX_BACKOFF_SECS: i64 = 3_600;
/// This many failed refreshes in a row and the connection needs a reconnection.
pub const GIVE_UP_AFTER: i64 = 3;
/// A refresh in progress holds its claim this long (so a crashed node does not block it forever).
pub const CLAIM_SECS: i64 = 30;

/// When a token issued at `issued_at`, valid for `expires_in` seconds, should be refreshed.
/// `None` when the server gave no lifetime (the token is used until it is refused).
pub fn refresh_at(issued_at: i64, expires_in: Option<i64>) -> Option<i64> {
    expires_in.map(|secs| issued_at.saturating_add(secs.max(0).saturating_mul(REFRESH_AT_PER_MILLE) / 1_000))
}

/// How long to wait before the next attempt after `failures` failures in a row (at least one).
pub fn backoff_secs(failures: i64) -> i64 {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    FIRST_BACKOFF_SECS.saturating_mul(1_i64 << doublings).min(MAX_BACKOFF_SECS)
}

/// Whether a failure that makes `failures_after` in a row ends the connection.
pub fn gives_up(failures_after: i64) -> bool {
    failures_after >= GIVE_UP_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_eighty_percent() {
        assert_eq!(refresh_at(1_000, Some(3_600)), Some(1_000 + 2_880));
        assert_eq!(refresh_at(1_000, Some(10)), Some(1_008));
        assert_eq!(refresh_at(1_000, None), None);
        assert_eq!(refresh_at(1_000, Some(-5)), Some(1_000));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), 30);
        assert_eq!(backoff_secs(2), 60);
        assert_eq!(backoff_secs(3), 120);
        assert_eq!(backoff_secs(40), MAX_BACKOFF_SECS);
        assert!(!gives_up(2));
        assert!(gives_up(3));
    }
}
