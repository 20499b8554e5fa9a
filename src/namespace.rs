//! Cache namespaces: the sets of cached reads that one version counter
//! invalidates together.
//!
//! This is vocabulary shared by the SQL layer (the outbox rows name them)
//! and the cache (which bumps and purges them), so it sits below both and
//! knows neither. Which namespaces a change touches is decided where every
//! change passes, whoever makes it: the outbox triggers of the migration
//! `cache_owed_by_the_database`, which spell them as [`Namespace`]'s
//! `Display` does.

use std::fmt;
use std::str::FromStr;

use crate::domain::input::is_valid_username;

/// A set of cached reads that one version counter invalidates together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The users list and its searches as far as changes to existing users
    /// reach: an update or a delete (any row may move, leave or change). A
    /// full page of the list is stored here only: a registration appends
    /// after every id a full page ends with, so it cannot change one.
    Users,
    /// What a registration changes in the users list: the totals, and the
    /// pages that were not full (the tail a new user may join). Every change
    /// to `users` bumps it, a registration bumps only it.
    UsersAdded,
    /// One user's public record, links list and socials list.
    User(i64),
    /// One profile, by username (a rename touches the old and the new name).
    Profile(String),
    /// One link by id.
    Link(i64),
    /// One social account by id.
    Social(i64),
}

impl Namespace {
    /// The metric label: the namespace's kind, never its id (bounded cardinality).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::UsersAdded => "users_added",
            Self::User(_) => "user",
            Self::Profile(_) => "profile",
            Self::Link(_) => "link",
            Self::Social(_) => "social",
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Users => f.write_str("users"),
            Self::UsersAdded => f.write_str("users_added"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Profile(name) => write!(f, "profile:{name}"),
            Self::Link(id) => write!(f, "link:{id}"),
            Self::Social(id) => write!(f, "social:{id}"),
        }
    }
}

impl FromStr for Namespace {
    type Err = ();

    /// Parses the `Display` form back (outbox rows, SCANned keys).
    fn from_str(s: &str) -> Result<Self, ()> {
        let id = |v: &str| v.parse::<i64>().map_err(|_| ());
        match s.split_once(':') {
            None if s == "users" => Ok(Self::Users),
            None if s == "users_added" => Ok(Self::UsersAdded),
            Some(("user", v)) => id(v).map(Self::User),
            Some(("link", v)) => id(v).map(Self::Link),
            Some(("social", v)) => id(v).map(Self::Social),
            Some(("profile", v)) if is_valid_username(v) => Ok(Self::Profile(v.to_owned())),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_round_trip_through_their_text() {
        for ns in [
            Namespace::Users,
            Namespace::UsersAdded,
            Namespace::User(42),
            Namespace::Profile("alice_1".into()),
            Namespace::Link(7),
            Namespace::Social(3),
        ] {
            assert_eq!(ns.to_string().parse::<Namespace>(), Ok(ns));
        }
        assert!("profile:Bad*".parse::<Namespace>().is_err());
        assert!("user:x".parse::<Namespace>().is_err());
    }
}
