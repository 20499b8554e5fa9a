//! Prometheus metrics: the registry and its counters, one registry per
//! application (so several apps in one test process count separately).
//! Served at `/metrics`. Nothing here knows the application state: the
//! request middleware, the cache and the handlers each record what they see.

mod labels;

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use self::labels::{
    CacheResult, RouteLabel, RoutePattern, UNMATCHED_ROUTE, VerifySkip, method_label,
};
use self::labels::{Resolved, VERIFY_RESULTS, address};

/// The registry and every family linkhub records, one per application.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// `(method, route, status)` of a route known when the table was built.
    http_series: Resolved<(usize, usize, u16), (IntCounter, Histogram)>,
    cache_requests: IntCounterVec,
    /// `(namespace kind, result)`.
    cache_series: Resolved<(usize, CacheResult), IntCounter>,
    cache_near_hits: IntCounter,
    cache_near_bytes: IntGauge,
    cache_loads: IntCounterVec,
    cache_bypass_loads: IntCounterVec,
    cache_bypass_loads_undetached: IntCounterVec,
    cache_bumps: IntCounterVec,
    cache_bump_failures: IntCounterVec,
    cache_scan_deleted: IntCounterVec,
    cache_index_deleted: IntCounterVec,
    db_pool_connections: IntGaugeVec,
    redis_pool_connections: IntGaugeVec,
    cache_breaker_open: IntGaugeVec,
    cache_outbox_rows: IntGauge,
    owed_notify_delay: prometheus::Histogram,
    clicks: IntCounterVec,
    click_batches: IntCounterVec,
    click_visitors_dropped: IntCounter,
    /// The consistency observer's verdicts, one series per result
    /// (`fresh`, `stale`, `skipped`), resolved once.
    cache_verify: [IntCounter; 3],
    cache_verify_skipped: IntCounterVec,
    cache_verify_stale_age: Histogram,
    /// Loads a full bulkhead refused, by bulkhead (`bulkhead.rs`).
    bulkhead_refused: IntCounterVec,
    /// Requests a per-address limit refused (`429`), by limit.
    limited: IntCounterVec,
    /// Repeated refusals held before their answer, or answered at once
    /// because too many were held (`middleware::tarpit`).
    refusals_held: IntCounterVec,
    /// PostgreSQL checks `/readyz` made (one per reuse period at most).
    readiness_checks: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(registry, Box::new(metric.clone()));
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(registry, Box::new(metric.clone()));
    metric
}

