//! Slows password guessing: each source address may fail to sign in a limited number of
//! times per window, then is refused until the window ends. Only failures count, so people
//! behind one shared address (an office NAT) are not locked out by each other's sign-ins,
//! and a success does not reset the count (one valid account cannot be used to keep guessing).
//! Time comes from the clock, so the window is testable without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed attempts allowed per address per window.
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW_SECS: i64 = 300;
/// Addresses tracked at once; beyond this, expired windows are dropped first and then the
/// table stops growing (Argon2id still bounds the guessing rate).
const MAX_TRACKED: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    failures: u32,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl LoginThrottle {
    /// Seconds until `addr` may try again, if it is blocked now.
    pub fn blocked_for(&self, addr: IpAddr, now: i64) -> Option<i64> {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let w = windows.get(&addr)?;
        let ends = w.started + WINDOW_SECS;
        (w.failures >= MAX_FAILURES && now < ends).then_some(ends - now)
    }

    pub fn record_failure(&self, addr: IpAddr, now: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&addr) {
            windows.retain(|_, w| now < w.started + WINDOW_SECS);
            if windows.len() >= MAX_TRACKED {
                return;
            }
        }
        let w = windows.entry(addr).or_insert(Window { started: now, failures: 0 });
        if now >= w.started + WINDOW_SECS {
            *w = Window { started: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = LoginThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.blocked_for(a, 1_000 + i64::from(i)), None);
            t.record_failure(a, 1_000 + i64::from(i));
        }
        assert_eq!(t.blocked_for(a, 1_010), Some(WINDOW_SECS - 10));
        assert_eq!(t.blocked_for(b, 1_010), None, "other addresses are unaffected");
        assert_eq!(t.blocked_for(a, 1_000 + WINDOW_SECS), None);
        t.record_failure(a, 1_000 + WINDOW_SECS);
        assert_eq!(t.blocked_for(a, 1_000 + WINDOW_SECS), None, "a new window starts counting afresh");
    }
}
