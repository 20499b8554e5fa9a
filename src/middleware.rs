//! What every response carries, whatever produced it: a request id, the
//! security headers a JSON API sends, and CORS for the browser origins an
//! operator allows. Handlers know nothing of these.
//!
//! - [`request_id`] (outermost): takes `X-Request-Id` from the request when it
//!   is a sane token, or makes one; the access log line prints it (it is put
//!   back on the request before the logger sees it), every log line written
//!   while the request is handled carries it ([`log_format`]), and the
//!   response echoes it.
//! - [`security_headers`]: `nosniff`, `DENY` framing, no referrer, and a
//!   Content-Security-Policy that lets a JSON answer do nothing at all. Only
//!   the Swagger UI under `/docs/` gets a policy that lets it load its own
//!   scripts and styles.
//! - [`cors`]: origins from `CORS_ALLOWED_ORIGINS` only (none by default),
//!   preflights answered, `ETag` and `X-Cache` readable by scripts. A request
//!   from another origin is still served (same-origin tools such as the
//!   Swagger UI send `Origin` too); the browser withholds the answer from a
//!   page whose origin is not allowed.
//!
//! Errors that reach these layers as `Err` (a panic caught in a handler)
//! become responses only in actix's dispatcher, after every middleware; they
//! are wrapped in [`WithHeaders`] so those responses carry the headers too.

use std::fmt;
use std::io::Write;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use rand::RngExt;

/// The request id header, read from the request and set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request whose handling is running on this task.
    static CURRENT_REQUEST_ID: String;
}

/// The request id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1–128 characters that cannot break a log
/// line or a header: letters, digits and `-_.:+/=@`.
fn is_acceptable_request_id(value: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
}

/// 128 random bits as 32 hex digits.
fn generate_request_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Gives the request an id (the client's, when acceptable), runs the rest of
/// the chain with that id in scope for the logs, and sets it on the response.
pub async fn request_id(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map_or_else(generate_request_id, str::to_owned);
    let value = HeaderValue::from_str(&id)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-request-id"));
    // The access log reads the id from the request header.
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let result = CURRENT_REQUEST_ID.scope(id, next.call(req)).await;
    add_headers(result, vec![(REQUEST_ID, value)])
}

/// `Content-Security-Policy` of every JSON answer: it may load, run and frame nothing.
const CSP_API: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `Content-Security-Policy` of the Swagger UI: its own scripts, styles
/// (it sets inline styles), inline SVG images, and calls to this API only.
const CSP_DOCS: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Sets the security headers on every response and removes any `Server` banner.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let csp = if req.path().starts_with("/docs") {
        CSP_DOCS
    } else if req.path().starts_with("/@") {
        crate::pages::CONTENT_SECURITY_POLICY
    } else {
        CSP_API
    };
    let headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        ),
    ];
    add_headers(next.call(req).await, headers)
}

/// Sets `headers` on the response, or on the response an error will become.
fn add_headers<B>(
    result: Result<ServiceResponse<B>, actix_web::Error>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    match result {
        Ok(mut res) => {
            set_all(res.headers_mut(), headers);
            Ok(res)
        }
        Err(err) => Err(WithHeaders {
            inner: err,
            headers,
        }
        .into()),
    }
}

fn set_all(map: &mut HeaderMap, headers: Vec<(HeaderName, HeaderValue)>) {
    map.remove(header::SERVER);
    for (name, value) in headers {
        map.insert(name, value);
    }
}

