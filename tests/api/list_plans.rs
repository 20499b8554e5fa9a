//! The plans PostgreSQL picks for every read of the users list the contract
//! allows: none may read the whole `users` table.
//!
//! The test database holds 30,000 users (names drawn like the scale tests':
//! one in 20 shares a surname, one in 40 a first name), `ANALYZE`d, and
//! `enable_seqscan` is off. At 30,000 rows PostgreSQL rightly prefers reading
//! the whole table for some shapes (a capped count, a dense search), which at
//! 1,000,000 users it does not; with sequential scans off they become the plan
//! of last resort, so one left in a plan means no index can serve that shape.
//! The costs at 1,000,000 users are in `src/db/users.rs`, measured with
//! `EXPLAIN ANALYZE`. The SQL below is what `db::users` sends (diesel's
//! spelling aside); a search's statements are `db::user_search_grams`' own,
//! prepared and explained with their parameters' values. Neither `users`
//! nor the gram table may be read sequentially.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;

use linkhub::db::user_search_grams::{count_sql, page_sql};

use crate::support::*;

const USERS: usize = 30_000;

const COLUMNS: &str = "id, username, name, bio, avatar_url, created_at, updated_at";

/// A statement of `db::user_search_grams` as that module sends it, prepared
/// under `name` with its parameters' types, and the `EXECUTE` that runs it
/// with `values` (a custom plan: the planner sees the values).
struct Prepared {
    name: &'static str,
    sql: String,
    types: &'static str,
    values: String,
}

/// `page_sql`'s parameters: gram, pattern, after, limit, offset.
fn page(
    name: &'static str,
    whole: bool,
    gram: &str,
    term: &str,
    after: i64,
    limit: i64,
    offset: i64,
) -> Prepared {
    Prepared {
        name,
        sql: page_sql(whole),
        types: "text, text, bigint, bigint, bigint",
        values: format!("'{gram}', '%{term}%', {after}, {limit}, {offset}"),
    }
}

/// `count_sql`'s parameters: gram, pattern, cap, first candidates.
fn count(
    name: &'static str,
    whole: bool,
    first: bool,
    gram: &str,
    term: &str,
    cap: i64,
) -> Prepared {
    Prepared {
        name,
        sql: count_sql(whole, first),
        types: "text, text, bigint, bigint",
        values: format!("'{gram}', '%{term}%', {cap}, {cap}"),
    }
}

/// Every read of the list: `(what, SQL)`; a search's statements are
/// prepared first (see [`searches`]).
fn shapes() -> Vec<(&'static str, String)> {
    let page = |offset: u64, limit: u64| {
        format!(
            "SELECT {COLUMNS} FROM users WHERE id >= \
             (SELECT s.id FROM users s ORDER BY s.id OFFSET {offset} LIMIT 1) \
             ORDER BY id LIMIT {limit}"
        )
    };
    vec![
        ("page 1", page(0, 10)),
        ("page 100 at limit 100", page(9_900, 100)),
        (
            "after near the end",
            format!(
                "SELECT {COLUMNS} FROM users WHERE id > {} ORDER BY id LIMIT 100",
                USERS - 50
            ),
        ),
        (
            "the total, counted to 10,001",
            "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 10001) m".to_owned(),
        ),
        (
            "the rarest gram of a term",
            "SELECT linkhub_rarest_gram(ARRAY['lov', 'ove', 'vel', 'ela', 'lac', 'ace'])"
                .to_owned(),
        ),
        (
            "the estimate of one gram (what linkhub_rarest_gram plans)",
            "SELECT 1 FROM user_search_grams WHERE gram = 'mar'".to_owned(),
        ),
    ]
}

