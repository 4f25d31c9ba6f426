//! Load generator for `omnitrail serve`: Segment batches through `/v1/batch`, single
//! `/v1/track` calls, and concurrent customer views, alone or ingest and views together.
//! Every request counts only when it got a 200 (for ingest: a durable acknowledgement).
//! Prints one JSON object per scenario. Sends only to the URL given (use a loopback one).
//!
//! omnitrail-loadgen --url http://127.0.0.1:7878 --write-key otw_… --secret-key ots_… \
//!     --scenario mixed --duration 20 --ingest-concurrency 8 --batch-size 500 \
//!     --view-concurrency 500 --customers 20000

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    /// Segment batches through /v1/batch.
    Batch,
    /// Single events through /v1/track.
    Track,
    /// Customer views only.
    Views,
    /// Batches and customer views at the same time.
    Mixed,
}

#[derive(Parser, Debug)]
struct Args {
    /// The server, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    url: String,
    #[arg(long)]
    write_key: String,
    /// Needed for the views.
    #[arg(long, default_value = "")]
    secret_key: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Seconds to run (bounded: at most 600).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 8)]
    ingest_concurrency: usize,
    /// Events per /v1/batch request.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Customer views in flight at once.
    #[arg(long, default_value_t = 500)]
    view_concurrency: usize,
    /// Paces the views to this many per second in total (each of the concurrent viewers
    /// waits its turn, like agents opening customers); 0 sends as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    view_rate: f64,
    /// Demo customers to look up (crm_id:crm-00000000 …); 0 means none.
    #[arg(long, default_value_t = 0)]
    customers: u64,
    /// Distinct user ids the ingest scenarios send as (shared by batch and track runs, so a
    /// track run after a batch run sends as known users).
    #[arg(long, default_value_t = 5000)]
    users: u64,
    /// Makes message ids unique across runs against the same data dir.
    #[arg(long, default_value = "run")]
    run_id: String,
}

/// Latencies in µs and outcomes of one kind of request.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    ok: u64,
    refused: u64,
    failed: u64,
    events: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.ok += other.ok;
        self.refused += other.refused;
        self.failed += other.failed;
        self.events += other.events;
    }

    fn report(mut self, what: &str, seconds: f64) -> serde_json::Value {
        self.latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let i =
                ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
            f64::from(self.latencies[i - 1]) / 1000.0
        };
        json!({
            "what": what,
            "seconds": seconds,
            "ok_requests": self.ok,
            "requests_per_s": self.ok as f64 / seconds,
            "events": self.events,
            "events_per_s": self.events as f64 / seconds,
            "refused_503": self.refused,
            "failed": self.failed,
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
        })
    }
}

/// A /v1/batch body of `n` track events with unique message ids.
fn batch_body(run: &str, worker: usize, seq: u64, n: usize, users: u64) -> String {
    const ACTIVITIES: [&str; 6] = [
        "page_viewed",
        "product_viewed",
        "cart_added",
        "checkout_started",
        "payment_failed",
        "purchase",
    ];
    let mut s = String::with_capacity(n * 260 + 200);
    s.push_str(r#"{"context":{"library":{"name":"omnitrail-loadgen","version":"1"}},"batch":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let k = seq * n as u64 + i as u64;
        let _ = write!(
            s,
            r#"{{"type":"track","event":"{}","userId":"lg-u{}","messageId":"{run}-{worker}-{k}","timestamp":"2026-03-01T10:{:02}:{:02}Z","properties":{{"value":{},"channel":"web","os":"iOS"}}}}"#,
            ACTIVITIES[(k % 6) as usize],
            (k.wrapping_mul(31).wrapping_add(worker as u64)) % users.max(1),
            (k / 60) % 60,
            k % 60,
            k % 100,
        );
    }
    s.push_str("]}");
    s
}

fn track_body(run: &str, worker: usize, seq: u64, users: u64) -> String {
    format!(
        r#"{{"event":"page_viewed","userId":"lg-u{}","messageId":"{run}-t-{worker}-{seq}","timestamp":"2026-03-01T11:00:00Z","properties":{{"channel":"web"}}}}"#,
        (seq.wrapping_mul(31).wrapping_add(worker as u64)) % users.max(1)
    )
}

