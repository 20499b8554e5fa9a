//! The consistency observer (`CACHE_VERIFY_SAMPLE`): it sees a wrong entry
//! served from Redis, it never counts a write racing its checks as stale,
//! it sheds checks (never requests) when its queue is full, and its finding
//! is one log line that names the read and carries no body.

use std::time::{Duration, Instant};

use linkhub::config::Settings;
use serde_json::{Value, json};

use crate::support::*;

const VERIFY: &str = "linkhub_cache_verify_total";
const SKIPPED: &str = "linkhub_cache_verify_skipped_total";

async fn verdicts(app: &TestApp, result: &str) -> f64 {
    app.metric_sum(VERIFY, &[("result", result)]).await
}

/// Waits until `app` has counted at least `n` checks with `result`;
/// answers how long that took.
async fn until_verdicts(app: &TestApp, result: &str, n: f64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let counted = verdicts(app, result).await;
        if counted >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{counted} checks counted {result} after {within:?}, waited for {n}: {}",
            observer_figures(app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every figure of the observer, for failure messages.
async fn observer_figures(app: &TestApp) -> String {
    parse_metric_samples(&app.metrics().await)
        .into_iter()
        .filter(|s| s.name == VERIFY || s.name == SKIPPED)
        .map(|s| format!("{}{:?}={}", s.name, s.labels, s.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rewrites the profile entry of `username` in Redis, in place: the same
/// key, version, status, ETag and TTL, with `bio` in its body — what a bug
/// that wrote a wrong body under the current version would leave. Answers
/// the entry's key.
async fn plant_wrong_bio(app: &TestApp, username: &str, bio: &str) -> String {
    let prefix = app.key_prefix().await;
    let mut redis = redis_for(&app.settings).await;
    let namespace = format!("profile:{username}");
    let key = scan_keys(&mut redis, &prefix)
        .await
        .into_iter()
        .find(|key| {
            parse_entry_key(&prefix, key).is_some_and(|entry| {
                entry.namespace == namespace
                    && (entry.query == "profile" || entry.query.ends_with(".profile"))
            })
        })
        .unwrap_or_else(|| panic!("no profile entry of {username} in Redis"));
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("GET the entry");
    let newline = raw.iter().position(|&b| b == b'\n').expect("entry head");
    let mut body: Value = serde_json::from_slice(&raw[newline + 1..]).expect("entry body");
    body["data"]["user"]["bio"] = json!(bio);
    let mut planted = raw[..=newline].to_vec();
    planted.extend(serde_json::to_vec(&body).expect("body"));
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(planted)
        .arg("KEEPTTL")
        .query_async(&mut redis)
        .await
        .expect("SET the planted entry");
    key
}

#[tokio::test]
async fn a_wrong_entry_planted_under_the_current_version_is_found_stale() {
    let app = spawn_cached_with(|s| {
        s.cache_near_max_bytes = 0;
        s.cache_verify_sample = 1.0;
        s.cache_verify_settle = Duration::from_millis(200);
        // The check of a difference waits 2 × this + 1 s for a bump in flight.
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    let owner = Owner::create(&app, 2, 1).await;
    let path = owner.profile_path();
    warm(&app, &path).await;
    // The HITs of the warm-up are checked and found true.
    until_verdicts(&app, "fresh", 1.0, Duration::from_secs(10)).await;
    assert_eq!(verdicts(&app, "stale").await, 0.0);

    plant_wrong_bio(&app, &owner.username, "planted by a bug").await;
    let served = fetch(&app, &path).await;
    assert_eq!(served.x_cache, "HIT");
    assert_eq!(
        served.body["data"]["user"]["bio"], "planted by a bug",
        "the cache serves what Redis holds: the observer has something to find"
    );
    let took = until_verdicts(&app, "stale", 1.0, Duration::from_secs(15)).await;
    eprintln!("the planted entry was counted stale {took:?} after it was served");
    let age = app
        .metric_sum("linkhub_cache_verify_stale_age_seconds_count", &[])
        .await;
    assert_eq!(
        age,
        verdicts(&app, "stale").await,
        "each finding has its age"
    );

    // PostgreSQL itself was never wrong: an instance without the cache
    // shows the real bio.
    let truth = spawn_truth(&app).await;
    assert_eq!(
        fetch(&truth, &path).await.body["data"]["user"]["bio"],
        "bio-0"
    );
}

#[tokio::test]
async fn writes_racing_the_checks_are_never_counted_stale() {
    // No settle delay: checks run while the writes are in flight, so they
    // meet writes at every step (before, during and after the load).
    let app = spawn_cached_with(|s| {
        s.cache_verify_sample = 1.0;
        s.cache_verify_settle = Duration::ZERO;
        s.cache_verify_db_connections = 4;
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    let mut owners = Vec::new();
    for _ in 0..3 {
        owners.push(Owner::create(&app, 2, 1).await);
    }
    let until = Instant::now() + Duration::from_secs(8);
    let mut load = tokio::task::JoinSet::new();
    for (n, owner) in owners.iter().enumerate() {
        let (writer, id, token) = (app.clone(), owner.id(), owner.token().to_owned());
        load.spawn(async move {
            let mut seq = 0;
            while Instant::now() < until {
                seq += 1;
                let body = json!({ "bio": format!("w{n}-{seq}") });
                expect_json(writer.update_user(id, Some(&token), &body).await, 200).await;
            }
        });
        for path in [owner.profile_path(), owner.user_path(), owner.links_path()] {
            let app = app.clone();
            load.spawn(async move {
                while Instant::now() < until {
                    assert_eq!(fetch(&app, &path).await.status, 200, "GET {path}");
                }
            });
        }
    }
    while let Some(done) = load.join_next().await {
        done.expect("a client of the load failed");
    }
    // Let the last checks end: no verdict moves for a while.
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = observer_figures(&app).await;
        if now == last {
            break;
        }
        last = now;
    }
    let (fresh, stale) = (verdicts(&app, "fresh").await, verdicts(&app, "stale").await);
    let raced = app.metric_sum(SKIPPED, &[("reason", "raced")]).await;
    eprintln!("racing writes: {last}");
    assert_eq!(
        stale, 0.0,
        "a write racing a check was counted stale: {last}"
    );
    assert!(fresh > 0.0, "no check found its read fresh: {last}");
    assert!(
        raced > 0.0,
        "no check raced a write: the test proves nothing: {last}"
    );
}

/// An app that samples every `HIT` and begins no check for 30 s, with
/// `budget` applied, after 20 `HIT`s of one profile.
async fn twenty_hits_sampled(budget: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_cached_with(|s| {
        s.cache_verify_sample = 1.0;
        s.cache_verify_settle = Duration::from_secs(30);
        budget(s);
    })
    .await;
    let owner = Owner::create(&app, 1, 0).await;
    let path = owner.profile_path();
    warm(&app, &path).await;
    for _ in 0..20 {
        let got = fetch(&app, &path).await;
        assert_eq!((got.status, got.x_cache.as_str()), (200, "HIT"));
    }
    app
}

#[tokio::test]
async fn a_full_queue_drops_checks_and_never_a_request() {
    let app = twenty_hits_sampled(|s| s.cache_verify_queue = 1).await;
    let dropped = app.metric_sum(SKIPPED, &[("reason", "dropped")]).await;
    assert!(
        dropped >= 19.0,
        "one check waits, the rest are dropped: {}",
        observer_figures(&app).await
    );
    assert_eq!(verdicts(&app, "skipped").await, dropped);
}

#[tokio::test]
async fn reads_sampled_beyond_the_rate_budget_are_counted_and_not_checked() {
    let app = twenty_hits_sampled(|s| s.cache_verify_per_second = 2).await;
    let over_rate = app.metric_sum(SKIPPED, &[("reason", "rate")]).await;
    let figures = observer_figures(&app).await;
    // A burst of two checks, and a refill of two a second while the reads ran.
    assert!(
        over_rate >= 15.0,
        "the budget let through more than it holds: {figures}"
    );
    assert_eq!(
        app.metric_sum(SKIPPED, &[("reason", "dropped")]).await,
        0.0,
        "the queue never filled: the budget stopped the checks before it: {figures}"
    );
    assert_eq!(verdicts(&app, "skipped").await, over_rate, "{figures}");
}

#[tokio::test]
async fn a_share_of_0_checks_nothing_and_still_shows_the_series() {
    let app = spawn_cached_with(|s| s.cache_verify_sample = 0.0).await;
    let owner = Owner::create(&app, 1, 0).await;
    warm(&app, &owner.profile_path()).await;
    fetch(&app, &owner.profile_path()).await;
    let text = app.metrics().await;
    for result in ["fresh", "stale", "skipped"] {
        assert!(
            text.contains(&format!("{VERIFY}{{result=\"{result}\"}} 0")),
            "{result} is exported at 0 before any check: {text}"
        );
    }
}

#[tokio::test]
async fn a_stale_finding_is_one_warn_line_with_the_read_and_without_its_body() {
    // The binary as an operator runs it: JSON logs, default timeouts.
    let database_url = create_test_database().await;
    let mut vars = base_vars(&database_url);
    vars.extend([
        ("MIGRATE_ON_START", "false".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("CACHE_VERIFY_SAMPLE", "1".to_owned()),
        ("CACHE_NEAR_MAX_BYTES", "0".to_owned()),
    ]);
    let served = ServedBinary::start(&vars).await;
    let app = served.app.clone();
    wait_cache_ok(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let path = owner.profile_path();
    warm(&app, &path).await;
    let key = plant_wrong_bio(&app, &owner.username, "planted secret text").await;
    let version = parse_entry_key(&app.key_prefix().await, &key)
        .expect("an entry key")
        .version;

    let request_id = "observer-stale-read-1";
    let response = app
        .client
        .get(app.url(&path))
        .header("X-Request-Id", request_id)
        .send()
        .await
        .expect("GET the profile");
    assert_eq!(header(&response, "x-cache").as_deref(), Some("HIT"));
    let took = until_verdicts(&app, "stale", 1.0, Duration::from_secs(5)).await;
    eprintln!("stale counted {took:?} after the planted read (defaults)");

    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(30)).await;
    let lines: Vec<Value> = exited
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let findings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "linkhub::cache::verify" && l["level"] == "WARN")
        .collect();
    assert_eq!(findings.len(), 1, "one line per finding: {findings:#?}");
    let finding = findings[0];
    assert_eq!(finding["namespace"], format!("profile:{}", owner.username));
    assert_eq!(finding["version"], json!(version));
    assert_eq!(finding["request_id"], request_id);
    assert!(finding["age_secs"].as_f64().is_some_and(|age| age >= 0.0));
    let text = finding.to_string();
    for body in ["planted secret text", "bio-0", "link 0"] {
        assert!(
            !text.contains(body),
            "the line shows a body ({body}): {text}"
        );
    }
}
