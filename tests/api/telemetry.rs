//! What an operator's pipelines receive from the binary: JSON log lines with
//! `LOG_FORMAT=json`, and OTLP spans with `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! received here by a collector the test runs itself (an HTTP server that
//! decodes the protobuf with opentelemetry-proto's types).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::*;

/// The binary with `extra` on top of the shared settings, on a fresh database.
async fn serve_with(extra: &[(&'static str, String)]) -> ServedBinary {
    let database_url = create_test_database().await;
    let mut vars = base_vars(&database_url);
    vars.push(("MIGRATE_ON_START", "false".to_owned()));
    vars.extend(extra.iter().cloned());
    ServedBinary::start(&vars).await
}

/// `GET`/`PATCH` with a request id the test chose, so it can find the
/// request's log lines and spans.
async fn send_with_id(request: reqwest::RequestBuilder, id: &str) -> reqwest::Response {
    request
        .header("X-Request-Id", id)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_request_id() {
    let served = serve_with(&[("LOG_FORMAT", "json".to_owned())]).await;
    let id = "json-log-line-1";
    let response = send_with_id(served.app.client.get(served.app.url(paths::HEALTHZ)), id).await;
    assert_eq!(response.status().as_u16(), 200);
    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(30)).await;
    assert!(exited.status.success(), "{}", exited.stderr);
    let lines: Vec<Value> = exited
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening"))),
        "the start-up line is JSON too: {lines:#?}"
    );
    let access = lines
        .iter()
        .find(|l| l["span"]["request_id"] == json!(id))
        .unwrap_or_else(|| panic!("no line carries request_id {id}: {lines:#?}"));
    assert_eq!(access["target"], "linkhub::access");
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["span"]["name"], "request");
    assert_eq!(access["spans"][0]["request_id"], json!(id));
}

/// A span as received, by the fields the test reads.
#[derive(Debug, Clone)]
struct Received {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    attributes: HashMap<String, String>,
}

impl From<Span> for Received {
    fn from(span: Span) -> Self {
        let attributes = span
            .attributes
            .into_iter()
            .filter_map(|kv| {
                let value = match kv.value?.value? {
                    AnyValue::StringValue(s) => s,
                    AnyValue::IntValue(i) => i.to_string(),
                    AnyValue::BoolValue(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                Some((kv.key, value))
            })
            .collect();
        Self {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            name: span.name,
            attributes,
        }
    }
}

/// An OTLP/HTTP collector on a free port: every `POST /v1/traces` is decoded
/// and its spans (with the service name of their resource) sent on the channel.
async fn start_collector() -> (u16, mpsc::UnboundedReceiver<(String, Received)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (sender, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_exports(stream, sender.clone()));
        }
    });
    (port, received)
}

/// Answers the requests of one connection (the exporter keeps it alive).
async fn serve_exports(stream: TcpStream, spans: mpsc::UnboundedSender<(String, Received)>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a content length");
            }
        }
        let mut body = vec![0; length];
        stream
            .read_exact(&mut body)
            .await
            .expect("the request body");
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = spans.send((service.clone(), span.into()));
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The spans of the request whose id is `request_id`: the request span and
/// its children's names.
fn request_tree<'a>(spans: &'a [Received], request_id: &str) -> (&'a Received, Vec<&'a str>) {
    let request = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && s.attributes.get("request_id").map(String::as_str) == Some(request_id)
        })
        .unwrap_or_else(|| panic!("no request span with request_id {request_id}: {spans:#?}"));
    let children = spans
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .inspect(|s| assert_eq!(s.trace_id, request.trace_id, "{s:?}"))
        .map(|s| s.name.as_str())
        .collect();
    (request, children)
}

/// The tree as received, for the test's output.
fn print_tree(spans: &[Received], root: &Received, depth: usize) {
    let attributes: Vec<String> = {
        let mut a: Vec<_> = root
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        a.sort();
        a
    };
    println!(
        "{}{} {}",
        "  ".repeat(depth),
        root.name,
        attributes.join(" ")
    );
    for child in spans.iter().filter(|s| s.parent_span_id == root.span_id) {
        print_tree(spans, child, depth + 1);
    }
}

#[tokio::test]
async fn a_request_span_has_its_cache_lookup_load_and_bump_as_children() {
    let (port, mut received) = start_collector().await;
    let served = serve_with(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    )])
    .await;
    let app = &served.app;
    wait_cache_ok(app).await;
    let user = app.register_user().await;
    let read = send_with_id(
        app.client.get(app.url(&paths::user(user.id))),
        "trace-read-1",
    )
    .await;
    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(read.headers()["x-cache"], "MISS");
    let write = send_with_id(
        app.client
            .patch(app.url(&paths::user(user.id)))
            .bearer_auth(&user.token)
            .json(&json!({"name": "Traced"})),
        "trace-write-1",
    )
    .await;
    assert_eq!(write.status().as_u16(), 200);
    // The spans are batched: the stop's flush is what sends them.
    served.signal("TERM").await;
    let exited = served.exited_within(Duration::from_secs(30)).await;
    assert!(exited.status.success(), "{}", exited.stderr);
    // The last export reached the collector before the process exited, but
    // the collector's task may still be decoding it: take spans until none
    // has come for a second.
    let mut spans = Vec::new();
    while let Ok(Some((service, span))) =
        tokio::time::timeout(Duration::from_secs(1), received.recv()).await
    {
        assert_eq!(service, "linkhub");
        spans.push(span);
    }

    let (read_span, children) = request_tree(&spans, "trace-read-1");
    assert!(
        children.contains(&"cache.lookup") && children.contains(&"db.load"),
        "{children:?}"
    );
    let (write_span, children) = request_tree(&spans, "trace-write-1");
    assert!(children.contains(&"cache.bump"), "{children:?}");
    for root in [read_span, write_span] {
        assert!(
            root.parent_span_id.is_empty(),
            "a request span is a root: {root:?}"
        );
        print_tree(&spans, root, 0);
    }
}
