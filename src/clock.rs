//! Time is a parameter: everything that expires asks a [`Clock`], so tests move time
//! forward instead of sleeping. The clock types are the guard crate's, so one clock drives
//! both Gatehouse and the external-issuer checks it runs through that crate.

use std::sync::Arc;

pub use mcp_resource_guard::clock::{Clock, ManualClock, SystemClock};

pub type SharedClock = Arc<dyn Clock>;