async fn ingest_worker(
    client: reqwest::Client,
    args: Arc<Args>,
    worker: usize,
    stop: Arc<AtomicBool>,
    single: bool,
) -> Tally {
    let mut tally = Tally::default();
    let url = if single {
        format!("{}/v1/track", args.url)
    } else {
        format!("{}/v1/batch", args.url)
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (body, events) = if single {
            (track_body(&args.run_id, worker, seq, args.users), 1)
        } else {
            (
                batch_body(&args.run_id, worker, seq, args.batch_size, args.users),
                args.batch_size as u64,
            )
        };
        seq += 1;
        let started = Instant::now();
        let sent = client
            .post(&url)
            .basic_auth(&args.write_key, Some(""))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                tally.latencies.push(started.elapsed().as_micros() as u32);
                tally.ok += 1;
                tally.events += events;
            }
            Ok(r) if r.status().as_u16() == 503 => {
                tally.refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) | Err(_) => tally.failed += 1,
        }
    }
    tally
}

async fn view_worker(
    client: reqwest::Client,
    args: Arc<Args>,
    worker: usize,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let began = Instant::now();
    // With a rate: viewer w sends its i-th view at (i + w / concurrency) * concurrency / rate.
    let interval = (args.view_rate > 0.0)
        .then(|| Duration::from_secs_f64(args.view_concurrency as f64 / args.view_rate));
    let offset = interval.map(|i| i.mul_f64(worker as f64 / args.view_concurrency as f64));
    let mut sent = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let (Some(interval), Some(offset)) = (interval, offset) {
            let due = began + offset + interval * sent;
            sent += 1;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        // A multiplicative hash spreads the lookups over all customers.
        let index = n
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(worker as u64)
            % args.customers;
        let url = format!(
            "{}/api/v1/customers/crm_id:crm-{index:08}?limit=20",
            args.url
        );
        let started = Instant::now();
        match client.get(&url).bearer_auth(&args.secret_key).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                tally.latencies.push(started.elapsed().as_micros() as u32);
                tally.ok += 1;
            }
            Ok(_) | Err(_) => tally.failed += 1,
        }
    }
    tally
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    if args.duration == 0 || args.duration > 600 {
        bail!("--duration must be 1 to 600 seconds");
    }
    let views = matches!(args.scenario, Scenario::Views | Scenario::Mixed);
    if views && (args.customers == 0 || args.secret_key.is_empty()) {
        bail!("views need --customers and --secret-key");
    }
    // reqwest is built with TLS but no crypto provider (see crates/app, webhooks).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(60))
        .build()
        .context("http client")?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut ingest = Vec::new();
    let ingest_kind = match args.scenario {
        Scenario::Batch | Scenario::Mixed => Some(false),
        Scenario::Track => Some(true),
        Scenario::Views => None,
    };
    if let Some(single) = ingest_kind {
        for w in 0..args.ingest_concurrency {
            ingest.push(tokio::spawn(ingest_worker(
                client.clone(),
                args.clone(),
                w,
                stop.clone(),
                single,
            )));
        }
    }
    let mut viewers = Vec::new();
    if views {
        let next = Arc::new(AtomicU64::new(0));
        for w in 0..args.view_concurrency {
            viewers.push(tokio::spawn(view_worker(
                client.clone(),
                args.clone(),
                w,
                stop.clone(),
                next.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ingested = Tally::default();
    for h in ingest {
        ingested.merge(h.await.context("ingest worker")?);
    }
    let mut viewed = Tally::default();
    for h in viewers {
        viewed.merge(h.await.context("view worker")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut out =
        json!({"scenario": format!("{:?}", args.scenario).to_lowercase(), "url": args.url});
    if let Some(single) = ingest_kind {
        out["ingest"] = ingested.report(if single { "/v1/track" } else { "/v1/batch" }, seconds);
        out["ingest"]["concurrency"] = json!(args.ingest_concurrency);
        if !single {
            out["ingest"]["batch_size"] = json!(args.batch_size);
        }
    }
    if views {
        out["views"] = viewed.report("/api/v1/customers/{id}", seconds);
        out["views"]["concurrency"] = json!(args.view_concurrency);
        out["views"]["paced_per_s"] = json!(args.view_rate);
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
