//! linkhub: a link-in-bio service. One actix-web process on PostgreSQL
//! (diesel + diesel-async) with Redis as a cache-aside layer that keeps
//! read-your-writes under races and faults.
//!
//! - [`config`]: settings from the environment.
//! - [`startup`]: builds pools, cache and server.
//! - [`routes`]: thin HTTP handlers, one file per resource.
//! - [`reads`]: the cached reads (namespace, key, loader).
//! - [`db`]: every SQL query, one file per table.
//! - [`cache`]: everything Redis.
//! - [`middleware`]: request ids, security headers and CORS on every response.
//! - [`auth`], [`domain`], [`error`], [`metrics`], [`openapi`].

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod reads;
pub mod redact;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod tls;
