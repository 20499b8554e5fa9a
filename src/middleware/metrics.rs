//! Request metrics: counts every request by its route pattern (not its raw
//! path, which would give one series per id) and times it. Asks the
//! application for the [`Metrics`] only.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::metrics::{Metrics, UNMATCHED_ROUTE, method_label};

pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method().as_str());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &result {
            Ok(res) => (
                res.request()
                    .match_pattern()
                    .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned()),
                res.status().as_u16(),
            ),
            Err(e) => (
                UNMATCHED_ROUTE.to_owned(),
                e.as_response_error().status_code().as_u16(),
            ),
        };
        metrics.http_request(method, &route, status, started.elapsed());
    }
    result
}
