//! Prometheus metrics: requests by route and status, a latency histogram,
//! cache hits and misses, published ids, evicted entries, the store's
//! size (refreshed within a second of a publish), open connections and
//! connections refused past `--max-connections`. Exposed as
//! OpenMetrics text at `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    pub hits: Counter,
    pub misses: Counter,
    /// Queried hashes answered from the in-memory cache of hot entries.
    pub hot_hits: Counter,
    pub published_ids: Counter,
    /// Entries removed by retention, by age or by size.
    pub evicted_entries: Counter,
    pub store_entries: Gauge,
    pub store_bytes: Gauge,
    pub open_connections: Gauge,
    /// Connections answered 503 because `--max-connections` were open.
    pub refused_connections: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~1.6 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dryci");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let (hits, misses, hot_hits, published_ids, evicted_entries) = (
            Counter::default(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        );
        let (store_entries, store_bytes) = (Gauge::default(), Gauge::default());
        let (open_connections, refused_connections) = (Gauge::default(), Counter::default());
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "cache_hits",
            "Queried test-file hashes with stored results",
            hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Queried test-file hashes without stored results",
            misses.clone(),
        );
        registry.register(
            "hot_cache_hits",
            "Queried test-file hashes answered from the in-memory cache of hot entries",
            hot_hits.clone(),
        );
        registry.register(
            "published_ids",
            "Node ids newly stored by publishes",
            published_ids.clone(),
        );
        registry.register(
            "evicted_entries",
            "Entries removed by retention (not read for --evict-unread-secs, or past --max-store-bytes)",
            evicted_entries.clone(),
        );
        registry.register(
            "store_entries",
            "Test-file hashes stored",
            store_entries.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes of stored node ids",
            store_bytes.clone(),
        );
        registry.register(
            "open_connections",
            "HTTP connections open",
            open_connections.clone(),
        );
        registry.register(
            "refused_connections",
            "HTTP connections answered 503 because --max-connections were open",
            refused_connections.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            hits,
            misses,
            hot_hits,
            published_ids,
            evicted_entries,
            store_entries,
            store_bytes,
            open_connections,
            refused_connections,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request under its route pattern
/// (never the raw path, which would let clients blow up label cardinality).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method,
            status,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed);
    response
}