/// An error on its way to the dispatcher, with the headers its response must carry.
pub struct WithHeaders {
    inner: actix_web::Error,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WithHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for WithHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl ResponseError for WithHeaders {
    fn status_code(&self) -> StatusCode {
        self.inner.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.inner.error_response();
        set_all(res.headers_mut(), self.headers.clone());
        res
    }
}

/// CORS for `allowed_origins` (already checked by the configuration: each
/// one is a bare `scheme://host[:port]` origin). With none, no origin is
/// allowed and preflights are refused.
pub fn cors(allowed_origins: &[String]) -> Cors {
    let cors = allowed_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods([
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
    ])
    .allowed_headers([
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::IF_NONE_MATCH,
        REQUEST_ID,
    ])
    .expose_headers([
        header::ETAG,
        HeaderName::from_static("x-cache"),
        REQUEST_ID,
        header::RETRY_AFTER,
    ])
    .max_age(3600)
    .block_on_origin_mismatch(false)
}

/// env_logger's line format with the request id of the request being
/// handled, when there is one: `[time LEVEL target] request_id=… message`.
pub fn log_format(
    buf: &mut env_logger::fmt::Formatter,
    record: &log::Record<'_>,
) -> std::io::Result<()> {
    let timestamp = buf.timestamp();
    match current_request_id() {
        Some(id) => writeln!(
            buf,
            "[{timestamp} {:<5} {}] request_id={id} {}",
            record.level(),
            record.target(),
            record.args()
        ),
        None => writeln!(
            buf,
            "[{timestamp} {:<5} {}] {}",
            record.level(),
            record.target(),
            record.args()
        ),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::App;
    use actix_web::dev::Service;
    use actix_web::middleware::from_fn;
    use actix_web::test as web_test;

    use super::*;

    async fn failing(
        req: ServiceRequest,
        _: Next<impl MessageBody>,
    ) -> Result<ServiceResponse, actix_web::Error> {
        if req.path() == "/fails" {
            return Err(actix_web::error::ErrorInternalServerError("boom"));
        }
        Ok(req.into_response(HttpResponse::Ok().finish()))
    }

    /// The three layers in the order `startup` wraps them, around a layer
    /// that answers every path with `200`, except `/fails`: an error that
    /// reaches the dispatcher as `Err`, like a caught panic.
    macro_rules! app {
        () => {
            web_test::init_service(
                App::new()
                    .wrap(from_fn(failing))
                    .wrap(cors(&["https://app.example.com".to_owned()]))
                    .wrap(from_fn(security_headers))
                    .wrap(from_fn(request_id)),
            )
            .await
        };
    }

    #[actix_web::test]
    async fn every_response_carries_a_request_id_and_the_security_headers() {
        let app = app!();
        let res = web_test::call_service(
            &app,
            web_test::TestRequest::get()
                .uri("/ok")
                .insert_header((REQUEST_ID, "client-id-1"))
                .to_request(),
        )
        .await;
        assert_eq!(res.headers().get(&REQUEST_ID).unwrap(), "client-id-1");
        assert_eq!(res.headers().get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(
            res.headers().get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CSP_API
        );
        let res = web_test::call_service(
            &app,
            web_test::TestRequest::get()
                .uri("/docs/")
                .insert_header((REQUEST_ID, "bad id"))
                .to_request(),
        )
        .await;
        let id = res.headers().get(&REQUEST_ID).unwrap().to_str().unwrap();
        assert!(id.len() == 32 && id != "bad id", "{id}");
        assert_eq!(
            res.headers().get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CSP_DOCS
        );
    }

    #[actix_web::test]
    async fn an_error_on_its_way_to_the_dispatcher_keeps_the_headers() {
        let app = app!();
        let req = web_test::TestRequest::get().uri("/fails").to_request();
        let err = match app.call(req).await {
            Ok(_) => panic!("the failing layer answered"),
            Err(err) => err,
        };
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().contains_key(&REQUEST_ID));
        assert_eq!(
            res.headers().get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
    }

    #[actix_web::test]
    async fn only_allowed_origins_pass_a_preflight_and_read_the_cache_headers() {
        let app = app!();
        let preflight = |origin: &'static str| {
            web_test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri("/ok")
                .insert_header((header::ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "PATCH"))
                .insert_header((
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "authorization, content-type",
                ))
                .to_request()
        };
        let res = web_test::call_service(&app, preflight("https://app.example.com")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            "https://app.example.com"
        );
        let res = web_test::call_service(&app, preflight("https://evil.example")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            !res.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );

        let res = web_test::call_service(
            &app,
            web_test::TestRequest::get()
                .uri("/ok")
                .insert_header((header::ORIGIN, "https://app.example.com"))
                .to_request(),
        )
        .await;
        let exposed = res
            .headers()
            .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            exposed.contains("etag") && exposed.contains("x-cache"),
            "{exposed}"
        );
        // Another origin is served, but without the header that lets its page read the answer.
        let res = web_test::call_service(
            &app,
            web_test::TestRequest::get()
                .uri("/ok")
                .insert_header((header::ORIGIN, "https://evil.example"))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            !res.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }

    #[test]
    fn client_request_ids_are_kept_only_when_harmless() {
        assert!(is_acceptable_request_id("3f2a-9c_1.b:2+x/y=z@q"));
        for bad in [
            "",
            "has space",
            "line\nbreak",
            "quote\"",
            "ünï",
            &"a".repeat(129),
        ] {
            assert!(!is_acceptable_request_id(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_request_ids_are_acceptable_and_differ() {
        let (a, b) = (generate_request_id(), generate_request_id());
        assert_eq!(a.len(), 32);
        assert!(is_acceptable_request_id(&a));
        assert_ne!(a, b);
    }
}
