//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format. Names and
//! meanings are listed in docs/http-api.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The collector route, e.g. `/v1/batch`.
    pub endpoint: String,
    /// `stored`, `duplicate`, `rejected`, `skipped`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `in_flight` (too many ingest requests at once) or `backlog` (compaction behind).
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub ingest_events: Family<EventLabels, Counter>,
    pub ack_seconds: HistogramFamily<EndpointLabels>,
    pub ingest_in_flight: Gauge,
    pub ingest_in_flight_limit: Gauge,
    pub ingest_refused: Family<RefusalLabels, Counter>,
    pub backlog_events: Gauge,
    pub store_bytes: Gauge,
    pub dead_letters: Counter,
    pub query_seconds: HistogramFamily<EndpointLabels>,
    pub queries_running: Gauge,
    pub responses: Family<ResponseLabels, Counter>,
    pub links: Counter,
    pub key_cache_entries: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("omnitrail");
        let ingest_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "ingest_events",
            "Events received by the collectors, by endpoint and outcome (rate() gives the ingest rate)",
            ingest_events.clone(),
        );
        let ack_seconds: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "ingest_ack_seconds",
            "Time from a collector request's arrival to its durable acknowledgement",
            ack_seconds.clone(),
        );
        let ingest_in_flight = Gauge::default();
        registry.register(
            "ingest_in_flight",
            "Collector requests being parsed or stored right now (the ingest queue)",
            ingest_in_flight.clone(),
        );
        let ingest_in_flight_limit = Gauge::default();
        registry.register(
            "ingest_in_flight_limit",
            "Collector requests allowed at once; past it requests get 503 with Retry-After",
            ingest_in_flight_limit.clone(),
        );
        let ingest_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "ingest_refused",
            "Collector requests refused with 503 for back-pressure, by reason",
            ingest_refused.clone(),
        );
        let backlog_events = Gauge::default();
        registry.register(
            "ingest_backlog_events",
            "Events in the ingest log waiting for compaction into segments",
            backlog_events.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of everything in the data dir",
            store_bytes.clone(),
        );
        let dead_letters = Counter::default();
        registry.register(
            "dead_letters",
            "Events rejected by the collectors and kept as dead letters",
            dead_letters.clone(),
        );
        let query_seconds: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "query_seconds",
            "Query API latency by endpoint (route template)",
            query_seconds.clone(),
        );
        let queries_running = Gauge::default();
        registry.register(
            "queries_running",
            "Query API calls being computed (at most the query concurrency limit)",
            queries_running.clone(),
        );
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by endpoint (route template) and status",
            responses.clone(),
        );
        let links = Counter::default();
        registry.register(
            "identity_links",
            "Segment alias calls recorded as identity links",
            links.clone(),
        );
        let key_cache_entries = Gauge::default();
        registry.register(
            "key_cache_entries",
            "API keys held in the short authentication cache",
            key_cache_entries.clone(),
        );
        Metrics {
            registry,
            ingest_events,
            ack_seconds,
            ingest_in_flight,
            ingest_in_flight_limit,
            ingest_refused,
            backlog_events,
            store_bytes,
            dead_letters,
            query_seconds,
            queries_running,
            responses,
            links,
            key_cache_entries,
        }
    }

    pub fn count_events(&self, endpoint: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.ingest_events
                .get_or_create(&EventLabels {
                    endpoint: endpoint.to_string(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
