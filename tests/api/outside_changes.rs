//! Changes committed straight to PostgreSQL, not through the API: an admin's
//! `UPDATE`, an `INSERT` and a `DELETE` by `psql`, a data migration of
//! thousands of rows, a transaction rolled back. The tables' triggers owe
//! the namespaces in the same transaction and announce them at commit; every
//! instance stops trusting them and delivers the bumps. The contract's bounds
//! (`API.md`, "Changes made outside the API"): 1 s for a few rows, 5 s for
//! thousands. The operator's `linkhub cache invalidate` and `status` work
//! through the same mechanism.

use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until every path reads on `app` as on `truth`, then checks that it
/// stays so; answers how long it took. Panics past `within`.
async fn until_fresh(
    app: &TestApp,
    truth: &TestApp,
    paths: &[String],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut stale = None;
        for path in paths {
            let got = fetch(app, path).await;
            let want = fetch(truth, path).await;
            if (got.status, &got.body) != (want.status, &want.body) {
                stale = Some((path.clone(), got.x_cache));
                break;
            }
        }
        let Some((path, x_cache)) = stale else {
            let took = started.elapsed();
            tokio::time::sleep(Duration::from_millis(100)).await;
            for path in paths {
                assert_fresh(app, truth, path, "after the change showed").await;
            }
            return took;
        };
        assert!(
            started.elapsed() < within,
            "GET {path} still stale ({x_cache}) {within:?} after the commit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cached instance, a cache-off one to compare with, and an owner whose
/// reads are warmed to `HIT`.
struct Warmed {
    app: TestApp,
    truth: TestApp,
    owner: Owner,
    paths: Vec<String>,
}

async fn warmed(links: usize, socials: usize) -> Warmed {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, links, socials).await;
    let paths = owner.own_reads();
    warm_all(&app, &paths).await;
    Warmed {
        app,
        truth,
        owner,
        paths,
    }
}

async fn outbox_rows(app: &TestApp) -> usize {
    query_strings(
        &app.database_url,
        "SELECT id::text AS value FROM cache_outbox",
    )
    .await
    .len()
}

async fn epoch(app: &TestApp) -> i64 {
    query_strings(
        &app.database_url,
        "SELECT epoch::text AS value FROM cache_epoch",
    )
    .await
    .first()
    .and_then(|e| e.parse().ok())
    .expect("the cache_epoch row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_update_shows_in_every_read_within_a_second() {
    let Warmed {
        app,
        truth,
        owner,
        paths,
    } = warmed(2, 1).await;

    execute_sql(
        &app.database_url,
        &format!(
            "UPDATE users SET bio = 'fixed by an admin' WHERE id = {id}; \
             UPDATE links SET title = 'fixed title' WHERE user_id = {id}; \
             UPDATE socials SET url = 'https://example.com/fixed' WHERE user_id = {id}",
            id = owner.id()
        ),
    )
    .await;
    let took = until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;
    println!("an admin's UPDATE showed in every read after {took:?}");
    // Delivered, and the cache is used again.
    warm_all(&app, &paths).await;
    assert_eq!(outbox_rows(&app).await, 0, "every owed bump was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_and_a_delete_by_sql_show_within_a_second() {
    let Warmed {
        app,
        truth,
        owner,
        paths,
    } = warmed(1, 0).await;

    execute_sql(
        &app.database_url,
        &format!(
            "INSERT INTO links (user_id, title, url, position) \
             VALUES ({}, 'added by psql', 'https://example.com/psql', 50)",
            owner.id()
        ),
    )
    .await;
    until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;
    warm_all(&app, &paths).await;

    execute_sql(
        &app.database_url,
        &format!("DELETE FROM users WHERE id = {}", owner.id()),
    )
    .await;
    until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;
    assert_eq!(fetch(&app, &owner.profile_path()).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_sql_shows_on_every_instance() {
    let app = spawn_cached().await;
    let other = spawn_app_on(&app.database_url, &app.settings.cache_prefix, |s| {
        s.redis_url = app.settings.redis_url.clone();
        s.redis_cluster_urls = app.settings.redis_cluster_urls.clone();
    })
    .await;
    wait_cache_ok(&other).await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let paths = owner.own_reads();
    warm_all(&app, &paths).await;
    warm_all(&other, &paths).await;

    execute_sql(
        &app.database_url,
        &format!(
            "UPDATE users SET name = 'Renamed By SQL' WHERE id = {}",
            owner.id()
        ),
    )
    .await;
    until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;
    until_fresh(&other, &truth, &paths, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_owes_nothing() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 1, 1).await;
    let paths = owner.own_reads();
    warm_all(&app, &paths).await;
    let epoch_before = epoch(&app).await;

    execute_sql(
        &app.database_url,
        &format!(
            "BEGIN; \
             UPDATE users SET bio = 'never committed' WHERE id = {id}; \
             UPDATE links SET title = 'never committed' WHERE user_id = {id}; \
             SET LOCAL linkhub.cache_bulk_rows = 0; \
             UPDATE socials SET url = 'https://example.com/never' WHERE user_id = {id}; \
             ROLLBACK",
            id = owner.id()
        ),
    )
    .await;
    assert_eq!(
        outbox_rows(&app).await,
        0,
        "a rolled-back change owes no bump"
    );
    assert_eq!(epoch(&app).await, epoch_before, "nor an epoch move");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in &paths {
        let got = fetch(&app, path).await;
        assert_eq!(got.x_cache, "HIT", "GET {path} after a rollback");
        assert!(!got.text.contains("never"), "GET {path}: {}", got.text);
    }
}

/// A statement past the bulk threshold moves the cache epoch instead of
/// owing each row: every read is fresh within the bound for thousands of
/// rows, and the cache serves again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_change_moves_the_epoch_and_shows_within_five_seconds() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let first = Owner::create(&app, 1, 1).await;
    let second = Owner::create(&app, 1, 0).await;
    let mut paths = first.own_reads();
    paths.extend(second.own_reads());
    warm_all(&app, &paths).await;
    let epoch_before = epoch(&app).await;

    execute_sql(
        &app.database_url,
        "SET linkhub.cache_bulk_rows = 1; UPDATE users SET bio = 'rewritten by a data migration'",
    )
    .await;
    assert_eq!(epoch(&app).await, epoch_before + 1);
    assert_eq!(
        outbox_rows(&app).await,
        0,
        "one epoch move, not a row per user"
    );
    let took = until_fresh(&app, &truth, &paths, Duration::from_secs(5)).await;
    println!("a bulk UPDATE showed in every read after {took:?}");
    warm_all(&app, &paths).await;
}

/// A change the triggers cannot see (`session_replication_role = replica`
/// turns them off, as `pg_restore` and logical replication do) is the
/// operator's to invalidate: `linkhub cache invalidate --user` and `--all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_invalidates_what_the_triggers_could_not_see() {
    let Warmed {
        app,
        truth,
        owner,
        paths,
    } = warmed(1, 1).await;
    let unseen = |bio: &str| {
        format!(
            "SET session_replication_role = replica; \
             UPDATE users SET bio = '{bio}' WHERE id = {}",
            owner.id()
        )
    };

    execute_sql(&app.database_url, &unseen("restored without triggers")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stale = fetch(&app, &owner.user_path()).await;
    assert_eq!(stale.x_cache, "HIT", "nothing told the cache");

    let vars = [("DATABASE_URL", app.database_url.as_str())];
    let (mut command, _dir) = linkhub(&["cache", "invalidate", "--user", &owner.username], &vars);
    let out = command
        .output()
        .await
        .expect("run linkhub cache invalidate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("delivered"), "{stdout}");
    until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;

    execute_sql(&app.database_url, &unseen("restored again")).await;
    let (mut command, _dir) = linkhub(&["cache", "invalidate", "--all"], &vars);
    let out = command
        .output()
        .await
        .expect("run linkhub cache invalidate --all");
    assert_eq!(out.status.code(), Some(0));
    until_fresh(&app, &truth, &paths, Duration::from_secs(2)).await;

    let (mut command, _dir) = linkhub(&["cache", "invalidate", "--user", "nobody_here"], &vars);
    let out = command
        .output()
        .await
        .expect("run linkhub cache invalidate");
    assert_eq!(out.status.code(), Some(1), "an unknown user is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));

    let (mut command, _dir) = linkhub(&["cache", "invalidate"], &vars);
    let out = command
        .output()
        .await
        .expect("run linkhub cache invalidate");
    assert_eq!(out.status.code(), Some(2), "a target is required");

    // Each instance reports a new epoch as soon as it adopted it.
    let started = Instant::now();
    let (code, stdout) = loop {
        let (mut command, _dir) = linkhub(&["cache", "status"], &vars);
        let out = command.output().await.expect("run linkhub cache status");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() == Some(0) || started.elapsed() > Duration::from_secs(3) {
            break (out.status.code(), stdout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("epoch {}", epoch(&app).await)),
        "{stdout}"
    );
    assert!(stdout.contains("owed bumps: 0"), "{stdout}");
    assert!(
        stdout.contains("instances reporting: 2"),
        "the app and the truth: {stdout}"
    );
    assert!(stdout.contains("status: ok"), "{stdout}");
}

/// Figures for docs/CACHE.md, not a gate (`cargo test --test api --
/// --ignored measure_`): a data migration renaming 2,000 users (per-row
/// namespaces) and one rewriting 1,000,000 rows (one epoch move), each with
/// reads warmed on two instances; the time until every sampled read is fresh,
/// and what the triggers add to the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: loads a million rows"]
async fn measure_bulk_changes() {
    let app = spawn_cached().await;
    let other = spawn_app_on(&app.database_url, &app.settings.cache_prefix, |s| {
        s.redis_url = app.settings.redis_url.clone();
    })
    .await;
    wait_cache_ok(&other).await;
    let truth = spawn_truth(&app).await;
    let load = |n: u64, from: u64| {
        format!(
            "SET linkhub.cache_bulk_rows = 10000000; \
             INSERT INTO users (username, email, password_hash, name) \
             SELECT 'bulk_' || g, 'bulk' || g || '@example.com', 'x', 'Bulk ' || g \
             FROM generate_series({from}, {}) g",
            from + n - 1
        )
    };
    for (rows, label) in [(2_000u64, "2,000 rows"), (1_000_000, "1,000,000 rows")] {
        let from = if rows == 2_000 { 1 } else { 10_000 };
        execute_sql(&app.database_url, &load(rows, from)).await;
        execute_sql(&app.database_url, "DELETE FROM cache_outbox").await;
        execute_sql(&app.database_url, "VACUUM ANALYZE users").await;
        let sample: Vec<String> = (0..20)
            .map(|i| format!("/api/v1/profiles/bulk_{}", from + i * (rows / 20)))
            .collect();
        warm_all(&app, &sample).await;
        warm_all(&other, &sample).await;
        let started = Instant::now();
        execute_sql(
            &app.database_url,
            &format!(
                "UPDATE users SET name = 'Renamed ' || id WHERE username LIKE 'bulk_%' \
                 AND id >= (SELECT min(id) FROM users WHERE username = 'bulk_{from}')"
            ),
        )
        .await;
        let statement = started.elapsed();
        let owed = outbox_rows(&app).await;
        let on_app = until_fresh(&app, &truth, &sample, Duration::from_secs(30)).await;
        let on_other = until_fresh(&other, &truth, &sample, Duration::from_secs(30)).await;
        // The same statement with the triggers off, for their cost.
        let started = Instant::now();
        execute_sql(
            &app.database_url,
            &format!(
                "SET session_replication_role = replica; \
                 UPDATE users SET name = 'Again ' || id WHERE username LIKE 'bulk_%' \
                 AND id >= (SELECT min(id) FROM users WHERE username = 'bulk_{from}')"
            ),
        )
        .await;
        let untriggered = started.elapsed();
        println!(
            "{label}: UPDATE took {statement:?} ({untriggered:?} with the triggers off), \
             {owed} outbox rows, every sampled read fresh {on_app:?} after the commit on one \
             instance and {on_other:?} on the other; epoch {}",
            epoch(&app).await
        );
    }
}

/// A migration that rewrites data with DDL fires no row trigger: the event
/// trigger moves the epoch instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_rewriting_a_column_shows_within_a_second() {
    let Warmed {
        app, truth, paths, ..
    } = warmed(1, 1).await;
    let epoch_before = epoch(&app).await;

    execute_sql(
        &app.database_url,
        "ALTER TABLE links ALTER COLUMN title TYPE text USING upper(title)",
    )
    .await;
    assert_eq!(epoch(&app).await, epoch_before + 1);
    until_fresh(&app, &truth, &paths, Duration::from_secs(1)).await;
}