/// Every statement of a search: `(what, prepared)`. `mar` is a 3-letter term
/// (one gram) a third of the users hold; `lovelace` a longer one (its grams
/// rechecked) that a fifth match.
fn searches() -> Vec<(&'static str, Prepared)> {
    let cap = 10_001;
    vec![
        (
            "a common 3-letter search at page 100",
            page("s1", true, "mar", "mar", i64::MIN, 100, 9_900),
        ),
        (
            "a common 3-letter search's total",
            count("s2", true, false, "mar", "mar", cap),
        ),
        (
            "a search with many matches, page 1",
            page("s3", false, "lov", "lovelace", i64::MIN, 10, 0),
        ),
        (
            "a search with many matches, after",
            page("s4", false, "lov", "lovelace", 20_000, 10, 0),
        ),
        (
            "a search with many matches, page 100",
            page("s5", false, "lov", "lovelace", i64::MIN, 100, 9_900),
        ),
        (
            "a search's candidates, counted to 10,001",
            count("s6", true, false, "lov", "lovelace", cap),
        ),
        (
            "a search's sample of 500 candidates",
            count("s7", false, true, "lov", "lovelace", 500),
        ),
        (
            "a search's matches, counted to 10,001",
            count("s8", false, false, "lov", "lovelace", cap),
        ),
    ]
}

#[derive(QueryableByName)]
struct Plan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    json: String,
}

/// The relations a plan reads whole: a sequential scan, or a scan of the
/// gram table whose index condition does not pick a gram (its primary key
/// read from end to end is no better than its heap; a bitmap scan of one
/// gram's keys is not whole).
fn sequential_scans(node: &Value, found: &mut Vec<String>) {
    let relation = node["Relation Name"].as_str().unwrap_or("?");
    let picks_a_gram = ["Index Cond", "Recheck Cond"].iter().any(|key| {
        node[*key]
            .as_str()
            .is_some_and(|cond| cond.contains("(gram = "))
    });
    if node["Node Type"] == "Seq Scan" || (relation == "user_search_grams" && !picks_a_gram) {
        found.push(relation.to_owned());
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        sequential_scans(child, found);
    }
}

async fn sequential_scans_of(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let plan: Plan = diesel::sql_query(format!("EXPLAIN (FORMAT JSON) {sql}"))
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    let plan: Value = serde_json::from_str(&plan.json).expect("EXPLAIN answers JSON");
    let mut found = Vec::new();
    sequential_scans(&plan[0]["Plan"], &mut found);
    found
}

#[tokio::test]
async fn no_read_of_the_users_list_scans_the_table() {
    let database_url = create_test_database().await;
    execute_sql(
        &database_url,
        &format!(
            "INSERT INTO users (username, email, password_hash, name) \
             SELECT (ARRAY['ada','grace','mary','margaret'])[1 + g % 4] || '_' || g, \
                    'u' || g || '@example.com', 'x', \
                    initcap((ARRAY['ada','grace','alan','linus'])[1 + g % 40 % 4]) || ' ' || \
                    initcap((ARRAY['lovelace','hopper','turing','knuth','wirth'])[1 + (g / 40) % 20 % 5]) \
             FROM generate_series(1, {USERS}) g; \
             ANALYZE users; ANALYZE user_search_grams;"
        ),
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&database_url)
        .await
        .expect("connects");
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .expect("planner setting");

    // The check finds a sequential scan where nothing else can serve.
    let unindexed = format!("SELECT {COLUMNS} FROM users WHERE lower(bio) LIKE '%x%' LIMIT 10");
    assert_eq!(sequential_scans_of(&mut conn, &unindexed).await, ["users"]);
    let unindexed = "SELECT count(*) FROM user_search_grams WHERE user_id = 7";
    assert_eq!(
        sequential_scans_of(&mut conn, unindexed).await,
        ["user_search_grams"]
    );

    let mut failures = Vec::new();
    let mut check = |what: &str, sql: &str, scans: Vec<String>| {
        for relation in ["users", "user_search_grams"] {
            if scans.iter().any(|scanned| scanned == relation) {
                failures.push(format!("{what}: a sequential scan of {relation}\n  {sql}"));
            }
        }
    };
    for (what, sql) in shapes() {
        let scans = sequential_scans_of(&mut conn, &sql).await;
        check(what, &sql, scans);
    }
    for (what, statement) in searches() {
        let Prepared {
            name,
            sql,
            types,
            values,
        } = statement;
        conn.batch_execute(&format!("PREPARE {name} ({types}) AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("PREPARE {sql}: {e}"));
        let scans = sequential_scans_of(&mut conn, &format!("EXECUTE {name}({values})")).await;
        check(what, &sql, scans);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
