//! Key layout. Pure functions, no Redis: what a key looks like is decided here
//! and only here.
//!
//! ```text
//! <prefix>:ver:{<namespace>}                    version counter (no TTL, never SCAN-deleted)
//! <prefix>:{<namespace>}:<version>:<query>      cache entry (always with a TTL)
//! ```
//!
//! `{<namespace>}` is a Redis Cluster hash tag: a counter and every entry of
//! its namespace live in one slot, so one script can read both. Namespaces are
//! per user, per link and per social, so the tags spread over the slots; only
//! `{users}` (the global list) is a single slot, and it is read-mostly.
//!
//! User input never reaches a key raw: the only free text (a search term) is
//! hashed, usernames are checked against `[a-z0-9_]{3,32}` before they get
//! here, and everything else is an integer. So no input can add a `:`, a glob
//! character or a line break to a key or to a SCAN pattern, and keys stay short.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A set of cached reads that one version counter invalidates together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The users list and its searches.
    Users,
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
            Some(("user", v)) => id(v).map(Self::User),
            Some(("link", v)) => id(v).map(Self::Link),
            Some(("social", v)) => id(v).map(Self::Social),
            Some(("profile", v)) if crate::domain::input::is_valid_username(v) => {
                Ok(Self::Profile(v.to_owned()))
            }
            _ => Err(()),
        }
    }
}

/// The version counter of `ns`.
pub fn version_key(prefix: &str, ns: &Namespace) -> String {
    format!("{prefix}:ver:{{{ns}}}")
}

/// Everything before the version in the keys of `ns`'s entries.
pub fn entry_prefix(prefix: &str, ns: &Namespace) -> String {
    format!("{prefix}:{{{ns}}}:")
}

/// The full key of one cached read.
pub fn entry_key(prefix: &str, ns: &Namespace, version: &str, query: &str) -> String {
    format!("{}{version}:{query}", entry_prefix(prefix, ns))
}

/// The SCAN pattern of every entry of `ns`. Namespaces contain no glob
/// characters (see the module header), so nothing needs escaping.
pub fn entry_pattern(prefix: &str, ns: &Namespace) -> String {
    format!("{}*", entry_prefix(prefix, ns))
}

/// Splits an entry key back into namespace and version (for the purger).
pub fn parse_entry_key<'k>(prefix: &str, key: &'k str) -> Option<(Namespace, &'k str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (ns, rest) = rest.split_once("}:")?;
    let (version, _query) = rest.split_once(':')?;
    Some((ns.parse().ok()?, version))
}

/// A bounded, opaque stand-in for free text in a key.
pub fn hash_term(term: &str) -> String {
    let digest = Sha256::digest(term.as_bytes());
    hex::encode(&digest[..16])
}

/// The query part of the users list's keys.
pub fn users_list_query(search: Option<&str>, page: u64, limit: u64) -> String {
    match search.filter(|s| !s.is_empty()) {
        Some(term) => format!("list:p{page}:l{limit}:s{}", hash_term(term)),
        None => format!("list:p{page}:l{limit}:s-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_round_trip_through_their_text() {
        for ns in [
            Namespace::Users,
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

    #[test]
    fn counters_sit_outside_every_entry_pattern() {
        let ns = Namespace::User(42);
        assert_eq!(version_key("lh", &ns), "lh:ver:{user:42}");
        assert_eq!(entry_pattern("lh", &ns), "lh:{user:42}:*");
        assert!(!version_key("lh", &ns).starts_with("lh:{"));
    }

    #[test]
    fn entry_keys_parse_back() {
        let ns = Namespace::Profile("bob".into());
        let key = entry_key("t_1", &ns, "1764110000000123", "profile");
        assert_eq!(key, "t_1:{profile:bob}:1764110000000123:profile");
        assert_eq!(parse_entry_key("t_1", &key), Some((ns, "1764110000000123")));
        assert_eq!(parse_entry_key("t_1", "t_1:ver:{user:1}"), None);
    }

    #[test]
    fn search_terms_never_reach_a_key_raw() {
        let q = users_list_query(Some("a*b?[c]:d \r\n"), 1, 10);
        assert!(
            q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'),
            "{q}"
        );
        assert_ne!(
            users_list_query(Some("a"), 1, 10),
            users_list_query(Some("b"), 1, 10)
        );
        assert_ne!(
            users_list_query(Some("a"), 1, 10),
            users_list_query(None, 1, 10)
        );
        assert_ne!(users_list_query(None, 1, 10), users_list_query(None, 11, 0));
        assert!(users_list_query(Some(&"x".repeat(10_000)), 1, 10).len() < 64);
    }
}
