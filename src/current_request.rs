//! The request the current task is serving, for code far below the HTTP
//! layer: its request id, set by the request-id middleware around each
//! request (a tokio task-local), read where the request's span cannot serve.
//!
//! The span carries the id on every log line written *during* the request.
//! The cache's consistency observer (`cache/verify/`) writes its finding
//! seconds later, after the request answered; holding the request's span
//! that long would keep it open, and every exported trace of a sampled read
//! would show a request that lasted seconds. So the observer takes the id
//! itself, here, and only for the reads it samples.

use actix_web::http::header::HeaderValue;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Runs `request` with `id` as its request id (the middleware's one call).
pub async fn serve<F: Future>(id: HeaderValue, request: F) -> F::Output {
    REQUEST_ID.scope(id, request).await
}

/// The id of the request the current task serves; `None` outside a request
/// (a background task) or when the id is not text.
pub fn request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_known_inside_the_request_only() {
        assert_eq!(request_id(), None);
        let inside = serve(HeaderValue::from_static("req-1"), async { request_id() }).await;
        assert_eq!(inside.as_deref(), Some("req-1"));
        assert_eq!(request_id(), None);
    }
}
