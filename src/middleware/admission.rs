//! Per-address limits on the requests that cost the most and that anyone
//! can make: registrations and expensive reads; and on `/readyz`, cheap
//! alone but a worker's time in a flood. Each client address (its
//! /64 for IPv6, a mapped IPv4 address as IPv4: [`limit_key`]) has a fixed
//! window per kind; a request beyond it is answered `429 rate_limited` with
//! `Retry-After` (the seconds until the window ends) before any handler
//! runs. The login throttle is not here: it needs to know the account
//! (`auth::throttle`).
//!
//! What counts, precisely:
//!
//! - **A registration** is `POST /api/v1/users`. It keeps its place when a
//!   password was hashed for it (`201`, or `409` for a name taken); one
//!   refused before hashing (`400`, `413`, `415`, `422`) or never judged
//!   (`503`) gives it back.
//! - **An expensive read** is `GET` (or `HEAD`) `/api/v1/users` with a
//!   non-empty `search`, or with `after`, or whose `page × limit` exceeds
//!   `EXPENSIVE_PAGE_DEPTH` (default 1,000: `OFFSET` past a thousand rows).
//!   These are the reads a client can vary without end, so each can be a
//!   PostgreSQL load. Only a `HIT` (or its `304`) and a query refused with
//!   `400` give the place back. A load (`X-Cache: MISS` or `BYPASS`) keeps
//!   it, and so does a `503` of the list loads' bulkhead: that read cost a
//!   wait for a place, and a client that answers the `503` by asking again
//!   at once fills its window instead of spinning. Plain pages below the depth,
//!   profiles, users, links and socials are never limited here.
//! - **A readiness probe** is `GET` (or `HEAD`) `/readyz`:
//!   `READINESS_PER_ADDRESS` a second (50), far above what an orchestrator
//!   or a load balancer asks (one every few seconds per instance), so a
//!   flood from a few addresses stops costing the workers.
//!
//! A client that asks again before its window ends gets its refusals late
//! (`REFUSAL_DELAY_MS`, [`super::tarpit`]): its first refusal in a window
//! is answered at once, the next ones are held, so a client that ignores
//! `Retry-After` sends about one request per delay instead of one per round
//! trip.
//!
//! The places are taken before the request runs, so of any number of
//! simultaneous requests from one address at most the limit run. The
//! windows are this process's ([`Windows`], bounded): unlike the login
//! throttle, no contract counts them across instances, and keeping them
//! local makes a refusal cost no Redis round trip; with `n` instances a
//! client gets at most `n` times the budget, as each instance has its own
//! pool and bulkhead to protect. Beyond the per-address limits, many
//! addresses each within their budget are bounded by the list loads'
//! bulkhead (`crate::bulkhead`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;
use ipnet::IpNet;

use super::tarpit::{Held, Tarpit};
use crate::auth::client_addr::{client_address, limit_key};
use crate::auth::windows::{LOCAL_WINDOWS_MAX, Limit, Windows, digest, whole_seconds};
use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The path of registrations and of the users list.
const USERS_PATH: &str = "/api/v1/users";

/// The readiness probe's path.
const READYZ_PATH: &str = "/readyz";

/// The window readiness probes are counted in.
const READINESS_WINDOW: Duration = Duration::from_secs(1);

/// The limits and their windows; registered once as app data by startup.
pub struct Admission {
    trusted_proxies: Vec<IpNet>,
    registrations: Limit,
    expensive_reads: Limit,
    readiness: Limit,
    page_depth: u64,
    windows: Mutex<Windows>,
    tarpit: Tarpit,
    metrics: Arc<Metrics>,
}

/// A kind of limited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Registration,
    ExpensiveRead,
    Readiness,
}

impl Kind {
    /// The metric label, and what keeps the kinds' windows apart.
    fn name(self) -> &'static str {
        match self {
            Self::Registration => "registrations",
            Self::ExpensiveRead => "expensive_reads",
            Self::Readiness => "readiness",
        }
    }

    /// Whether the answer shows the request cost what it is limited for.
    fn kept_by(self, response: &ServiceResponse<impl MessageBody>) -> bool {
        match self {
            Self::Registration => {
                matches!(
                    response.status(),
                    StatusCode::CREATED | StatusCode::CONFLICT
                )
            }
            Self::ExpensiveRead => {
                let hit = response
                    .headers()
                    .get("x-cache")
                    .is_some_and(|v| v.as_bytes() == b"HIT");
                !(hit || response.status() == StatusCode::BAD_REQUEST)
            }
            Self::Readiness => true,
        }
    }
}

