//! Measures how fast the demo data is generated, on one core and on all cores:
//!
//! ```text
//! cargo run --release -p omnitrail-synth --example throughput -- 50000
//! ```
//!
//! Each customer's events are dropped as soon as they are counted, as an importer would
//! hand them on, so the figure includes building and freeing every event.

use omnitrail_synth::{generate_customer, generate_range, SynthConfig};
use std::time::Instant;

const CHUNK: u64 = 1000;

fn main() {
    let customers: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("the argument is a number of customers"),
        None => 50_000,
    };
    let cfg = SynthConfig::default();

    let started = Instant::now();
    let events: usize = (0..customers)
        .map(|i| generate_customer(&cfg, i).events.len())
        .sum();
    report("one core", customers, events, started);

    // In chunks, as `omnitrail demo` would generate and ingest them.
    let started = Instant::now();
    let mut events = 0;
    for chunk in (0..customers).step_by(CHUNK as usize) {
        let range = chunk..(chunk + CHUNK).min(customers);
        events += generate_range(&cfg, range)
            .iter()
            .map(|c| c.events.len())
            .sum::<usize>();
    }
    report(
        &format!("{} threads", rayon::current_num_threads()),
        customers,
        events,
        started,
    );
}

fn report(what: &str, customers: u64, events: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what}: {customers} customers, {events} events ({:.1} per customer) in {secs:.2} s = {:.2} M events/s",
        events as f64 / customers as f64,
        events as f64 / secs / 1e6,
    );
}
