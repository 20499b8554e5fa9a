//! Operations endpoints: liveness, readiness, Prometheus metrics and the
//! OpenAPI document.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cache_support::wait_cache_ok;
use crate::helpers::*;

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(expect_json(response, 200).await, json!({"status": "ok"}));
}

#[tokio::test]
async fn readyz_reports_database_and_cache() {
    let app = spawn_app().await;
    // The cache is trusted only once start-up recovery has run; until then
    // readiness says "degraded", which is also a correct answer.
    wait_cache_ok(&app).await;
    let response = app.get("/readyz").await;
    assert_eq!(
        expect_json(response, 200).await,
        json!({"status": "ok", "database": "ok", "cache": "ok"})
    );
}

/// Reads every cached namespace twice (a miss, then a hit) and makes one write.
async fn exercise(app: &TestApp) -> RegisteredUser {
    let user = app.register_user().await;
    let link = app
        .create_link(
            user.id,
            &user.token,
            &json!({"title": "t", "url": "https://example.com"}),
        )
        .await;
    let social = app
        .create_social(user.id, &user.token, "github", "https://github.com/x")
        .await;
    for _ in 0..2 {
        for path in [
            "/api/v1/users".to_string(),
            format!("/api/v1/users/{}", user.id),
            format!("/api/v1/users/{}/links", user.id),
            format!("/api/v1/users/{}/socials", user.id),
            format!("/api/v1/links/{}", link["id"]),
            format!("/api/v1/socials/{}", social["id"]),
            format!("/api/v1/profiles/{}", user.username),
        ] {
            expect_json(app.get(&path).await, 200).await;
        }
    }
    let response = app
        .patch_json(
            &format!("/api/v1/users/{}", user.id),
            Some(&user.token),
            &json!({"name": "Metric"}),
        )
        .await;
    expect_written(response, 200).await;
    user
}

#[tokio::test]
async fn metrics_expose_requests_latency_cache_and_pools() {
    let app = spawn_app().await;
    wait_cache_ok(&app).await;
    exercise(&app).await;
    app.get("/api/v1/no_such_route_xyz123").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let samples = parse_metric_samples(&text);
    assert!(!samples.is_empty(), "no samples in:\n{text}");

    let requests = app
        .metric_sum(
            "linkhub_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/users/{id}"),
                ("status", "200"),
            ],
        )
        .await;
    assert!(
        requests >= 2.0,
        "requests for /api/v1/users/{{id}}: {requests}"
    );
    let created = app
        .metric_sum(
            "linkhub_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/users"),
                ("status", "201"),
            ],
        )
        .await;
    assert!(created >= 1.0, "POST /api/v1/users 201: {created}");
    let latency = app
        .metric_sum(
            "linkhub_http_request_duration_seconds_bucket",
            &[("method", "GET"), ("route", "/api/v1/users/{id}")],
        )
        .await;
    assert!(latency > 0.0, "no latency buckets:\n{text}");
    // Unmatched paths must not become a label value each (unbounded cardinality).
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.iter().any(|(_, v)| v.contains("xyz123"))),
        "a raw unmatched path became a label:\n{text}"
    );

    for namespace in ["users", "user", "profile", "link", "social"] {
        let misses = app
            .metric_sum(
                "linkhub_cache_requests_total",
                &[("namespace", namespace), ("result", "miss")],
            )
            .await;
        assert!(misses >= 1.0, "no misses counted for {namespace}");
        let hits = app
            .metric_sum(
                "linkhub_cache_requests_total",
                &[("namespace", namespace), ("result", "hit")],
            )
            .await;
        assert!(hits >= 1.0, "no hits counted for {namespace}");
        let loads = app
            .metric_sum("linkhub_cache_loads_total", &[("namespace", namespace)])
            .await;
        assert!(loads >= 1.0, "no loads counted for {namespace}");
    }
    let bumps = app
        .metric_sum(
            "linkhub_cache_version_bumps_total",
            &[("namespace", "user")],
        )
        .await;
    assert!(bumps >= 1.0, "no version bumps for user after a PATCH");

    for (name, label) in [
        ("linkhub_db_pool_connections", "state"),
        ("linkhub_redis_pool_connections", "state"),
    ] {
        assert!(
            samples
                .iter()
                .any(|s| s.name == name && s.labels.iter().any(|(k, _)| k == label)),
            "no {name}{{{label}}} series:\n{text}"
        );
    }

    // Stale entries are removed off the request path; give the sweep a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if text.contains("linkhub_cache_scan_deleted_keys_total") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "linkhub_cache_scan_deleted_keys_total never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_count_bypasses_when_the_cache_is_disabled() {
    let app = spawn_app_with(|s| s.cache_enabled = false).await;
    let user = app.register_user().await;
    let response = app.get(&format!("/api/v1/users/{}", user.id)).await;
    assert_eq!(header(&response, "x-cache").as_deref(), Some("BYPASS"));
    expect_data(response).await;
    let bypasses = app
        .metric_sum(
            "linkhub_cache_requests_total",
            &[("namespace", "user"), ("result", "bypass")],
        )
        .await;
    assert!(bypasses >= 1.0, "bypass not counted");
}

/// Every endpoint of API.md, as (path, methods).
const DOCUMENTED: &[(&str, &[&str])] = &[
    ("/api/v1/users", &["get", "post"]),
    ("/api/v1/users/{}", &["get", "patch", "delete"]),
    ("/api/v1/users/{}/links", &["get", "post"]),
    ("/api/v1/users/{}/socials", &["get", "post"]),
    ("/api/v1/links/{}", &["get", "patch", "delete"]),
    ("/api/v1/socials/{}", &["get", "patch", "delete"]),
    ("/api/v1/profiles/{}", &["get"]),
    ("/api/v1/auth/login", &["post"]),
    ("/api/v1/auth/logout", &["post"]),
    ("/api/v1/me", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/api/v1/openapi.json", &["get"]),
];

/// `/api/v1/users/{user_id}/links` → `/api/v1/users/{}/links`.
fn normalize_path(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn openapi_documents_every_endpoint() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let document: Value = expect_json(response, 200).await;
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(document["info"]["title"].is_string(), "info.title");
    let paths = document["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths object"));
    let normalized: Vec<(String, &Value)> = paths
        .iter()
        .map(|(path, item)| (normalize_path(path), item))
        .collect();
    for (path, methods) in DOCUMENTED {
        let item = normalized
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, item)| *item)
            .unwrap_or_else(|| {
                let known: Vec<&String> = paths.keys().collect();
                panic!("{path} missing from the OpenAPI paths {known:?}")
            });
        for method in *methods {
            let operation = &item[*method];
            assert!(
                operation.is_object(),
                "{method} {path} missing from the OpenAPI document"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no responses"
            );
        }
    }
}
