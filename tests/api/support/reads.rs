//! Public reads as the cache tests look at them: an answer with its cache
//! headers ([`Fetched`]), reading until the cache serves it ([`warm`]), and
//! comparing a cached answer with the truth (an instance on the same database
//! with the cache disabled, see `spawn_truth`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::app::TestApp;
use super::assertions::header;

/// One answer to a public GET, with the headers the cache tests look at.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: String,
    pub status: u16,
    pub x_cache: String,
    pub etag: Option<String>,
    pub cache_control: Option<String>,
    pub text: String,
    /// The JSON body (`Null` when the body is empty).
    pub body: Value,
    pub elapsed: Duration,
}

pub async fn fetch(app: &TestApp, path: &str) -> Fetched {
    fetch_with(app, path, None).await
}

pub async fn fetch_with(app: &TestApp, path: &str, if_none_match: Option<&str>) -> Fetched {
    let started = Instant::now();
    let response = match if_none_match {
        Some(etag) => app.get_if_none_match(path, etag).await,
        None => app.get(path).await,
    };
    let status = response.status().as_u16();
    let x_cache = header(&response, "x-cache").unwrap_or_default();
    let etag = header(&response, "etag");
    let cache_control = header(&response, "cache-control");
    let text = response.text().await.expect("response body");
    let elapsed = started.elapsed();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {text:?}"))
    };
    Fetched {
        path: path.to_string(),
        status,
        x_cache,
        etag,
        cache_control,
        text,
        body,
        elapsed,
    }
}

/// Reads `path` until it is served from the cache: a `200` must be a `HIT` by
/// the second GET at the latest (a `404` may or may not be cached). A `BYPASS`
/// (the breaker of an instance with a short Redis timeout opened on a loaded
/// machine) starts the count again, for at most 5 s. Returns the last answer.
pub async fn warm(app: &TestApp, path: &str) -> Fetched {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut previous: Option<Fetched> = None;
    loop {
        let got = fetch(app, path).await;
        match got.x_cache.as_str() {
            "HIT" => return got,
            "BYPASS" => {
                assert!(
                    Instant::now() < deadline,
                    "GET {path}: still BYPASS after 5 s, the cache is not in use"
                );
                previous = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            _ => {}
        }
        if let Some(first) = previous {
            assert_eq!(
                (got.status, &got.body),
                (first.status, &first.body),
                "GET {path}: the answer changed between two reads with no write"
            );
            assert_ne!(
                got.status, 200,
                "GET {path}: the second read of a 200 must be a cache HIT (both were {:?})",
                got.x_cache
            );
            return got;
        }
        previous = Some(got);
    }
}

pub async fn warm_all(app: &TestApp, paths: &[String]) {
    for path in paths {
        warm(app, path).await;
    }
}

/// GETs `path` on `app`, then on `truth`, and asserts the same status and body
/// (the cached answer is the database's). Returns `app`'s answer.
pub async fn assert_fresh(app: &TestApp, truth: &TestApp, path: &str, context: &str) -> Fetched {
    let got = fetch(app, path).await;
    let want = fetch(truth, path).await;
    assert_eq!(
        want.x_cache, "BYPASS",
        "the truth instance must not use the cache (GET {path})"
    );
    assert_eq!(
        (got.status, &got.body),
        (want.status, &want.body),
        "{context}: GET {path} answered stale data (X-Cache: {}); database says {} {}",
        got.x_cache,
        want.status,
        want.text
    );
    got
}

/// [`assert_fresh`] for every path; the paths in `affected` must also be `MISS`.
pub async fn assert_all_fresh(
    app: &TestApp,
    truth: &TestApp,
    paths: &[String],
    affected: &[String],
    context: &str,
) {
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        // A path listed twice would be a HIT the second time.
        if !seen.insert(path) {
            continue;
        }
        let got = assert_fresh(app, truth, path, context).await;
        if affected.contains(path) {
            assert_eq!(
                got.x_cache, "MISS",
                "{context}: GET {path} was just changed by the write: the next read must be a MISS"
            );
        }
    }
}
