//! A clean stop of the `linkhub` binary (docs/RUNNING.md, "Stopping"): after `SIGTERM`
//! no new connection is taken, the write in flight answers within the grace
//! (exit `0`) or is cut and leaves nothing half-done (exit `3`), and owed
//! cache bumps outlive the stop in the outbox.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::json;

use crate::support::*;

/// The exit code of a stop that cut requests (`linkhub::cli::EXIT_REQUESTS_CUT`).
const REQUESTS_CUT: i32 = linkhub::cli::EXIT_REQUESTS_CUT as i32;

/// A transaction of the test's own that holds `id`'s row lock, so that a
/// write to that user waits for it: a write kept in flight for as long as
/// the test likes.
struct RowLock(AsyncPgConnection);

impl RowLock {
    async fn hold(database_url: &str, user_id: i64) -> RowLock {
        let mut conn = AsyncPgConnection::establish(database_url)
            .await
            .expect("connect to hold a row lock");
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM users WHERE id = {user_id} FOR UPDATE"
        ))
        .await
        .expect("lock the user's row");
        RowLock(conn)
    }

    async fn release(mut self) {
        self.0
            .batch_execute("ROLLBACK")
            .await
            .expect("release the row lock");
    }
}

/// Waits until some statement of `database_url`'s database waits for a lock.
async fn until_a_statement_waits_for_a_lock(database_url: &str) {
    let database = database_url.rsplit('/').next().expect("a database name");
    let sql = format!(
        "SELECT count(*)::text AS value FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE NOT l.granted AND a.datname = '{database}'"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while query_strings(database_url, &sql).await != ["1"] {
        assert!(
            Instant::now() < deadline,
            "the write never reached the locked row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn user_name(database_url: &str, user_id: i64) -> String {
    let names = query_strings(
        database_url,
        &format!("SELECT name AS value FROM users WHERE id = {user_id}"),
    )
    .await;
    names.into_iter().next().expect("the user exists")
}

async fn outbox_rows(database_url: &str) -> usize {
    let count = query_strings(
        database_url,
        "SELECT count(*)::text AS value FROM cache_outbox",
    )
    .await;
    count[0].parse().expect("a count")
}

fn vars_with(database_url: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut vars = base_vars(database_url);
    vars.push(("MIGRATE_ON_START", "false".to_owned()));
    for (name, value) in extra {
        vars.retain(|(k, _)| k != name);
        vars.push((name, (*value).to_owned()));
    }
    vars
}

#[tokio::test]
async fn sigterm_lets_the_write_in_flight_answer_and_exits_zero() {
    let database_url = create_test_database().await;
    let served =
        ServedBinary::start(&vars_with(&database_url, &[("SHUTDOWN_GRACE_SECS", "20")])).await;
    let user = served.app.register_user().await;
    let lock = RowLock::hold(&database_url, user.id).await;
    let app = served.app.clone();
    let token = user.token.clone();
    let write = tokio::spawn(async move {
        app.update_user(
            user.id,
            Some(&token),
            &json!({"name": "Written while stopping"}),
        )
        .await
    });
    until_a_statement_waits_for_a_lock(&database_url).await;

    served.signal("TERM").await;
    let refused_by = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", served.app.port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < refused_by,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.release().await;

    let response = write.await.expect("the write task");
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    let written = expect_written(response, 200).await;
    assert_eq!(written["name"], "Written while stopping");
    let exited = served.exited_within(Duration::from_secs(15)).await;
    assert_eq!(exited.status.code(), Some(0), "stderr: {}", exited.stderr);
    assert!(
        exited.stderr.contains("SIGTERM") && exited.stderr.contains("1 request(s) in flight"),
        "{}",
        exited.stderr
    );

    // The answered write is what the next instance serves.
    let next = spawn_app_on(&database_url, &unique_name("t"), |_| {}).await;
    let public = expect_data(next.user(user.id).await).await;
    assert_eq!(public["name"], "Written while stopping");
}

#[tokio::test]
async fn a_write_that_outlives_the_grace_is_cut_rolled_back_and_the_exit_says_so() {
    let database_url = create_test_database().await;
    let vars = vars_with(&database_url, &[("SHUTDOWN_GRACE_SECS", "1")]);
    let cache_prefix = vars
        .iter()
        .find(|(k, _)| *k == "CACHE_PREFIX")
        .map(|(_, v)| v.clone())
        .expect("a cache prefix");
    let served = ServedBinary::start(&vars).await;
    let user = served.app.register_user().await;
    let before = user_name(&database_url, user.id).await;
    let lock = RowLock::hold(&database_url, user.id).await;
    let app = served.app.clone();
    let token = user.token.clone();
    let write = tokio::spawn(async move {
        app.client
            .patch(app.url(&paths::user(user.id)))
            .bearer_auth(&token)
            .json(&json!({"name": "Never answered"}))
            .send()
            .await
    });
    until_a_statement_waits_for_a_lock(&database_url).await;

    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(15)).await;
    assert_eq!(
        exited.status.code(),
        Some(REQUESTS_CUT),
        "stderr: {}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains("1 request(s) in flight were cut"),
        "{}",
        exited.stderr
    );
    let answer = write.await.expect("the write task");
    assert!(answer.is_err(), "a cut request got an answer: {answer:?}");

    // Released, the cut write's statement runs into a closed connection: its
    // transaction never commits, and it owes no bump.
    lock.release().await;
    let settled_by = Instant::now() + Duration::from_secs(10);
    let database = database_url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();
    let others = format!(
        "SELECT count(*)::text AS value FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    );
    while query_strings(&database_url, &others).await != ["0"] {
        assert!(
            Instant::now() < settled_by,
            "the stopped instance's sessions linger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(user_name(&database_url, user.id).await, before);
    assert_eq!(outbox_rows(&database_url).await, 0);
    let next = spawn_app_on(&database_url, &cache_prefix, |_| {}).await;
    let public = expect_data(next.user(user.id).await).await;
    assert_eq!(public["name"], before);
}

#[tokio::test]
async fn a_client_that_hung_up_before_the_stop_is_not_reported_as_cut() {
    let database_url = create_test_database().await;
    let served =
        ServedBinary::start(&vars_with(&database_url, &[("SHUTDOWN_GRACE_SECS", "5")])).await;
    let user = served.app.register_user().await;
    let lock = RowLock::hold(&database_url, user.id).await;
    // The client sends its write and resets the connection while the write
    // waits: however actix ends that request, it is not the stop's cut.
    let body = json!({"name": "Nobody waits"}).to_string();
    let request = format!(
        "PATCH {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        paths::user(user.id),
        user.token,
        body.len()
    );
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", served.app.port))
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
        .await
        .expect("send the write");
    until_a_statement_waits_for_a_lock(&database_url).await;
    // A reset, not a polite close: what a proxy's aborted exchange sends.
    client.set_zero_linger().expect("SO_LINGER 0");
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;

    // Answered requests after it, then the stop: nothing is in flight.
    expect_data(served.app.user(user.id).await).await;
    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(15)).await;
    assert_eq!(exited.status.code(), Some(0), "stderr: {}", exited.stderr);
    assert!(!exited.stderr.contains("were cut"), "{}", exited.stderr);
}

#[tokio::test]
async fn owed_bumps_stay_in_the_outbox_across_a_stop_and_the_next_instance_serves_fresh_data() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let redis_url = format!("redis://{}", proxy.addr());
    let database_url = create_test_database().await;
    let cache_prefix = unique_name("t");
    let vars = vars_with(
        &database_url,
        &[("REDIS_URL", &redis_url), ("CACHE_PREFIX", &cache_prefix)],
    );
    let served = ServedBinary::start(&vars).await;
    let user = served.app.register_user().await;
    let path = paths::user(user.id);
    warm(&served.app, &path).await;

    proxy.cut();
    let response = served
        .app
        .update_user(user.id, Some(&user.token), &json!({"name": "Owed"}))
        .await;
    expect_written(response, 200).await;
    let owed = outbox_rows(&database_url).await;
    assert!(owed > 0, "the write owes its bumps");

    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(15)).await;
    assert_eq!(exited.status.code(), Some(0), "stderr: {}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains(&format!("{owed} owed cache bump(s) stay in the outbox")),
        "{}",
        exited.stderr
    );
    assert_eq!(outbox_rows(&database_url).await, owed);

    // Redis is back, still holding the entry from before the write.
    proxy.restore();
    let next = spawn_app_on(&database_url, &cache_prefix, |s| {
        s.redis_url = redis_url.clone()
    })
    .await;
    let public = expect_data(next.get(&path).await).await;
    assert_eq!(public["name"], "Owed");
    let replayed_by = Instant::now() + Duration::from_secs(15);
    while outbox_rows(&database_url).await > 0 {
        assert!(
            Instant::now() < replayed_by,
            "the next instance never replayed the outbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cached = warm(&next, &path).await;
    assert_eq!(cached.body["data"]["name"], "Owed");
}
