//! The one integration-test binary (link time matters on 2 cores): every test boots a real
//! server on port 0 with a fresh database, once on SQLite and once on PostgreSQL.

mod helpers;

mod authorize;
mod client_documents;
mod client_lifecycle;
mod compat;
mod docserver;
mod external_issuer;
mod flow;
mod gateway;
mod hostile;
mod hostile_clients;
mod hot_path;
mod idp;
mod journey;
mod login;
mod oidc;
mod page_forms;
mod pages;
mod register;
mod stateless_calls;
mod storage;
mod upstreams_version;
mod vault;
mod vault_connect;
mod vault_session;
