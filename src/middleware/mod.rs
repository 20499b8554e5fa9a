//! Everything every response goes through, whatever produced it; handlers
//! know nothing of these. From the outside in, as startup wraps them:
//!
//! - [`drain`]: requests in flight, which a stop waits for.
//! - [`request_id`]: the request id (taken from a sane `X-Request-Id` or
//!   made), echoed on the response; the request's tracing span that puts
//!   `request_id=<id>` on every log line of the request; and the access
//!   line (target `linkhub::access`, written only when its level is on).
//! - [`headers`]: the security headers.
//! - [`json_errors`]: the JSON safety net for error responses actix made.
//! - [`cors`]: CORS for the origins an operator allows.
//! - [`panics`]: a panicking handler answers a JSON `500`.
//! - [`metrics`]: requests counted and timed by route pattern.
//! - [`body_deadline`]: the time a client has to send a request's body.
//! - [`admission`]: per-address limits on registrations and expensive reads,
//!   whose repeated refusals [`tarpit`] holds.

pub mod admission;
pub mod body_deadline;
pub mod cors;
pub mod drain;
pub mod headers;
pub mod json_errors;
pub mod metrics;
pub mod panics;
pub mod request_id;
pub mod tarpit;

#[cfg(test)]
mod tests {
    use actix_web::App;
    use actix_web::dev::Service;
    use actix_web::middleware::from_fn;
    use actix_web::test as web_test;

    use actix_web::HttpResponse;
    use actix_web::http::header::{self, TryIntoHeaderPair};
    use actix_web::http::{Method, StatusCode};

    use super::cors::cors;
    use super::headers::{CSP_API, CSP_DOCS, security_headers};
    use super::request_id::{
        REQUEST_ID, generate_request_id, is_acceptable_request_id, request_id,
    };
    use actix_web::body::MessageBody;
    use actix_web::dev::{ServiceRequest, ServiceResponse};
    use actix_web::middleware::Next;

    async fn failing(
        req: ServiceRequest,
        _: Next<impl MessageBody>,
    ) -> Result<ServiceResponse, actix_web::Error> {
        if req.path() == "/fails" {
            return Err(actix_web::error::ErrorInternalServerError("boom"));
        }
        Ok(req.into_response(HttpResponse::Ok().finish()))
    }

    /// `GET uri` with one header, ready to send.
    fn get_with(uri: &str, header: impl TryIntoHeaderPair) -> web_test::TestRequest {
        web_test::TestRequest::get().uri(uri).insert_header(header)
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
            get_with("/ok", (REQUEST_ID, "client-id-1")).to_request(),
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
            get_with("/docs/", (REQUEST_ID, "bad id")).to_request(),
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

        let from_app = get_with("/ok", (header::ORIGIN, "https://app.example.com"));
        let res = web_test::call_service(&app, from_app.to_request()).await;
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
        let from_elsewhere = get_with("/ok", (header::ORIGIN, "https://evil.example"));
        let res = web_test::call_service(&app, from_elsewhere.to_request()).await;
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