fn register(registry: &Registry, metric: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = registry.register(metric) {
        unreachable!("each metric is registered once per registry: {e}");
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "linkhub_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .unwrap_or_else(|e| unreachable!("histogram is well-formed: {e}"));
        register(&registry, Box::new(http_duration.clone()));
        let owed_notify_delay = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "linkhub_cache_owed_notify_delay_seconds",
                "Delay from a writer's NOTIFY of owed bumps to this instance handling it",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("histogram is well-formed: {e}"));
        register(&registry, Box::new(owed_notify_delay.clone()));
        let cache_near_hits = IntCounter::new(
            "linkhub_cache_near_hits_total",
            "Cached reads answered from the near cache (in process) after a version GET",
        )
        .unwrap_or_else(|e| unreachable!("counter is well-formed: {e}"));
        register(&registry, Box::new(cache_near_hits.clone()));
        let cache_near_bytes = IntGauge::new(
            "linkhub_cache_near_bytes",
            "Bytes of entries the near cache holds (bounded by CACHE_NEAR_MAX_BYTES)",
        )
        .unwrap_or_else(|e| unreachable!("gauge is well-formed: {e}"));
        register(&registry, Box::new(cache_near_bytes.clone()));
        let cache_outbox_rows = IntGauge::new(
            "linkhub_cache_outbox_rows",
            "Owed cache bumps: outbox rows of committed writes not yet delivered to Redis, every instance's",
        )
        .unwrap_or_else(|e| unreachable!("gauge is well-formed: {e}"));
        register(&registry, Box::new(cache_outbox_rows.clone()));
        let click_visitors_dropped = IntCounter::new(
            "linkhub_click_visitors_dropped_total",
            "Visitors of counted clicks left out of the estimate: CLICKS_VISITORS_PENDING_MAX were waiting",
        )
        .unwrap_or_else(|e| unreachable!("counter is well-formed: {e}"));
        register(&registry, Box::new(click_visitors_dropped.clone()));
        let cache_verify_total = counter(
            &registry,
            "linkhub_cache_verify_total",
            "Sampled cached reads the consistency observer checked against PostgreSQL, by result (fresh, stale, skipped)",
            &["result"],
        );
        // Every result has its series from the start, at 0: an alert on
        // `stale` and a dashboard see a value before the first finding.
        let cache_verify =
            VERIFY_RESULTS.map(|result| cache_verify_total.with_label_values(&[result]));
        let cache_verify_skipped = counter(
            &registry,
            "linkhub_cache_verify_skipped_total",
            "Checks of the consistency observer without a verdict, by reason (raced, untrusted, dropped, busy, failed)",
            &["reason"],
        );
        for reason in VerifySkip::ALL {
            cache_verify_skipped.with_label_values(&[reason.as_str()]);
        }
        let cache_verify_stale_age = Histogram::with_opts(
            HistogramOpts::new(
                "linkhub_cache_verify_stale_age_seconds",
                "Age of the namespace version a stale cached read was served under: how long the wrong entry can have been served at most",
            )
            .buckets(vec![
                0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 86400.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("histogram is well-formed: {e}"));
        register(&registry, Box::new(cache_verify_stale_age.clone()));
        let readiness_checks = IntCounter::new(
            "linkhub_readiness_checks_total",
            "PostgreSQL checks made for /readyz (its answers reuse one check for READINESS_REUSE_MS)",
        )
        .unwrap_or_else(|e| unreachable!("counter is well-formed: {e}"));
        register(&registry, Box::new(readiness_checks.clone()));
        Self {
            click_visitors_dropped,
            clicks: counter(
                &registry,
                "linkhub_clicks_total",
                "Link clicks by outcome: counted (journaled, then redirected), failed (the journal write failed: 503), busy (CLICKS_JOURNAL_MAX_BYTES not yet applied: 503)",
                &["outcome"],
            ),
            click_batches: counter(
                &registry,
                "linkhub_click_batches_total",
                "Transactions applying click journal segments by outcome: committed (the applier's), adopted (a dead process's segment), found_applied (applied already), retried (failed, tried again)",
                &["outcome"],
            ),
            cache_verify,
            cache_verify_skipped,
            cache_verify_stale_age,
            readiness_checks,
            bulkhead_refused: counter(
                &registry,
                "linkhub_bulkhead_refused_total",
                "Loads a full bulkhead refused (503), by bulkhead",
                &["bulkhead"],
            ),
            limited: counter(
                &registry,
                "linkhub_limited_requests_total",
                "Requests a per-address limit refused (429), by limit",
                &["limit"],
            ),
            refusals_held: counter(
                &registry,
                "linkhub_refusals_held_total",
                "Refusals (429) of clients that asked again before their window ended: held before the answer (held), or answered at once with the connection closed because REFUSALS_HELD_MAX were held (full)",
                &["outcome"],
            ),
            cache_outbox_rows,
            http_series: Resolved::new(),
            cache_series: Resolved::new(),
            cache_near_hits,
            cache_near_bytes,
            http_requests: counter(
                &registry,
                "linkhub_http_requests_total",
                "HTTP requests by method, route and status",
                &["method", "route", "status"],
            ),
            http_duration,
            cache_requests: counter(
                &registry,
                "linkhub_cache_requests_total",
                "Cached reads by namespace and result (hit, miss, bypass)",
                &["namespace", "result"],
            ),
            cache_loads: counter(
                &registry,
                "linkhub_cache_loads_total",
                "PostgreSQL loads made for cached reads, after single-flight",
                &["namespace"],
            ),
            cache_bypass_loads: counter(
                &registry,
                "linkhub_cache_bypass_loads_total",
                "PostgreSQL loads made for BYPASS reads, after coalescing",
                &["namespace"],
            ),
            cache_bypass_loads_undetached: counter(
                &registry,
                "linkhub_cache_bypass_loads_undetached_total",
                "BYPASS loads run by their own request, unshared, because the loads running as tasks of their own were at their cap",
                &["namespace"],
            ),
            cache_bumps: counter(
                &registry,
                "linkhub_cache_version_bumps_total",
                "Namespace version counter bumps that reached Redis",
                &["namespace"],
            ),
            cache_bump_failures: counter(
                &registry,
                "linkhub_cache_version_bump_failures_total",
                "Bumps left to the outbox because Redis failed or was untrusted",
                &["namespace"],
            ),
            cache_scan_deleted: counter(
                &registry,
                "linkhub_cache_scan_deleted_keys_total",
                "Stale cache entries removed by the janitor's budgeted SCAN",
                &["namespace"],
            ),
            cache_index_deleted: counter(
                &registry,
                "linkhub_cache_index_deleted_keys_total",
                "Stale cache entries removed through their namespace's index after a bump",
                &["namespace"],
            ),
            db_pool_connections: gauge(
                &registry,
                "linkhub_db_pool_connections",
                "PostgreSQL pool use by state (size, available, waiting, max)",
                &["state"],
            ),
            redis_pool_connections: gauge(
                &registry,
                "linkhub_redis_pool_connections",
                "Redis connections of the reads by state (open, max: REDIS_POOL_SIZE)",
                &["state"],
            ),
            cache_breaker_open: gauge(
                &registry,
                "linkhub_cache_breaker_open",
                "1 while reads bypass Redis (unreachable or not yet trusted again)",
                &["cache"],
            ),
            owed_notify_delay,
            registry,
        }
    }
}

impl Metrics {
    /// `n` clicks that came to `outcome` (`counted`, `failed`, `busy`).
    pub fn clicks(&self, outcome: &'static str, n: u64) {
        self.clicks.with_label_values(&[outcome]).inc_by(n);
    }

    /// One attempt to apply a click journal segment that came to `outcome`.
    pub fn click_batch(&self, outcome: &'static str) {
        self.click_batches.with_label_values(&[outcome]).inc();
    }

    pub fn click_visitor_dropped(&self) {
        self.click_visitors_dropped.inc();
    }

    /// A full bulkhead refused a load; `name` is one the code defines.
    pub fn bulkhead_refused(&self, name: &'static str) {
        self.bulkhead_refused.with_label_values(&[name]).inc();
    }

    /// A per-address limit refused a request; `limit` is one the code defines.
    pub fn limited(&self, limit: &'static str) {
        self.limited.with_label_values(&[limit]).inc();
    }

    /// A repeated refusal was held (`held`) or found no slot (`full`).
    pub fn refusal_held(&self, outcome: &'static str) {
        self.refusals_held.with_label_values(&[outcome]).inc();
    }

    /// `/readyz` asked PostgreSQL.
    pub fn readiness_check(&self) {
        self.readiness_checks.inc();
    }

    pub fn cache_request(&self, namespace: &'static str, result: CacheResult) {
        self.cache_series
            .get((address(namespace), result), || {
                let label = match result {
                    CacheResult::Hit => "hit",
                    CacheResult::Miss => "miss",
                    CacheResult::Bypass => "bypass",
                };
                self.cache_requests.with_label_values(&[namespace, label])
            })
            .inc();
    }

    pub fn cache_near_hit(&self) {
        self.cache_near_hits.inc();
    }

    pub fn set_cache_near_bytes(&self, bytes: u64) {
        self.cache_near_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn cache_load(&self, namespace: &str) {
        count_one(&self.cache_loads, namespace);
    }

    pub fn cache_bypass_load(&self, namespace: &str) {
        count_one(&self.cache_bypass_loads, namespace);
    }

    pub fn cache_bypass_load_undetached(&self, namespace: &str) {
        count_one(&self.cache_bypass_loads_undetached, namespace);
    }

    pub fn cache_bump(&self, namespace: &str) {
        count_one(&self.cache_bumps, namespace);
    }

    pub fn cache_bump_failure(&self, namespace: &str) {
        count_one(&self.cache_bump_failures, namespace);
    }

    pub fn cache_scan_deleted(&self, namespace: &str, n: u64) {
        self.cache_scan_deleted
            .with_label_values(&[namespace])
            .inc_by(n);
    }

    pub fn cache_index_deleted(&self, namespace: &str, n: u64) {
        self.cache_index_deleted
            .with_label_values(&[namespace])
            .inc_by(n);
    }

    pub fn set_db_pool(&self, status: &deadpool::Status) {
        set_pool(&self.db_pool_connections, status);
    }

    /// The reads' Redis connections: `open` now, `max` (`REDIS_POOL_SIZE`).
    pub fn set_redis_connections(&self, open: usize, max: usize) {
        let as_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        for (state, value) in [("open", as_i64(open)), ("max", as_i64(max))] {
            self.redis_pool_connections
                .with_label_values(&[state])
                .set(value);
        }
    }

    /// The outbox rows counted at the scrape (bumps owed to Redis).
    pub fn set_cache_outbox_rows(&self, rows: i64) {
        self.cache_outbox_rows.set(rows);
    }

    pub fn owed_notification(&self, delay_secs: f64) {
        self.owed_notify_delay.observe(delay_secs);
    }

    /// A sampled read the observer found equal to PostgreSQL.
    pub fn cache_verified_fresh(&self) {
        self.cache_verify[0].inc();
    }

    /// A sampled read the observer found different from PostgreSQL, whose
    /// version was `age` old.
    pub fn cache_verified_stale(&self, age: Duration) {
        self.cache_verify[1].inc();
        self.cache_verify_stale_age.observe(age.as_secs_f64());
    }

    /// A sampled read the observer gave no verdict, and why.
    pub fn cache_verify_skipped(&self, reason: VerifySkip) {
        self.cache_verify[2].inc();
        self.cache_verify_skipped
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The gauge that is 1 while the cache's breaker is open; the breaker
    /// owns it and keeps it in step with its state.
    pub fn breaker_open_gauge(&self) -> IntGauge {
        self.cache_breaker_open.with_label_values(&["redis"])
    }

    /// Counts and times one HTTP request under its route pattern. `method`
    /// and `route` come from closed sets ([`method_label`], the route
    /// patterns or [`UNMATCHED_ROUTE`]), so no client can add a series.
    pub fn http_request(
        &self,
        method: &'static str,
        route: RouteLabel<'_>,
        status: u16,
        took: Duration,
    ) {
        let resolve = |route: &str| {
            (
                self.http_requests
                    .with_label_values(&[method, route, &status.to_string()]),
                self.http_duration.with_label_values(&[method, route]),
            )
        };
        let (count, duration) = match route {
            RouteLabel::Static(route) => self
                .http_series
                .get((address(method), address(route), status), || resolve(route)),
            RouteLabel::Found(route) => resolve(route),
        };
        count.inc();
        duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text format of everything registered.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

fn set_pool(gauge: &IntGaugeVec, status: &deadpool::Status) {
    let as_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    for (state, value) in [
        ("size", as_i64(status.size)),
        ("available", as_i64(status.available)),
        ("waiting", as_i64(status.waiting)),
        ("max", as_i64(status.max_size)),
    ] {
        gauge.with_label_values(&[state]).set(value);
    }
}

/// One more under a namespace of a counter labelled by namespace only.
fn count_one(counter: &IntCounterVec, namespace: &str) {
    counter.with_label_values(&[namespace]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_method_is_counted_as_other() {
        let cases = [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("FOO", "OTHER"),
            ("get", "OTHER"),
        ];
        for (method, label) in cases {
            assert_eq!(method_label(method), label, "{method}");
        }
    }
}
