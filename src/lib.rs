//! Gatehouse: an OAuth 2.1 authorization server and gateway in front of MCP servers.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::await_holding_lock)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod gateway;
pub mod identity;
pub mod oauth;
pub mod resource;
pub mod store;
pub mod vault;
pub mod web;
pub mod workspace;
