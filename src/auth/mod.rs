//! Authentication: password hashing, bearer tokens, the authenticated-caller
//! extractor, the login throttle, the fixed windows every per-address limit
//! counts in, and the client address (and its /64) they count under.

pub mod caller;
pub mod client_addr;
mod niced;
pub mod password;
pub mod throttle;
pub mod token;
pub mod windows;

pub use self::caller::Caller;
