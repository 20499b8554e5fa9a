#![allow(dead_code)]

//! Test support shared by every module of the `api` test binary, by role:
//!
//! | file | what it gives a test |
//! |---|---|
//! | `services` | where the shared PostgreSQL and Redis are (`LINKHUB_TEST_DATABASE_URL`, `LINKHUB_TEST_REDIS_URL`) |
//! | `names` | `unique_name`: names no other test, process or run uses |
//! | `logs` | `TEST_LOG=1`: the app's logs in a failing test's output |
//! | `app` | `spawn_app` and friends: the app on port 0, its own database and key space |
//! | `binary` | the `linkhub` binary: a clean environment, `linkhub serve` as a child a test can signal |
//! | `database` | the per-test database (from a migrated template) and raw SQL |
//! | `client` | one helper per endpoint (`register`, `login`, `create_link`, ...) and the one way to create each resource |
//! | `paths` | every API path, written once |
//! | `assertions` | API.md's shapes and statuses (`expect_written`, `expect_error`, ...) |
//! | `metrics` | `/metrics` parsed |
//! | `reads` | public reads with their cache headers, compared with the truth |
//! | `owner` | a user with links and socials and every read that shows it |
//! | `redis` | the Redis an app uses, seen from the test (one node or a cluster) |
//! | `cluster` | a private Redis Cluster with replicas: break replication, kill masters, take over |
//! | `proxy` | the `linkhub-harness` crate: TCP proxy, private redis-server, free ports |
//!
//! `services`, `names` and `logs` import no other file: every other one may
//! use them. Tests `use crate::support::*;`.

mod app;
mod assertions;
mod binary;
mod client;
mod cluster;
mod database;
mod logs;
mod metrics;
mod names;
mod owner;
pub mod paths;
mod proxy;
mod reads;
mod redis;
mod services;

pub use app::*;
pub use assertions::*;
pub use binary::*;
pub use client::*;
pub use cluster::*;
pub use database::*;
pub use metrics::*;
pub use names::*;
pub use owner::*;
pub use proxy::*;
pub use reads::*;
pub use redis::*;
pub use services::*;
