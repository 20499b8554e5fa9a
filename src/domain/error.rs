//! What the domain answers when input breaks its rules. The domain does not
//! speak HTTP: `crate::error` turns an [`InputError`] into the API's `400`
//! or `422` at the edge.

use std::collections::BTreeMap;

/// Field name → messages: the `details` of a `422`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Input that cannot be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A query parameter out of its range (a page, a limit, a search term):
    /// the message says which, and the request is refused as a whole.
    #[error("{0}")]
    Parameter(String),
    /// A body broke field rules: every field with the messages of each rule
    /// it broke.
    #[error("validation failed")]
    Fields(FieldErrors),
}

impl InputError {
    /// A parameter refused with `message`.
    pub fn parameter(message: impl Into<String>) -> Self {
        Self::Parameter(message.into())
    }
}
