//! Plumbing that linkhub's API tests and the load-test bench share, so each
//! mechanism is written once: free ports ([`free_port`]), a TCP proxy that can
//! cut and delay a connection ([`TcpProxy`]), and a private `redis-server`
//! child process ([`RedisServer`], configured with [`RedisOptions`]).
//!
//! Nothing here knows about linkhub itself: it is what a test needs to break
//! the network or Redis under a running service without touching the shared
//! servers other tests use.

mod ports;
mod proxy;
mod redis_server;

pub use ports::{free_port, try_free_port};
pub use proxy::TcpProxy;
pub use redis_server::{RedisOptions, RedisServer, answers_ping};
