//! Domain types: request bodies and the checked [`input::Valid`] that is
//! the only way past them ([`input`], with their field rules in `rules.rs`),
//! the error input answers with ([`error`]), and the resources the API
//! answers with ([`resources`]). Resources are read straight from PostgreSQL
//! with `Selectable`, so a public user can never carry a column it must not
//! show. Nothing here knows HTTP or the API's error type.

pub mod error;
pub mod input;
pub mod resources;
mod rules;
