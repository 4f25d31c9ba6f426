//! Omnitrail's HTTP server: the collectors (native `/v1/events` and the Segment HTTP
//! Tracking API), the query API under `/api/v1`, API keys, size limits and back-pressure,
//! the OpenAPI document, Prometheus metrics and graceful shutdown.
//!
//! No business logic lives here: every event goes through [`App::ingest`], every query
//! through the app; this crate owns the wire format (DTOs, the error shape, status codes)
//! and runs the app's blocking work off the async threads (`spawn_blocking`).
//! The endpoints are described in docs/http-api.md.
//!
//! ```no_run
//! # async fn run(app: std::sync::Arc<omnitrail_app::App>) -> std::io::Result<()> {
//! let server = omnitrail_server::Server::new(app, omnitrail_server::ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! server.serve(listener, omnitrail_server::shutdown_signal()).await
//! # }
//! ```

mod analyses;
mod api;
mod auth;
mod body;
mod collect;
pub mod dto;
mod error;
mod limits;
mod metrics;
mod openapi;
mod privacy;
mod rules;
pub mod segment;
mod ui;

pub use analyses::{Analysis, Param, ParamType, ANALYSES};
pub use error::{ApiError, ErrorBody};
pub use openapi::{openapi, openapi_json};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use omnitrail_app::App;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Limits and timings of a server; the defaults are what `omnitrail serve` uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Largest single event or Segment message, in bytes (decompressed): a larger single
    /// call gets 413; a larger item of a batch becomes a dead letter.
    pub max_event_bytes: usize,
    /// Largest request body, in bytes, before and after decompression: 413 past it.
    pub max_batch_bytes: usize,
    /// Collector requests handled at once; more get 503 with `Retry-After`.
    pub max_in_flight_ingest: usize,
    /// The `Retry-After` of back-pressure answers, in seconds.
    pub retry_after_secs: u64,
    /// How long an authenticated key is trusted without asking the database again: the
    /// longest a revoked key keeps working.
    pub key_cache_ttl: Duration,
    /// Query API calls computed at once (each on a blocking thread); more wait their turn.
    /// Bounds the memory and threads of a burst: every view or analysis of fresh data may
    /// load columns, and hundreds loading at once would only slow each other down.
    pub max_concurrent_queries: usize,
    /// After a shutdown signal, how long in-flight requests may take before the server
    /// stops waiting for them (their events are then not acknowledged).
    pub shutdown_grace: Duration,
    /// Collector requests a second each API key may send on average; 0 means no limit.
    /// Past it (and its burst) a request gets 429 with `Retry-After`.
    pub rate_limit_per_sec: f64,
    /// Collector requests a key may send at once before its rate applies.
    pub rate_limit_burst: u32,
    /// Longest a request may take, body upload included; 408 past it.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_event_bytes: 32 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            max_in_flight_ingest: 256,
            retry_after_secs: 1,
            key_cache_ttl: Duration::from_secs(2),
            max_concurrent_queries: std::thread::available_parallelism().map_or(4, |n| n.get() * 2),
            shutdown_grace: Duration::from_secs(30),
            rate_limit_per_sec: 0.0,
            rate_limit_burst: 100,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) app: Arc<App>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) keys: auth::KeyCache,
    pub(crate) ingest_permits: Arc<Semaphore>,
    pub(crate) query_permits: Arc<Semaphore>,
    pub(crate) rate_limiter: limits::RateLimiter,
}

