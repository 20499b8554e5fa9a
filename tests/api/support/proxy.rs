//! The network and Redis plumbing of the `linkhub-harness` crate (shared with
//! the load-test bench): free ports, the cuttable TCP proxy, private
//! redis-server children.

pub use linkhub_harness::{RedisOptions, RedisServer, TcpProxy};
