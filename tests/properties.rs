//! Properties of the two places where client input meets a pattern language:
//! the cache-key encoder (Redis keys and `SCAN MATCH` globs) and the search
//! escaper (SQL `LIKE`). No database and no Redis: pure functions only.
//!
//! * No two different reads share a key, and a key parses back to its
//!   namespace and version.
//! * No input changes a SCAN pattern: an entry pattern is its namespace's
//!   literal prefix plus one trailing `*`, it matches the entries of its own
//!   namespace and of no other one, never a version counter; and a key never
//!   holds `* ? [ ] \`, a space, CR or LF.
//! * The `LIKE` pattern of a search term matches exactly the texts that
//!   contain the (lower-cased) term: `%`, `_` and `\` in a term are literal.

use linkhub::cache::keys::{QueryKey, entry_key, entry_pattern, parse_entry_key, version_key};
use linkhub::db::users::like_contains_pattern;
use linkhub::domain::input::is_valid_username;
use linkhub::domain::resources::ListStart;
use linkhub::namespace::Namespace;
use proptest::prelude::*;

/// The users list's query as it is written in a key.
fn users_list_query(search: Option<&str>, page: u64, limit: u64) -> String {
    QueryKey::users_page(search, ListStart::Page(page), limit).to_string()
}

/// Characters that mean something in a Redis glob or break a key on the wire.
const FORBIDDEN_IN_KEYS: &[char] = &['*', '?', '[', ']', '\\', ' ', '\r', '\n'];

/// `CACHE_PREFIX` as the configuration accepts it.
fn prefix() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,12}"
}

/// Free text as a client could send it, biased towards the characters that
/// matter here.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z0-9*?\\[\\]\\\\%_:{} \r\n^-]{0,40}",]
}

/// Namespaces as the application builds them: ids are any integer, profile
/// names are what passed the username rule (the profile route and the users
/// table let nothing else through).
fn namespace() -> impl Strategy<Value = Namespace> {
    prop_oneof![
        Just(Namespace::Users),
        Just(Namespace::UsersAdded),
        any::<i64>().prop_map(Namespace::User),
        any::<i64>().prop_map(Namespace::Link),
        any::<i64>().prop_map(Namespace::Social),
        prop_oneof!["[a-z0-9_]{3,32}", text()]
            .prop_filter("the username rule", |name| is_valid_username(name))
            .prop_map(Namespace::Profile),
    ]
}

/// The query part of a key, as `cache::keys::QueryKey` builds them.
fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(QueryKey::user().to_string()),
        Just(QueryKey::profile().to_string()),
        Just(QueryKey::profile_page().to_string()),
        Just(QueryKey::link().to_string()),
        Just(QueryKey::social().to_string()),
        Just(QueryKey::socials_of_user().to_string()),
        (any::<u64>(), any::<u64>()).prop_map(|(p, l)| QueryKey::links_page(p, l).to_string()),
        (proptest::option::of(text()), any::<u64>(), any::<u64>())
            .prop_map(|(s, p, l)| users_list_query(s.as_deref(), p, l)),
        (proptest::option::of(text()), any::<i64>(), any::<u64>()).prop_map(|(s, a, l)| {
            QueryKey::users_tail(s.as_deref(), ListStart::After(a), l).to_string()
        }),
        proptest::option::of(text()).prop_map(|s| QueryKey::users_total(s.as_deref()).to_string()),
    ]
}

/// A version as the counters hold it: microseconds, or a small integer.
fn version() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|v| v.to_string())
}

/// Redis glob matching for the only pattern shape entries use: a literal
/// followed by one `*`.
fn glob_matches(pattern: &str, key: &str) -> bool {
    let literal = pattern
        .strip_suffix('*')
        .unwrap_or_else(|| panic!("entry pattern {pattern:?} does not end in *"));
    key.starts_with(literal)
}

