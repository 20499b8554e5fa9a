//! HTTP: one file per resource, handlers kept thin (extract → call a
//! service → respond), each with its OpenAPI annotation beside it. The
//! annotations name the answer sets of `responses.rs`, below every handler;
//! `openapi.rs`, above them, is the one file that names the handlers. This file
//! holds the routing table and what every handler shares: how extractor
//! errors and unknown routes become the JSON error shape, what a handler of
//! one resource by id extracts ([`ById`], [`Write`]: the caller first), how a
//! body's error waits for the authorization, and how a cached read becomes a
//! response.

pub mod auth;
pub mod clicks;
pub mod links;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod profiles;
pub mod responses;
pub mod socials;
pub mod users;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use serde::Deserialize;

use crate::auth::Caller;
use crate::cache::Served;
use crate::domain::resources::{MessageBody as Message, PageRequest};
use crate::error::ApiError;
use crate::metrics::RoutePattern;
use crate::service::Body;
use crate::state::AppState;

/// Largest request body accepted (API.md: `413` above 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routing table. Every resource answers `405` for methods it does not
/// serve; anything else is a JSON `404`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `allow` is what the 405 of each resource lists in its `Allow` header.
    // Each resource carries its pattern for the request metrics.
    let resource = |path: &'static str, allow: &'static str| {
        web::resource(path)
            .app_data(RoutePattern(path))
            .default_service(web::to(move || method_not_allowed(allow)))
    };
    // The router tries resources in this order, and each pattern with a
    // `{…}` is a regex run with captures: the cached reads of profiles, what
    // linkhub exists for, come first, so that they run one.
    cfg.service(resource("/healthz", "GET").route(web::get().to(ops::healthz)))
        .service(resource("/api/v1/profiles/{username}", "GET").route(web::get().to(profiles::get)))
        .service(resource("/@{username}", "GET").route(web::get().to(pages::profile)))
        .service(resource("/l/{link_id}", "GET").route(web::get().to(clicks::redirect)))
        .service(resource("/readyz", "GET").route(web::get().to(ops::readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
        .service(resource("/api/v1/openapi.json", "GET").route(web::get().to(openapi::document)))
        .service(
            resource("/api/v1/users", "GET, POST")
                .route(web::get().to(users::list))
                .route(web::post().to(users::register)),
        )
        .service(
            resource("/api/v1/users/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(users::get))
                .route(web::patch().to(users::update))
                .route(web::delete().to(users::delete)),
        )
        .service(
            resource("/api/v1/users/{id}/links", "GET, POST")
                .route(web::get().to(links::list))
                .route(web::post().to(links::create)),
        )
        .service(resource("/api/v1/users/{id}/clicks", "GET").route(web::get().to(clicks::of_user)))
        .service(
            resource("/api/v1/users/{id}/socials", "GET, POST")
                .route(web::get().to(socials::list))
                .route(web::post().to(socials::create)),
        )
        .service(
            resource("/api/v1/links/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(links::get))
                .route(web::patch().to(links::update))
                .route(web::delete().to(links::delete)),
        )
        .service(
            resource("/api/v1/socials/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(socials::get))
                .route(web::patch().to(socials::update))
                .route(web::delete().to(socials::delete)),
        )
        .service(resource("/api/v1/auth/login", "POST").route(web::post().to(auth::login)))
        .service(resource("/api/v1/auth/logout", "POST").route(web::post().to(auth::logout)))
        .service(resource("/api/v1/me", "GET").route(web::get().to(auth::me)))
        .service(openapi::swagger_ui())
        .default_service(web::to(not_found));
}

/// Extractor failures answer the JSON error shape with the status of API.md.
pub fn extractor_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(|err, _| ApiError::from(err).into()),
    )
    .app_data(web::PayloadConfig::default().limit(MAX_BODY_BYTES))
    .app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(format!("invalid query parameter: {err}")).into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into()),
    );
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("route"))
}

