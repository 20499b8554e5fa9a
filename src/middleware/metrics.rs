//! Request metrics: counts every request by its route pattern (not its raw
//! path, which would give one series per id) and times it. Asks the
//! application for the [`Metrics`] only.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::metrics::{Metrics, RouteLabel, RoutePattern, UNMATCHED_ROUTE, method_label};

pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method().as_str());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let took = started.elapsed();
        match &result {
            Ok(res) => {
                let status = res.status().as_u16();
                // The routing table's resources carry their pattern; only
                // the Swagger UI's files and unmatched paths ask the router.
                match res.request().app_data::<RoutePattern>() {
                    Some(RoutePattern(pattern)) => {
                        metrics.http_request(method, RouteLabel::Static(pattern), status, took);
                    }
                    None => {
                        let found = res.request().match_pattern();
                        let route = found.as_deref().unwrap_or(UNMATCHED_ROUTE);
                        metrics.http_request(method, RouteLabel::Found(route), status, took);
                    }
                }
            }
            Err(e) => {
                let status = e.as_response_error().status_code().as_u16();
                metrics.http_request(method, RouteLabel::Static(UNMATCHED_ROUTE), status, took);
            }
        }
    }
    result
}
