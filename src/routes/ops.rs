//! Operations: liveness, readiness and metrics. The OpenAPI document and its
//! UI are served by `openapi.rs`, the one file that names every handler.
//!
//! `/metrics` tells when Redis is down (the breaker's state), so an operator
//! keeps it from the public: with `METRICS_TOKEN` it asks for that bearer
//! token; with `METRICS_BIND_ADDR` it is served on a listener of its own
//! ([`metrics_listener`]), and the public one answers it `404`.

use std::sync::LazyLock;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::caller::bearer_token;
use crate::error::ApiError;
use crate::service;
use crate::service::ops::SharedReadiness;
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
pub async fn readyz(
    state: web::Data<AppState>,
    shared: web::Data<SharedReadiness>,
) -> HttpResponse {
    let readiness = service::ops::readiness(&state, &shared).await;
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
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.settings.metrics_bind_addr.is_some() {
        return Err(ApiError::not_found("route"));
    }
    metrics_text(&req, &state).await
}

/// The routing table of the `METRICS_BIND_ADDR` listener: `/metrics`, and a
/// JSON `404` for anything else.
pub fn metrics_listener(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics_on_own_listener))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::not_found("route"))
        }));
}

async fn metrics_on_own_listener(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    metrics_text(&req, &state).await
}

/// The metrics, to a caller with the `METRICS_TOKEN` when one is set.
async fn metrics_text(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    service::ops::may_read_metrics(
        state.settings.metrics_token.as_ref(),
        bearer_token(req).as_deref(),
    )?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service::ops::metrics_text(state).await))
}
