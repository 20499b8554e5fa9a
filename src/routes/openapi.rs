//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! resource types: [`ApiDoc`], its JSON served at `/api/v1/openapi.json`
//! ([`document`]) and the Swagger UI over it ([`swagger_ui`]). This is the
//! one file that names every handler; nothing else in `routes/` imports it
//! but the routing table. The sets of answers many operations share live
//! below the handlers, in `responses.rs`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{auth, clicks, links, ops, profiles, socials, users};

/// The document: every operation, its schemas, and the bearer scheme of the
/// operations that take a token.
#[derive(OpenApi)]
#[openapi(
    info(title = "linkhub", description = "Link-in-bio profiles, served cache-aside from Redis."),
    paths(
        users::list, users::register, users::get, users::update, users::delete,
        links::list, links::get, links::create, links::update, links::delete,
        socials::list, socials::get, socials::create, socials::update, socials::delete,
        profiles::get,
        clicks::redirect, clicks::of_user,
        auth::login, auth::logout, auth::me,
        ops::healthz, ops::readyz, ops::metrics, document,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users"), (name = "links"), (name = "socials"), (name = "profiles"),
        (name = "clicks"), (name = "auth"), (name = "operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// [`ApiDoc`] as JSON, serialized once: it never changes.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| unreachable!("the OpenAPI document serializes: {e}"))
});

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON.as_str())
}

/// Interactive documentation at `/docs/` (Swagger UI, vendored: nothing is
/// downloaded at build or run time).
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").external_url_unchecked(
        "/api/v1/openapi.json",
        serde_json::from_str(&OPENAPI_JSON).unwrap_or_default(),
    )
}
