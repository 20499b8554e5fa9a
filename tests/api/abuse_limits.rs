//! Limits under abuse outside the cache: metric labels from a closed set,
//! timeouts on PostgreSQL statements and on slow clients, and a readiness
//! probe that busy request handlers cannot make lie.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The series of `/metrics` (sample lines), and the text's size.
async fn series(app: &TestApp) -> (usize, usize) {
    let text = app.metrics().await;
    (parse_metric_samples(&text).len(), text.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let app = spawn_app().await;
    let made_up = |i: usize| (format!("FOO{i}"), format!("/made/up/{i}"));
    // One of each kind first, so the fixed `OTHER` / `unmatched` series exist.
    let (method, path) = made_up(0);
    app.request_with_method(&method, &path).await;
    app.request_with_method(&method, paths::HEALTHZ).await;
    app.request_with_method("GET", &path).await;
    // `/metrics` counts itself once it answered: read it once before measuring.
    series(&app).await;
    let (series_before, size_before) = series(&app).await;

    join_all((1..=200).map(|i| {
        let app = &app;
        async move {
            let (method, path) = made_up(i);
            let unknown_route = app.request_with_method(&method, &path).await;
            assert_eq!(unknown_route.status().as_u16(), 404);
            let known_route = app.request_with_method(&method, paths::HEALTHZ).await;
            assert_eq!(known_route.status().as_u16(), 405);
            let get_unknown = app.request_with_method("GET", &path).await;
            assert_eq!(get_unknown.status().as_u16(), 404);
        }
    }))
    .await;

    let (series_after, size_after) = series(&app).await;
    eprintln!(
        "600 requests with made-up methods and paths: /metrics {size_before} -> {size_after} bytes, \
         {series_before} -> {series_after} series"
    );
    assert_eq!(
        series_before, series_after,
        "made-up methods and paths added series (/metrics {size_before} -> {size_after} bytes)"
    );
    let text = app.metrics().await;
    let methods: std::collections::BTreeSet<String> = parse_metric_samples(&text)
        .into_iter()
        .filter(|s| s.name == "linkhub_http_requests_total")
        .flat_map(|s| s.labels)
        .filter(|(k, _)| k == "method")
        .map(|(_, v)| v)
        .collect();
    assert!(methods.contains("OTHER"), "{methods:?}");
    assert!(!methods.iter().any(|m| m.starts_with("FOO")), "{methods:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_slower_than_the_statement_timeout_ends_in_a_json_503() {
    let app = spawn_app_with(|s| {
        s.db_statement_timeout = Duration::from_millis(300);
        s.cache_enabled = false;
    })
    .await;
    let user = app.register_user().await;
    let lock = TableLock::take(&app.database_url, "users").await;
    let (response, took) = timed_get(&app, &paths::user(user.id)).await;
    lock.release().await;
    let body = expect_error(response, 503, "service_unavailable").await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("statement"), "no internals: {message}");
    assert!(
        took < Duration::from_secs(5),
        "the read waited {took:?} (DB_STATEMENT_TIMEOUT_MS=300)"
    );
    // The connection that was cancelled serves the next request.
    expect_json(app.user(user.id).await, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_carry_both_session_timeouts() {
    let database_url = create_test_database().await;
    let url = linkhub::db::with_session_timeouts(
        &format!("{database_url}?application_name=lh_test&options=-c%20work_mem%3D8MB"),
        linkhub::db::SessionTimeouts {
            statement: Duration::from_millis(1234),
            idle_in_transaction: Duration::from_millis(5678),
        },
    )
    .expect("a URL");
    let shown = query_strings(
        &url,
        "SELECT current_setting('statement_timeout') || ' ' || \
         current_setting('idle_in_transaction_session_timeout') || ' ' || \
         current_setting('work_mem') || ' ' || current_setting('application_name') AS value",
    )
    .await;
    assert_eq!(shown, ["1234ms 5678ms 8MB lh_test"]);
}

/// Sends `head`, then `byte` every 100 ms (never the whole request), and
/// reads until the server closes the connection; answers what it read. The
/// server must close within 5 s (the tests set `setting` to 500 ms).
async fn trickle_until_cut(
    app: &TestApp,
    head: &[u8],
    byte: &'static [u8],
    setting: &str,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    stream.write_all(head).await.expect("write");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(byte).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(
        read.is_ok(),
        "the connection is still open after 10 s of trickling ({setting}=500)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?} ({setting}=500)",
        started.elapsed()
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_request_head_is_cut() {
    let app = spawn_app_with(|s| {
        s.http_client_request_timeout = Duration::from_millis(500);
    })
    .await;
    // One more header byte every 100 ms, never the blank line that ends the head.
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
    let answer = trickle_until_cut(&app, head, b"X", "HTTP_CLIENT_REQUEST_TIMEOUT_MS").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a cut head is answered 408 or closed: {answer:?}"
    );
}

/// A body announced and then trickled (a byte every 100 ms, never all of
/// it) is cut at `HTTP_CLIENT_BODY_TIMEOUT_MS` with a JSON `408`, and the
/// connection closes; without the deadline it stays open for as long as the
/// client trickles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_with_a_json_408() {
    let app = spawn_app_with(|s| {
        s.http_client_body_timeout = Duration::from_millis(500);
    })
    .await;
    let head = b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\n\
                 Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{";
    let answer = trickle_until_cut(&app, head, b" ", "HTTP_CLIENT_BODY_TIMEOUT_MS").await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a cut body is answered 408: {answer:?}"
    );
    assert!(
        answer.contains(r#""code":"request_timeout""#),
        "the 408 is the JSON error shape: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_while_every_pooled_connection_is_busy() {
    let pool_size = 3;
    let app = spawn_app_with(|s| {
        s.db_pool_size = pool_size;
        s.db_statement_timeout = Duration::from_secs(30);
        s.cache_enabled = false;
    })
    .await;
    let user = app.register_user().await;
    let lock = TableLock::take(&app.database_url, "users").await;
    // More reads than connections, of different ids (reads of one id share
    // a load): every pooled connection waits on the lock.
    let busy: Vec<_> = (0..pool_size + 2)
        .map(|i| {
            let id = user.id + i as i64;
            let (client, url) = (app.client.clone(), app.url(&paths::user(id)));
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    until_sessions_wait_for_a_lock(&app.database_url, pool_size).await;

    let (ready, took) = timed_get(&app, paths::READYZ).await;
    lock.release().await;
    let body = expect_json(ready, 200).await;
    assert_eq!(body["database"], "ok", "{body}");
    assert!(
        took < app.settings.readiness_timeout * 2,
        "/readyz took {took:?} while the pool was busy"
    );
    for read in join_all(busy).await {
        let response = read.expect("task").expect("response");
        assert!(
            // The first id exists; the others do not; a read that waited past
            // the pool's wait is a 503.
            [200, 404, 503].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
    }
}

/// `GET path` and how long it took to answer; a client timeout of 10 s turns
/// a hang into a failed test instead of a stuck one.
async fn timed_get(app: &TestApp, path: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = app
        .client
        .get(app.url(path))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} did not answer: {e}"));
    (response, started.elapsed())
}