async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A path id: a positive 64-bit integer. Anything else fails the path
/// extractor, which [`extractor_errors`] answers `404` (no such resource).
#[derive(Debug, Clone, Copy)]
struct ResourceId(i64);

impl ResourceId {
    fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match i64::deserialize(deserializer)? {
            id if id > 0 => Ok(Self(id)),
            _ => Err(serde::de::Error::custom("an id is a positive integer")),
        }
    }
}

/// What a handler about one resource by its path id extracts: the state the
/// services reach and the id (a path that is not a positive integer is `404`).
pub struct ById {
    pub state: web::Data<AppState>,
    pub id: i64,
}

impl FromRequest for ById {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(by_id(req))
    }
}

fn by_id(req: &HttpRequest) -> Result<ById, actix_web::Error> {
    let state = web::Data::<AppState>::extract(req).into_inner()?;
    let id = web::Path::<ResourceId>::extract(req).into_inner()?;
    Ok(ById {
        state,
        id: id.get(),
    })
}

/// What a write to one resource by its path id extracts: the caller first
/// (`401` before anything else about the request), then what [`ById`] holds.
/// For a create, the id is the user's whose links or socials grow.
pub struct Write {
    pub caller: Caller,
    pub state: web::Data<AppState>,
    pub id: i64,
}

impl FromRequest for Write {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        let target = by_id(req);
        Box::pin(async move {
            let caller = caller.await?;
            let ById { state, id } = target?;
            Ok(Write { caller, state, id })
        })
    }
}

/// A JSON body whose extraction error is kept until the caller was
/// authenticated: `401` is checked before anything about the request.
pub type JsonBody<T> = Result<web::Json<T>, actix_web::Error>;

/// The body for a service, its extraction error as an [`ApiError`] that the
/// service raises once the caller is authorized.
pub fn body<T>(body: JsonBody<T>) -> Body<T> {
    body.map(web::Json::into_inner).map_err(|e| {
        e.as_error::<ApiError>()
            .cloned()
            .unwrap_or_else(|| ApiError::bad_request(e.to_string()))
    })
}

/// `?page=&limit=` of a list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

impl PageParams {
    pub fn parse(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(self.page, self.limit)?)
    }
}

/// A cached read as a response: `X-Cache`, the entry's strong `ETag`,
/// `Cache-Control: no-cache`, and `304` when `If-None-Match` matches.
pub fn cached_response(req: &HttpRequest, served: Served) -> HttpResponse {
    cached_response_as(req, served, "application/json")
}

/// [`cached_response`] for a body of another type (the HTML pages).
pub fn cached_response_as(
    req: &HttpRequest,
    served: Served,
    content_type: &'static str,
) -> HttpResponse {
    let entry = &served.entry;
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let not_modified = status == StatusCode::OK
        && (req.method() == Method::GET)
        && if_none_match(req, &entry.etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::build(status)
    };
    response
        .insert_header(("X-Cache", served.result.as_str()))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")));
    if let Ok(etag) = HeaderValue::from_str(&entry.etag) {
        response.insert_header((header::ETAG, etag));
    }
    if not_modified {
        response.finish()
    } else {
        response.content_type(content_type).body(entry.body.clone())
    }
}

/// Weak comparison, as RFC 9110 prescribes for `If-None-Match`.
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    let Some(value) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// `201` with `{"message": ..., "data": ...}`.
pub fn created<T: serde::Serialize>(message: &'static str, data: T) -> HttpResponse {
    written(HttpResponse::Created(), message, data)
}

/// `200` with `{"message": ..., "data": ...}`.
pub fn updated<T: serde::Serialize>(message: &'static str, data: T) -> HttpResponse {
    written(HttpResponse::Ok(), message, data)
}

/// The answer of a write shows what its author may see (a private user,
/// say), so it is `Cache-Control: no-store`.
fn written<T: serde::Serialize>(
    mut response: actix_web::HttpResponseBuilder,
    message: &'static str,
    data: T,
) -> HttpResponse {
    response
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Message { message, data })
}
