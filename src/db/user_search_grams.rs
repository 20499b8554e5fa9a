//! `user_search_grams`: the search of the users list, walked in id order.
//!
//! A search is a case-insensitive substring of `username` or `name`. The
//! table holds every 3-character gram of `lower(username)` and `lower(name)`
//! with its user, keyed `(gram, user_id)`; triggers on `users` keep it
//! (migration `2026-12-07-100000_user_search_grams`), whoever writes. Every
//! user a term matches holds every gram of the term, so the users holding
//! the term's rarest gram, read from the key in id order, are the candidates:
//! a page stops after its rows, a count at its cap, at any depth and however
//! many users match. A term of exactly 3 characters is its own gram: each
//! candidate matches. A longer one rechecks the `LIKE` on each candidate's
//! row. The trigram GIN indexes this replaces found matches as a bitmap, never
//! in id order, so a deep page or a count found and sorted every match.
//!
//! Measured with `EXPLAIN ANALYZE` on 1,000,000 users (`scripts/seed-scale.sh`,
//! 20.6 million grams): `son` (a gram 89,000 users hold) at page 100 of 100
//! reads 10,000 keys and 100 rows, 4.5 ms (the trigram indexes: 167 ms); its
//! count to 10,001, 2 ms. A recheck costs about 4 µs a candidate (a primary
//! key lookup of `users`): 10,000 of them 42 ms, which is why a count of a
//! longer term samples before it counts (see [`count`]).

use diesel::QueryableByName;
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::resources::{EXACT_TOTAL_UP_TO, PublicUser, Total};

/// How many of a term's grams are weighed to find its rarest: the planner's
/// estimate of each costs about 0.1-0.2 ms.
const WEIGHED_GRAMS: usize = 6;

/// Candidates of a longer term rechecked to estimate the share that match,
/// before a count that might recheck 10,001 of them (see [`count`]).
const SAMPLE: i64 = 500;

/// An estimate from which a search is taken to match more than
/// [`EXACT_TOTAL_UP_TO`] users without counting them (see [`count`]).
const SURELY_BEYOND_EXACT: f64 = 2.0 * EXACT_TOTAL_UP_TO as f64;

/// Escapes `%`, `_` and `\` so that every character of `term` matches itself in LIKE.
pub fn like_contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A search term as the gram table answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The `LIKE` pattern a candidate is rechecked with.
    pattern: String,
    /// Distinct grams of the lowercased term, at most [`WEIGHED_GRAMS`],
    /// spread along it.
    grams: Vec<String>,
    /// The term is a single gram: every user holding it matches.
    whole: bool,
}

impl Term {
    /// `None` for a term shorter than 3 characters once lowercased (the
    /// contract's terms never are: they hold 3 letters or digits in a row).
    pub fn new(term: &str) -> Option<Self> {
        // Lowercased as the LIKE pattern is, so the grams are the pattern's.
        let lowered: Vec<char> = term.to_lowercase().chars().collect();
        if lowered.len() < 3 {
            return None;
        }
        let mut grams: Vec<String> = Vec::new();
        for window in lowered.windows(3) {
            let gram: String = window.iter().collect();
            if !grams.contains(&gram) {
                grams.push(gram);
            }
        }
        if grams.len() > WEIGHED_GRAMS {
            let last = grams.len() - 1;
            grams = (0..WEIGHED_GRAMS)
                .map(|i| grams[i * last / (WEIGHED_GRAMS - 1)].clone())
                .collect();
        }
        Some(Self {
            pattern: like_contains_pattern(term),
            grams,
            whole: lowered.len() == 3,
        })
    }
}

