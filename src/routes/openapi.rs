//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! resource types, served at `/api/v1/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, links, ops, profiles, socials, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "linkhub", description = "Link-in-bio profiles, served cache-aside from Redis."),
    paths(
        users::list, users::register, users::get, users::update, users::delete,
        links::list, links::get, links::create, links::update, links::delete,
        socials::list, socials::get, socials::create, socials::update, socials::delete,
        profiles::get,
        auth::login, auth::logout, auth::me,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users"), (name = "links"), (name = "socials"), (name = "profiles"),
        (name = "auth"), (name = "operations"),
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
