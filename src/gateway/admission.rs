//! Load shedding at the MCP endpoint: when the server is offered more than it can serve, the
//! requests it cannot serve promptly are refused at once (503 with `Retry-After`), before any
//! token is verified or upstream asked, so those it admits stay fast and memory stays bounded.
//!
//! Nothing is refused while fewer than [`BUSY_IN_FLIGHT`] requests are in flight. Beyond
//! that, a request is refused when the server is slow to serve, by either of two signals:
//! - **Run-queue delay**, measured by a probe task that yields to the scheduler every few
//!   milliseconds and times how long it waits to run again. That is the time any ready task
//!   (a request being served) currently waits for a CPU; it must last several probes in a
//!   row to count. Requests waiting on a slow upstream
//!   do not count, so long-running tool calls never cause refusals; only a saturated CPU does.
//! - **Check time**: how long recent requests took from admission until they were handed to
//!   the workspace's server (token, grant and configuration checks, and any wait for a
//!   database connection), as a moving average. It catches a saturated database pool, where
//!   requests queue without being runnable. Upstream time is not part of it.
//!
//! Requests in flight are also capped outright, as a hard bound on memory whatever the cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// New requests are refused while a ready task waits longer than this for a CPU.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(5);
/// How often the probe measures.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// The delay must have lasted this many probes in a row (a spike is not overload).
pub const SUSTAINED: usize = 4;
/// New requests are refused while recent requests took longer than this to be checked.
pub const MAX_CHECK_TIME: Duration = Duration::from_millis(5);
/// A check-time average older than this is stale (nothing was admitted meanwhile) and ignored.
pub const CHECK_TIME_FRESH: Duration = Duration::from_millis(50);
/// Below this many requests in flight, nothing is refused for slowness.
pub const BUSY_IN_FLIGHT: usize = 32;
/// MCP requests (POSTs) in flight at once; SSE streams are not counted.
pub const MAX_IN_FLIGHT: usize = 2_048;

#[derive(Debug)]
pub struct Admission {
    /// The last measured run-queue delay, in microseconds.
    queue_delay_us: AtomicU64,
    /// Moving average of the check time, in microseconds, and when it was last updated
    /// (microseconds since `epoch`).
    check_time_us: AtomicU64,
    check_time_at_us: AtomicU64,
    epoch: Instant,
    in_flight: AtomicUsize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            queue_delay_us: AtomicU64::new(0),
            check_time_us: AtomicU64::new(0),
            check_time_at_us: AtomicU64::new(0),
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// Held while an admitted request is served.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    /// When it was admitted; taken when the request's check time is recorded.
    admitted: Option<Instant>,
}

impl Permit {
    /// The request passed its checks and goes to the workspace's server now. Recorded once:
    /// a request the endpoint meant to answer itself and then handed to rmcp is not counted
    /// twice.
    pub fn checked(&mut self) {
        if let Some(admitted) = self.admitted.take() {
            self.admission.observe_check_time(admitted.elapsed());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Saturated,
    TooManyInFlight,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let why = match self {
            Refused::Saturated => "the gateway is at capacity; retry in a moment",
            Refused::TooManyInFlight => "too many requests in progress; retry in a moment",
        };
        let mut res = (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        res
    }
}

/// How long a task that is ready to run waits for a CPU right now: the time from yielding to
/// the scheduler to being run again, behind every task queued before it.
pub async fn queue_delay_now() -> Duration {
    let asked = Instant::now();
    tokio::task::yield_now().await;
    asked.elapsed()
}

impl Admission {
    /// Admits a request, or says why not.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Refused> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit { admission: self.clone(), admitted: Some(Instant::now()) };
        // On refusal the permit's drop gives the slot back.
        if before >= MAX_IN_FLIGHT {
            return Err(Refused::TooManyInFlight);
        }
        if before >= BUSY_IN_FLIGHT && (self.queue_delay() > MAX_QUEUE_DELAY || self.check_time() > MAX_CHECK_TIME) {
            return Err(Refused::Saturated);
        }
        Ok(permit)
    }

    /// The recent average check time, or zero if it is stale.
    pub fn check_time(&self) -> Duration {
        let at = self.check_time_at_us.load(Ordering::Relaxed);
        if micros(self.epoch.elapsed()).saturating_sub(at) > micros(CHECK_TIME_FRESH) {
            return Duration::ZERO;
        }
        Duration::from_micros(self.check_time_us.load(Ordering::Relaxed))
    }

    fn observe_check_time(&self, took: Duration) {
        // An exponential moving average weighting the newest 1/8 (races only lose a sample).
        let old = self.check_time_us.load(Ordering::Relaxed);
        let new = old - old / 8 + micros(took) / 8;
        self.check_time_us.store(new, Ordering::Relaxed);
        self.check_time_at_us.store(micros(self.epoch.elapsed()), Ordering::Relaxed);
    }

    pub fn queue_delay(&self) -> Duration {
        Duration::from_micros(self.queue_delay_us.load(Ordering::Relaxed))
    }

    fn record(&self, delay: Duration) {
        self.queue_delay_us.store(micros(delay), Ordering::Relaxed);
    }

    /// Measures the run-queue delay until `stop` is cancelled.
    pub fn spawn_probe(self: &Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut recent = [Duration::ZERO; SUSTAINED];
            for i in (0..SUSTAINED).cycle() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
                recent[i] = queue_delay_now().await;
                // The least of the last few: only a delay that lasts counts, not a spike.
                me.record(recent.iter().copied().min().unwrap_or_default());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_when_busy_and_slow_and_admits_again_after() {
        let admission = Arc::new(Admission::default());
        admission.record(Duration::from_millis(8));
        let mut held: Vec<Permit> = (0..BUSY_IN_FLIGHT).map(|_| admission.admit().unwrap()).collect();
        assert_eq!(admission.admit().unwrap_err(), Refused::Saturated, "busy and slow");
        admission.record(Duration::from_micros(300));
        held.push(admission.admit().unwrap());
        // Slow checks count too, while they are recent.
        for _ in 0..64 {
            admission.observe_check_time(Duration::from_millis(20));
        }
        assert!(admission.check_time() > MAX_CHECK_TIME);
        assert_eq!(admission.admit().unwrap_err(), Refused::Saturated);
        held.truncate(BUSY_IN_FLIGHT / 2);
        assert!(admission.admit().is_ok(), "not busy: slow requests are served");
    }

    #[test]
    fn a_stale_check_time_is_ignored() {
        let admission = Admission::default();
        admission.observe_check_time(Duration::from_secs(1));
        assert!(admission.check_time() > Duration::ZERO);
        admission.check_time_at_us.store(0, Ordering::Relaxed);
        std::thread::sleep(CHECK_TIME_FRESH + Duration::from_millis(5));
        assert_eq!(admission.check_time(), Duration::ZERO);
    }

    #[test]
    fn in_flight_is_capped_and_slots_come_back() {
        let admission = Arc::new(Admission::default());
        let held: Vec<Permit> = (0..MAX_IN_FLIGHT).map(|_| admission.admit().unwrap()).collect();
        assert_eq!(admission.admit().unwrap_err(), Refused::TooManyInFlight);
        drop(held);
        assert!(admission.admit().is_ok());
        assert_eq!(admission.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn refusals_are_503_with_retry_after() {
        let res = Refused::Saturated.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_probe_measures_the_wait_behind_ready_tasks() {
        // A ready task that holds the only thread for 20 ms: a yield waits for all of it.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(20)) });
        assert!(queue_delay_now().await >= Duration::from_millis(20));
    }
}
