//! Domain types: request bodies and the checked [`input::Valid`] that is
//! the only way past them ([`input`], with their field rules in `rules.rs`),
//! the error input answers with ([`error`]), the resources the API
//! answers with ([`resources`]), and the values of link clicks
//! ([`clicks`]). Resources are read straight from PostgreSQL with
//! `Selectable`, so a public user can never carry a column it must not
//! show. Nothing here knows HTTP or the API's error type.

pub mod clicks;
pub mod error;
pub mod input;
pub mod resources;
mod rules;