/// PostgreSQL's `LIKE … ESCAPE '\'` on already lower-cased text.
fn like_matches(pattern: &str, text: &str) -> bool {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Lit(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => Token::Lit(chars.next().expect("a trailing escape")),
            c => Token::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // matches[i][j]: tokens[i..] match text[j..]
    let mut matches = vec![vec![false; text.len() + 1]; tokens.len() + 1];
    matches[tokens.len()][text.len()] = true;
    for i in (0..tokens.len()).rev() {
        for j in (0..=text.len()).rev() {
            matches[i][j] = match tokens[i] {
                Token::Any => matches[i + 1][j] || (j < text.len() && matches[i][j + 1]),
                Token::One => j < text.len() && matches[i + 1][j + 1],
                Token::Lit(c) => j < text.len() && text[j] == c && matches[i + 1][j + 1],
            };
        }
    }
    matches[0][0]
}

proptest! {
    #[test]
    fn different_searches_and_pages_never_share_a_key(
        a in (proptest::option::of(text()), any::<u64>(), any::<u64>()),
        b in (proptest::option::of(text()), any::<u64>(), any::<u64>()),
    ) {
        // An empty search is no search (the list is not filtered).
        let normalize = |(s, p, l): &(Option<String>, u64, u64)| {
            (s.clone().filter(|s| !s.is_empty()), *p, *l)
        };
        let (na, nb) = (normalize(&a), normalize(&b));
        let (qa, qb) = (
            users_list_query(a.0.as_deref(), a.1, a.2),
            users_list_query(b.0.as_deref(), b.1, b.2),
        );
        prop_assert_eq!(na == nb, qa == qb, "{:?} {:?} -> {} {}", a, b, qa, qb);
    }

    #[test]
    fn a_search_term_keeps_its_own_key_next_to_a_near_twin(term in text(), extra in text()) {
        let twin = format!("{term}{extra}");
        prop_assume!(!extra.is_empty());
        prop_assert_ne!(
            users_list_query(Some(&term), 1, 10),
            users_list_query(Some(&twin), 1, 10)
        );
    }

    #[test]
    fn keys_hold_no_glob_or_line_breaking_characters(
        prefix in prefix(), ns in namespace(), version in version(), query in query(),
    ) {
        let key = entry_key(&prefix, &ns, &version, &query);
        prop_assert!(!key.contains(FORBIDDEN_IN_KEYS), "{key:?}");
        let counter = version_key(&prefix, &ns);
        prop_assert!(!counter.contains(FORBIDDEN_IN_KEYS), "{counter:?}");
        let pattern = entry_pattern(&prefix, &ns);
        let literal = pattern.strip_suffix('*');
        prop_assert!(literal.is_some(), "{pattern:?}");
        prop_assert!(!literal.unwrap_or_default().contains(FORBIDDEN_IN_KEYS), "{pattern:?}");
    }

    #[test]
    fn entry_keys_parse_back_to_namespace_and_version(
        prefix in prefix(), ns in namespace(), version in version(), query in query(),
    ) {
        let key = entry_key(&prefix, &ns, &version, &query);
        let counter = version_key(&prefix, &ns);
        prop_assert_eq!(parse_entry_key(&prefix, &counter), None);
        prop_assert_eq!(parse_entry_key(&prefix, &key), Some((ns, version.as_str())));
    }

    #[test]
    fn different_reads_never_share_a_key(
        prefix in prefix(),
        a in (namespace(), version(), query()),
        b in (namespace(), version(), query()),
    ) {
        let ka = entry_key(&prefix, &a.0, &a.1, &a.2);
        let kb = entry_key(&prefix, &b.0, &b.1, &b.2);
        prop_assert_eq!(a == b, ka == kb, "{} {}", ka, kb);
    }

    #[test]
    fn an_entry_pattern_matches_its_own_namespace_only(
        prefix in prefix(),
        own in namespace(),
        other in namespace(),
        version in version(),
        query in query(),
    ) {
        let pattern = entry_pattern(&prefix, &own);
        let key = entry_key(&prefix, &other, &version, &query);
        prop_assert_eq!(glob_matches(&pattern, &key), own == other, "{} {}", pattern, key);
        prop_assert!(!glob_matches(&pattern, &version_key(&prefix, &other)));
    }

    #[test]
    fn namespaces_round_trip_through_their_text(ns in namespace()) {
        let text = ns.to_string();
        prop_assert_eq!(text.parse::<Namespace>(), Ok(ns));
    }

    #[test]
    fn whatever_parses_as_a_namespace_prints_without_glob_characters(raw in text()) {
        if let Ok(ns) = raw.parse::<Namespace>() {
            let printed = ns.to_string();
            prop_assert!(!printed.contains(FORBIDDEN_IN_KEYS), "{raw:?} -> {printed:?}");
            prop_assert!(!printed.contains(['{', '}']), "{raw:?} -> {printed:?}");
            prop_assert_eq!(printed.parse::<Namespace>(), Ok(ns));
        }
    }

    #[test]
    fn a_like_pattern_has_wildcards_only_at_its_ends(term in text()) {
        let pattern = like_contains_pattern(&term);
        let inner = pattern
            .strip_prefix('%')
            .and_then(|p| p.strip_suffix('%'))
            .unwrap_or_else(|| panic!("{pattern:?} is not %…%"));
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            prop_assert!(c != '%' && c != '_', "unescaped {c:?} in {pattern:?}");
            if c == '\\' {
                let escaped = chars.next();
                prop_assert!(matches!(escaped, Some('%' | '_' | '\\')), "{pattern:?}");
            }
        }
    }

    #[test]
    fn a_like_pattern_matches_exactly_the_texts_containing_the_term(
        term in text(),
        before in text(),
        after in text(),
        unrelated in text(),
    ) {
        let pattern = like_contains_pattern(&term);
        let needle = term.to_lowercase();
        let containing = format!("{}{needle}{}", before.to_lowercase(), after.to_lowercase());
        prop_assert!(like_matches(&pattern, &containing), "{pattern:?} {containing:?}");
        let unrelated = unrelated.to_lowercase();
        prop_assert_eq!(
            like_matches(&pattern, &unrelated),
            unrelated.contains(&needle),
            "{:?} {:?}", pattern, unrelated
        );
    }
}

#[test]
fn like_wildcards_in_a_term_match_only_themselves() {
    let pattern = like_contains_pattern("50%_off\\");
    assert!(like_matches(&pattern, "get 50%_off\\ now"));
    assert!(!like_matches(&pattern, "get 50 percent xoff\\ now"));
    assert!(!like_matches(&pattern, "50%xoff\\"));
}
