//! Authentication: password hashing, bearer tokens, the authenticated-caller
//! extractor, the login throttle and the client address it counts under.

pub mod caller;
pub mod client_addr;
pub mod password;
pub mod throttle;
pub mod token;

pub use self::caller::Caller;