/// A server over one app (one data dir).
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(app: Arc<App>, config: ServerConfig) -> Server {
        let metrics = metrics::Metrics::new();
        metrics
            .ingest_in_flight_limit
            .set(config.max_in_flight_ingest as i64);
        Server {
            shared: Arc::new(Shared {
                app,
                keys: auth::KeyCache::new(config.key_cache_ttl),
                ingest_permits: Arc::new(Semaphore::new(config.max_in_flight_ingest)),
                query_permits: Arc::new(Semaphore::new(config.max_concurrent_queries.max(1))),
                rate_limiter: limits::RateLimiter::new(
                    config.rate_limit_per_sec,
                    config.rate_limit_burst,
                ),
                config,
                metrics,
            }),
        }
    }

    pub fn app(&self) -> &Arc<App> {
        &self.shared.app
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The in-flight limit of the collectors: each request holds one permit while it is
    /// parsed and stored. Holding permits from outside simulates load (tests do).
    pub fn ingest_permits(&self) -> Arc<Semaphore> {
        self.shared.ingest_permits.clone()
    }

    /// Every route, with metrics, request logs (tracing target `omnitrail_server::access`,
    /// level info) and panics turned into a 500 that reveals nothing.
    pub fn router(&self) -> Router {
        let shared = self.shared.clone();
        Router::new()
            .route("/healthz", get(api::healthz))
            .route("/metrics", get(api::metrics))
            .route("/openapi.json", get(api::openapi_document))
            .route("/v1/events", post(collect::events))
            .route("/v1/track", post(collect::track))
            .route("/v1/identify", post(collect::identify))
            .route("/v1/page", post(collect::page))
            .route("/v1/screen", post(collect::screen))
            .route("/v1/group", post(collect::group))
            .route("/v1/alias", post(collect::alias))
            .route("/v1/batch", post(collect::batch))
            .route("/v1/import", post(collect::import))
            .route(
                "/api/v1/customers/{id}",
                get(api::customer).delete(privacy::erase),
            )
            .route(
                "/api/v1/customers/{id}/notes",
                get(api::notes).post(api::add_note),
            )
            .route("/api/v1/notes/{id}", patch(api::edit_note))
            .route("/api/v1/analyses", get(api::analysis_list))
            .route(
                "/api/v1/analyses/{name}",
                get(api::analysis_get).post(api::analysis_post),
            )
            .route("/api/v1/stats", get(api::stats))
            .route("/api/v1/dead-letters", get(api::dead_letters))
            .route("/api/v1/dead-letters/replay", post(api::replay))
            .route("/api/v1/dead-letters/{id}/replay", post(api::replay_one))
            .route("/api/v1/imports", get(api::imports))
            .route("/api/v1/keys", get(api::keys).post(api::create_key))
            .route("/api/v1/keys/{key}", axum::routing::delete(api::revoke_key))
            .route("/api/v1/suppressions", get(privacy::suppressions))
            .route(
                "/api/v1/suppressions/{identifier}",
                axum::routing::delete(privacy::lift),
            )
            .route("/api/v1/audit", get(privacy::audit))
            .route("/api/v1/rules", get(rules::list).post(rules::create))
            .route("/api/v1/rules/test", post(rules::test))
            .route("/api/v1/rules/replay", post(rules::replay_draft))
            .route("/api/v1/rules/{name}", get(rules::get_one))
            .route("/api/v1/rules/{name}/disable", post(rules::disable))
            .route("/api/v1/rules/{name}/enable", post(rules::enable))
            .route("/api/v1/rules/{name}/replay", post(rules::replay))
            .route("/api/v1/tasks", get(rules::tasks))
            .route("/api/v1/tasks/{id}", patch(rules::patch_task))
            .route("/api/v1/webhook-deliveries", get(rules::deliveries))
            .fallback(ui::fallback)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                limits::timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                observe,
            ))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
            // The collectors read bodies themselves, within their own limits.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared)
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets the
    /// requests in flight finish (their events stored, then acknowledged) for up to
    /// [`ServerConfig::shutdown_grace`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
        let grace = self.shared.config.shutdown_grace;
        // Trigger timers: closed unless windows are decided and emitted events added
        // once a second (the app's rules.rs); stopped with the server.
        let app = self.shared.app.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let app = app.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || app.poll_rules()).await {
                    tracing::error!("trigger timers: {e}");
                }
            }
        });
        let _stop_ticker = AbortOnDrop(ticker);
        tokio::select! {
            result = graceful => result,
            () = async move {
                if stopping_rx.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(
                    "requests still in flight {} s after the shutdown signal are abandoned unacknowledged",
                    grace.as_secs()
                );
                Ok(())
            }
        }
    }
}

/// Aborts a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Per request: the latency histogram of query endpoints, the response counter, and an
/// access log line.
async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if endpoint.starts_with("/api/") {
        shared
            .metrics
            .query_seconds
            .get_or_create(&metrics::EndpointLabels {
                endpoint: endpoint.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }
    shared
        .metrics
        .responses
        .get_or_create(&metrics::ResponseLabels {
            endpoint: endpoint.clone(),
            status,
        })
        .inc();
    tracing::info!(
        target: "omnitrail_server::access",
        "{method} {endpoint} {status} {:.1} ms",
        elapsed.as_secs_f64() * 1000.0
    );
    response
}

fn on_panic(detail: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = detail
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| detail.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(&format!("a request handler panicked: {text}")).into_response()
}
