//! Operations endpoints: liveness, readiness, Prometheus metrics and the
//! OpenAPI document.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let response = app.healthz().await;
    assert_eq!(expect_json(response, 200).await, json!({"status": "ok"}));
}

#[tokio::test]
async fn readyz_reports_database_and_cache() {
    let app = spawn_app().await;
    // The cache is trusted only once start-up recovery has run; until then
    // readiness says "degraded", which is also a correct answer.
    wait_cache_ok(&app).await;
    let response = app.readyz().await;
    assert_eq!(
        expect_json(response, 200).await,
        json!({"status": "ok", "database": "ok", "cache": "ok"})
    );
}

/// Reads every cached namespace twice (a miss, then a hit) and makes one write.
async fn exercise(app: &TestApp) -> RegisteredUser {
    let (user, link, social) = app.user_with_link_and_social().await;
    for _ in 0..2 {
        let reads = paths::reads_of_user(user.id, &user.username, &link["id"], &social["id"]);
        for path in std::iter::once(paths::USERS.to_string()).chain(reads) {
            expect_json(app.get(&path).await, 200).await;
        }
    }
    let response = app
        .update_user(user.id, Some(&user.token), &json!({"name": "Metric"}))
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

    let response = app.get(paths::METRICS).await;
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
                ("route", paths::USERS),
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
        if text.contains("linkhub_cache_index_deleted_keys_total") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "linkhub_cache_index_deleted_keys_total never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_count_bypasses_when_the_cache_is_disabled() {
    let app = spawn_app_with(|s| s.cache_enabled = false).await;
    let user = app.register_user().await;
    let response = app.user(user.id).await;
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

#[tokio::test]
async fn openapi_documents_every_endpoint() {
    let app = spawn_app().await;
    let response = app.openapi().await;
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
        .map(|(path, item)| (paths::template_of(path), item))
        .collect();
    for (path, methods) in paths::ROUTES {
        let item = normalized
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, item)| *item)
            .unwrap_or_else(|| {
                let known: Vec<&String> = paths.keys().collect();
                panic!("{path} missing from the OpenAPI paths {known:?}")
            });
        for method in *methods {
            let operation = &item[method.to_lowercase()];
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
            assert!(
                operation["summary"]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{method} {path} has no summary (Swagger UI shows none)"
            );
        }
    }
    // Nothing more than the routes either: the document and the list agree.
    let mut documented: Vec<(String, String)> = normalized
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    documented.sort();
    let mut listed: Vec<(String, String)> = paths::ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    listed.sort();
    assert_eq!(
        documented, listed,
        "the OpenAPI operations are not the routes of API.md"
    );
}

/// The operation keys of an OpenAPI path item.
const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The whole OpenAPI document, pretty-printed, against the reviewed snapshot
/// in `snapshots/`: any drift between the service and its document shows as a
/// diff to accept (`cargo insta review`) or fix.
#[tokio::test]
async fn openapi_document_matches_the_snapshot() {
    let app = spawn_app().await;
    let document: Value = expect_json(app.openapi().await, 200).await;
    let pretty = serde_json::to_string_pretty(&document).expect("the document prints");
    insta::assert_snapshot!("openapi_document", pretty);
}
