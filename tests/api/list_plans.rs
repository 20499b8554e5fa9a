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
//! spelling aside).

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;

use crate::support::*;

const USERS: usize = 30_000;

const COLUMNS: &str = "id, username, name, bio, avatar_url, created_at, updated_at";

/// `db::users::list`'s filter of a search (`$1`: the escaped pattern).
fn matching(pattern: &str) -> String {
    format!(
        "(lower(username) LIKE '{pattern}' ESCAPE '\\' OR lower(name) LIKE '{pattern}' ESCAPE '\\')"
    )
}

/// Every read of the list: `(what, SQL)`.
fn shapes() -> Vec<(&'static str, String)> {
    let common = matching("%mar%");
    let many = matching("%lovelace%");
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
            "a common 3-letter search at page 100",
            format!("SELECT {COLUMNS} FROM users WHERE {common} ORDER BY id LIMIT 100 OFFSET 9900"),
        ),
        (
            "a common 3-letter search's total",
            format!("SELECT count(*) FROM (SELECT 1 FROM users WHERE {common} LIMIT 10001) m"),
        ),
        (
            "a search with many matches, page 1",
            format!("SELECT {COLUMNS} FROM users WHERE {many} ORDER BY id LIMIT 10"),
        ),
        (
            "a search with many matches, after",
            format!("SELECT {COLUMNS} FROM users WHERE {many} AND id > 20000 ORDER BY id LIMIT 10"),
        ),
        (
            "a search with many matches, its total",
            format!("SELECT count(*) FROM (SELECT 1 FROM users WHERE {many} LIMIT 10001) m"),
        ),
    ]
}

#[derive(QueryableByName)]
struct Plan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    json: String,
}

/// The relations a plan reads sequentially.
fn sequential_scans(node: &Value, found: &mut Vec<String>) {
    if node["Node Type"] == "Seq Scan" {
        found.push(node["Relation Name"].as_str().unwrap_or("?").to_owned());
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
             ANALYZE users;"
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

    let mut failures = Vec::new();
    for (what, sql) in shapes() {
        let scans = sequential_scans_of(&mut conn, &sql).await;
        if scans.iter().any(|relation| relation == "users") {
            failures.push(format!("{what}: a sequential scan of users\n  {sql}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
