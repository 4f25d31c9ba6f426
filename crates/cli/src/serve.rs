//! `omnitrail serve` (and the serving half of `omnitrail demo`): the HTTP server over one
//! data dir, until SIGINT or SIGTERM; then requests in flight finish, their events are
//! stored and acknowledged, and the store closes.

use anyhow::{Context, Result};
use clap::Args;
use omnitrail_app::{App, AppOptions};
use omnitrail_server::{Server, ServerConfig};
use std::io::Write;
use std::sync::Arc;

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub listen: String,
    /// Largest single event or Segment message, in bytes.
    #[arg(long, default_value_t = 32 * 1024, value_name = "BYTES")]
    pub max_event_bytes: usize,
    /// Largest request body, before and after decompression, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_batch_bytes: usize,
    /// Collector requests handled at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_in_flight: usize,
    /// Collector requests a second each API key may send on average (429 with
    /// Retry-After past it); 0 means no limit.
    #[arg(long, default_value_t = 0.0, value_name = "N")]
    pub rate_limit: f64,
    /// Collector requests a key may send at once before --rate-limit applies.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub rate_burst: u32,
    /// Longest a request may take, body upload included, in seconds (408 past it).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub request_timeout: u64,
    /// Compact in the background once this many events wait in the ingest log: fewer
    /// means a smaller log to hold in memory and replay, more means fewer, larger
    /// segments.
    #[arg(long, default_value_t = AppOptions::default().compact_after_events, value_name = "EVENTS")]
    pub compact_after: usize,
}

impl ServeArgs {
    /// How the served data dir is opened.
    pub fn app_options(&self) -> AppOptions {
        AppOptions {
            compact_after_events: self.compact_after.max(1),
            ..AppOptions::default()
        }
    }

    fn config(&self) -> ServerConfig {
        ServerConfig {
            max_event_bytes: self.max_event_bytes,
            max_batch_bytes: self.max_batch_bytes,
            max_in_flight_ingest: self.max_in_flight,
            rate_limit_per_sec: self.rate_limit,
            rate_limit_burst: self.rate_burst,
            request_timeout: std::time::Duration::from_secs(self.request_timeout.max(1)),
            ..ServerConfig::default()
        }
    }
}

/// Serves `app` until a shutdown signal; the first line printed is
/// `listening on http://ADDR`. With `ui_key`, the next line is the web UI's address signed
/// in with that secret key (the UI reads it from the fragment, which browsers never send).
pub fn serve(app: App, args: &ServeArgs, ui_key: Option<&str>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omnitrail-http")
        .build()
        .context("cannot start the async runtime")?;
    let app = Arc::new(app);
    let config = args.config();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("no local address")?;
        // The first line of standard output, for people and for scripts that start the
        // server on port 0.
        println!("listening on http://{addr}");
        if let Some(key) = ui_key {
            println!("web UI: http://{addr}/#key={key}");
        }
        std::io::stdout()
            .flush()
            .context("cannot write to standard output")?;
        let server = Server::new(app.clone(), config);
        server
            .serve(listener, omnitrail_server::shutdown_signal())
            .await
            .context("the server stopped with an error")
    })?;
    // Every request has finished; blocking work holds no more references to the app.
    drop(runtime);
    match Arc::try_unwrap(app) {
        Ok(app) => drop(app),
        Err(_) => tracing::warn!("the store is still in use at shutdown; it closes on exit"),
    }
    eprintln!("stopped: every acknowledged event is stored");
    Ok(())
}

/// `omnitrail openapi`: the OpenAPI document of the server.
pub fn openapi() {
    print!("{}", omnitrail_server::openapi_json());
}
