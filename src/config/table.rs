//! The `settings!` macro: one declaration per setting serves its field, its
//! parse and its bounds. A declaration reads like a struct field with its
//! variable and its [`Rule`](super::rule::Rule) attached:
//!
//! ```text
//! /// Upper bound of every cache entry's lifetime.
//! cache_ttl: Duration = "CACHE_TTL_SECS" => Rule::seconds(3600).positive(),
//! ```
//!
//! and becomes the field `pub cache_ttl: Duration`, documented as
//! "`CACHE_TTL_SECS`: upper bound …", plus the line of `Settings::read_each`
//! that reads the variable by its rule. Written by hand, each variable was
//! spelled three times (field, parse, positivity check), and a new timeout
//! could get its field and its parse but not its check.

/// Declares `pub struct $name` with one field per declaration, and
/// `fn read_each(lookup)`, which reads every variable by its rule in the
/// table's order and stops at the first one refused.
macro_rules! settings {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_attr:meta])*
                $field:ident : $ty:ty = $var:literal => $rule:expr
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $(
                #[doc = concat!("`", $var, "`:")]
                $(#[$field_attr])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// Reads each variable by its rule; the first one refused stops the read.
            fn read_each(
                lookup: &impl Fn(&str) -> Option<String>,
            ) -> Result<Self, $crate::config::ConfigError> {
                Ok(Self {
                    $( $field: $crate::config::rule::Rule::read($rule, $var, lookup($var))?, )*
                })
            }
        }
    };
}

pub(super) use settings;
