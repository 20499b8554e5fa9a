//! `/l/{link_id}`, the redirect of a profile's link that counts its click,
//! and `/api/v1/users/{id}/clicks`, the owner's analytics.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::Write;
use super::responses::{ClickDaysData, OwnerOnly, ServerErrors};
use crate::auth::client_addr::client_address;
use crate::clicks::Visitor;
use crate::domain::resources::DataBody;
use crate::error::{ApiError, ErrorBody};
use crate::pages;
use crate::service::clicks::{self, Redirect};
use crate::state::AppState;

const HTML: &str = "text/html; charset=utf-8";

/// The same for every missing link, so rendered once per process.
static MISSING_LINK_PAGE: LazyLock<Vec<u8>> = LazyLock::new(pages::missing_link_page);

/// Redirects to a link's URL once its click is counted.
#[utoipa::path(get, path = "/l/{link_id}", tag = "clicks",
    params(("link_id" = i64, Path, minimum = 1)),
    responses(
        (status = 302, description = "To the link's URL; the click is counted",
         headers(("Location" = String), ("Cache-Control" = String, description = "no-store"))),
        (status = 404, description = "No such link (an HTML page)", content_type = "text/html", body = String),
        (status = 503, description = "The link is neither cached nor readable from PostgreSQL, or the click cannot be journaled: too many clicks wait to be applied, or the journal cannot be written (with Retry-After)", body = ErrorBody),
        (status = 500, description = "Anything else; the message leaks no internals", body = ErrorBody),
    ))]
pub async fn redirect(
    req: HttpRequest,
    state: web::Data<AppState>,
    link_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // For people, not the JSON API: an id that is not one is the page too.
    let Some(link_id) = link_id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Ok(missing_link());
    };
    let visitor = Visitor {
        address: client_address(&req, &state.settings.trusted_proxies),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .map_or(&[][..], HeaderValue::as_bytes),
    };
    match clicks::redirect(&state, link_id, visitor).await? {
        Redirect::To(url) => Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, &*url))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .finish()),
        Redirect::Missing => Ok(missing_link()),
    }
}

fn missing_link() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .content_type(HTML)
        .body(MISSING_LINK_PAGE.clone())
}

/// `?from=&to=` of the analytics.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ClickParams {
    /// First UTC day, `YYYY-MM-DD` (default: 29 days before `to`).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last UTC day, `YYYY-MM-DD` (default: today); at most 366 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// Clicks and distinct visitors of every link of a user, per link and UTC
/// day (days without clicks are left out), for its owner or an admin.
#[utoipa::path(get, path = "/api/v1/users/{id}/clicks", tag = "clicks",
    params(("id" = i64, Path, minimum = 1), ClickParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "Clicks per link and day, by day then link", body = ClickDaysData,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Bad from or to, or a range over 366 days", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        OwnerOnly, ServerErrors,
    ))]
pub async fn of_user(
    target: Write,
    params: web::Query<ClickParams>,
) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = target;
    let days = clicks::of_user(
        &state,
        &caller,
        id,
        params.from.as_deref(),
        params.to.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(DataBody { data: days }))
}
