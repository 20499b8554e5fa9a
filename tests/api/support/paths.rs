//! The API's paths, written once: the endpoint helpers of `client.rs` and the
//! tests that list reads (the cache tests) or loop over routes build them here.

use std::fmt::Display;

pub const USERS: &str = "/api/v1/users";
pub const ME: &str = "/api/v1/me";
pub const LOGIN: &str = "/api/v1/auth/login";
pub const LOGOUT: &str = "/api/v1/auth/logout";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/api/v1/openapi.json";

pub fn user(id: impl Display) -> String {
    format!("/api/v1/users/{id}")
}

/// A user's links (list and create).
pub fn links(user_id: impl Display) -> String {
    format!("/api/v1/users/{user_id}/links")
}

pub fn link(id: impl Display) -> String {
    format!("/api/v1/links/{id}")
}

/// A user's socials (list and create).
pub fn socials(user_id: impl Display) -> String {
    format!("/api/v1/users/{user_id}/socials")
}

pub fn social(id: impl Display) -> String {
    format!("/api/v1/socials/{id}")
}

pub fn profile(username: impl Display) -> String {
    format!("/api/v1/profiles/{username}")
}

/// The HTML profile page (not part of the JSON API).
pub fn profile_page(username: impl Display) -> String {
    format!("/@{username}")
}

/// Every public read about one user that shows `link_id` and `social_id`:
/// the user, its lists, the link, the social and the profile.
pub fn reads_of_user(
    user_id: i64,
    username: &str,
    link_id: impl Display,
    social_id: impl Display,
) -> Vec<String> {
    vec![
        user(user_id),
        links(user_id),
        socials(user_id),
        link(link_id),
        social(social_id),
        profile(username),
    ]
}

/// The user list searched for `term` (no other parameter).
pub fn user_search(term: impl Display) -> String {
    format!("{USERS}?search={term}")
}

/// Every route of API.md as (path template, methods it serves), the one list
/// the route tests derive from: the OpenAPI document must list exactly these
/// (`ops.rs`, next to its reviewed snapshot), and every other method on them
/// answers `405` with this `Allow` (`errors.rs`). Placeholders are `{}`.
pub const ROUTES: &[(&str, &[&str])] = &[
    (USERS, &["GET", "POST"]),
    ("/api/v1/users/{}", &["GET", "PATCH", "DELETE"]),
    ("/api/v1/users/{}/links", &["GET", "POST"]),
    ("/api/v1/users/{}/socials", &["GET", "POST"]),
    ("/api/v1/users/{}/clicks", &["GET"]),
    ("/l/{}", &["GET"]),
    ("/api/v1/links/{}", &["GET", "PATCH", "DELETE"]),
    ("/api/v1/socials/{}", &["GET", "PATCH", "DELETE"]),
    ("/api/v1/profiles/{}", &["GET"]),
    (LOGIN, &["POST"]),
    (LOGOUT, &["POST"]),
    (ME, &["GET"]),
    (HEALTHZ, &["GET"]),
    (READYZ, &["GET"]),
    (METRICS, &["GET"]),
    (OPENAPI, &["GET"]),
];

/// A concrete path of a [`ROUTES`] template (every placeholder `1`).
pub fn example(template: &str) -> String {
    template.replace("{}", "1")
}

/// An OpenAPI path (`/api/v1/users/{user_id}/links`) as a [`ROUTES`]
/// template (`/api/v1/users/{}/links`).
pub fn template_of(openapi_path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in openapi_path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// The redirect of a profile's link that counts its click.
pub fn click(link_id: impl Display) -> String {
    format!("/l/{link_id}")
}

pub fn clicks(user_id: impl Display) -> String {
    format!("/api/v1/users/{user_id}/clicks")
}
