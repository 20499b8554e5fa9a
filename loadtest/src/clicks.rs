//! The `clicks` scenario: people following profile links. Each goose user
//! opens a profile drawn by popularity (Zipf, like `profiles`) once, learns
//! its links, then clicks them through `GET /l/{link_id}` without following
//! the redirect (the targets are other sites). A click that does not answer
//! `302` is a failed request.
//!
//! Its rate is goose's: `--users N` users clicking as fast as answers come,
//! or a fixed rate with `--throttle-requests R` (R requests a second in
//! all), e.g. 64 users throttled to 2,000 clicks a second:
//!
//! ```text
//! loadtest --host http://127.0.0.1:8080 --scenarios clicks --users 64 \
//!     --hatch-rate 64 --run-time 30s --throttle-requests 2000
//! ```
//!
//! Every `302` is counted (`loadtest summary:` `clicks`), so a run can be
//! checked against `link_clicks` afterwards: the sum of its rows grows by
//! exactly that many.

use std::sync::atomic::{AtomicU64, Ordering};

use goose::prelude::*;
use rand::RngExt;

use crate::api::ProfileView;
use crate::data;

/// Redirects answered `302` by this process.
pub static ANSWERED: AtomicU64 = AtomicU64::new(0);

/// The links a goose user clicks, learned from its profile.
#[derive(Clone)]
struct Links(Vec<i64>);

/// `clicks`: the profile read that opens a session, then clicks.
pub fn scenario() -> Scenario {
    scenario!("clicks")
        .register_transaction(transaction!(open_profile).set_on_start())
        .register_transaction(transaction!(click).set_name("/l/{link_id}"))
}

/// Reads a popular profile, without following redirects from now on.
async fn open_profile(user: &mut GooseUser) -> TransactionResult {
    user.set_client_builder(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()))
        .await?;
    let rank = crate::scenarios::popular_account();
    let path = format!("/api/v1/profiles/{}", data::username(rank));
    let goose = user.get_named(&path, "/api/v1/profiles/{username}").await?;
    let links = match goose.response {
        Ok(response) => response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|body| serde_json::from_value::<ProfileView>(body["data"].clone()).ok())
            .map(|profile| profile.links.iter().map(|l| l.id).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    user.set_session_data(Links(links));
    Ok(())
}

/// One click of one of the session's links.
async fn click(user: &mut GooseUser) -> TransactionResult {
    let Some(id) = user.get_session_data::<Links>().and_then(|links| {
        (!links.0.is_empty()).then(|| links.0[rand::rng().random_range(0..links.0.len())])
    }) else {
        // A profile without links: read another one next time.
        return open_profile(user).await;
    };
    let path = format!("/l/{id}");
    let mut goose = user.get_named(&path, "/l/{link_id}").await?;
    let found = matches!(&goose.response, Ok(r) if r.status().as_u16() == 302);
    if found {
        ANSWERED.fetch_add(1, Ordering::Relaxed);
        // goose counts any answer outside 2xx as failed: a redirect is
        // what this request asks for.
        user.set_success(&mut goose.request)?;
    } else {
        return user.set_failure("a click did not redirect", &mut goose.request, None, None);
    }
    Ok(())
}
