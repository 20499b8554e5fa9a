//! Who may read `/metrics`: anyone by default; with `METRICS_TOKEN`, only a
//! caller with that bearer token; with `METRICS_BIND_ADDR`, only through
//! that listener, the public one answering `404`.

use linkhub::config::Secret;

use crate::support::*;

const TOKEN: &str = "scrape-me-7f3a";

async fn metrics_with(app: &TestApp, url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("GET /metrics")
}

#[tokio::test]
async fn metrics_ask_for_the_token_when_one_is_set() {
    let app = spawn_app_with(|s| s.metrics_token = Some(Secret::new(TOKEN))).await;
    let url = app.url(paths::METRICS);
    for refused in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer scrape-me-7f3"),
        Some(TOKEN),
    ] {
        let response = metrics_with(&app, &url, refused).await;
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{refused:?}"
        );
        expect_error(response, 401, "unauthorized").await;
    }
    let response = metrics_with(&app, &url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("metrics body");
    assert!(text.contains("linkhub_http_requests_total"), "{text}");
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_not_on_the_public_one() {
    let port = linkhub_harness::free_port();
    let app = spawn_app_with(|s| s.metrics_bind_addr = Some(format!("127.0.0.1:{port}"))).await;
    expect_error(app.get(paths::METRICS).await, 404, "not_found").await;
    let own = format!("http://127.0.0.1:{port}");
    let response = metrics_with(&app, &format!("{own}{}", paths::METRICS), None).await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("metrics body");
    // The public listener's requests are counted, the 404 above among them.
    assert!(text.contains("linkhub_http_requests_total"), "{text}");
    assert!(text.contains("status=\"404\""), "{text}");
    // That listener serves nothing else.
    let other = metrics_with(&app, &format!("{own}{}", paths::HEALTHZ), None).await;
    expect_error(other, 404, "not_found").await;
}

#[tokio::test]
async fn the_own_listener_asks_for_the_token_too() {
    let port = linkhub_harness::free_port();
    let app = spawn_app_with(|s| {
        s.metrics_bind_addr = Some(format!("127.0.0.1:{port}"));
        s.metrics_token = Some(Secret::new(TOKEN));
    })
    .await;
    let url = format!("http://127.0.0.1:{port}{}", paths::METRICS);
    expect_error(metrics_with(&app, &url, None).await, 401, "unauthorized").await;
    let response = metrics_with(&app, &url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(response.status().as_u16(), 200);
}
