//! Requests in flight, for a clean stop. Every request is counted when it
//! arrives and again when it ends, however it ends: answered, or dropped
//! because its client hung up (actix drops the handler's future then) or
//! because the stop's grace ran out. Only the last is a cut: a stop reports
//! the requests it dropped after the grace plus any still admitted, never a
//! client that went away on its own. (Counting "answered" alone made every
//! hung-up request look in flight for the rest of the process's life, and a
//! stop long after it reported them as cut.) While the process drains, every
//! response asks its client to close the connection, so a keep-alive client
//! takes its next request to another instance instead of holding this one
//! open.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;

#[derive(Default)]
pub struct InFlight {
    admitted: AtomicU64,
    ended: AtomicU64,
    cut: AtomicU64,
    abandoned: AtomicU64,
    /// When the grace of the stop runs out; set once, when draining starts.
    grace_ends: OnceLock<Instant>,
}

impl InFlight {
    /// Requests admitted that have not ended yet.
    pub fn pending(&self) -> u64 {
        // `ended` is read first: a request that ends in between is then
        // counted as still pending, never as a negative.
        let ended = self.ended.load(Ordering::Acquire);
        self.admitted.load(Ordering::Acquire).saturating_sub(ended)
    }

    /// Requests the stop cut: dropped unanswered once the grace had run
    /// out, or still pending.
    pub fn cut(&self) -> u64 {
        self.cut.load(Ordering::Acquire) + self.pending()
    }

    /// Requests whose clients went away before they were answered (actix
    /// dropped them), the grace not having run out: not the stop's doing.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Acquire)
    }

    /// From now on, responses close their connections; a request dropped
    /// unanswered after `grace` from now was cut by the stop.
    pub fn start_draining(&self, grace: Duration) {
        let _ = self.grace_ends.set(Instant::now() + grace);
    }

    fn is_draining(&self) -> bool {
        self.grace_ends.get().is_some()
    }

    fn grace_ran_out(&self) -> bool {
        self.grace_ends
            .get()
            .is_some_and(|ends| Instant::now() >= *ends)
    }
}

/// One admitted request: ends when dropped, answered or not.
struct Admitted<'a> {
    in_flight: &'a InFlight,
    answered: bool,
}

impl<'a> Admitted<'a> {
    fn new(in_flight: &'a InFlight) -> Self {
        in_flight.admitted.fetch_add(1, Ordering::AcqRel);
        Self {
            in_flight,
            answered: false,
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let counter = if self.in_flight.grace_ran_out() {
                &self.in_flight.cut
            } else {
                &self.in_flight.abandoned
            };
            counter.fetch_add(1, Ordering::AcqRel);
        }
        self.in_flight.ended.fetch_add(1, Ordering::AcqRel);
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
    let mut admitted = Admitted::new(&in_flight);
    let mut outcome = next.call(req).await;
    if in_flight.is_draining()
        && let Ok(response) = &mut outcome
    {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    admitted.answered = true;
    drop(admitted);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_dropped_before_the_stop_is_not_cut() {
        let in_flight = InFlight::default();
        drop(Admitted::new(&in_flight));
        assert_eq!(in_flight.pending(), 0);
        assert_eq!(in_flight.abandoned(), 1);
        in_flight.start_draining(Duration::from_secs(30));
        assert_eq!(in_flight.cut(), 0);
    }

    #[test]
    fn a_request_dropped_after_the_grace_is_cut_and_one_still_admitted_too() {
        let in_flight = InFlight::default();
        let dropped = Admitted::new(&in_flight);
        let held = Admitted::new(&in_flight);
        let mut answered = Admitted::new(&in_flight);
        in_flight.start_draining(Duration::ZERO);
        answered.answered = true;
        drop(answered);
        drop(dropped);
        assert_eq!(in_flight.cut(), 2, "the dropped one and the held one");
        drop(held);
        assert_eq!(in_flight.cut(), 2);
        assert_eq!(in_flight.abandoned(), 0);
    }
}
