//! Load shedding at the MCP endpoint: when the server is offered more than it can serve, the
//! requests it cannot serve promptly are refused at once (503 with `Retry-After`), before any
//! token is verified or upstream asked, so those it admits stay fast and memory stays bounded.
//!
//! Refusing starts when at least [`BUSY_IN_FLIGHT`] requests are in flight while the server is
//! saturated, by either of two signals, and then goes on, however few are in flight, for as
//! long as a signal holds:
//! - **CPU**: the runtime's workers were busy more than [`BUSY_PERMILLE`] of the last
//!   [`WINDOW`], as tokio's own busy-time counters say. Requests waiting on a slow upstream
//!   leave the CPU idle, so long-running tool calls cause no refusals.
//! - **Check time**: how long recent requests took from admission until they were handed to
//!   the workspace's server (token, grant and configuration checks, and any wait for a
//!   database connection), as a moving average. It catches a saturated database pool, where
//!   requests queue without the CPU being busy. Upstream time is not part of it.
//!
//! Why it goes on with few in flight: a refusal frees its slot at once, so while refusing
//! only a handful of admitted requests are in flight, yet what waits is the work not yet
//! begun, in sockets and the run queue, where no count sees it. Gating every refusal on the
//! in-flight count admitted whenever the handful finished, and at twice saturation the server
//! took on more than it could serve and fell ever further behind (admitted p99 of seconds).
//! The window is short for the same reason: what is admitted while the signal lags waits
//! behind it.
//!
//! Why the in-flight count starts it: with fewer requests in flight, their wait is bounded by
//! their number, and a machine that is merely busy (a test run, a burst) refuses nothing.
//!
//! The CPU signal replaced a probe that timed how long a task that yields waits to run again.
//! tokio wakes a yielded task into its next-task slot at the next maintenance tick, so the
//! wait was at most some 61 polls (about a millisecond here) however many requests queued
//! behind: at twice saturation it read 1 ms while 250 admitted requests waited.
//!
//! Requests in flight are also capped outright, as a hard bound on memory whatever the cause.
//!
//! It runs as the outermost layer, before routing ([`ShedLayer`], see `shed`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::runtime::RuntimeMetrics;

mod shed;
pub use shed::ShedLayer;

/// The CPU is saturated while its workers were busy more than this (per mille) of the window.
pub const BUSY_PERMILLE: u64 = 800;
/// The span the busy fraction is measured over; it is measured again, by the first request to
/// arrive, once this has passed. Long enough to span a few of tokio's updates of the counters
/// (at each maintenance tick, every 61 polls), short enough to follow a load that doubles the
/// queue every few milliseconds.
pub const WINDOW: Duration = Duration::from_millis(5);
/// New requests are refused while recent requests took longer than this to be checked.
pub const MAX_CHECK_TIME: Duration = Duration::from_millis(5);
/// A check-time average older than this is stale (nothing was admitted meanwhile) and ignored.
pub const CHECK_TIME_FRESH: Duration = Duration::from_millis(50);
/// Refusing starts only with at least this many requests in flight.
pub const BUSY_IN_FLIGHT: usize = 64;
/// MCP requests (POSTs) in flight at once; SSE streams are not counted.
pub const MAX_IN_FLIGHT: usize = 2_048;

#[derive(Debug)]
pub struct Admission {
    /// Moving average of the check time, in microseconds, and when it was last updated
    /// (microseconds since `epoch`).
    check_time_us: AtomicU64,
    check_time_at_us: AtomicU64,
    epoch: Instant,
    in_flight: AtomicUsize,
    cpu: CpuBusy,
    /// Refusing has started and the server has not caught up since.
    shedding: AtomicBool,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            check_time_us: AtomicU64::new(0),
            check_time_at_us: AtomicU64::new(0),
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            cpu: CpuBusy::default(),
            shedding: AtomicBool::new(false),
        }
    }
}

/// How busy the runtime's workers were over the last window.
#[derive(Debug, Default)]
struct CpuBusy {
    /// The runtime's counters, taken on first use (the state is built inside the runtime, but
    /// a test may build it outside one: then the CPU signal is off).
    metrics: OnceLock<Option<RuntimeMetrics>>,
    /// When the current window started (microseconds since `epoch`), and the workers' busy
    /// time summed (nanoseconds) then.
    window_at_us: AtomicU64,
    busy_ns_then: AtomicU64,
    /// Busy per mille of the last complete window.
    permille: AtomicU64,
}

impl CpuBusy {
    /// The busy fraction of the last complete window; the first caller after a window ends
    /// measures the next one.
    fn permille(&self, now_us: u64) -> u64 {
        let started = self.window_at_us.load(Ordering::Acquire);
        let elapsed_us = now_us.saturating_sub(started);
        if elapsed_us >= micros(WINDOW)
            && self.window_at_us.compare_exchange(started, now_us, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            && let Some(metrics) =
                self.metrics.get_or_init(|| tokio::runtime::Handle::try_current().ok().map(|h| h.metrics()))
        {
            let workers = metrics.num_workers();
            let busy_ns: u64 = (0..workers)
                .map(|w| u64::try_from(metrics.worker_total_busy_duration(w).as_nanos()).unwrap_or(u64::MAX))
                .fold(0, u64::saturating_add);
            let before = self.busy_ns_then.swap(busy_ns, Ordering::AcqRel);
            let capacity_ns = elapsed_us.saturating_mul(1_000).saturating_mul(workers.max(1) as u64);
            let permille = busy_ns.saturating_sub(before).saturating_mul(1_000) / capacity_ns.max(1);
            self.permille.store(permille, Ordering::Release);
        }
        self.permille.load(Ordering::Acquire)
    }
}

/// Held while an admitted request is served (by [`Shed`]'s future, around the handler's).
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When an admitted request was admitted: put in its extensions for the handler, which
/// reports its check time with [`Admission::checked`].
#[derive(Debug, Clone, Copy)]
pub struct AdmittedAt(Instant);

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
        let headers = res.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        // Refused before the router's layers: what they would have added, added here. A
        // browser-based client may read the refusal and when to retry (CORS, as the MCP
        // routes allow any origin without credentials).
        crate::web::add_security_headers(headers);
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
        res
    }
}

