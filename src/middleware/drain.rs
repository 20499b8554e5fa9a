//! Requests in flight, for a clean stop. Every request is counted when it
//! arrives and again when its response is ready; what a stop finds admitted
//! but never answered was cut when the grace ran out. While the process
//! drains, every response asks its client to close the connection, so a
//! keep-alive client takes its next request to another instance instead of
//! holding this one open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;

#[derive(Default)]
pub struct InFlight {
    admitted: AtomicU64,
    answered: AtomicU64,
    draining: AtomicBool,
}

impl InFlight {
    /// Requests admitted and not answered yet.
    pub fn pending(&self) -> u64 {
        // `answered` is read first: a request answered in between is then
        // counted as still pending, never as a negative.
        let answered = self.answered.load(Ordering::Acquire);
        self.admitted
            .load(Ordering::Acquire)
            .saturating_sub(answered)
    }

    /// From now on, responses close their connections.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Counts the request in and out; an error that actix turns into a response
/// later still counts as answered here.
pub async fn count_in_flight(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(in_flight) = req.app_data::<web::Data<InFlight>>().cloned() else {
        return next.call(req).await;
    };
    in_flight.admitted.fetch_add(1, Ordering::AcqRel);
    let mut outcome = next.call(req).await;
    if in_flight.is_draining()
        && let Ok(response) = &mut outcome
    {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    in_flight.answered.fetch_add(1, Ordering::AcqRel);
    outcome
}
