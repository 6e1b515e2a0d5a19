//! Per-source-address rate limits on tower_governor (client registration). Password sign-in
//! has its own failure-counting throttle, `identity::throttle`.
//!
//! The key is the TCP peer address. Behind a reverse proxy every request shares the proxy's
//! address; trusting `X-Forwarded-For` from configured proxies is future work.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use governor::middleware::NoOpMiddleware;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;

pub type AddressLimit = GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware, Body>;

/// `per_minute` requests per address, refilled evenly; `reject` answers the excess.
/// Must be called inside the runtime: it starts the task that keeps the table bounded.
pub fn per_address(per_minute: u32, reject: fn() -> Response<Body>) -> Option<AddressLimit> {
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_millis(60_000 / u64::from(per_minute.max(1))))
        .burst_size(per_minute.max(1))
        .key_extractor(PeerIpKeyExtractor)
        .finish()?;
    let config = Arc::new(config);
    // Every minute, forget addresses idle long enough to have refilled, until the router is dropped.
    let weak = Arc::downgrade(&config);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(config) => config.limiter().retain_recent(),
                None => break,
            }
        }
    });
    Some(GovernorLayer::new(config).error_handler(move |_| reject()))
}
