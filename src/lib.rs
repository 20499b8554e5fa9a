//! linkhub: a link-in-bio service. One actix-web process on PostgreSQL
//! (diesel + diesel-async) with Redis as a cache-aside layer that keeps
//! read-your-writes under races and faults.
//!
//! The modules form layers; each uses only those above it in this list
//! (`python3 ../shared/tools/layers.py src` checks that no two use each other):
//!
//! - [`redact`]: URLs without their passwords, for every message that shows one.
//! - [`config`]: settings from the environment, typed (durations, the Redis topology).
//! - [`tasks`]: the background tasks, with one handle that stops them.
//! - [`tls`]: the rustls client configuration (system roots or one CA file).
//! - [`error`]: [`error::ApiError`], the one JSON error shape.
//! - [`domain`]: parsed, valid values and the resources.
//! - [`pages`]: the HTML profile page (maud), rendered from a domain profile.
//! - [`namespace`]: cache namespaces and which ones each write touches.
//! - [`current_request`]: the id of the request a task serves, for code below HTTP.
//! - [`db`]: every SQL query, one file per table, the outbox included.
//! - [`metrics`]: the Prometheus registry and counters.
//! - [`bulkhead`]: a bounded share of the PostgreSQL pool for list loads.
//! - [`cache`]: everything Redis.
//! - [`clicks`]: link clicks counted exactly once (a local click journal) and
//!   their distinct visitors (HyperLogLog).
//! - [`auth`]: passwords, tokens, the login throttle, the [`auth::Caller`] extractor.
//! - [`state`]: [`state::AppState`], what the services reach.
//! - [`service`]: one function per use case (cached reads, writes, login).
//! - [`routes`]: thin HTTP handlers, one file per resource, and the OpenAPI document.
//! - [`middleware`]: request ids and spans, security headers, CORS, panics,
//!   the JSON safety net, request metrics, the in-flight count a stop drains.
//! - [`telemetry`]: the log's format and filter, and the OTLP span export.
//! - [`startup`], [`cli`]: wiring; [`admin`]: the operator's cache commands.

pub mod admin;
pub mod auth;
pub mod bulkhead;
pub mod cache;
pub mod cli;
pub mod clicks;
pub mod config;
pub mod current_request;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod namespace;
pub mod pages;
pub mod redact;
pub mod routes;
pub mod schema;
pub mod service;
pub mod startup;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod tls;