impl Admission {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        Self {
            trusted_proxies: settings.trusted_proxies.clone(),
            registrations: Limit {
                max: settings.registrations_per_address,
                window: settings.registration_window,
            },
            expensive_reads: Limit {
                max: settings.expensive_reads_per_address,
                window: settings.expensive_reads_window,
            },
            readiness: Limit {
                max: settings.readiness_per_address,
                window: READINESS_WINDOW,
            },
            page_depth: settings.expensive_page_depth,
            windows: Mutex::new(Windows::new(LOCAL_WINDOWS_MAX)),
            tarpit: Tarpit::new(
                settings.refusal_delay,
                settings.refusals_held_max,
                Arc::clone(&metrics),
            ),
            metrics,
        }
    }

    fn limit(&self, kind: Kind) -> Limit {
        match kind {
            Kind::Registration => self.registrations,
            Kind::ExpensiveRead => self.expensive_reads,
            Kind::Readiness => self.readiness,
        }
    }

    fn classify(&self, method: &Method, path: &str, query: &str) -> Option<Kind> {
        let read = matches!(*method, Method::GET | Method::HEAD);
        if path == READYZ_PATH {
            return read.then_some(Kind::Readiness);
        }
        if path != USERS_PATH {
            return None;
        }
        match *method {
            Method::POST => Some(Kind::Registration),
            Method::GET | Method::HEAD if is_expensive_query(query, self.page_depth) => {
                Some(Kind::ExpensiveRead)
            }
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a users-list query string asks for an expensive read: a
/// non-empty `search`, an `after`, or `page × limit` beyond `depth`
/// (`page` 1 and `limit` 10 when absent). A value that does not parse is
/// the handler's `400`, not a load, so it does not count.
fn is_expensive_query(query: &str, depth: u64) -> bool {
    let (mut page, mut limit) = (1u64, 10u64);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "search" if !value.is_empty() => return true,
            "after" => return true,
            "page" => page = value.parse().unwrap_or(0),
            "limit" => limit = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    page.saturating_mul(limit) > depth
}

/// The middleware: takes a place for a limited request from its client's
/// address, or answers `429`; gives the place back when the answer shows
/// the request did not cost what it is limited for.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let admission = req.app_data::<web::Data<Admission>>().cloned();
    let limited = admission.and_then(|admission| {
        let kind = admission.classify(req.method(), req.path(), req.query_string())?;
        let address = client_address(req.request(), &admission.trusted_proxies)?;
        let key = digest(kind.name(), &limit_key(address));
        Some((admission, kind, key))
    });
    let Some((admission, kind, key)) = limited else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let reserved = admission
        .lock()
        .reserve(key, admission.limit(kind), Instant::now());
    if let Err(full) = reserved {
        admission.metrics.limited(kind.name());
        let held = admission.tarpit.hold(full.again, full.wait).await;
        let left = match held {
            Held::For(delay) => full.wait.saturating_sub(delay),
            Held::No | Held::Full => full.wait,
        };
        let refused = ApiError::RateLimited {
            retry_after_secs: whole_seconds(left),
        };
        let mut response = req.error_response(refused);
        if held == Held::Full {
            response
                .response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        return Ok(response);
    }
    let result = next.call(req).await;
    let kept = result.as_ref().is_ok_and(|response| kind.kept_by(response));
    if !kept {
        admission.lock().release(&key);
    }
    result.map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::HttpResponse;
    use actix_web::test::TestRequest;

    #[test]
    fn an_expensive_read_keeps_its_place_unless_a_hit_or_a_bad_query() {
        let answered = |status: StatusCode, cache: Option<&str>| {
            let mut response = HttpResponse::build(status);
            if let Some(cache) = cache {
                response.insert_header(("X-Cache", cache));
            }
            TestRequest::default().to_srv_response(response.finish())
        };
        let kept = |status, cache| Kind::ExpensiveRead.kept_by(&answered(status, cache));
        assert!(kept(StatusCode::OK, Some("MISS")));
        assert!(kept(StatusCode::OK, Some("BYPASS")));
        assert!(
            kept(StatusCode::SERVICE_UNAVAILABLE, None),
            "a bulkhead's 503 keeps it"
        );
        assert!(!kept(StatusCode::OK, Some("HIT")));
        assert!(!kept(StatusCode::NOT_MODIFIED, Some("HIT")));
        assert!(!kept(StatusCode::BAD_REQUEST, None));
        assert!(Kind::Readiness.kept_by(&answered(StatusCode::OK, None)));
    }

    #[test]
    fn expensive_reads_are_searches_after_pages_and_deep_pages() {
        for query in [
            "search=ada",
            "page=1&search=x_ray9",
            "after=0",
            "after=57&limit=10",
            "page=101",
            "page=11&limit=100",
            "limit=100&page=10001",
            "search=%C3%A9t%C3%A9",
        ] {
            assert!(is_expensive_query(query, 1000), "{query} is expensive");
        }
        for query in [
            "",
            "search=",
            "page=100",
            "page=10&limit=100",
            "page=abc&limit=100",
            "page=0",
            "limit=1000",
            "page=99999999999999999999999",
        ] {
            assert!(!is_expensive_query(query, 1000), "{query} is not expensive");
        }
    }
}
