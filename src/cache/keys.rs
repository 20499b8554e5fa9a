//! Key layout. Pure functions, no Redis: what a key looks like is decided here
//! and only here.
//!
//! ```text
//! <prefix>:ver:{<namespace>}                    version counter (TTL 2 × CACHE_TTL_SECS, refreshed by
//!                                               every bump; outside every SCAN pattern)
//! <prefix>:idx:{<namespace>}                    index of the namespace's entries: a sorted set of
//!                                               `<version>:<query>` scored by version (TTL at least
//!                                               its longest entry's; outside every SCAN pattern)
//! <prefix>:{<namespace>}:<version>:<query>      cache entry (always with a TTL)
//! <prefix>:{<namespace>}:<version>:stored       how many page/search entries the version stored
//!                                               (with a TTL; in the index, removed with its version)
//! ```
//!
//! `{<namespace>}` is a Redis Cluster hash tag: a counter, its index and every
//! entry of its namespace live in one slot, so one script can read and remove
//! them together. Namespaces are per user, per link and per social, so the
//! tags spread over the slots; only `{users}` (the global list) is a single
//! slot, and it is read-mostly.
//!
//! The index is what makes invalidation cost what the namespace holds, not
//! what Redis holds: after a bump, the entries of older versions are the
//! index's members scored below the new version, removed by one script on
//! the namespace's slot (`index.rs`), with no pass over the keyspace.
//!
//! User input never reaches a key raw: the only free text (a search term) is
//! hashed, usernames are checked against `[a-z0-9_]{3,32}` before they get
//! here, and everything else is an integer. So no input can add a `:`, a glob
//! character or a line break to a key or to a SCAN pattern, and keys stay short.

use sha2::{Digest, Sha256};

use crate::namespace::Namespace;

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

/// The index of `ns`'s entries (see the module header). Its members are
/// entry keys without their [`entry_prefix`] ([`index_member`]), so they stay
/// short enough for Redis's compact encoding of small sorted sets.
pub fn index_key(prefix: &str, ns: &Namespace) -> String {
    format!("{prefix}:idx:{{{ns}}}")
}

/// How the entry `<version>:<query>` of a namespace is named in its index:
/// the entry key less the namespace's [`entry_prefix`].
pub fn index_member(version: &str, query: &str) -> String {
    format!("{version}:{query}")
}

/// The query part of a version's [`stored_count_key`].
pub const STORED_COUNT_QUERY: &str = "stored";

/// The count of made-up-able entries (see [`is_open_ended`]) stored under
/// one version of `ns`. It lives among the version's entries and is indexed
/// like them, so it is removed with them.
pub fn stored_count_key(prefix: &str, ns: &Namespace, version: &str) -> String {
    entry_key(prefix, ns, version, STORED_COUNT_QUERY)
}

/// `true` for the queries a client can vary without end (a page number, a
/// limit, a search term): their entries are capped per version. Every such
/// query carries its parameters after a `:`; the one-per-namespace queries
/// (`user`, `profile`, `link`, …) have none.
pub fn is_open_ended(query: &str) -> bool {
    query.contains(':')
}

/// The SCAN pattern of every entry of `ns`. Namespaces contain no glob
/// characters (see the module header), so nothing needs escaping.
pub fn entry_pattern(prefix: &str, ns: &Namespace) -> String {
    format!("{}*", entry_prefix(prefix, ns))
}

/// The SCAN pattern of every entry of every namespace of `prefix` (the
/// janitor's walk). Counters (`<prefix>:ver:`) and indexes (`<prefix>:idx:`)
/// are outside it.
pub fn all_entries_pattern(prefix: &str) -> String {
    format!("{prefix}:{{*")
}

/// Splits an entry key back into namespace and version (for the janitor).
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
    fn counters_sit_outside_every_entry_pattern() {
        let ns = Namespace::User(42);
        assert_eq!(version_key("lh", &ns), "lh:ver:{user:42}");
        assert_eq!(entry_pattern("lh", &ns), "lh:{user:42}:*");
        assert!(!version_key("lh", &ns).starts_with("lh:{"));
    }

    #[test]
    fn indexes_share_the_hash_tag_and_sit_outside_every_entry_pattern() {
        let ns = Namespace::Profile("bob".into());
        let index = index_key("lh", &ns);
        assert_eq!(index, "lh:idx:{profile:bob}");
        assert!(
            !index.starts_with("lh:{"),
            "the janitor's pattern would match it"
        );
        assert!(!index.starts_with(&entry_prefix("lh", &ns)));
        // The member is the entry key less the entry prefix.
        let member = index_member("17", "profile");
        assert_eq!(
            format!("{}{member}", entry_prefix("lh", &ns)),
            entry_key("lh", &ns, "17", "profile")
        );
        assert_eq!(all_entries_pattern("lh"), "lh:{*");
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
    fn only_paged_and_searched_reads_are_open_ended() {
        for fixed in ["user", "profile", "page", "link", "social", "socials"] {
            assert!(!is_open_ended(fixed), "{fixed}");
        }
        assert!(is_open_ended("links:p3:l10"));
        assert!(is_open_ended(&users_list_query(Some("x"), 1, 10)));
        assert!(is_open_ended(&users_list_query(None, 1, 10)));
        let ns = Namespace::User(1);
        let count = stored_count_key("lh", &ns, "17");
        assert_eq!(parse_entry_key("lh", &count), Some((ns, "17")));
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
