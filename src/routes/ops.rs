//! Operations: liveness, readiness and metrics. The OpenAPI document and its
//! UI are served by `openapi.rs`, the one file that names every handler.

use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process runs.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` while PostgreSQL answers.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// `ok`, or `degraded` while reads bypass Redis.
    pub cache: &'static str,
}

/// Liveness: `200` while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(HEALTHY.clone())
}

/// `/healthz`'s body, serialized once: it never changes.
static HEALTHY: LazyLock<bytes::Bytes> = LazyLock::new(|| {
    serde_json::to_vec(&Health { status: "ok" })
        .unwrap_or_default()
        .into()
});

/// Readiness: `200` while PostgreSQL answers (a degraded cache still serves), else `503`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "PostgreSQL does not answer", body = Readiness),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let readiness = service::ops::readiness(&state).await;
    let database_ok = readiness.database_ok;
    let body = Readiness {
        status: if database_ok { "ok" } else { "unavailable" },
        database: if database_ok { "ok" } else { "unavailable" },
        cache: readiness.cache,
    };
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text: requests by route and status, latency histograms, cache
/// hits, misses, bypasses, bumps and SCAN deletions by namespace, pool use.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service::ops::metrics_text(&state))
}
