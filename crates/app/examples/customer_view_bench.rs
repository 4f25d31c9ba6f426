//! Customer view latency on a demo data dir: opens it, warms the view's columns with one
//! lookup, then looks up random customers by the identifiers an agent would type (a phone
//! as heard, an email in odd case, a CRM id) and reports the latency distribution.
//!
//! cargo run --release -p omnitrail-app --example customer_view_bench -- DATA_DIR [SAMPLES]
//!
//! The data dir must hold `omnitrail demo` data (seed 42): identifiers are re-derived from
//! the generator. Prints one JSON object.

use omnitrail_app::customer::TimelineQuery;
use omnitrail_app::{App, AppOptions, SynthConfig};
use omnitrail_model::{IdentifierKind, ProjectId};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: customer_view_bench DATA_DIR [SAMPLES]");
    let samples: u64 = args.next().map_or(10_000, |s| s.parse().expect("SAMPLES"));
    let started = Instant::now();
    let app = App::open(dir.as_ref(), AppOptions::default()).expect("open data dir");
    let open_s = started.elapsed().as_secs_f64();
    let customers = app.stats(ProjectId::DEFAULT).expect("stats").customers;
    let stats_s = started.elapsed().as_secs_f64() - open_s;

    // Identity resolution makes one customer per generated person, so the resolved count
    // is the generator's.
    let cfg = SynthConfig {
        customers,
        ..SynthConfig::default()
    };
    let lookups: Vec<String> = (0..samples)
        .into_par_iter()
        .map(|n| {
            let index = mix(n) % customers;
            let c = omnitrail_app::demo_customer_events(&cfg, index);
            let ids: Vec<_> = c.iter().flat_map(|e| e.identifiers.iter()).collect();
            let pick = |kind: IdentifierKind| ids.iter().find(|i| i.kind == kind).copied();
            match n % 3 {
                0 => pick(IdentifierKind::Phone)
                    .map(|p| {
                        // As an agent hears it: +1 (555) 000-0004.
                        let d = &p.value[2..];
                        format!("+1 ({}) {}-{}", &d[..3], &d[3..6], &d[6..])
                    })
                    .unwrap_or_else(|| {
                        format!("crm_id:{}", pick(IdentifierKind::CrmId).expect("crm").value)
                    }),
                1 => pick(IdentifierKind::Email)
                    .map(|e| e.value.to_uppercase())
                    .unwrap_or_else(|| {
                        format!("crm_id:{}", pick(IdentifierKind::CrmId).expect("crm").value)
                    }),
                _ => format!("crm_id:{}", pick(IdentifierKind::CrmId).expect("crm").value),
            }
        })
        .collect();

    let q = TimelineQuery::default();
    let t = Instant::now();
    app.customer(ProjectId::DEFAULT, &lookups[0], &q)
        .expect("first lookup");
    let first_view_s = t.elapsed().as_secs_f64();

    let mut timed: Vec<(f64, &String, u64)> = lookups
        .iter()
        .map(|who| {
            let t = Instant::now();
            let v = app
                .customer(ProjectId::DEFAULT, who, &q)
                .unwrap_or_else(|e| panic!("{who}: {e}"));
            assert!(v.events > 0, "{who} has events");
            (t.elapsed().as_secs_f64() * 1e6, who, v.events)
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let micros: Vec<f64> = timed.iter().map(|t| t.0).collect();
    let slowest: Vec<String> = timed
        .iter()
        .rev()
        .take(3)
        .map(|(us, who, events)| format!("{who}: {us:.0} us, {events} events"))
        .collect();
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];

    // Many agents at once: every core looks customers up concurrently.
    let t = Instant::now();
    lookups.par_iter().for_each(|who| {
        app.customer(ProjectId::DEFAULT, who, &q).expect("lookup");
    });
    let parallel_per_s = lookups.len() as f64 / t.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "customers": customers,
            "samples": samples,
            "open_s": open_s,
            "stats_s": stats_s,
            "first_view_s": first_view_s,
            "p50_us": pct(0.50),
            "p90_us": pct(0.90),
            "p99_us": pct(0.99),
            "max_us": micros[micros.len() - 1],
            "slowest": slowest,
            "parallel_views_per_s": parallel_per_s,
            "threads": rayon::current_num_threads(),
        })
    );
}

/// SplitMix64: spreads sample numbers over the customer indices.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
