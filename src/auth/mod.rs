//! Authentication: password hashing, bearer tokens, the authenticated-caller
//! extractor and the login throttle.

pub mod caller;
pub mod password;
pub mod throttle;
pub mod token;

pub use self::caller::Caller;
