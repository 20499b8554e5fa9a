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
//! tags spread over the slots; only `{users}` and `{users_added}` (the global
//! list: its full pages, and its totals and tails) are single slots, and they
//! are read-mostly.
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

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::domain::resources::ListStart;
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

/// The count of open-ended entries ([`QueryKey::is_open_ended`]) stored under
/// one version of `ns`. It lives among the version's entries and is indexed
/// like them, so it is removed with them.
pub fn stored_count_key(prefix: &str, ns: &Namespace, version: &str) -> String {
    entry_key(prefix, ns, version, STORED_COUNT_QUERY)
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

/// The query part of an entry key: which read of its namespace the entry
/// holds. Every read's query is made by one of the constructors below, and
/// whether its entries are capped per version (the module header of
/// [`crate::cache`], "What a client can grow") is decided by the constructor
/// too, never read back from the spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    text: Cow<'static, str>,
    reach: Reach,
}

/// How many different queries of one shape a client can make up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Reach {
    /// One per namespace (`user`, `profile`, …): never capped, so a client
    /// filling a cap cannot keep a profile out of the cache.
    One,
    /// Without end (a page number, a limit, a search term): stored at most
    /// `CACHE_MAX_ENTRIES_PER_VERSION` times per namespace version.
    OpenEnded,
}

impl QueryKey {
    const fn one(text: &'static str) -> Self {
        Self {
            text: Cow::Borrowed(text),
            reach: Reach::One,
        }
    }

    fn open_ended(text: String) -> Self {
        Self {
            text: Cow::Owned(text),
            reach: Reach::OpenEnded,
        }
    }

    /// This query as entries of `format` store it: `<format>.<query>`, so
    /// that releases whose entries differ in shape keep apart (see
    /// `CacheConfig::format`). Capped as the query is.
    pub fn in_format(&self, format: &str) -> Self {
        if format.is_empty() {
            return self.clone();
        }
        Self {
            text: Cow::Owned(format!("{format}.{}", self.text)),
            reach: self.reach,
        }
    }

    /// A user by id (`GET /users/{id}`), in the user's namespace.
    pub const fn user() -> Self {
        Self::one("user")
    }

    /// A profile's JSON (`GET /profiles/{username}`).
    pub const fn profile() -> Self {
        Self::one("profile")
    }

    /// A profile's HTML page: an entry of its own beside the JSON, in the
    /// same namespace.
    pub const fn profile_page() -> Self {
        Self::one("page")
    }

    /// A link by id, in the link's namespace.
    pub const fn link() -> Self {
        Self::one("link")
    }

    /// A social account by id, in its namespace.
    pub const fn social() -> Self {
        Self::one("social")
    }

    /// Every social account of a user, in the user's namespace.
    pub const fn socials_of_user() -> Self {
        Self::one("socials")
    }

    /// A page of a user's links, in the user's namespace.
    pub fn links_page(page: u64, limit: u64) -> Self {
        Self::open_ended(format!("links:p{page}:l{limit}"))
    }

    /// A page of the users list, optionally searched, in the `users`
    /// namespace: the page's items when it was full, else a mark that sends
    /// the read on to [`QueryKey::users_tail`]. The term is hashed
    /// ([`hash_term`]), never written raw.
    pub fn users_page(search: Option<&str>, start: ListStart, limit: u64) -> Self {
        Self::open_ended(format!("list:{}", users_list_query(search, start, limit)))
    }

    /// The same page when it was not full, in the `users_added` namespace
    /// (a registration may add to it).
    pub fn users_tail(search: Option<&str>, start: ListStart, limit: u64) -> Self {
        Self::open_ended(format!("tail:{}", users_list_query(search, start, limit)))
    }

    /// The total of the users list or of one search, in the `users_added`
    /// namespace: one entry per search, shared by its pages.
    pub fn users_total(search: Option<&str>) -> Self {
        Self::open_ended(format!("total:s{}", search_part(search)))
    }

    /// The query as it is written in the entry key.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `true` for the queries a client can vary without end: their entries
    /// are capped per version.
    pub fn is_open_ended(&self) -> bool {
        self.reach == Reach::OpenEnded
    }
}

/// Where a users-list read starts, its limit and its search, as a key writes them.
fn users_list_query(search: Option<&str>, start: ListStart, limit: u64) -> String {
    let start = match start {
        ListStart::Page(page) => format!("p{page}"),
        ListStart::After(after) => format!("a{after}"),
    };
    format!("{start}:l{limit}:s{}", search_part(search))
}

/// A search as a key writes it: its hash, or `-` for none.
fn search_part(search: Option<&str>) -> String {
    match search.filter(|s| !s.is_empty()) {
        Some(term) => hash_term(term),
        None => "-".to_owned(),
    }
}

impl std::fmt::Display for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
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
        let fixed = [
            (QueryKey::user(), "user"),
            (QueryKey::profile(), "profile"),
            (QueryKey::profile_page(), "page"),
            (QueryKey::link(), "link"),
            (QueryKey::social(), "social"),
            (QueryKey::socials_of_user(), "socials"),
        ];
        for (query, spelled) in fixed {
            assert!(!query.is_open_ended(), "{query}");
            assert_eq!(query.as_str(), spelled);
            assert_ne!(query.as_str(), STORED_COUNT_QUERY);
        }
        let page = QueryKey::links_page(3, 10);
        assert!(page.is_open_ended());
        assert_eq!(page.as_str(), "links:p3:l10");
        let page = ListStart::Page(1);
        assert!(QueryKey::users_page(Some("x"), page, 10).is_open_ended());
        assert!(QueryKey::users_page(None, page, 10).is_open_ended());
        assert!(QueryKey::users_tail(None, page, 10).is_open_ended());
        assert!(QueryKey::users_total(Some("x")).is_open_ended());
        assert_eq!(
            QueryKey::users_page(None, ListStart::Page(2), 5).as_str(),
            "list:p2:l5:s-"
        );
        assert_eq!(
            QueryKey::users_tail(None, ListStart::After(7), 5).as_str(),
            "tail:a7:l5:s-"
        );
        assert_eq!(QueryKey::users_total(None).as_str(), "total:s-");
        assert_eq!(
            QueryKey::users_page(Some("x"), page, 10).as_str(),
            format!("list:p1:l10:s{}", hash_term("x"))
        );
        assert_ne!(
            QueryKey::users_page(None, ListStart::Page(1), 10),
            QueryKey::users_page(None, ListStart::After(1), 10)
        );
        let ns = Namespace::User(1);
        let count = stored_count_key("lh", &ns, "17");
        assert_eq!(parse_entry_key("lh", &count), Some((ns, "17")));
    }

    #[test]
    fn search_terms_never_reach_a_key_raw() {
        fn list(search: Option<&str>, page: u64, limit: u64) -> String {
            QueryKey::users_page(search, ListStart::Page(page), limit).to_string()
        }
        let q = list(Some("a*b?[c]:d \r\n"), 1, 10);
        assert!(
            q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'),
            "{q}"
        );
        assert_ne!(list(Some("a"), 1, 10), list(Some("b"), 1, 10));
        assert_ne!(list(Some("a"), 1, 10), list(None, 1, 10));
        assert_ne!(list(None, 1, 10), list(None, 11, 0));
        assert!(list(Some(&"x".repeat(10_000)), 1, 10).len() < 64);
        let total = QueryKey::users_total(Some("a*b?[c]:d \r\n")).to_string();
        assert!(
            total
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b':'),
            "{total}"
        );
    }
}
