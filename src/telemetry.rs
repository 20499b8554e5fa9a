//! Where log lines and spans go: the one `tracing` subscriber of the process.
//!
//! - Log lines go to stderr, filtered by `RUST_LOG` (default
//!   `info,actix_server=warn`), as text (the default) or, with
//!   `LOG_FORMAT=json`, as one JSON object per line carrying the fields of
//!   the event's spans (`request_id` among them). The `log` records of
//!   dependencies are bridged in.
//! - Spans are exported over OTLP/HTTP (protobuf) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set. When it is not, no layer for them
//!   is installed at all: the spans only traces need (`cache.lookup`,
//!   `db.load`, `cache.bump`, at debug level) are then disabled at their call
//!   sites by the log filter, and cost a level check.
//!
//! Each output has a filter of its own, so `RUST_LOG=warn` quiets the log
//! without emptying the traces, and the debug spans a trace needs do not add
//! a prefix to the text log's lines.
//!
//! The exporter's spans are batched on a thread of the SDK's own, so an
//! export never waits on the actix workers; [`Telemetry`]'s drop, at the end
//! of the process, shuts the provider down, which sends what is batched.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, Settings};

/// The log filter when `RUST_LOG` is unset or does not parse.
const DEFAULT_LOG_FILTER: &str = "info,actix_server=warn";

/// The `service.name` of the spans unless `OTEL_SERVICE_NAME` names another.
const SERVICE_NAME: &str = "linkhub";

/// The subscriber's outputs that need an end: the span exporter, when traces
/// are on. Dropping it flushes the spans batched so far.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` is set).
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("linkhub: flushing the traces at exit failed: {e}");
        }
    }
}

/// A layer of the one subscriber, whatever its output; the subscriber is
/// a list of them (one, or two with traces).
type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber: the log to stderr, and the OTLP span
/// exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Fails only when the
/// exporter cannot be built, with a message that names the variable.
pub fn init(settings: &Settings) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let log: BoxedLayer = match settings.log_format {
        LogFormat::Text => log.with_filter(filter).boxed(),
        LogFormat::Json => log
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let tracer_provider = match &settings.otel_exporter_otlp_endpoint {
        Some(endpoint) => Some(tracer_provider().map_err(|e| {
            format!("cannot export traces to OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: {e}")
        })?),
        None => None,
    };
    let mut layers = vec![log];
    if let Some(provider) = &tracer_provider {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SERVICE_NAME))
                .with_filter(filter_fn(is_exported))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(Telemetry { tracer_provider })
}

/// The OTLP/HTTP exporter, batched. The endpoint, headers, timeout and
/// sampler come from the standard `OTEL_*` variables, which the SDK reads.
fn tracer_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name(SERVICE_NAME).build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// What the traces carry: linkhub's spans at every level (the debug ones
/// exist for them), other crates' spans from info up, and warnings and
/// errors as events of the span they happen in. Decided per call site, once.
fn is_exported(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target().starts_with("linkhub") || *meta.level() <= Level::INFO
    } else {
        *meta.level() <= Level::WARN
    }
}
