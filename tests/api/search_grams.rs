//! The users list's search through `user_search_grams`: the table follows
//! every write to `users` (the API's and plain SQL's), and a search answers
//! exactly what the plain `LIKE` filter answers, for awkward names and terms
//! (punctuation, `%`, `_`, `\`, Unicode, case).

use std::collections::BTreeSet;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use linkhub::db::users::{count_matching, like_contains_pattern, list};
use linkhub::domain::resources::{ListRequest, ListStart};
use serde_json::json;

use crate::support::*;

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct GramRow {
    #[diesel(sql_type = Text)]
    gram: String,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The 3-character substrings of `text` lowercased, computed here rather
/// than by the migration's functions (the test data's characters lowercase
/// alike in Rust and PostgreSQL).
fn grams_of(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// The (gram, user) rows the users' usernames and names call for, and the
/// rows the table holds.
async fn expected_and_held(
    conn: &mut AsyncPgConnection,
) -> (BTreeSet<(String, i64)>, BTreeSet<(String, i64)>) {
    let users: Vec<UserRow> = diesel::sql_query("SELECT id, username, name FROM users")
        .load(conn)
        .await
        .expect("users");
    let expected = users
        .iter()
        .flat_map(|u| {
            grams_of(&u.username)
                .into_iter()
                .chain(grams_of(&u.name))
                .map(move |g| (g, u.id))
        })
        .collect();
    let held: Vec<GramRow> = diesel::sql_query("SELECT gram, user_id FROM user_search_grams")
        .load(conn)
        .await
        .expect("grams");
    let held = held.into_iter().map(|r| (r.gram, r.user_id)).collect();
    (expected, held)
}

async fn assert_grams_follow(conn: &mut AsyncPgConnection, after: &str) {
    let (expected, held) = expected_and_held(conn).await;
    let missing: Vec<_> = expected.difference(&held).take(5).collect();
    let stale: Vec<_> = held.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "after {after}: grams missing {missing:?}, grams left over {stale:?}"
    );
}

async fn found(app: &TestApp, term: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(term.as_bytes()).collect();
    let (data, _) = expect_page(
        app.list_users(&format!("?search={encoded}&limit=100"))
            .await,
    )
    .await;
    data.iter()
        .map(|u| u["username"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_grams_follow_inserts_renames_deletes_and_sql_writes() {
    let app = spawn_app().await;
    let mut conn = AsyncPgConnection::establish(&app.database_url)
        .await
        .expect("connects");
    assert_grams_follow(&mut conn, "the migrations").await;

    // The API: a registration, a rename of username and name, a deletion.
    let heron = app
        .register_with(
            &json!({"username": "grey_heron", "email": "heron@example.com",
                               "password": TEST_PASSWORD, "name": "Ardea Cinerea"}),
        )
        .await;
    let heron_id = heron["id"].as_i64().expect("an id");
    let other = app.register_user().await;
    assert_grams_follow(&mut conn, "registrations").await;
    assert_eq!(found(&app, "cinerea").await, ["grey_heron"]);

    let admin = app.register_admin().await;
    expect_json(
        app.update_user(
            heron_id,
            Some(&admin.token),
            &json!({"username": "night_heron", "name": "Nycticorax"}),
        )
        .await,
        200,
    )
    .await;
    assert_grams_follow(&mut conn, "a rename").await;
    assert!(found(&app, "cinerea").await.is_empty());
    assert!(found(&app, "grey_").await.is_empty());
    assert_eq!(found(&app, "nycticorax").await, ["night_heron"]);
    assert_eq!(found(&app, "night_her").await, ["night_heron"]);

    // A write that changes neither username nor name leaves the grams be.
    expect_json(
        app.update_user(heron_id, Some(&admin.token), &json!({"bio": "waits"}))
            .await,
        200,
    )
    .await;
    assert_grams_follow(&mut conn, "a bio change").await;

    app.delete_user(other.id, Some(&other.token)).await;
    assert_grams_follow(&mut conn, "a deletion").await;

    // Plain SQL, one row and many at a time, ids changed too.
    execute_sql(
        &app.database_url,
        "INSERT INTO users (username, email, password_hash, name) \
         SELECT 'bulk_' || g, 'bulk' || g || '@example.com', 'x', 'Bulk Bird ' || g \
         FROM generate_series(1, 50) g; \
         UPDATE users SET name = 'Renamed ' || id WHERE username LIKE 'bulk\\_1%'; \
         UPDATE users SET username = upper(username) WHERE username LIKE 'bulk\\_2%'; \
         UPDATE users SET id = id + 100000 WHERE username = 'bulk_3'; \
         DELETE FROM users WHERE username LIKE 'bulk\\_4%';",
    )
    .await;
    assert_grams_follow(&mut conn, "SQL inserts, updates and deletes").await;
    // bulk_3 moved to the end of the id order with its new id.
    let mut moved: Vec<String> = (30..40).map(|n| format!("bulk_{n}")).collect();
    moved.push("bulk_3".to_owned());
    assert_eq!(found(&app, "BULK_3").await, moved);
    assert!(found(&app, "bulk_4").await.is_empty());
    assert_eq!(found(&app, "bulk_21").await, ["BULK_21"]);

    execute_sql(&app.database_url, "TRUNCATE users CASCADE").await;
    assert_grams_follow(&mut conn, "a TRUNCATE").await;
    execute_sql(
        &app.database_url,
        "INSERT INTO users (username, email, password_hash, name) \
         VALUES ('after_truncate', 'a@example.com', 'x', 'Phoenix')",
    )
    .await;
    assert_grams_follow(&mut conn, "an insert after a TRUNCATE").await;
}

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Pieces names and terms are made of: letters of both cases, Unicode that
/// lowercases to other characters (or to more of them), LIKE's wildcards
/// and escape, punctuation, digits, spaces.
const PIECES: &[&str] = &[
    "a", "b", "A", "B", "ab", "Ba", "é", "É", "ß", "ü", "Ü", "ñ", "Ω", "ω", "日本", "😀", "%", "_",
    "\\", "%_", "\\%", ".", "-", "'", "!", " ", "1", "23", "aa", "AB",
];

fn awkward(draw: &mut Draw, pieces: usize) -> String {
    (0..pieces).map(|_| draw.pick(PIECES)).collect()
}

/// The ids the plain `LIKE` filter matches, in id order.
async fn reference(conn: &mut AsyncPgConnection, term: &str) -> Vec<i64> {
    let rows: Vec<IdRow> = diesel::sql_query(
        "SELECT id FROM users WHERE lower(username) LIKE $1 ESCAPE '\\' \
         OR lower(name) LIKE $1 ESCAPE '\\' ORDER BY id",
    )
    .bind::<Text, _>(like_contains_pattern(term))
    .load(conn)
    .await
    .expect("the reference filter");
    rows.into_iter().map(|r| r.id).collect()
}

/// Every match of `term` through `db::users::list`, walked with `after`.
async fn walked(conn: &mut AsyncPgConnection, term: &str, limit: u64) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let request = ListRequest {
            start: ListStart::After(after),
            limit,
        };
        let page = list(conn, Some(term), request).await.expect("a page");
        ids.extend(page.iter().map(|u| u.id));
        match page.last() {
            Some(last) if page.len() as u64 == limit => after = last.id,
            _ => return ids,
        }
    }
}

#[tokio::test]
async fn a_search_answers_what_the_plain_like_filter_answers() {
    let database_url = create_test_database().await;
    let mut conn = AsyncPgConnection::establish(&database_url)
        .await
        .expect("connects");
    let mut draw = Draw(0x5eed_1234_abcd_0001);
    let mut names = Vec::new();
    let mut values = Vec::new();
    for n in 0..400 {
        let pieces = 2 + (draw.next() % 6) as usize;
        let name = awkward(&mut draw, pieces);
        // Usernames by SQL: the API's rules do not hold here, the search must.
        let pieces = 1 + (draw.next() % 3) as usize;
        let username = format!("{}{n}", awkward(&mut draw, pieces));
        values.push(format!(
            "('{}', 'p{n}@example.com', 'x', '{}')",
            username.replace('\'', "''"),
            name.replace('\'', "''")
        ));
        names.push(name);
        names.push(username);
    }
    execute_sql(
        &database_url,
        &format!(
            "INSERT INTO users (username, email, password_hash, name) VALUES {}; ANALYZE;",
            values.join(", ")
        ),
    )
    .await;

    let mut terms: Vec<String> = Vec::new();
    // Pieces of the names (they match), in other cases too, and made-up terms.
    for name in names.iter().step_by(3) {
        let chars: Vec<char> = name.chars().collect();
        if chars.len() >= 3 {
            let start = (draw.next() % (chars.len() as u64 - 2)) as usize;
            let len = 3 + (draw.next() % (chars.len() - start - 2) as u64) as usize;
            let piece: String = chars[start..start + len].iter().collect();
            terms.push(piece.to_uppercase());
            terms.push(piece);
        }
    }
    for _ in 0..100 {
        terms.push(awkward(&mut draw, 3));
    }
    terms.extend(
        [
            "%%%", "___", "\\\\\\", "a_a", "a%a", "aaa", "AAAA", "ßß", "ss",
        ]
        .map(String::from),
    );

    let mut checked = 0;
    let mut matched = 0;
    for term in &terms {
        if term.to_lowercase().chars().count() < 3 {
            continue;
        }
        let expected = reference(&mut conn, term).await;
        let got = walked(&mut conn, term, 7).await;
        assert_eq!(got, expected, "search {term:?}");
        let total = count_matching(&mut conn, Some(term))
            .await
            .expect("a total");
        assert!(total.exact, "search {term:?}: total not exact");
        assert_eq!(total.value, expected.len() as u64, "search {term:?}: total");
        // A numbered page is the same slice of the matches.
        let request = ListRequest {
            start: ListStart::Page(2),
            limit: 3,
        };
        let page: Vec<i64> = list(&mut conn, Some(term), request)
            .await
            .expect("page 2")
            .iter()
            .map(|u| u.id)
            .collect();
        let slice: Vec<i64> = expected.iter().skip(3).take(3).copied().collect();
        assert_eq!(page, slice, "search {term:?}: page 2 of 3");
        checked += 1;
        matched += usize::from(!expected.is_empty());
    }
    // The draw made terms of every kind: a change to it that left nothing to
    // compare would pass unseen.
    assert!(checked >= 200, "only {checked} terms checked");
    assert!(matched >= 100, "only {matched} terms matched something");
}

#[tokio::test]
async fn a_total_beyond_ten_thousand_is_an_estimate_and_below_it_exact() {
    let database_url = create_test_database().await;
    execute_sql(
        &database_url,
        "INSERT INTO users (username, email, password_hash, name) \
         SELECT 'wren_' || g, 'w' || g || '@example.com', 'x', \
                CASE WHEN g % 3 = 0 THEN 'Wren Wren' ELSE 'Wren Sparrow Wren' END \
         FROM generate_series(1, 12000) g; \
         INSERT INTO users (username, email, password_hash, name) \
         SELECT 'rare_' || g, 'r' || g || '@example.com', 'x', 'Wrenlike Rarity' \
         FROM generate_series(1, 30) g; \
         ANALYZE;",
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&database_url)
        .await
        .expect("connects");
    // One gram held by 12,030 users: counted to the cap, then estimated.
    let total = count_matching(&mut conn, Some("REN")).await.expect("total");
    assert!(!total.exact);
    assert!(total.value > 10_000, "{total:?}");
    // A longer term each of whose grams 12,000 users hold (`Wren Sparrow
    // Wren` holds `en ` and ` wr` too), of whom 4,000 match: its sample
    // estimates 4,000, so it is counted, exact.
    let total = count_matching(&mut conn, Some("wren wren"))
        .await
        .expect("total");
    assert!(total.exact, "{total:?}");
    assert_eq!(total.value, 4_000);
    // Many candidates, every one a match, estimated below twice the cap:
    // counted to the cap, then not exact.
    let total = count_matching(&mut conn, Some("wren_"))
        .await
        .expect("total");
    assert!(!total.exact, "{total:?}");
    assert!(total.value > 10_000, "{total:?}");
    // Few candidates: exact.
    let total = count_matching(&mut conn, Some("rarity"))
        .await
        .expect("total");
    assert_eq!((total.value, total.exact), (30, true));
}