impl Admission {
    /// Admits a request, or says why not.
    pub fn admit(self: &Arc<Self>) -> Result<(Permit, AdmittedAt), Refused> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let arrived = Instant::now();
        let permit = (Permit { admission: self.clone() }, AdmittedAt(arrived));
        // On refusal the permit's drop gives the slot back.
        if before >= MAX_IN_FLIGHT {
            return Err(Refused::TooManyInFlight);
        }
        // One clock reading serves the permit and both signals.
        let now_us = micros(arrived.duration_since(self.epoch));
        let slow = self.cpu.permille(now_us) > BUSY_PERMILLE || self.check_time_at(now_us) > MAX_CHECK_TIME;
        let shedding = self.shedding.load(Ordering::Relaxed);
        match (slow, shedding || before >= BUSY_IN_FLIGHT) {
            (true, true) => {
                if !shedding {
                    self.shedding.store(true, Ordering::Relaxed);
                }
                Err(Refused::Saturated)
            }
            (true, false) => Ok(permit),
            (false, _) => {
                // Caught up: from here on refusing needs a busy endpoint again.
                if shedding {
                    self.shedding.store(false, Ordering::Relaxed);
                }
                Ok(permit)
            }
        }
    }

    /// The request admitted at `admitted` passed its checks and goes to the workspace's server
    /// now. Recorded once (the `Option` is taken): a request the endpoint meant to answer
    /// itself and then handed to rmcp is not counted twice.
    pub fn checked(&self, admitted: &mut Option<AdmittedAt>) {
        if let Some(AdmittedAt(at)) = admitted.take() {
            self.observe_check_time(at.elapsed());
        }
    }

    /// The recent average check time, or zero if it is stale.
    pub fn check_time(&self) -> Duration {
        self.check_time_at(micros(self.epoch.elapsed()))
    }

    /// The check time as of `now_us` (microseconds since `epoch`).
    fn check_time_at(&self, now_us: u64) -> Duration {
        let at = self.check_time_at_us.load(Ordering::Relaxed);
        if now_us.saturating_sub(at) > micros(CHECK_TIME_FRESH) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An admission whose CPU signal reads `permille` (outside a runtime it is never measured).
    fn reading(permille: u64) -> Arc<Admission> {
        let admission = Arc::new(Admission::default());
        admission.cpu.permille.store(permille, Ordering::Relaxed);
        admission
    }

    #[test]
    fn refuses_when_busy_and_saturated_and_goes_on_until_caught_up() {
        let admission = reading(950);
        let mut held: Vec<Permit> = (0..BUSY_IN_FLIGHT).map(|_| admission.admit().unwrap().0).collect();
        assert_eq!(admission.admit().unwrap_err(), Refused::Saturated, "busy and saturated");
        // Refusals free their slots, but the server is still behind.
        held.truncate(BUSY_IN_FLIGHT / 2);
        assert_eq!(admission.admit().unwrap_err(), Refused::Saturated, "still behind");
        admission.cpu.permille.store(500, Ordering::Relaxed);
        held.push(admission.admit().unwrap().0);
        // Caught up: saturation alone, with few in flight, refuses nothing.
        admission.cpu.permille.store(1_000, Ordering::Relaxed);
        held.push(admission.admit().unwrap().0);
        admission.cpu.permille.store(0, Ordering::Relaxed);
        // Slow checks count too, while they are recent.
        held.extend((0..BUSY_IN_FLIGHT).map(|_| admission.admit().unwrap().0));
        for _ in 0..64 {
            admission.observe_check_time(Duration::from_millis(20));
        }
        assert!(admission.check_time() > MAX_CHECK_TIME);
        assert_eq!(admission.admit().unwrap_err(), Refused::Saturated);
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
        let held: Vec<Permit> = (0..MAX_IN_FLIGHT).map(|_| admission.admit().unwrap().0).collect();
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
    async fn the_cpu_signal_sees_a_saturated_runtime_and_its_recovery() {
        let admission = Arc::new(Admission::default());
        let _held: Vec<Permit> = (0..BUSY_IN_FLIGHT).map(|_| admission.admit().unwrap().0).collect();
        // Tasks that hold the only thread 3 ms at a time for about 300 ms: a saturated CPU.
        let hogs: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn(async {
                    for _ in 0..25 {
                        std::thread::sleep(Duration::from_millis(3));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut refused = false;
        for _ in 0..200 {
            if admission.admit().is_err() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused, "a saturated runtime refuses new requests");
        for hog in hogs {
            hog.await.unwrap();
        }
        let mut admitted = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if admission.admit().is_ok() {
                admitted = true;
                break;
            }
        }
        assert!(admitted, "once the runtime is idle again, requests are admitted");
    }
}
