//! Domain types: validated request bodies ([`input`]) and the resources the API
//! answers with ([`resources`]). Resources are read straight from PostgreSQL
//! with `Selectable`, so a public user can never carry a column it must not show.

pub mod input;
pub mod resources;
