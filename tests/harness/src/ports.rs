//! Free ports on 127.0.0.1, found by letting the kernel pick one.

use std::io;
use std::net::TcpListener;

/// A port on 127.0.0.1 that was free a moment ago (someone may take it before
/// the caller binds it: callers that start a server retry with another one).
pub fn try_free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// [`try_free_port`] for tests, where no free port is a broken machine.
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}