/// The row of [`page`]: [`PublicUser`]'s columns, by name.
#[derive(Debug, QueryableByName)]
struct Found {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    bio: String,
    #[diesel(sql_type = Nullable<Text>)]
    avatar_url: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Found> for PublicUser {
    fn from(row: Found) -> Self {
        Self {
            id: row.id,
            username: row.username,
            name: row.name,
            bio: row.bio,
            avatar_url: row.avatar_url,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, QueryableByName)]
struct Rarest {
    #[diesel(sql_type = Nullable<Text>)]
    gram: Option<String>,
}

#[derive(Debug, QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(Debug, QueryableByName)]
struct Plan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    json: String,
}

/// The gram of `term` the fewest users hold, by the planner's statistics.
async fn rarest(conn: &mut AsyncPgConnection, term: &Term) -> QueryResult<String> {
    if let [only] = term.grams.as_slice() {
        return Ok(only.clone());
    }
    let found: Rarest = diesel::sql_query("SELECT linkhub_rarest_gram($1) AS gram")
        .bind::<Array<Text>, _>(&term.grams)
        .get_result(conn)
        .await?;
    Ok(found
        .gram
        .or_else(|| term.grams.as_slice().first().cloned())
        .unwrap_or_default())
}

/// The recheck of a candidate `g.user_id` against the term (`$2`), as a
/// lateral subquery: `OFFSET 0` keeps it a primary-key lookup per candidate,
/// in the candidates' order, whatever the planner guesses of the `LIKE`.
const RECHECK: &str = "CROSS JOIN LATERAL (SELECT 1 FROM users u WHERE u.id = g.user_id \
     AND (lower(u.username) LIKE $2 ESCAPE '\\' OR lower(u.name) LIKE $2 ESCAPE '\\') OFFSET 0) r";

/// The columns of [`Found`] from `users u`.
const COLUMNS: &str = "u.id, u.username, u.name, u.bio, u.avatar_url, u.created_at, u.updated_at";

/// The statement of [`page`]: `$1` the gram walked, `$2` the `LIKE`
/// pattern (not used by a `whole` term), `$3` the id after which it starts,
/// `$4` the limit, `$5` the offset. Public for the test that `EXPLAIN`s it.
pub fn page_sql(whole: bool) -> String {
    let recheck = if whole { "" } else { RECHECK };
    format!(
        "SELECT {COLUMNS} FROM (\
         SELECT g.user_id FROM user_search_grams g {recheck} \
         WHERE g.gram = $1 AND g.user_id > $3 \
         ORDER BY g.user_id LIMIT $4 OFFSET $5) p \
         CROSS JOIN LATERAL (SELECT * FROM users u WHERE u.id = p.user_id OFFSET 0) u \
         ORDER BY p.user_id"
    )
}

/// The users `term` matches, ordered by id, whose id is above `after`
/// (`i64::MIN`: from the first), `offset` of them skipped, at most `limit`.
pub async fn page(
    conn: &mut AsyncPgConnection,
    term: &Term,
    after: i64,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<PublicUser>> {
    let gram = rarest(conn, term).await?;
    let rows: Vec<Found> = diesel::sql_query(page_sql(term.whole))
        .bind::<Text, _>(gram)
        .bind::<Text, _>(&term.pattern)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(PublicUser::from).collect())
}

/// The statement of a count: `$1` the gram walked, `$2` the `LIKE` pattern
/// (not used by a `whole` term), `$3` the cap; with `first`, only the first
/// `$4` candidates in id order are looked at. Public for the test that
/// `EXPLAIN`s it.
pub fn count_sql(whole: bool, first: bool) -> String {
    let first = if first {
        "ORDER BY g.user_id LIMIT $4"
    } else {
        ""
    };
    let recheck = if whole { "" } else { RECHECK };
    format!(
        "SELECT count(*) AS value FROM (SELECT 1 FROM \
         (SELECT g.user_id FROM user_search_grams g WHERE g.gram = $1 {first}) g \
         {recheck} LIMIT $3) m"
    )
}

/// How many candidates of `gram` match `term`, stopping at `cap`; only
/// the first `among` candidates in id order are looked at when it is set.
async fn matches(
    conn: &mut AsyncPgConnection,
    term: &Term,
    gram: &str,
    among: Option<i64>,
    cap: i64,
) -> QueryResult<i64> {
    // Every parameter is bound whichever form is sent (diesel types them).
    let counted: Number = diesel::sql_query(count_sql(term.whole, among.is_some()))
        .bind::<Text, _>(gram)
        .bind::<Text, _>(&term.pattern)
        .bind::<BigInt, _>(cap)
        .bind::<BigInt, _>(among.unwrap_or(cap))
        .get_result(conn)
        .await?;
    Ok(counted.value)
}

/// How many users `term` matches: exact up to [`EXACT_TOTAL_UP_TO`], an
/// estimate above (API.md allows it).
///
/// A term of 3 characters counts its gram's keys to 10,001 (2 ms at most).
/// A longer one first counts its rarest gram's keys to 10,001: fewer, and
/// rechecking each of them gives the exact total. More, and the first
/// [`SAMPLE`] candidates are rechecked: the share that match, times the
/// planner's estimate of the gram's users, is the estimate; at
/// [`SURELY_BEYOND_EXACT`] or more it is the total, not exact. Only a term
/// whose estimate falls below that rechecks up to 10,001 candidates (42 ms
/// at 1,000,000 users). `search=lovelace` (50,000 matches, its rarest gram
/// held by 50,000 users) is estimated, 50,000, not exact: the first 500
/// candidates all match. A total replaced by an estimate wrongly needs the
/// first 500 candidates to match at twice or more the rate of the rest.
pub async fn count(conn: &mut AsyncPgConnection, term: &Term) -> QueryResult<Total> {
    let cap = EXACT_TOTAL_UP_TO as i64 + 1;
    let gram = rarest(conn, term).await?;
    let candidates = {
        let keys = Term {
            whole: true,
            ..term.clone()
        };
        matches(conn, &keys, &gram, None, cap).await?
    };
    if candidates < cap {
        let value = if term.whole {
            candidates
        } else {
            matches(conn, term, &gram, None, cap).await?
        };
        return Ok(Total::exact(value.max(0) as u64));
    }
    if !term.whole {
        let hits = matches(conn, term, &gram, Some(SAMPLE), SAMPLE).await?;
        let holders = gram_estimate(conn, &gram).await?.max(cap as f64);
        let estimate = holders * hits as f64 / SAMPLE as f64;
        if estimate < SURELY_BEYOND_EXACT {
            let counted = matches(conn, term, &gram, None, cap).await?;
            if counted < cap {
                return Ok(Total::exact(counted.max(0) as u64));
            }
        }
        return Ok(beyond_exact(estimate));
    }
    Ok(beyond_exact(gram_estimate(conn, &gram).await?))
}

/// A total above [`EXACT_TOTAL_UP_TO`], from an estimate.
fn beyond_exact(estimate: f64) -> Total {
    Total {
        value: (estimate.max(0.0) as u64).max(EXACT_TOTAL_UP_TO + 1),
        exact: false,
    }
}

/// The planner's estimate of the users holding `gram` (`EXPLAIN`, no
/// execution: the column's statistics scaled to the table's current size).
async fn gram_estimate(conn: &mut AsyncPgConnection, gram: &str) -> QueryResult<f64> {
    let plan: Plan =
        diesel::sql_query("EXPLAIN (FORMAT JSON) SELECT 1 FROM user_search_grams WHERE gram = $1")
            .bind::<Text, _>(gram)
            .get_result(conn)
            .await?;
    Ok(serde_json::from_str::<serde_json::Value>(&plan.json)
        .ok()
        .and_then(|plan| plan[0]["Plan"]["Plan Rows"].as_f64())
        .unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::{Term, like_contains_pattern};

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(like_contains_pattern("*?["), "%*?[%");
        assert_eq!(like_contains_pattern("ABC"), "%abc%");
    }

    #[test]
    fn a_term_is_its_distinct_lowercase_grams() {
        let term = Term::new("SonSon").expect("a term");
        assert_eq!(term.grams, ["son", "ons", "nso"]);
        assert!(!term.whole);
        let term = Term::new("A_%").expect("a term");
        assert_eq!(term.grams, ["a_%"]);
        assert!(term.whole);
        assert_eq!(Term::new("ab"), None);
        // Characters, not bytes.
        let term = Term::new("ÉÀü").expect("a term");
        assert_eq!(term.grams, ["éàü"]);
    }

    #[test]
    fn a_long_term_weighs_grams_spread_along_it() {
        let term = Term::new("abcdefghijklmnopqrstuvwxyz").expect("a term");
        assert_eq!(term.grams.len(), super::WEIGHED_GRAMS);
        assert_eq!(term.grams.first().map(String::as_str), Some("abc"));
        assert_eq!(term.grams.last().map(String::as_str), Some("xyz"));
    }
}
